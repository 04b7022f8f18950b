//go:build linux

package afpacket_test

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// ---- (a), (b): a pcap replayed with tcpreplay, captured with tcpdump ----

// replayAndCapture replays n distinct UDP frames from h1 to h2 into h1's
// interface and checks that h2's tcpdump captured each exactly once, byte
// for byte.
func replayAndCapture(t *testing.T, h1, h2 *netns.Host, n int) {
	t.Helper()
	frames := clients.UDPFrames(t, n, clients.Between(t, h1, h2))
	got := clients.ReplayCapture(t, h1, h2, frames, "udp and dst port 7777", n)
	clients.CheckExactlyOnce(t, frames, got, clients.IDOffset)
}

func TestReplayThroughSwitch(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	h1, h2, sw, ports := bridge(t, afpacket.Config{}, clients.Options{})
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
	for _, k := range []clients.Inspect{clients.InspectReinject, clients.InspectClone} {
		t.Run(k.String(), func(t *testing.T) {
			h1, h2, sw, ports := bridge(t, afpacket.Config{}, clients.Options{Setup: k.Setup})
			replayAndCapture(t, h1, h2, 300)
			st := sw.Stats()
			if t.Failed() {
				t.Logf("switch %+v; ports %+v / %+v", st.Ports, ports[0].Stats(), ports[1].Stats())
				out, _ := netns.Exec(h2.NS, "ip", "-s", "-s", "link", "show", "dev", h2.If)
				t.Logf("h2: %s", out)
				out, _ = netns.Exec(h2.NS, "cat", "/proc/net/softnet_stat")
				t.Logf("softnet: %s", out)
			}
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
// subinterfaces of the hosts must pass too, and one over VLAN 200 must not;
// untagged ping uses the native VLAN (clients.CheckTrunk).
func TestVLANTrunk(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	h1, h2, sw, _ := bridge(t, afpacket.Config{}, clients.Options{Ports: clients.TrunkPorts()})
	clients.CheckTrunk(t, sw, h1, h2, 200)
}

// ---- (d) a flood of source MACs ----

// TestMACFlood replays 3000 frames from random source MACs into h1: the
// FDB stays within its size and the port's limit, counts what it refused,
// and the hosts still ping each other (clients.CheckMACFloods).
func TestMACFlood(t *testing.T) {
	netns.Require(t, "tcpreplay")
	clients.CheckMACFloods(t, 3000, "10.78.0.99", func(t *testing.T, o clients.Options) (*netns.Host, *netns.Host, *vswitch.Switch) {
		h1, h2, sw, _ := bridge(t, afpacket.Config{}, o)
		return h1, h2, sw
	})
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
	h1, h2, sw, ports := bridge(t, afpacket.Config{Blocks: 16, BlockSize: 128 << 10, CopyPages: 512}, clients.Options{
		Setup: func(t testing.TB, sw *vswitch.Switch, _ *inject.Stack) {
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
	direct, _ := clients.DirectPair(t)
	sum, base, _ := pingRTT(t, direct.NS, "10.80.0.2", count, interval)
	t.Logf("direct veth (baseline): %s", sum)
	for _, k := range []clients.Inspect{clients.NoInspect, clients.InspectReinject, clients.InspectClone} {
		h1, _, _, _ := bridge(t, afpacket.Config{}, clients.Options{Setup: k.Setup})
		pingRTT(t, h1.NS, "10.78.0.2", 3, "0.1") // ARP and learning first
		sum, avg, loss := pingRTT(t, h1.NS, "10.78.0.2", count, interval)
		t.Logf("through the switch, %s: %s (%s%% loss; %.1fx the direct veth)", k, sum, loss, avg/base)
	}
}
