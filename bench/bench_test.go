package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/internal/microbench"
	"github.com/nblpipe/nblpipe/internal/scenario"
)

// BenchmarkPipeline runs the end-to-end scenarios of the bench program as
// go test benchmarks, so that benchstat can compare commits:
//
//	go test -run '^$' -bench Pipeline -count 6 ./bench > new.txt
//
// workers0 is one manual worker stepped on the benchmark goroutine (one
// core); workersN runs N worker goroutines.
func BenchmarkPipeline(b *testing.B) {
	for _, k := range scenario.Kinds {
		for _, size := range []int{64, 1500} {
			for _, run := range []struct {
				workers int
				handoff bool
			}{{0, false}, {2, false}, {2, true}} {
				workers := run.workers
				b.Run(fmt.Sprintf("%s/%dB/burst32/workers%d%s", k, size, workers, handoffSuffix(run.handoff)), func(b *testing.B) {
					s, err := scenario.Build(scenario.Config{Kind: k, FrameSize: size, Burst: 32, Workers: workers, Handoff: run.handoff})
					if err != nil {
						b.Fatal(err)
					}
					r, err := s.RunPackets(20*time.Millisecond, uint64(b.N))
					if err != nil {
						b.Fatal(err)
					}
					if r.Leaked != nil {
						b.Fatal(r.Leaked)
					}
					if r.Drops != 0 {
						b.Fatalf("%d unexpected drops: %v", r.Drops, r.DropsBy)
					}
					report(b, r)
				})
			}
		}
	}
}

// BenchmarkPipelineBaseline runs the channel pipelines the scenarios are
// compared with.
func BenchmarkPipelineBaseline(b *testing.B) {
	for _, k := range scenario.Kinds {
		for _, batch := range []bool{false, true} {
			name := "chan-per-packet"
			if batch {
				name = "chan-of-batches32"
			}
			b.Run(fmt.Sprintf("%s/%s/64B", name, k), func(b *testing.B) {
				// The baselines run for a duration: give them one long
				// enough for b.N packets at their usual rate.
				d := time.Duration(b.N) * 200 * time.Nanosecond
				r, err := scenario.Baseline(scenario.Config{Kind: k, FrameSize: 64, Duration: max(d, 10*time.Millisecond), Warmup: 5 * time.Millisecond}, batch)
				if err != nil {
					b.Fatal(err)
				}
				report(b, r)
			})
		}
	}
}

func report(b *testing.B, r scenario.Result) {
	b.ReportMetric(r.NsPerPkt(), "ns/pkt")
	b.ReportMetric(r.Mpps(), "Mpps")
	b.ReportMetric(r.AllocsPerPkt(), "allocs/pkt")
	b.ReportMetric(float64(r.GCCycles), "GCs")
	if p := r.Percentile(0.99); p >= 0 {
		b.ReportMetric(p, "p99-ns")
	}
}

// BenchmarkMicro runs the ring and pool micro-benchmarks of the report.
func BenchmarkMicro(b *testing.B) {
	for _, c := range microbench.Cases() {
		b.Run(c.Name, func(b *testing.B) {
			c.Bench(b)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.Items), "ns/item")
		})
	}
}

// TestReportRuns runs the bench program's whole report briefly and checks
// that -json output parses and carries the fields the issue asks for.
func TestReportRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario")
	}
	var buf bytesBuffer
	o := options{duration: 5 * time.Millisecond, warmup: 2 * time.Millisecond, microDur: time.Millisecond,
		bursts: []int{8, 32}, workers: []int{1, 2}, sizes: []int{64}, count: 1, jsonOut: true}
	if err := run(o, &buf); err != nil {
		t.Fatal(err)
	}
	checkJSON(t, buf.Bytes())
}
