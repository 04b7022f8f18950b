//go:build linux

package afpacket_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// ---- callouts ----

// inspectKind picks the inspect callout a switch gets.
type inspectKind int

const (
	noInspect       inspectKind = iota
	inspectReinject             // scenario.Callout: absorb the original and reinject it
	inspectClone                // scenario.Callout with Clone: absorb the original, inject a clone
)

func (k inspectKind) String() string {
	return [...]string{"plain", "inspect-reinject", "inspect-clone"}[k]
}

// withInspect registers the inspect callout of kind k on every frame of the
// ingress layer.
func withInspect(k inspectKind) func(t *testing.T, sw *vswitch.Switch, st *inject.Stack) {
	return func(t *testing.T, sw *vswitch.Switch, st *inject.Stack) {
		if k == noInspect {
			return
		}
		h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Destroy() }) // runs after the switch closed
		id := sw.ID()
		c := &scenario.Callout{Handle: h, VSwitchID: id.Bytes(), Clone: k == inspectClone}
		if err := sw.RegisterCallout(&vswitch.Callout{Key: "inspect", Classify: c.Classify, InjectionHandle: h}); err != nil {
			t.Fatal(err)
		}
		if _, err := sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
			Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"}); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- (a), (b): a pcap replayed with tcpreplay, captured with tcpdump ----

// replayAndCapture replays n distinct UDP frames from h1 to h2 into h1's
// interface and checks that h2's tcpdump captured each exactly once, byte
// for byte.
func replayAndCapture(t *testing.T, h1, h2 *netns.Host, n int) {
	t.Helper()
	m1, _ := net.ParseMAC(h1.MAC)
	m2, _ := net.ParseMAC(h2.MAC)
	frames := udpFrames(t, n, m1, m2, "10.78.0.1", "10.78.0.2", 7777, nil)
	got := replayCapture(t, h1, h2, frames, "udp and dst port 7777", n)
	checkExactlyOnce(t, frames, got, 42)
}

// replayCapture replays frames into h1's interface with tcpreplay while
// tcpdump captures what reaches h2's with filter, and returns the capture
// once it holds want frames (or after a timeout).
func replayCapture(t *testing.T, h1, h2 *netns.Host, frames [][]byte, filter string, want int) [][]byte {
	t.Helper()
	path := writePcap(t, t.TempDir(), "replay.pcap", frames)
	c := startCapture(t, h2.NS, h2.If, filter)
	out := replay(t, h1.NS, h1.If, path, 2000)
	timeout := 15 * time.Second
	if want == 0 {
		// Nothing should arrive: give what might leak through time to
		// reach the capture (tcpdump runs in immediate mode).
		timeout = 1500 * time.Millisecond
	}
	got := c.waitFrames(t, want, timeout)
	t.Logf("replayed %d frames (tcpreplay: %s); captured %d", len(frames), replaySummary(out), len(got))
	return got
}

// checkExactlyOnce checks that got holds each of frames exactly once and
// unchanged; a frame's index is the big-endian uint32 at idOff.
func checkExactlyOnce(t *testing.T, frames, got [][]byte, idOff int) {
	t.Helper()
	n := len(frames)
	count := make([]int, n)
	foreign, differ := 0, 0
	for _, g := range got {
		if len(g) < idOff+4 {
			foreign++
			continue
		}
		i := int(binary.BigEndian.Uint32(g[idOff : idOff+4]))
		if i >= n {
			foreign++
			continue
		}
		count[i]++
		if !bytes.Equal(g, frames[i]) {
			differ++
		}
	}
	missing, dup := 0, 0
	for _, k := range count {
		switch {
		case k == 0:
			missing++
		case k > 1:
			dup += k - 1
		}
	}
	if missing != 0 || dup != 0 || differ != 0 || foreign != 0 {
		t.Errorf("of %d frames: %d missing, %d duplicates, %d changed, %d unknown captured", n, missing, dup, differ, foreign)
	}
}

// replaySummary picks tcpreplay's "Actual: ..." line.
func replaySummary(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Actual:") {
			return strings.TrimSpace(l)
		}
	}
	return lastLine(out)
}

// tagged returns frames with an 802.1Q tag of vid (priority 3) inserted
// after the MAC addresses.
func tagged(frames [][]byte, vid uint16) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		g := make([]byte, 0, len(f)+4)
		g = append(g, f[:12]...)
		g = binary.BigEndian.AppendUint16(g, 0x8100)
		g = binary.BigEndian.AppendUint16(g, 3<<13|vid)
		out[i] = append(g, f[12:]...)
	}
	return out
}

