//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// The paths -ports veth measures, in report order: the kernel bridge, the
// baseline every other figure is compared with, then the switch on
// AF_PACKET ports in each scenario kind.
const vethKernel = "kernel-bridge"

func vethPaths() []string {
	p := []string{vethKernel}
	for _, k := range scenario.Kinds {
		p = append(p, "afpacket/"+string(k))
	}
	return p
}

const (
	vethAddr1, vethAddr2 = "10.81.0.1", "10.81.0.2"
	// vethWarmup is how long the generator runs before the window.
	vethWarmup = 500 * time.Millisecond
)

// vethRuns measures real interfaces: two hosts in network namespaces made
// here, joined by veth pairs to, in turn, a kernel bridge and the switch on
// AF_PACKET ports in each scenario kind (forward, inspect, clone-reinject,
// block). On each path ping measures the round trip at a low rate, iperf3
// TCP runs with the hosts' default offloads (neither can pass block), and a
// generator in h1's namespace sends 64-byte UDP frames to h2 at the rate
// it can. Everything made is removed when a path is done, also on error.
// The kernel bridge runs whenever any veth path is selected: every figure
// is compared with it. It needs root, ip, ping, iperf3 and trafgen (or,
// outside CI, falls back to a Go generator).
func vethRuns(o options, re *regexp.Regexp, progress func(string)) ([]Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("-ports veth needs root (network namespaces and packet sockets)")
	}
	for _, c := range []string{"ip", "ping", "iperf3"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("-ports veth needs %s (apt-get install iproute2 iputils-ping iperf3): %w", c, err)
		}
	}
	gen, err := chooseGenerator()
	if err != nil {
		return nil, err
	}
	d := max(o.duration, 2*time.Second)
	var sel []string
	for _, p := range vethPaths() {
		if re.MatchString("veth/" + p) {
			sel = append(sel, p)
		}
	}
	if len(sel) > 0 && sel[0] != vethKernel {
		sel = append([]string{vethKernel}, sel...)
	}
	var out []Result
	for _, path := range sel {
		name := "veth/" + path
		progress(name)
		r, err := vethRun(path, gen, d)
		r.Name, r.Group = name, "veth"
		if err != nil {
			return append(out, r), fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, r)
	}
	compareVeth(out)
	return out, nil
}

// compareVeth fills in each switch path's ratio to the kernel bridge's
// delivered frame rate (not for block, which delivers nothing by design).
func compareVeth(rs []Result) {
	var kernel float64
	for _, r := range rs {
		if r.Name == "veth/"+vethKernel {
			kernel = r.Mpps
		}
	}
	for i := range rs {
		r := &rs[i]
		if r.Name == "veth/"+vethKernel || r.Scenario == string(scenario.Block) || kernel <= 0 {
			continue
		}
		r.Baseline, r.Speedup = "veth/"+vethKernel, r.Mpps/kernel
	}
}

// vethSwitch is the switch under test on a path, with its ports.
type vethSwitch struct {
	sw    *vswitch.Switch
	ports []*afpacket.Port
	kind  scenario.Kind
}

