// Command bench is nblpipe's main job: it measures the library on this
// machine, in memory and without root, and prints a report beside the
// baselines a Go programmer would otherwise write, measured in the same run.
//
//	go run ./bench                 # the report
//	go run ./bench -json           # machine-readable results on stdout
//	go run ./bench -scenario ring  # only results whose name matches a regexp
//
// Every figure comes from the package code users call, run with
// testing.Benchmark; nothing is hard-coded.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/internal/microbench"
)

type options struct {
	duration   time.Duration
	warmup     time.Duration
	microDur   time.Duration
	bursts     []int
	workers    []int
	sizes      []int
	perf       bool
	noMicro    bool
	count      int
	jsonOut    bool
	scenario   string
	cpuprofile string
	memprofile string
	trace      string
	svg        string
	ports      string
	handoff    bool
}

// Result is one measured figure. Latency fields are null where the
// measurement does not sample latency (the micro-benchmarks).
type Result struct {
	Name         string   `json:"name"`
	Group        string   `json:"group"`
	Mpps         float64  `json:"mpps"` // million items (packets, objects) per second
	NsPerPkt     float64  `json:"ns_per_pkt"`
	AllocsPerPkt float64  `json:"allocs_per_pkt"`
	GCCycles     uint32   `json:"gc_cycles"`
	P50Ns        *float64 `json:"p50_ns"`
	P99Ns        *float64 `json:"p99_ns"`
	P999Ns       *float64 `json:"p999_ns"`
	Gbps         float64  `json:"gbps,omitempty"`
	Packets      uint64   `json:"packets,omitempty"`
	Scenario     string   `json:"scenario,omitempty"`
	FrameSize    int      `json:"frame_size,omitempty"`
	Burst        int      `json:"burst,omitempty"`
	Workers      int      `json:"workers,omitempty"`
	Baseline     string   `json:"baseline,omitempty"`
	Speedup      float64  `json:"speedup,omitempty"` // baseline ns per item / ours
	// BatchBaseline and BatchSpeedup compare with the channel-of-batches
	// pipeline.
	BatchBaseline string  `json:"batch_baseline,omitempty"`
	BatchSpeedup  float64 `json:"batch_speedup,omitempty"`
	Runs          int     `json:"runs"`
	Error         string  `json:"error,omitempty"`
	// The veth frame-rate measurement (-ports veth): the generator, the
	// frames it offered on h1's veth and those delivered on h2's in the
	// window (Mpps is the delivered rate), the loss, this process's CPU
	// time (the switch's) and the machine's softirq time per delivered
	// frame (per dropped frame for block), and the switch's drops by
	// reason. Absent means zero or not measured.
	Generator       string            `json:"generator,omitempty"`
	Offered         uint64            `json:"offered_packets,omitempty"`
	Delivered       uint64            `json:"delivered_packets,omitempty"`
	OfferedMpps     float64           `json:"offered_mpps,omitempty"`
	LossPct         float64           `json:"loss_pct,omitempty"`
	CPUNsPerPkt     float64           `json:"cpu_ns_per_pkt,omitempty"`
	SoftirqNsPerPkt float64           `json:"softirq_ns_per_pkt,omitempty"`
	SwitchDrops     map[string]uint64 `json:"switch_drops,omitempty"`
}

// Report is what -json prints.
type Report struct {
	Machine machine  `json:"machine"`
	Results []Result `json:"results"`
}

type machine struct {
	CPU        string `json:"cpu"`
	NumCPU     int    `json:"num_cpu"`
	Physical   int    `json:"physical_cores"`
	Logical    int    `json:"logical_cores"`
	CacheLine  int    `json:"cache_line"`
	L1D        int    `json:"l1d_bytes"`
	L2         int    `json:"l2_bytes"`
	L3         int    `json:"l3_bytes"`
	Hypervisor bool   `json:"hypervisor"`
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
}