func TestReplayThroughSwitch(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	h1, h2, sw, ports := bridgeWith(t, bridgeOpts{})
	replayAndCapture(t, h1, h2, 300)
	st := sw.Stats()
	if t.Failed() {
		t.Logf("switch %+v; ports %+v / %+v", st.Ports, ports[0].Stats(), ports[1].Stats())
	}
	if st.Ports[0].RxPackets < 300 || st.Ports[1].TxPackets < 300 {
		t.Errorf("switch counters do not show the frames: %+v", st.Ports)
	}
}

func TestReplayThroughSwitchWithInspect(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	for _, k := range []inspectKind{inspectReinject, inspectClone} {
		t.Run(k.String(), func(t *testing.T) {
			h1, h2, sw, _ := bridgeWith(t, bridgeOpts{setup: withInspect(k)})
			replayAndCapture(t, h1, h2, 300)
			st := sw.Stats()
			if st.Ports[0].Absorbed < 300 || st.Ports[0].Injected < 300 {
				t.Errorf("the callout did not take the frames: absorbed %d, injected %d", st.Ports[0].Absorbed, st.Ports[0].Injected)
			}
		})
	}
}

// ---- (c) VLANs ----

// TestVLANTrunk puts both ports in trunk mode carrying VLAN 100 (native
// VLAN 1). Frames tagged 100 replayed from h1 reach h2 tagged, each once and
// unchanged; frames tagged 200 do not cross and count as VLAN mismatches.
// Where the kernel has 802.1Q interfaces, a ping between VLAN 100
// subinterfaces of the hosts must pass too, and one over VLAN 200 must not.
func TestVLANTrunk(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	trunk := vswitch.PortConfig{Mode: vswitch.Trunk, VLAN: 1, Allowed: []uint16{100}}
	h1, h2, sw, _ := bridgeWith(t, bridgeOpts{ports: [2]vswitch.PortConfig{trunk, trunk}})
	m1, _ := net.ParseMAC(h1.MAC)
	m2, _ := net.ParseMAC(h2.MAC)
	const n = 200
	plain := udpFrames(t, n, m1, m2, "10.78.0.1", "10.78.0.2", 7777, nil)

	t.Run("frames-vlan-100", func(t *testing.T) {
		frames := tagged(plain, 100)
		got := replayCapture(t, h1, h2, frames, "vlan 100 and udp and dst port 7777", n)
		checkExactlyOnce(t, frames, got, 46)
	})
	t.Run("frames-vlan-200", func(t *testing.T) {
		before := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch]
		got := replayCapture(t, h1, h2, tagged(plain, 200), "vlan 200", 0)
		if len(got) != 0 {
			t.Errorf("%d frames of VLAN 200, which the trunks do not carry, reached h2", len(got))
		}
		if d := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch] - before; d < n {
			t.Errorf("%d of %d VLAN 200 frames counted as VLAN mismatches", d, n)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if _, err := netns.Run("-n", h1.NS, "link", "add", "link", h1.If, "name", h1.If+".100", "type", "vlan", "id", "100"); err != nil {
			t.Skipf("this kernel has no 802.1Q interfaces, so the hosts cannot ping over a VLAN: %v", err)
		}
		_, _ = netns.Run("-n", h1.NS, "link", "del", h1.If+".100")
		for i, h := range []*netns.Host{h1, h2} {
			for _, vid := range []int{100, 200} {
				sub := fmt.Sprintf("%s.%d", h.If, vid)
				steps := [][]string{
					{"-n", h.NS, "link", "add", "link", h.If, "name", sub, "type", "vlan", "id", fmt.Sprint(vid)},
					{"-n", h.NS, "addr", "add", fmt.Sprintf("10.79.%d.%d/24", vid, i+1), "dev", sub},
					{"-n", h.NS, "link", "set", sub, "up"},
				}
				ns := h.NS
				t.Cleanup(func() { _, _ = netns.Run("-n", ns, "link", "del", sub) })
				for _, s := range steps {
					if _, err := netns.Run(s...); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		out, err := netns.Exec(h1.NS, "ping", "-c", "5", "-i", "0.1", "-W", "2", "10.79.100.2")
		if err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("ping over VLAN 100 failed: %v\n%s", err, out)
		}
		out, err = netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.79.200.2")
		if err == nil || !strings.Contains(out, "100% packet loss") {
			t.Errorf("ping over VLAN 200, which the trunks do not carry, got through: %v\n%s", err, out)
		}
	})
	// Untagged traffic uses the native VLAN.
	out, err := netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", "10.78.0.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("untagged ping on the native VLAN failed: %v\n%s", err, out)
	}
}

