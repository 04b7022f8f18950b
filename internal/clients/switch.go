package clients

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/vswitch"
)

// Options configure the switch Switch makes.
type Options struct {
	// Ports[i] configures the port on host i's peer (a missing one is the
	// zero PortConfig); Switch sets its ID (i+1) and Name (the peer).
	Ports []vswitch.PortConfig
	// Config, if not nil, changes the switch's configuration: one
	// worker, its own stack, the ID given by DefaultID.
	Config func(*vswitch.Config)
	// Setup, if not nil, runs after the ports are added and before
	// Start, for callouts and filters. Cleanups it registers run after
	// the switch closed.
	Setup func(testing.TB, *vswitch.Switch, *inject.Stack)
}

// DefaultID is the ID of the switches Switch makes.
var DefaultID, _ = inject.ParseGUID("0a0a0a0a-1111-2222-3333-444444444444")

// Switch makes a switch on an inject.Stack of its own with a port on each
// host's veth peer, opened by open (the back end), configured by o, and
// started. At cleanup it closes the switch (at most 10 s), which closes the
// ports; if Switch fails, what it made is closed at once.
func Switch[P vswitch.Port](t testing.TB, o Options, open func(*netns.Host) (P, error), hosts ...*netns.Host) (*vswitch.Switch, []P) {
	t.Helper()
	st := inject.NewStack()
	st.Start()
	cfg := vswitch.Config{ID: DefaultID, Stack: st, Workers: 1}
	if o.Config != nil {
		o.Config(&cfg)
	}
	sw, err := vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() { // also when t.Fatal ends the goroutine
		if !started {
			_ = sw.Close()
		}
	}()
	ports := make([]P, len(hosts))
	for i, h := range hosts {
		p, err := open(h)
		if err != nil {
			t.Fatalf("port on %s: %v", h.Peer, err)
		}
		var c vswitch.PortConfig
		if i < len(o.Ports) {
			c = o.Ports[i]
		}
		c.ID, c.Name = uint32(i+1), h.Peer
		if err := sw.AddPort(p, c); err != nil {
			_ = p.Close()
			t.Fatal(err)
		}
		ports[i] = p
	}
	if o.Setup != nil {
		o.Setup(t, sw, st)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	started = true
	t.Cleanup(func() { // registered after Setup's cleanups: runs before them
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.CloseContext(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return sw, ports
}

// Inspect picks the inspect callout (scenario.Callout) a switch gets.
type Inspect int

const (
	NoInspect       Inspect = iota
	InspectReinject         // absorb the original and reinject it
	InspectClone            // absorb the original, inject a clone
)

func (k Inspect) String() string {
	return [...]string{"plain", "inspect-reinject", "inspect-clone"}[k]
}

// Setup registers the inspect callout of kind k on every frame of the
// ingress layer, with an injection handle destroyed at cleanup; it is an
// Options.Setup.
func (k Inspect) Setup(t testing.TB, sw *vswitch.Switch, st *inject.Stack) {
	t.Helper()
	if k == NoInspect {
		return
	}
	h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Destroy() }) // after the switch closed
	id := sw.ID()
	c := &scenario.Callout{Handle: h, VSwitchID: id.Bytes(), Clone: k == InspectClone}
	if err := sw.RegisterCallout(c.VSwitchCallout("inspect")); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
		Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"}); err != nil {
		t.Fatal(err)
	}
}

// CheckPing pings to from from through sw, count times (see Ping), and
// checks that the switch's counters show the pings crossing from its first
// port to its second; it returns ping's last line.
func CheckPing(t testing.TB, sw *vswitch.Switch, from, to *netns.Host, count int) string {
	t.Helper()
	sum := Ping(t, from, to, count)
	st := sw.Stats()
	if st.Ports[0].RxPackets < uint64(count) || st.Ports[1].TxPackets < uint64(count) {
		t.Errorf("switch stats do not show the pings: %+v", st.Ports)
	}
	return sum
}

// Bridge makes two hosts and a switch between them whose first port owns
// h1's veth peer and second h2's, configured by o: a back end's own setup.
type Bridge func(t *testing.T, o Options) (h1, h2 *netns.Host, sw *vswitch.Switch)

// CheckMACFloods runs CheckMACFlood with n frames, as subtests, against a
// switch whose FDB port limit binds before its size ("port-limit": 1024
// entries, 64 a port) and one whose size binds ("table-full": 64 entries,
// 4096 a port), each made by bridge.
func CheckMACFloods(t *testing.T, n int, dstIP string, bridge Bridge) {
	for _, tc := range []struct {
		name            string
		size, portLimit int
	}{
		{"port-limit", 1024, 64},
		{"table-full", 64, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h1, h2, sw := bridge(t, Options{Config: func(c *vswitch.Config) { c.FDBSize, c.FDBPortLimit = tc.size, tc.portLimit }})
			CheckMACFlood(t, sw, h1, h2, n, dstIP)
		})
	}
}