func vethRun(path, gen string, d time.Duration) (res Result, err error) {
	res.FrameSize, res.Generator = vethFrameSize, gen
	h1, c1, err := netns.Make(vethAddr1 + "/24")
	defer c1()
	if err != nil {
		return res, err
	}
	h2, c2, err := netns.Make(vethAddr2 + "/24")
	defer c2()
	if err != nil {
		return res, err
	}
	var vs *vethSwitch
	if path == vethKernel {
		br := netns.Unique("nblbr")
		if _, err := netns.Run("link", "add", br, "type", "bridge"); err != nil {
			return res, err
		}
		defer netns.Run("link", "del", br)
		for _, s := range [][]string{{"link", "set", h1.Peer, "master", br}, {"link", "set", h2.Peer, "master", br}, {"link", "set", br, "up"}} {
			if _, err := netns.Run(s...); err != nil {
				return res, err
			}
		}
	} else {
		vs = &vethSwitch{kind: scenario.Kind(strings.TrimPrefix(path, "afpacket/"))}
		res.Scenario = string(vs.kind)
		st := inject.NewStack()
		st.Start()
		id, _ := inject.ParseGUID("0b0b0b0b-2222-3333-4444-555555555555")
		vs.sw, err = vswitch.New(vswitch.Config{ID: id, Stack: st, Workers: 1, ProfileLabels: []string{"scenario", "veth-" + path}})
		if err != nil {
			return res, err
		}
		res.Workers = 1
		// Closing the switch closes its ports; it runs before the handle
		// is destroyed and the namespaces are removed (defers run last
		// first).
		closeSwitch := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return vs.sw.CloseContext(ctx)
		}
		for i, h := range []*netns.Host{h1, h2} {
			p, err := afpacket.New(afpacket.Config{Interface: h.Peer})
			if err != nil {
				return res, errors.Join(err, closeSwitch())
			}
			if err := vs.sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), Name: h.Peer}); err != nil {
				_ = p.Close()
				return res, errors.Join(err, closeSwitch())
			}
			vs.ports = append(vs.ports, p)
		}
		var handle *inject.Handle
		if handle, err = scenario.Install(vs.sw, st, id, vs.kind); err != nil {
			return res, errors.Join(err, closeSwitch())
		}
		if handle != nil {
			defer func() { err = errors.Join(err, handle.Destroy()) }()
		}
		if err := vs.sw.Start(); err != nil {
			return res, errors.Join(err, closeSwitch())
		}
		defer func() { err = errors.Join(err, closeSwitch()) }()
	}

	if vs == nil || vs.kind != scenario.Block {
		if err := tcpAndPing(h1, h2, d, vs, &res); err != nil {
			return res, err
		}
	}
	if err := frameRate(h1, h2, gen, d, vs, &res); err != nil {
		return res, fmt.Errorf("64-byte frames: %w", err)
	}
	res.Runs = 1
	return res, nil
}

// tcpAndPing measures the round trip with ping at a low rate, then iperf3
// TCP throughput for d. A frame the switch or a port's ring dropped
// during them is reported in res.Error.
func tcpAndPing(h1, h2 *netns.Host, d time.Duration, vs *vethSwitch, res *Result) error {
	out, err := netns.Exec(h1.NS, "ping", "-c", "20", "-i", "0.05", "-W", "2", vethAddr2)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if rtt, ok := pingAvg(out); ok {
		res.P50Ns = &rtt // the average round trip, in ns
	}
	srv := exec.Command("ip", "netns", "exec", h2.NS, "iperf3", "-s", "-1", "-B", vethAddr2)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	out, err = netns.Exec(h1.NS, "iperf3", "-c", vethAddr2, "-t", secs, "-J", "--connect-timeout", "3000")
	if err != nil {
		return fmt.Errorf("iperf3: %w", err)
	}
	var ip struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &ip); err != nil {
		return fmt.Errorf("iperf3 output: %w", err)
	}
	res.Gbps = ip.End.SumReceived.BitsPerSecond / 1e9
	if vs != nil {
		var drops uint64
		for _, ps := range vs.sw.Stats().Ports {
			drops += ps.Dropped()
		}
		for _, p := range vs.ports {
			drops += p.Stats().KernelDrops
		}
		if drops > 0 {
			res.Error = fmt.Sprintf("%d frames dropped during ping and iperf3 (switch and kernel ring counters)", drops)
		}
	}
	return nil
}

// rateSample is what frameRate reads at each end of its window.
type rateSample struct {
	at          time.Time
	sent, recv  uint64 // tx on h1's veth, rx on h2's veth
	h1Dropped   uint64 // tx-dropped on h1's veth
	softirq     time.Duration
	self, gen   time.Duration
	drops       [vswitch.NumDropReasons]uint64
	kernelDrops uint64
}