// ---- (d) a flood of source MACs ----

func TestMACFlood(t *testing.T) {
	netns.Require(t, "tcpreplay")
	const flood = 3000
	for _, tc := range []struct {
		name            string
		size, portLimit int
	}{
		{"port-limit", 1024, 64},
		{"table-full", 64, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h1, h2, sw, _ := bridgeWith(t, bridgeOpts{switchCfg: func(c *vswitch.Config) { c.FDBSize, c.FDBPortLimit = tc.size, tc.portLimit }})
			if out, err := netns.Exec(h1.NS, "ping", "-c", "2", "-i", "0.1", "-W", "2", "10.78.0.2"); err != nil {
				t.Fatalf("ping before the flood: %v\n%s", err, out)
			}
			m2, _ := net.ParseMAC(h2.MAC)
			rng := rand.New(rand.NewPCG(1, 2))
			frames := udpFrames(t, flood, nil, m2, "10.78.0.1", "10.78.0.99", 9, func(int) net.HardwareAddr {
				m := make(net.HardwareAddr, 6)
				for j := range m {
					m[j] = byte(rng.Uint32())
				}
				m[0] = m[0]&^1 | 2 // unicast, locally administered
				return m
			})
			path := writePcap(t, t.TempDir(), "flood.pcap", frames)
			out := replay(t, h1.NS, h1.If, path, 20000)
			// The workers publish their counters every few bursts: wait
			// (bounded) until the flood shows.
			st := sw.Stats()
			for end := time.Now().Add(5 * time.Second); st.Ports[0].RxPackets < flood && time.Now().Before(end); st = sw.Stats() {
				time.Sleep(20 * time.Millisecond)
			}
			e0, e1 := sw.FDBEntries(0), sw.FDBEntries(1)
			size := sw.Config().FDBSize
			t.Logf("%s; FDB entries %d + %d of %d (port limit %d); FDBPortLimit %d, FDBTableFull %d",
				replaySummary(out), e0, e1, size, tc.portLimit, st.FDBPortLimit, st.FDBTableFull)
			if e0+e1 > int64(size) || e0 > int64(tc.portLimit) {
				t.Errorf("FDB over its bounds: %d + %d entries, size %d, port limit %d", e0, e1, size, tc.portLimit)
			}
			if tc.portLimit < size && st.FDBPortLimit == 0 {
				t.Errorf("no source address refused for the port limit")
			}
			if tc.portLimit >= size && st.FDBTableFull == 0 {
				t.Errorf("no source address refused for a full table")
			}
			if st.Ports[0].RxPackets < flood {
				t.Errorf("the switch received %d frames of a flood of %d", st.Ports[0].RxPackets, flood)
			}
			if out, err := netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", "10.78.0.2"); err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Errorf("ping after the flood failed: %v\n%s", err, out)
			}
		})
	}
}

// ---- copy-out through the switch ----

// holder is a callout that absorbs every 64th test frame and keeps it
// (a reference) until the test lets it go.
type holder struct {
	mu   sync.Mutex
	held []*nbl.NetBufferList
}

func (h *holder) classify(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 {
		return
	}
	d, ok := l.FirstNetBuffer().Data()
	seq, test := frameSeq(d)
	if !ok || !test || seq%64 != 0 {
		out.ActionType = vswitch.FWP_ACTION_PERMIT
		return
	}
	l.Reference()
	h.mu.Lock()
	h.held = append(h.held, l)
	h.mu.Unlock()
	out.ActionType = vswitch.FWP_ACTION_BLOCK
	out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
	out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
}