// CheckMACFlood floods sw with source MACs: from (on the switch's first
// port) pings to, then replays n frames to to's MAC and dstIP (an address
// no host has), each from a new random unicast, locally administered
// source MAC, at 20000 frames/s, and waits (at most 5 s) until the first
// port counted them. It checks that the FDB stayed within its size and its
// port limit (sw.Config), that it counted the addresses it refused for the
// one that binds, that the switch received every frame, and that from
// still pings to without loss.
func CheckMACFlood(t testing.TB, sw *vswitch.Switch, from, to *netns.Host, n int, dstIP string) {
	t.Helper()
	toIP := HostIP(t, to).String()
	if out, err := netns.Exec(from.NS, "ping", "-c", "2", "-i", "0.1", "-W", "2", toIP); err != nil {
		t.Fatalf("ping before the flood: %v\n%s", err, out)
	}
	u := Between(t, from, to)
	u.DstIP, u.SrcMACs = net.ParseIP(dstIP), RandomMACs(1, 2)
	sum := Replay(t, from.NS, from.If, WritePcap(t, UDPFrames(t, n, u)), 20000)
	// The workers publish their counters every few bursts: wait (bounded)
	// until the flood shows.
	st := sw.Stats()
	for end := time.Now().Add(5 * time.Second); st.Ports[0].RxPackets < uint64(n) && time.Now().Before(end); st = sw.Stats() {
		time.Sleep(20 * time.Millisecond)
	}
	e0, e1 := sw.FDBEntries(0), sw.FDBEntries(1)
	size, limit := sw.Config().FDBSize, sw.Config().FDBPortLimit
	t.Logf("%s; FDB entries %d + %d of %d (port limit %d); FDBPortLimit %d, FDBTableFull %d",
		sum, e0, e1, size, limit, st.FDBPortLimit, st.FDBTableFull)
	if e0+e1 > int64(size) || e0 > int64(limit) {
		t.Errorf("FDB over its bounds: %d + %d entries, size %d, port limit %d", e0, e1, size, limit)
	}
	if limit < size && st.FDBPortLimit == 0 {
		t.Errorf("no source address refused for the port limit")
	}
	if limit >= size && st.FDBTableFull == 0 {
		t.Errorf("no source address refused for a full table")
	}
	if st.Ports[0].RxPackets < uint64(n) {
		t.Errorf("the switch received %d frames of a flood of %d", st.Ports[0].RxPackets, n)
	}
	if out, err := netns.Exec(from.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", toIP); err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping after the flood failed: %v\n%s", err, out)
	}
}

// TrunkPorts configures both ports of a switch as trunks that carry VLAN
// 100 tagged and the native VLAN 1 untagged, and not VLAN 200: the switch
// CheckTrunk checks.
func TrunkPorts() []vswitch.PortConfig {
	trunk := vswitch.PortConfig{Mode: vswitch.Trunk, VLAN: 1, Allowed: []uint16{100}}
	return []vswitch.PortConfig{trunk, trunk}
}

// CheckTrunk checks a switch whose ports are TrunkPorts, from h1 (on its
// first port) to h2, with subtests: n frames tagged 100 replayed from h1
// reach h2 tagged, each once and unchanged ("frames-vlan-100"); n frames
// tagged 200 do not cross and each counts as a VLAN mismatch
// ("frames-vlan-200"); and CheckVLANPing for VLANs 100 and 200 ("ping").
// Then h1 must ping h2 untagged, on the native VLAN, without loss.
func CheckTrunk(t *testing.T, sw *vswitch.Switch, h1, h2 *netns.Host, n int) {
	t.Helper()
	plain := UDPFrames(t, n, Between(t, h1, h2))
	t.Run("frames-vlan-100", func(t *testing.T) {
		frames := Tagged(plain, 100)
		CheckExactlyOnce(t, frames, ReplayCapture(t, h1, h2, frames, "vlan 100 and udp and dst port 7777", n), TaggedIDOffset)
	})
	t.Run("frames-vlan-200", func(t *testing.T) {
		before := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch]
		if got := ReplayCapture(t, h1, h2, Tagged(plain, 200), "vlan 200", 0); len(got) != 0 {
			t.Errorf("%d frames of VLAN 200, which the trunks do not carry, reached h2", len(got))
		}
		CheckVLANMismatches(t, sw, before, n)
	})
	t.Run("ping", func(t *testing.T) { CheckVLANPing(t, h1, h2, 100, 200) })
	out, err := netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", HostIP(t, h2).String())
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("untagged ping on the native VLAN failed: %v\n%s", err, out)
	}
}

// CheckVLANMismatches checks that the switch's first port counted at least
// n VLAN mismatches (DropVLANMismatch) more than before.
func CheckVLANMismatches(t testing.TB, sw *vswitch.Switch, before uint64, n int) {
	t.Helper()
	if d := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch] - before; d < uint64(n) {
		t.Errorf("%d of %d frames of a VLAN the trunks do not carry counted as VLAN mismatches", d, n)
	}
}
