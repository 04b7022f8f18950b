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
	count      int
	jsonOut    bool
	scenario   string
	cpuprofile string
	memprofile string
	trace      string
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
	Baseline     string   `json:"baseline,omitempty"`
	Speedup      float64  `json:"speedup,omitempty"` // baseline ns per item / ours
	Runs         int      `json:"runs"`
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
	fs.DurationVar(&o.duration, "duration", 200*time.Millisecond, "time to run each measurement (each of -count runs)")
	fs.IntVar(&o.count, "count", 3, "runs per measurement; the report gives the median")
	fs.BoolVar(&o.jsonOut, "json", false, "print machine-readable results on stdout instead of the report")
	fs.StringVar(&o.scenario, "scenario", "", "run only the measurements whose name matches this regular expression")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile to this file at the end")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace to this file")
	_ = fs.Parse(os.Args[1:])
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
	re, err := regexp.Compile(o.scenario)
	if err != nil {
		return fmt.Errorf("-scenario: %w", err)
	}
	testing.Init()
	if err := flag.CommandLine.Set("test.benchtime", o.duration.String()); err != nil {
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

	rep := Report{Machine: describeMachine()}
	if !o.jsonOut {
		printMachine(w, rep.Machine)
		fmt.Fprintf(w, "\nRing and pool micro-figures: median of %d runs of %v each; lower ns/item is better.\n", o.count, o.duration)
		fmt.Fprintln(w, "Baselines (Go channels, sync.Pool) run in the same process, just before the figures compared with them.")
	}
	rep.Results = runMicro(o, re)
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
	if o.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printMicro(w, rep.Results)
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
	fmt.Fprintf(w, "cache: line %d B, L1d %s, L2 %s, L3 %s\n", m.CacheLine, bytes(m.L1D), bytes(m.L2), bytes(m.L3))
	fmt.Fprintf(w, "go:    %s %s/%s\n", m.GoVersion, m.GOOS, m.GOARCH)
}

func bytes(b int) string {
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
