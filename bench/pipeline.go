package main

import (
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nblpipe/nblpipe/internal/scenario"
)

// pipelineRuns runs every selected scenario × frame size × burst × workers,
// with the two channel baselines of each scenario and size measured just
// before, and returns the results in report order.
func pipelineRuns(o options, re *regexp.Regexp, progress func(string), live func(string, uint64, time.Duration)) ([]Result, error) {
	var out []Result
	for _, k := range scenario.Kinds {
		for _, size := range o.sizes {
			prefix := fmt.Sprintf("pipeline/%s/%dB", k, size)
			var rows []scenario.Config
			for _, burst := range o.bursts {
				for _, workers := range o.workers {
					name := fmt.Sprintf("%s/burst%d/workers%d", prefix, burst, workers) + handoffSuffix(o.handoff)
					if re.MatchString(name) {
						rows = append(rows, scenario.Config{Kind: k, FrameSize: size, Burst: burst, Workers: workers, Handoff: o.handoff, Duration: o.duration, Warmup: o.warmup})
					}
				}
			}
			if len(rows) == 0 {
				continue
			}
			var base [2]Result
			for i, batch := range []bool{false, true} {
				name := fmt.Sprintf("baseline/chan-per-packet/%s/%dB", k, size)
				if batch {
					name = fmt.Sprintf("baseline/chan-of-batches32/%s/%dB", k, size)
				}
				progress(name)
				r, err := scenario.Baseline(scenario.Config{Kind: k, FrameSize: size, Duration: o.duration, Warmup: o.warmup}, batch)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				base[i] = toResult(name, "baseline", r)
				out = append(out, base[i])
			}
			for _, c := range rows {
				name := fmt.Sprintf("%s/burst%d/workers%d", prefix, c.Burst, c.Workers) + handoffSuffix(c.Handoff)
				progress(name)
				if live != nil {
					c.Progress = func(p uint64, e time.Duration) { live(name, p, e) }
				}
				r, err := scenario.Run(c)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				res := toResult(name, "pipeline", r)
				res.Burst, res.Workers, res.FrameSize, res.Scenario = c.Burst, c.Workers, size, string(k)
				if base[0].NsPerPkt > 0 && res.NsPerPkt > 0 {
					res.Baseline = base[0].Name
					res.Speedup = base[0].NsPerPkt / res.NsPerPkt
				}
				if base[1].NsPerPkt > 0 && res.NsPerPkt > 0 {
					res.BatchBaseline = base[1].Name
					res.BatchSpeedup = base[1].NsPerPkt / res.NsPerPkt
				}
				if r.Leaked != nil {
					res.Error = r.Leaked.Error()
				}
				if r.Drops != 0 {
					res.Error = strings.TrimSpace(res.Error + fmt.Sprintf(" %d unexpected drops %v", r.Drops, r.DropsBy))
				}
				out = append(out, res)
			}
		}
	}
	return out, nil
}

func toResult(name, group string, r scenario.Result) Result {
	if r.Packets == 0 {
		return Result{Name: name, Group: group, Runs: 1, Error: "no packets in the measured interval"}
	}
	res := Result{
		Name: name, Group: group, Mpps: r.Mpps(), NsPerPkt: r.NsPerPkt(), Gbps: r.Gbps(),
		AllocsPerPkt: r.AllocsPerPkt(), GCCycles: uint32(r.GCCycles), Runs: 1, Packets: r.Packets,
	}
	if len(r.Latencies) > 0 {
		p50, p99, p999 := r.Percentile(0.5), r.Percentile(0.99), r.Percentile(0.999)
		res.P50Ns, res.P99Ns, res.P999Ns = &p50, &p99, &p999
	}
	return res
}

func printPipeline(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "name\tMpps\tGbit/s\tns/pkt\tallocs/pkt\tGC\tp50 µs\tp99 µs\tp99.9 µs\tvs chan/pkt\tvs chan/batch\t")
	for _, r := range results {
		vs1, vs2 := "", ""
		if r.Speedup > 0 {
			vs1 = fmt.Sprintf("%.1fx", r.Speedup)
			vs2 = fmt.Sprintf("%.1fx", r.BatchSpeedup)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.1f\t%.4f\t%d\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Mpps, r.Gbps, r.NsPerPkt,
			r.AllocsPerPkt, r.GCCycles, us(r.P50Ns), us(r.P99Ns), us(r.P999Ns), vs1, vs2)
		if r.Error != "" {
			fmt.Fprintf(tw, "  ^ %s\t\t\t\t\t\t\t\t\t\t\t\n", r.Error)
		}
	}
	tw.Flush()
}

func us(ns *float64) string {
	if ns == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *ns/1e3)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "ncpu" {
			out = append(out, runtime.NumCPU())
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

// holdForPerf runs one scenario at steady state for d so that perf or
// pprof can attach, printing the process ID first.
func holdForPerf(w io.Writer, o options, re *regexp.Regexp, pid int) error {
	for _, k := range scenario.Kinds {
		for _, size := range o.sizes {
			for _, burst := range o.bursts {
				for _, workers := range o.workers {
					name := fmt.Sprintf("pipeline/%s/%dB/burst%d/workers%d", k, size, burst, workers) + handoffSuffix(o.handoff)
					if !re.MatchString(name) {
						continue
					}
					fmt.Fprintf(w, "pid %d: holding %s for %v; attach with: perf record -g -p %d  (or perf stat -p %d)\n", pid, name, o.duration+o.warmup, pid, pid)
					t0 := time.Now()
					r, err := scenario.Run(scenario.Config{Kind: k, FrameSize: size, Burst: burst, Workers: workers, Handoff: o.handoff, Duration: o.duration, Warmup: o.warmup})
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "%s: %.2f Mpps, %.1f ns/pkt over %v (held %v)\n", name, r.Mpps(), r.NsPerPkt(), r.Elapsed.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
					return nil
				}
			}
		}
	}
	return fmt.Errorf("-perf: no pipeline scenario matches -scenario %q", re)
}

// handoffSuffix marks the names of runs with -handoff.
func handoffSuffix(handoff bool) string {
	if handoff {
		return "/handoff"
	}
	return ""
}