// takeSample reads the counters. The packet counters of h1's and h2's
// veths are read through their peers in this namespace, which report them
// exactly (a veth's rx counters are its peer's tx counters, and the other
// way round), a few microseconds apart; h1's tx-dropped counter is not
// visible from its peer and is read with ip.
func takeSample(h1, h2 *netns.Host, g generator, vs *vethSwitch) (s rateSample, err error) {
	l1, err := readLink(h1.NS, h1.If)
	if err != nil {
		return s, err
	}
	s.h1Dropped = l1.TxDropped
	s.self, err = processCPU()
	if err != nil {
		return s, err
	}
	s.gen = g.CPU()
	if s.softirq, err = softirqTime(); err != nil {
		return s, err
	}
	s.at = time.Now()
	if s.sent, err = sysfsCounter(h1.Peer, "rx_packets"); err != nil {
		return s, err
	}
	if s.recv, err = sysfsCounter(h2.Peer, "tx_packets"); err != nil {
		return s, err
	}
	if vs != nil {
		st := vs.sw.Stats()
		for _, ps := range append(st.Ports, st.Unknown) {
			for i, n := range ps.Drops {
				s.drops[i] += n
			}
		}
		for _, p := range vs.ports {
			s.kernelDrops += p.Stats().KernelDrops
		}
	}
	return s, nil
}

// frameRate runs the generator in h1's namespace for the warm-up and the
// window d, and fills in res from the counters read at both ends of the
// window: offered frames (sent or dropped by h1's veth), frames delivered
// at h2's veth, the switch's drops by reason, the CPU time of this process
// without the generator's (the switch runs here) and the softirq time of
// the whole machine.
func frameRate(h1, h2 *netns.Host, gen string, d time.Duration, vs *vethSwitch, res *Result) (err error) {
	frame, err := udpFrame(h1.MAC, h2.MAC, vethAddr1, vethAddr2, vethFrameSize)
	if err != nil {
		return err
	}
	limit := vethWarmup + d + 3*time.Second
	g, err := startGenerator(gen, h1.NS, h1.If, frame, uint64(genMaxPps*limit.Seconds()), limit)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, g.Stop()) }()
	time.Sleep(vethWarmup)
	if t, ok := g.(*trafgen); ok {
		if running, why := t.Running(); !running {
			return errors.New(why)
		}
	}
	s0, err := takeSample(h1, h2, g, vs)
	if err != nil {
		return err
	}
	time.Sleep(d)
	s1, err := takeSample(h1, h2, g, vs)
	if err != nil {
		return err
	}
	secs := s1.at.Sub(s0.at).Seconds()
	res.Offered = (s1.sent + s1.h1Dropped) - (s0.sent + s0.h1Dropped)
	res.Delivered = s1.recv - s0.recv
	res.Packets = res.Delivered
	res.OfferedMpps = float64(res.Offered) / secs / 1e6
	res.Mpps = float64(res.Delivered) / secs / 1e6
	if res.Offered > 0 && res.Delivered < res.Offered {
		res.LossPct = 100 * float64(res.Offered-res.Delivered) / float64(res.Offered)
	}
	// The frames the path handled: delivered, or for block those the
	// switch dropped by design.
	handled := res.Delivered
	if vs != nil {
		res.SwitchDrops = map[string]uint64{}
		for i := range s1.drops {
			if n := s1.drops[i] - s0.drops[i]; n > 0 {
				res.SwitchDrops[vswitch.DropReason(i).String()] = n
			}
		}
		if n := s1.kernelDrops - s0.kernelDrops; n > 0 {
			res.SwitchDrops["kernel-ring-full"] = n
		}
		if vs.kind == scenario.Block {
			handled = s1.drops[vswitch.DropFilterBlock] - s0.drops[vswitch.DropFilterBlock]
		}
		if cpu := (s1.self - s0.self) - (s1.gen - s0.gen); handled > 0 && cpu > 0 {
			res.CPUNsPerPkt = float64(cpu.Nanoseconds()) / float64(handled)
		}
	}
	if si := s1.softirq - s0.softirq; handled > 0 {
		res.SoftirqNsPerPkt = float64(si.Nanoseconds()) / float64(handled)
	}
	if res.Offered == 0 {
		return fmt.Errorf("%s offered no frame on %s in %s", gen, h1.If, h1.NS)
	}
	return nil
}