// TestCopyOutThroughSwitch runs traffic from h1 to h2 through a switch
// whose callout keeps one frame in 64: the receiving port copies blocks
// out, traffic goes on, and the kept frames are intact when released.
func TestCopyOutThroughSwitch(t *testing.T) {
	const total, size = 12000, 1000
	hold := &holder{}
	h1, h2, sw, ports := bridgeWith(t, bridgeOpts{
		portCfg: afpacket.Config{Blocks: 16, BlockSize: 128 << 10, CopyPages: 512},
		setup: func(t *testing.T, sw *vswitch.Switch, _ *inject.Stack) {
			if err := sw.RegisterCallout(&vswitch.Callout{Key: "hold", Classify: hold.classify}); err != nil {
				t.Fatal(err)
			}
			if _, err := sw.AddFilter(&vswitch.Filter{Key: "hold", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
				Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "hold"}); err != nil {
				t.Fatal(err)
			}
		},
	})
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		hold.mu.Lock()
		defer hold.mu.Unlock()
		for _, l := range hold.held {
			l.Dereference()
		}
	}
	t.Cleanup(release) // before the switch closes, also on failure
	src, _ := net.ParseMAC(h1.MAC)
	dst, _ := net.ParseMAC(h2.MAC)
	in := openPort(t, h1.NS, h1.If, afpacket.Config{})
	out := openPort(t, h2.NS, h2.If, afpacket.Config{})
	s := newSender(t, 32, size, dst, src)
	r := newReceiver(out, size, dst, src, func(uint32) bool { return false })
	// The sender waits for the switch: at most 256 frames in flight, so
	// that the ring overflows only if copy-out fails to free blocks.
	kept := func() int { hold.mu.Lock(); defer hold.mu.Unlock(); return len(hold.held) }
	sent := 0
	deadline := time.Now().Add(30 * time.Second)
	for sent < total && time.Now().Before(deadline) {
		n, err := s.send(in, min(32, total-sent))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		for wait := time.Now(); sent-r.got-kept() > 256 && time.Since(wait) < 20*time.Millisecond; {
			if r.drain(t) == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	for wait := time.Now(); r.got+kept() < sent && time.Since(wait) < time.Second; {
		if r.drain(t) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	st := ports[0].Stats()
	hold.mu.Lock()
	nkept := len(hold.held)
	bad := 0
	want := make([]byte, size)
	for _, l := range hold.held {
		d, _ := l.FirstNetBuffer().Data()
		seq, _ := frameSeq(d)
		testFrame(want, dst, src, seq)
		if !bytes.Equal(d, want) {
			bad++
		}
	}
	hold.mu.Unlock()
	t.Logf("sent %d, delivered %d, kept by the callout %d; receiving port: %+v", sent, r.got, nkept, st)
	if bad != 0 {
		t.Errorf("%d of %d kept frames changed", bad, nkept)
	}
	if r.dups != 0 || r.corrupt != 0 {
		t.Errorf("%d duplicates and %d corrupt frames delivered", r.dups, r.corrupt)
	}
	if st.CopiedOut == 0 {
		t.Errorf("no block copied out while the callout kept %d frames", nkept)
	}
	if sent < total || r.got+nkept < total*95/100 {
		t.Errorf("traffic stalled: sent %d of %d, delivered %d, kept %d", sent, total, r.got, nkept)
	}
	release()
	_ = sw
}

// ---- measurement: ping RTT ----

// TestPingRTT measures (does not assert) the ping round trip through the
// switch, plain and with each inspect callout, beside a direct veth
// between two namespaces.
func TestPingRTT(t *testing.T) {
	netns.Require(t, "ping")
	const count, interval = 50, "0.02"
	direct := directPair(t)
	sum, base, _ := pingRTT(t, direct, "10.80.0.2", count, interval)
	t.Logf("direct veth (baseline): %s", sum)
	for _, k := range []inspectKind{noInspect, inspectReinject, inspectClone} {
		h1, _, _, _ := bridgeWith(t, bridgeOpts{setup: withInspect(k)})
		pingRTT(t, h1.NS, "10.78.0.2", 3, "0.1") // ARP and learning first
		sum, avg, loss := pingRTT(t, h1.NS, "10.78.0.2", count, interval)
		t.Logf("through the switch, %s: %s (%s%% loss; %.1fx the direct veth)", k, sum, loss, avg/base)
	}
}

// directPair makes two namespaces joined by a veth pair, 10.80.0.1 and
// 10.80.0.2, and returns the first; both go at cleanup.
func directPair(t *testing.T) string {
	t.Helper()
	a, b := netns.Unique("nbl"), netns.Unique("nbl")
	va, vb := netns.Unique("nblv"), netns.Unique("nblv")
	for _, ns := range []string{a, b} {
		if _, err := netns.Run("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = netns.Run("netns", "del", ns) })
	}
	steps := [][]string{
		{"-n", a, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", b},
		{"-n", a, "addr", "add", "10.80.0.1/24", "dev", va},
		{"-n", b, "addr", "add", "10.80.0.2/24", "dev", vb},
		{"-n", a, "link", "set", va, "up"},
		{"-n", b, "link", "set", vb, "up"},
	}
	for _, s := range steps {
		if _, err := netns.Run(s...); err != nil {
			t.Fatal(err)
		}
	}
	return a
}
