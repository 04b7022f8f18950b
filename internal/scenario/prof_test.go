package scenario

import (
	"testing"
	"time"
)

func TestProfForward(t *testing.T) {
	r, err := Run(Config{Kind: Forward, FrameSize: 64, Burst: 32, Duration: 2 * time.Second, Warmup: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.2f Mpps %.1f ns/pkt drops %d", r.Mpps(), r.NsPerPkt(), r.Drops)
}