// pingAvg reads the average of ping's "rtt min/avg/max/mdev = ..." line, in
// nanoseconds.
func pingAvg(out string) (float64, bool) {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "= "); strings.Contains(l, "min/avg/max") && i >= 0 {
			f := strings.Split(strings.Fields(l[i+2:])[0], "/")
			if len(f) >= 2 {
				ms, err := strconv.ParseFloat(f[1], 64)
				return ms * 1e6, err == nil
			}
		}
	}
	return 0, false
}

func printVeth(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tgenerator\toffered Mpps\tdelivered Mpps\tloss\tvs bridge\tvs forward\tswitch CPU ns/pkt\tsoftirq ns/pkt\tswitch drops\tiperf3 Gbit/s\tvs bridge\tping avg ms\t")
	var kernelGbps, fwdMpps float64
	for _, r := range results {
		switch {
		case r.Name == "veth/"+vethKernel:
			kernelGbps = r.Gbps
		case r.Scenario == string(scenario.Forward):
			fwdMpps = r.Mpps
		}
	}
	for _, r := range results {
		vsK, vsF, cpu, si, tcp, tcpK, rtt := "-", "-", "-", "-", "-", "-", "-"
		if r.Speedup > 0 {
			vsK = fmt.Sprintf("%.0f%%", 100*r.Speedup)
		}
		if fwdMpps > 0 && (r.Scenario == string(scenario.Inspect) || r.Scenario == string(scenario.Clone)) {
			vsF = fmt.Sprintf("%.0f%%", 100*r.Mpps/fwdMpps)
		}
		if r.CPUNsPerPkt > 0 {
			cpu = fmt.Sprintf("%.0f", r.CPUNsPerPkt)
		}
		if r.SoftirqNsPerPkt > 0 {
			si = fmt.Sprintf("%.0f", r.SoftirqNsPerPkt)
		}
		if r.Gbps > 0 {
			tcp = fmt.Sprintf("%.2f", r.Gbps)
			if kernelGbps > 0 && r.Name != "veth/"+vethKernel {
				tcpK = fmt.Sprintf("%.0f%%", 100*r.Gbps/kernelGbps)
			}
		}
		if r.P50Ns != nil {
			rtt = fmt.Sprintf("%.3f", *r.P50Ns/1e6)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%.1f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Generator,
			r.OfferedMpps, r.Mpps, r.LossPct, vsK, vsF, cpu, si, formatDrops(r.SwitchDrops), tcp, tcpK, rtt)
	}
	tw.Flush()
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Error)
		}
	}
	fmt.Fprintf(w, `Frames: %d-byte UDP from h1 to h2, one generator on one CPU in h1's namespace, %v of warm-up, then the window.
  offered: tx plus tx-dropped on h1's veth; delivered: rx on h2's veth; loss: the share of offered not delivered.
  vs bridge: delivered rate (iperf3: throughput) as a share of the kernel bridge's in this run;
    vs forward: delivered rate as a share of afpacket/forward's.
  switch CPU: this process's CPU time (getrusage, less a Go generator's own thread) per delivered frame
    (block: per frame the switch dropped); it includes the worker's polling when idle and the kernel
    work of its system calls (the send into h2's veth and, in its context, h2's receive softirq).
  switch drops: the switch's drop counters by reason, and frames the kernel dropped for a full port ring.
  softirq: the whole machine's softirq time (/proc/stat) per delivered (block: dropped) frame; it includes
    the generator's own sending path, h2's receive path and anything else running on the machine.
  block delivers nothing by design and runs neither ping nor iperf3; ping and iperf3 ran before the frames.
`, vethFrameSize, vethWarmup)
}

// formatDrops renders drop counts by reason, in a stable order.
func formatDrops(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for i := range vswitch.NumDropReasons {
		if n := m[i.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", i, n))
		}
	}
	if n := m["kernel-ring-full"]; n > 0 {
		parts = append(parts, fmt.Sprintf("kernel-ring-full %d", n))
	}
	return strings.Join(parts, ", ")
}
