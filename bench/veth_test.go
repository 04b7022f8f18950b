//go:build linux

package main

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
)

// TestVethPorts runs -ports veth briefly: on the kernel bridge and on the
// switch on AF_PACKET ports in every scenario kind, trafgen sends 64-byte
// frames from h1 to h2, and ping and iperf3 TCP run except under block.
// Every path is present with sane figures, block delivers (almost) nothing
// and counts its drops, and nothing is left behind.
func TestVethPorts(t *testing.T) {
	netns.Require(t, "ping", "iperf3", "trafgen")
	t.Setenv("NBLPIPE_VETH_GENERATOR", "")
	res, err := vethRuns(options{duration: 2 * time.Second}, regexp.MustCompile(""), func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	checkLeftovers(t)
	var sb strings.Builder
	printVeth(&sb, res)
	t.Log("\n" + sb.String())
	byName := map[string]Result{}
	for _, r := range res {
		byName[r.Name] = r
	}
	paths := vethPaths()
	if len(res) != len(paths) || len(paths) != 5 {
		t.Fatalf("%d results for %d paths, want 5: %v", len(res), len(paths), res)
	}
	for _, p := range paths {
		r, ok := byName["veth/"+p]
		if !ok {
			t.Errorf("no result for veth/%s", p)
			continue
		}
		if r.Generator != genTrafgen || r.FrameSize != 64 {
			t.Errorf("%s: generator %q, frame size %d; want trafgen, 64", r.Name, r.Generator, r.FrameSize)
		}
		if r.Offered == 0 || r.OfferedMpps <= 0 {
			t.Errorf("%s: offered %d frames (%.3f Mpps)", r.Name, r.Offered, r.OfferedMpps)
		}
		// The two counters are read microseconds apart.
		if r.Delivered > r.Offered+r.Offered/100+100 {
			t.Errorf("%s: delivered %d frames of %d offered", r.Name, r.Delivered, r.Offered)
		}
		if r.LossPct < 0 || r.LossPct > 100 {
			t.Errorf("%s: loss %.1f%%", r.Name, r.LossPct)
		}
		if r.SoftirqNsPerPkt < 0 || r.CPUNsPerPkt < 0 {
			t.Errorf("%s: negative CPU figure: softirq %.0f, switch %.0f ns/pkt", r.Name, r.SoftirqNsPerPkt, r.CPUNsPerPkt)
		}
		if p == "afpacket/block" {
			continue
		}
		if r.Gbps <= 0 || r.P50Ns == nil {
			t.Errorf("%s: iperf3 %.2f Gbit/s, ping rtt %v", r.Name, r.Gbps, r.P50Ns)
		}
		if r.Delivered == 0 || r.Mpps <= 0 {
			t.Errorf("%s: delivered %d frames (%.3f Mpps)", r.Name, r.Delivered, r.Mpps)
		}
		if p != vethKernel {
			if r.CPUNsPerPkt <= 0 {
				t.Errorf("%s: no switch CPU time per packet", r.Name)
			}
			if r.Baseline != "veth/"+vethKernel || r.Speedup <= 0 {
				t.Errorf("%s: not compared with the kernel bridge (%q, %.2f)", r.Name, r.Baseline, r.Speedup)
			}
		}
	}
	if k := byName["veth/"+vethKernel]; k.CPUNsPerPkt != 0 || k.SwitchDrops != nil {
		t.Errorf("kernel bridge: switch figures %.0f ns/pkt, drops %v", k.CPUNsPerPkt, k.SwitchDrops)
	}
	b := byName["veth/afpacket/block"]
	if b.Delivered > b.Offered/100+100 {
		t.Errorf("block: %d frames of %d offered reached h2", b.Delivered, b.Offered)
	}
	if blocked := b.SwitchDrops["filter-block"]; blocked == 0 || blocked > b.Offered+b.Offered/20 {
		t.Errorf("block: %d frames dropped by the filter for %d offered (drops %v)", blocked, b.Offered, b.SwitchDrops)
	}
	if b.Gbps != 0 || b.P50Ns != nil || b.Speedup != 0 {
		t.Errorf("block: TCP or ping or a ratio measured: %.2f Gbit/s, rtt %v, ratio %.2f", b.Gbps, b.P50Ns, b.Speedup)
	}
}

// TestVethGoGenerator runs the kernel bridge and forwarding paths with
// the Go generator that stands in for trafgen where it is missing.
func TestVethGoGenerator(t *testing.T) {
	netns.Require(t, "ping", "iperf3")
	if testing.Short() {
		t.Skip("runs two veth paths")
	}
	t.Setenv("NBLPIPE_VETH_GENERATOR", "go")
	res, err := vethRuns(options{duration: 2 * time.Second}, regexp.MustCompile(`^veth/afpacket/forward$`), func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	checkLeftovers(t)
	if len(res) != 2 || res[0].Name != "veth/"+vethKernel || res[1].Name != "veth/afpacket/forward" {
		t.Fatalf("want the kernel bridge (run as the baseline) and forward, got %v", res)
	}
	for _, r := range res {
		t.Logf("%s: %s offered %.3f Mpps, delivered %.3f Mpps, switch %.0f ns/pkt, softirq %.0f ns/pkt",
			r.Name, r.Generator, r.OfferedMpps, r.Mpps, r.CPUNsPerPkt, r.SoftirqNsPerPkt)
		if r.Generator != genGo || r.Offered == 0 || r.Delivered == 0 {
			t.Errorf("%s: generator %q, offered %d, delivered %d", r.Name, r.Generator, r.Offered, r.Delivered)
		}
	}
	if res[1].CPUNsPerPkt <= 0 {
		t.Errorf("forward: no switch CPU time per packet")
	}
}

func checkLeftovers(t *testing.T) {
	t.Helper()
	if left := netns.Leftovers(); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	out, err := netns.Run("-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	own := regexp.MustCompile(`\bnbl(v|br|t)` + strconv.FormatInt(int64(os.Getpid()&0xffff), 16))
	for _, l := range strings.Split(out, "\n") {
		if own.MatchString(l) {
			t.Errorf("interface left behind: %s", l)
		}
	}
}

// stopLater stops g when the test ends, also when it fails, before its
// namespace is removed (cleanups run last first).
func stopLater(t *testing.T, g generator) {
	t.Cleanup(func() { _ = g.Stop() })
}

// peerRx reads the received-packets counter of an interface in this
// process's namespace.
func peerRx(t *testing.T, ifname string) uint64 {
	t.Helper()
	n, err := sysfsCounter(ifname, "rx_packets")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hostFrame(t *testing.T, h *netns.Host) []byte {
	t.Helper()
	// To a MAC address no interface has: the peer in this namespace
	// receives and counts every frame, and its stack drops them as
	// addressed to another host, before any routing.
	f, err := udpFrame(h.MAC, "02:00:00:6e:62:6c", "10.81.9.1", "10.81.9.2", vethFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGoGenSendsWithoutAllocating opens the Go generator's socket inside a
// namespace and checks that its bursts and its send loop reach the veth
// peer and allocate nothing.
func TestGoGenSendsWithoutAllocating(t *testing.T) {
	netns.Require(t)
	h := netns.NewHost(t, "")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, restored, err := openPacketSocketIn(h.NS, h.If)
	if !restored {
		t.Fatalf("thread left in the namespace: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	g := newGoGen(fd, hostFrame(t, h), 10*goGenBurst, time.Minute)
	before := peerRx(t, h.Peer)
	var sent int
	if a := testing.AllocsPerRun(20, func() {
		n, err := g.burst()
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}); a != 0 {
		t.Errorf("burst: %.1f allocations", a)
	}
	if a := testing.AllocsPerRun(3, func() {
		if err := g.run(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("run: %.1f allocations", a)
	}
	if sent == 0 || g.Sent() < 10*goGenBurst {
		t.Fatalf("bursts sent %d frames, a run %d", sent, g.Sent())
	}
	// Frames reach the peer's counter asynchronously (the backlog).
	want := before + uint64(sent) + 4*10*goGenBurst
	deadline := time.Now().Add(2 * time.Second)
	for peerRx(t, h.Peer) < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := peerRx(t, h.Peer) - before; got < want-before {
		t.Errorf("the peer received %d frames, want %d", got, want-before)
	}
	// frameRate reads a veth's counters through its peer: they agree.
	in, err := readLink(h.NS, h.If)
	if err != nil {
		t.Fatal(err)
	}
	peerTx, err := sysfsCounter(h.Peer, "tx_packets")
	if err != nil {
		t.Fatal(err)
	}
	if rx := peerRx(t, h.Peer); in.TxPackets != rx || in.RxPackets != peerTx {
		t.Errorf("inside: tx %d rx %d; the peer: rx %d tx %d", in.TxPackets, in.RxPackets, rx, peerTx)
	}
	for _, bad := range [][2]string{{"", "rx_packets"}, {"..", "rx_packets"}, {h.Peer, "../x"}, {"nosuchif0", "rx_packets"}} {
		if _, err := sysfsCounter(bad[0], bad[1]); err == nil {
			t.Errorf("sysfsCounter(%q, %q): no error", bad[0], bad[1])
		}
	}
}

// TestGoGenBounds checks that the Go generator stops at its packet count
// and at its time limit, and reports its thread's CPU time.
func TestGoGenBounds(t *testing.T) {
	netns.Require(t)
	h := netns.NewHost(t, "")
	g, err := startGoGen(h.NS, h.If, hostFrame(t, h), 1000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	stopLater(t, g)
	select {
	case err := <-g.done: // ends by its count, without Stop
		if err != nil {
			t.Fatal(err)
		}
		g.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("the generator did not stop at its count")
	}
	if n := g.Sent(); n < 1000 || n >= 1000+goGenBurst {
		t.Errorf("sent %d frames for a count of 1000", n)
	}

	g, err = startGoGen(h.NS, h.If, hostFrame(t, h), 1<<62, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stopLater(t, g)
	time.Sleep(100 * time.Millisecond)
	if c := g.CPU(); c <= 0 {
		t.Errorf("generator thread CPU %v", c)
	}
	err = <-g.done // ends by its time limit, without Stop
	if err != nil {
		t.Fatal(err)
	}
	if g.Sent() == 0 {
		t.Error("sent nothing in 200 ms")
	}
	g.done <- nil
	if _, err := startGoGen("nbl-no-such-namespace", "eth0", []byte{1}, 1, time.Second); err == nil {
		t.Error("started in a namespace that does not exist")
	}
	if _, err := startGoGen(h.NS, "nosuchif0", []byte{1}, 1, time.Second); err == nil {
		t.Error("started on an interface that does not exist")
	}
}

// TestTrafgenBounds runs trafgen with a packet count and then with a time
// limit, and checks both end it and its frames reach the veth peer.
func TestTrafgenBounds(t *testing.T) {
	netns.Require(t, "trafgen")
	h := netns.NewHost(t, "")
	before := peerRx(t, h.Peer)
	g, err := startTrafgen(h.NS, h.If, hostFrame(t, h), 1000, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stopLater(t, g)
	select {
	case <-g.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("trafgen did not stop at its packet count")
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := peerRx(t, h.Peer) - before; got < 1000 || got > 1100 {
		t.Errorf("the peer received %d frames from trafgen -n 1000", got)
	}
	g, err = startTrafgen(h.NS, h.If, hostFrame(t, h), 1<<40, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stopLater(t, g)
	select {
	case <-g.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("trafgen did not stop at its time limit")
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.dir); !os.IsNotExist(err) {
		t.Errorf("trafgen's directory left behind: %v", err)
	}
	g, err = startTrafgen(h.NS, "nosuchif0", hostFrame(t, h), 10, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stopLater(t, g)
	<-g.exited
	if err := g.Stop(); err == nil {
		t.Error("trafgen on a missing interface reported no error")
	}
}

func TestUDPFrame(t *testing.T) {
	f, err := udpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.81.0.1", "10.81.0.2", 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 64 {
		t.Fatalf("frame of %d bytes, want 64", len(f))
	}
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil {
		t.Fatalf("not Ethernet/IPv4/UDP: %v", p)
	}
	if eth.SrcMAC.String() != "02:00:00:00:00:01" || eth.DstMAC.String() != "02:00:00:00:00:02" ||
		ip.SrcIP.String() != "10.81.0.1" || ip.DstIP.String() != "10.81.0.2" || udp.DstPort != 9 || int(ip.Length) != 64-14 {
		t.Errorf("wrong headers: %v %v %v", eth, ip, udp)
	}
	// The IPv4 header checksum sums to 0xffff over the header.
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(f[i])<<8 | uint32(f[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("bad IPv4 checksum (sum %#x)", sum)
	}
	for _, c := range []struct{ sm, dm, si, di string }{
		{"zz", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2"},
		{"02:00:00:00:00:01", "", "10.0.0.1", "10.0.0.2"},
		{"02:00:00:00:00:01", "02:00:00:00:00:02", "fe80::1", "10.0.0.2"},
		{"02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "x"},
	} {
		if _, err := udpFrame(c.sm, c.dm, c.si, c.di, 64); err == nil {
			t.Errorf("udpFrame(%q, %q, %q, %q) took bad input", c.sm, c.dm, c.si, c.di)
		}
	}
	for _, n := range []int{0, 59, 1515} {
		if _, err := udpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", n); err == nil {
			t.Errorf("udpFrame took size %d", n)
		}
	}
}

func TestTrafgenConfig(t *testing.T) {
	f, err := udpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.81.0.1", "10.81.0.2", 64)
	if err != nil {
		t.Fatal(err)
	}
	c := trafgenConfig(f)
	open, close := strings.Index(c, "{"), strings.LastIndex(c, "}")
	if open < 0 || close < open {
		t.Fatalf("no packet block in:\n%s", c)
	}
	var got []byte
	for _, tok := range strings.FieldsFunc(c[open+1:close], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		v, err := strconv.ParseUint(tok, 0, 8)
		if err != nil {
			t.Fatalf("token %q: %v", tok, err)
		}
		got = append(got, byte(v))
	}
	if string(got) != string(f) {
		t.Errorf("the configuration spells %x, want %x", got, f)
	}
	if args := strings.Join(trafgenArgs("eth0", "/tmp/x.cfg", 1<<40), " "); !strings.Contains(args, "--num 2147483647 ") {
		t.Errorf("trafgen arguments %q: the count is not capped below 2^32", args)
	}
	args := strings.Join(trafgenArgs("eth0", "/tmp/x.cfg", 1234), " ")
	for _, want := range []string{"--cpus 1", "--num 1234", "--seed 1", "--no-sock-mem", "--notouch-irq", "--dev eth0"} {
		if !strings.Contains(args, want) {
			t.Errorf("trafgen arguments %q lack %q", args, want)
		}
	}
}

func TestChooseGenerator(t *testing.T) {
	t.Setenv("NBLPIPE_VETH_GENERATOR", "bogus")
	if _, err := chooseGenerator(); err == nil {
		t.Error("took NBLPIPE_VETH_GENERATOR=bogus")
	}
	t.Setenv("NBLPIPE_VETH_GENERATOR", "go")
	if g, err := chooseGenerator(); err != nil || g != genGo {
		t.Errorf("NBLPIPE_VETH_GENERATOR=go: %q, %v", g, err)
	}
	t.Setenv("NBLPIPE_VETH_GENERATOR", "")
	t.Setenv("PATH", t.TempDir()) // no trafgen
	t.Setenv("CI", "")
	if g, err := chooseGenerator(); err != nil || g != genGo {
		t.Errorf("without trafgen outside CI: %q, %v; want the Go generator", g, err)
	}
	t.Setenv("CI", "true")
	if _, err := chooseGenerator(); err == nil {
		t.Error("without trafgen under CI=true: no error")
	}
	t.Setenv("CI", "")
	t.Setenv("NBLPIPE_VETH_GENERATOR", "trafgen")
	if _, err := chooseGenerator(); err == nil {
		t.Error("NBLPIPE_VETH_GENERATOR=trafgen without trafgen: no error")
	}
}

func TestParseLinkJSON(t *testing.T) {
	out := `[{"ifindex":2,"ifname":"eth0","flags":["UP"],"mtu":1500,"stats64":{"rx":{"bytes":824,"packets":10,"errors":0,"dropped":3,"over_errors":0,"multicast":0},"tx":{"bytes":61997922,"packets":968715,"errors":0,"dropped":7,"carrier_errors":0,"collisions":0}}}]`
	c, err := parseLinkJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if c != (linkCounters{RxPackets: 10, RxDropped: 3, TxPackets: 968715, TxDropped: 7}) {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{"", "[]", `[{"ifname":"eth0"}]`, "not json", `[{"stats64":{}},{"stats64":{}}]`} {
		if _, err := parseLinkJSON([]byte(bad)); err == nil {
			t.Errorf("parseLinkJSON(%q): no error", bad)
		}
	}
}

func TestParseSoftirq(t *testing.T) {
	d, err := parseSoftirq("cpu  630233 0 76079 632515 1510 0 4906 3146 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if d != 4906*10*time.Millisecond {
		t.Errorf("softirq %v, want 49.06s", d)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7\n", "cpu 1 2 3\n", "cpu 1 2 3 4 5 6 x 8\n"} {
		if _, err := parseSoftirq(bad); err == nil {
			t.Errorf("parseSoftirq(%q): no error", bad)
		}
	}
	if _, err := softirqTime(); err != nil {
		t.Errorf("this machine's /proc/stat: %v", err)
	}
}

func TestThreadCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	c0, err := threadCPU(tid)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Millisecond); time.Now().Before(end); {
	}
	c1, err := threadCPU(tid)
	if err != nil {
		t.Fatal(err)
	}
	if c1 <= c0 {
		t.Errorf("thread CPU went from %v to %v while spinning", c0, c1)
	}
	if _, err := threadCPU(0); err == nil {
		t.Error("threadCPU(0): no error")
	}
	if p, err := processCPU(); err != nil || p < c1-c0 {
		t.Errorf("process CPU %v (%v) below one thread's %v", p, err, c1-c0)
	}
}

func TestCompareAndPrintVeth(t *testing.T) {
	rtt := 50e3
	rs := []Result{
		{Name: "veth/kernel-bridge", Generator: genTrafgen, Mpps: 0.4, OfferedMpps: 0.4, Gbps: 20, P50Ns: &rtt},
		{Name: "veth/afpacket/forward", Scenario: "forward", Generator: genTrafgen, Mpps: 0.3, OfferedMpps: 0.4, LossPct: 25, CPUNsPerPkt: 900, Gbps: 10, P50Ns: &rtt},
		{Name: "veth/afpacket/inspect", Scenario: "inspect", Generator: genTrafgen, Mpps: 0.24, OfferedMpps: 0.4, CPUNsPerPkt: 1200, Gbps: 8, P50Ns: &rtt, Error: "3 frames dropped"},
		{Name: "veth/afpacket/block", Scenario: "block", Generator: genTrafgen, OfferedMpps: 0.4, LossPct: 100, CPUNsPerPkt: 500,
			SwitchDrops: map[string]uint64{"filter-block": 800000, "kernel-ring-full": 12}},
	}
	compareVeth(rs)
	if rs[0].Speedup != 0 || rs[3].Speedup != 0 {
		t.Errorf("kernel bridge or block compared: %v %v", rs[0].Speedup, rs[3].Speedup)
	}
	if rs[1].Speedup < 0.749 || rs[1].Speedup > 0.751 || rs[1].Baseline != "veth/kernel-bridge" {
		t.Errorf("forward vs kernel: %v %q", rs[1].Speedup, rs[1].Baseline)
	}
	var sb strings.Builder
	printVeth(&sb, rs)
	out := sb.String()
	for _, want := range []string{"delivered Mpps", "switch CPU ns/pkt", "softirq ns/pkt", "75%", "80%", "filter-block 800000, kernel-ring-full 12", "trafgen", "\nveth/afpacket/inspect: 3 frames dropped\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if got := vethPaths(); len(got) != 1+len(scenario.Kinds) {
		t.Errorf("paths %v for kinds %v", got, scenario.Kinds)
	}
}
