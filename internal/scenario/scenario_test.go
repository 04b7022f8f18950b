package scenario

import (
	"testing"
	"time"
)

// TestScenariosRunClean runs every scenario briefly on one manual worker
// and on two worker goroutines and checks that frames flow and that
// nothing leaks or is dropped unexpectedly.
func TestScenariosRunClean(t *testing.T) {
	for _, k := range Kinds {
		for _, workers := range []int{0, 2} {
			r, err := Run(Config{Kind: k, FrameSize: 64, Burst: 32, Workers: workers, Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond})
			if err != nil {
				t.Fatalf("%s/%d workers: %v", k, workers, err)
			}
			if r.Leaked != nil {
				t.Errorf("%s/%d workers: %v", k, workers, r.Leaked)
			}
			if r.Drops != 0 {
				t.Errorf("%s/%d workers: %d unexpected drops: %v", k, workers, r.Drops, r.DropsBy)
			}
			t.Logf("%s workers=%d: %.2f Mpps, %.1f ns/pkt, %.4f allocs/pkt, p50 %.0f ns", k, workers, r.Mpps(), r.NsPerPkt(), r.AllocsPerPkt(), r.Percentile(0.5))
		}
	}
}

func TestBaselinesRun(t *testing.T) {
	for _, k := range Kinds {
		for _, batch := range []bool{false, true} {
			r, err := Baseline(Config{Kind: k, FrameSize: 64, Duration: 30 * time.Millisecond, Warmup: 5 * time.Millisecond}, batch)
			if err != nil {
				t.Fatal(err)
			}
			if r.Packets == 0 {
				t.Fatalf("%s batch=%v: no packets", k, batch)
			}
			t.Logf("baseline %s batch=%v: %.2f Mpps %.2f allocs/pkt", k, batch, r.Mpps(), r.AllocsPerPkt())
		}
	}
}