func main() {
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.DurationVar(&o.duration, "duration", 300*time.Millisecond, "time to measure each pipeline run (after -warmup)")
	fs.DurationVar(&o.warmup, "warmup", 50*time.Millisecond, "time to run each pipeline before measuring")
	fs.DurationVar(&o.microDur, "micro-duration", 200*time.Millisecond, "time to run each ring/pool micro-benchmark (each of -count runs)")
	burst := fs.String("burst", "1,8,32,128", "comma-separated burst sizes")
	workers := fs.String("workers", "1,ncpu", "comma-separated worker counts (ncpu: one per CPU)")
	sizes := fs.String("size", "64,1500", "comma-separated frame sizes in bytes")
	fs.BoolVar(&o.perf, "perf", false, "print the PID and hold the first matching pipeline scenario at steady state for -duration, for perf record -p PID")
	fs.BoolVar(&o.noMicro, "no-micro", false, "skip the ring and pool micro-benchmarks")
	fs.IntVar(&o.count, "count", 3, "runs per micro-benchmark; the report gives the median")
	fs.BoolVar(&o.jsonOut, "json", false, "print machine-readable results on stdout instead of the report")
	fs.StringVar(&o.scenario, "scenario", "", "run only the measurements whose name matches this regular expression")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile to this file at the end")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace to this file")
	fs.StringVar(&o.svg, "svg", "", "write the pipeline results as charts to this SVG file")
	fs.BoolVar(&o.handoff, "handoff", false, "in-memory ports without per-worker transmit queues: a frame for a port another worker serves crosses to it through the port's ring, as with AF_PACKET and AF_XDP ports (the names end in /handoff)")
	fs.StringVar(&o.ports, "ports", "memory", "memory: in-memory ports (no root); veth: real veth pairs between network namespaces it makes and removes, beside a kernel bridge (root; ping, iperf3, trafgen)")
	_ = fs.Parse(os.Args[1:])
	var err error
	for _, l := range []struct {
		s   string
		dst *[]int
		f   string
	}{{*burst, &o.bursts, "-burst"}, {*workers, &o.workers, "-workers"}, {*sizes, &o.sizes, "-size"}} {
		if *l.dst, err = parseInts(l.s); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", l.f, err)
			os.Exit(2)
		}
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options, w io.Writer) error {
	if o.count < 1 {
		return fmt.Errorf("-count must be at least 1, got %d", o.count)
	}
	if o.duration <= 0 {
		return fmt.Errorf("-duration must be positive, got %v", o.duration)
	}
	if err := svgPath(o.svg); err != nil {
		return err
	}
	re, err := regexp.Compile(o.scenario)
	if err != nil {
		return fmt.Errorf("-scenario: %w", err)
	}
	if len(o.bursts) == 0 {
		o.bursts, o.workers, o.sizes = []int{32}, []int{1}, []int{64}
	}
	testing.Init()
	if err := flag.CommandLine.Set("test.benchtime", o.microDur.String()); err != nil {
		return err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.trace != "" {
		f, err := os.Create(o.trace)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}

	if o.perf {
		return holdForPerf(w, o, re, os.Getpid())
	}
	if o.ports == "veth" {
		rep := Report{Machine: describeMachine()}
		progress := func(string) {}
		if !o.jsonOut {
			printMachine(w, rep.Machine)
			progress, _ = newProgress(w)
		}
		res, err := vethRuns(o, re, progress)
		progress("")
		rep.Results = res
		if o.jsonOut {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if e := enc.Encode(rep); e != nil {
				return e
			}
			return err
		}
		fmt.Fprintf(w, "\nReal interfaces: two hosts in network namespaces joined by a kernel bridge, then by the switch on AF_PACKET ports; per path: ping, iperf3 TCP for %v with default offloads, and 64-byte UDP frames from a generator in h1 counted at h2.\n", max(o.duration, 2*time.Second))
		printVeth(w, res)
		return err
	} else if o.ports != "memory" && o.ports != "" {
		return fmt.Errorf("-ports %q: want memory or veth", o.ports)
	}
	rep := Report{Machine: describeMachine()}
	progress := func(string) {}
	var live func(string, uint64, time.Duration)
	if !o.jsonOut {
		printMachine(w, rep.Machine)
		progress, live = newProgress(w)
	}
	pipe, err := pipelineRuns(o, re, progress, live)
	progress("")
	if err != nil {
		return err
	}
	if !o.jsonOut && len(pipe) > 0 {
		fmt.Fprintf(w, "\nPipeline: a switch with two in-memory ports sending to each other, %v per run after %v of warm-up.\n", o.duration, o.warmup)
		fmt.Fprintln(w, "Each scenario's two baselines (goroutine per stage joined by channels, sync.Pool buffers) ran just before it, in this process.")
		fmt.Fprintln(w, "Latency: receive-to-transmit of every 61st frame, with at most 1024 frames in flight per port (2048 for the baselines).")
		printPipeline(w, pipe)
	}
	var micro []Result
	if !o.noMicro {
		micro = runMicro(o, re)
	}
	rep.Results = append(pipe, micro...)
	if !o.jsonOut && len(micro) > 0 {
		fmt.Fprintf(w, "\nRing and pool micro-figures: median of %d runs of %v each; lower ns/item is better.\n", o.count, o.microDur)
		fmt.Fprintln(w, "Baselines (Go channels, sync.Pool) run in the same process, just before the figures compared with them.")
		printMicro(w, micro)
	}
	if o.memprofile != "" {
		f, err := os.Create(o.memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	if o.svg != "" && len(pipe) > 0 {
		if err := writeSVG(o.svg, pipe, o); err != nil {
			return fmt.Errorf("-svg: %w", err)
		}
		if !o.jsonOut {
			fmt.Fprintf(w, "\ncharts written to %s\n", o.svg)
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}

func describeMachine() machine {
	i := cpu.Detect()
	return machine{
		CPU: i.Model, NumCPU: i.NumCPU, Physical: i.PhysicalCores, Logical: i.LogicalCores,
		CacheLine: i.CacheLine, L1D: i.L1D, L2: i.L2, L3: i.L3, Hypervisor: i.Hypervisor,
		GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
	}
}

func printMachine(w io.Writer, m machine) {
	fmt.Fprintf(w, "nblpipe bench, %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "cpu:   %s\n", m.CPU)
	fmt.Fprintf(w, "cores: %d usable CPUs (%d physical, %d logical); GOMAXPROCS %d; hypervisor: %v\n",
		m.NumCPU, m.Physical, m.Logical, m.GOMAXPROCS, m.Hypervisor)
	fmt.Fprintf(w, "cache: line %d B, L1d %s, L2 %s, L3 %s\n", m.CacheLine, byteSize(m.L1D), byteSize(m.L2), byteSize(m.L3))
	fmt.Fprintf(w, "go:    %s %s/%s\n", m.GoVersion, m.GOOS, m.GOARCH)
}

func byteSize(b int) string {
	switch {
	case b <= 0:
		return "unknown"
	case b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d B", b)
}

// runMicro runs each selected case count times and keeps the median run.
// A case's baseline runs too, even when the pattern does not select it, so
// that every figure has its comparison from the same process.
func runMicro(o options, re *regexp.Regexp) []Result {
	cases := microbench.Cases()
	want := map[string]bool{}
	for _, c := range cases {
		if re.MatchString(c.Name) {
			want[c.Name] = true
			if c.Baseline != "" {
				want[c.Baseline] = true
			}
		}
	}
	var results []Result
	byName := map[string]*Result{}
	for _, c := range cases {
		if !want[c.Name] {
			continue
		}
		r := measureCase(c, o.count)
		results = append(results, r)
		byName[c.Name] = &results[len(results)-1]
	}
	for i := range results {
		r := &results[i]
		if b, ok := byName[r.Baseline]; ok && r.NsPerPkt > 0 {
			r.Speedup = b.NsPerPkt / r.NsPerPkt
		}
	}
	return results
}

func measureCase(c microbench.Case, count int) Result {
	type run struct {
		ns, allocs float64
		gcs        uint32
	}
	runs := make([]run, 0, count)
	for range count {
		runtime.GC()
		gcBefore := automaticGCs()
		br := testing.Benchmark(c.Bench)
		gcs := uint32(automaticGCs() - gcBefore)
		items := float64(br.N) * float64(c.Items)
		if items == 0 {
			continue
		}
		runs = append(runs, run{
			ns:     float64(br.T.Nanoseconds()) / items,
			allocs: float64(br.MemAllocs) / items,
			gcs:    gcs,
		})
	}
	res := Result{Name: c.Name, Group: "micro", Baseline: c.Baseline, Runs: len(runs)}
	if len(runs) == 0 {
		return res
	}
	slices.SortFunc(runs, func(a, b run) int {
		switch {
		case a.ns < b.ns:
			return -1
		case a.ns > b.ns:
			return 1
		}
		return 0
	})
	m := runs[len(runs)/2]
	res.NsPerPkt = m.ns
	res.Mpps = 1e3 / m.ns
	res.AllocsPerPkt = m.allocs
	res.GCCycles = m.gcs
	return res
}

func printMicro(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "name\tns/item\tMops\tallocs/item\tGC\tvs baseline\t")
	for _, r := range results {
		vs := ""
		if r.Speedup > 0 {
			vs = fmt.Sprintf("%.1fx %s", r.Speedup, r.Baseline)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%.3f\t%d\t%s\t\n", r.Name, r.NsPerPkt, r.Mpps, r.AllocsPerPkt, r.GCCycles, vs)
	}
	tw.Flush()
}

// automaticGCs returns the number of garbage collections the runtime started
// on its own, leaving out those forced by runtime.GC (testing.Benchmark
// forces one before each run).
func automaticGCs() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/automatic:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
