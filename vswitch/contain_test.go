package vswitch_test

// Containment of faults that come from callouts and from the network: a
// callout that panics inside a burst (at ingress, and at egress on a copy
// of a flooded frame), and a broadcast storm from a loop, held to the
// port's storm limit.

import (
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// TestCalloutPanicMidBurst: a callout panics on one frame in the middle of
// each burst at first; the frame is completed with a failure status, the
// frames after it in the same burst go on (the callout now disabled), and
// everything balances.
func TestCalloutPanicMidBurst(t *testing.T) {
	const n = 256
	logs := &countingHandler{match: "panicked"}
	r := manualRig(t, vswitch.Config{Logger: slog.New(logs), Burst: 32})
	list, byID := idTemplates(t, n, macN(1), macN(2), 64)
	gen := r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
	chk := newIDSink(byID)
	r.port(memportSink(chk), vswitch.PortConfig{ID: 2, Name: "sink"})
	calls := 0
	bad := r.callout("bad", ingress, 20, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, _ *vswitch.ClassifyOut) {
		calls++
		if frameID(nblBytes(l)) == 10 {
			panic("callout bug")
		}
	})
	r.start()
	r.settle()
	st := r.close()
	if bad.Panics() != 1 || !bad.Disabled() {
		t.Errorf("panics %d disabled %v, want 1 and true", bad.Panics(), bad.Disabled())
	}
	if calls != 11 {
		t.Errorf("the callout ran %d times, want 11 (frames 0-10, then disabled)", calls)
	}
	tt := checkConservation(t, st, 0)
	if tt.drops[vswitch.DropCalloutPanic] != 1 || tt.tx != n-1 || tt.dropped != 1 {
		t.Errorf("%v", tt)
	}
	want := map[uint32]int{}
	for i := uint32(0); i < n; i++ {
		if i != 10 {
			want[i] = 1
		}
	}
	checkIDs(t, "sink", chk, want)
	if g := gen.Stats(); g.Returned != n {
		t.Errorf("generator got %d of %d frames back", g.Returned, n)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.n != 1 {
		t.Errorf("the panic was logged %d times, want once", logs.n)
	}
}

// TestCalloutPanicOnFloodCopy: an egress callout panics while it classifies
// the copy of a flooded broadcast made for one port. The copy and the
// original (which had not reached its own port yet) are completed with a
// failure status; the copies already staged go out; no NBL is lost and the
// counters balance with the copies actually made.
func TestCalloutPanicOnFloodCopy(t *testing.T) {
	const n = 50
	r := manualRig(t, vswitch.Config{})
	byID := map[uint32][]byte{}
	var list [][]byte
	for i := uint32(0); i < n; i++ {
		byID[i] = idFrame(t, macN(1), broadcast, 64, i)
		list = append(list, byID[i])
	}
	gen := r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
	var sinks []*idSink
	for i := 0; i < 3; i++ {
		s := newIDSink(byID)
		sinks = append(sinks, s)
		r.port(memportSink(s), vswitch.PortConfig{ID: uint32(i + 2), Name: fmt.Sprint("s", i)})
	}
	// Copies go to ports 3 and 4 (in that order), then the original to
	// port 2. Panic on frame 7's copy for port 4.
	bad := r.callout("bad", egress, 10, nil, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, _ *vswitch.ClassifyOut) {
		if frameID(nblBytes(l)) == 7 && meta.VSwitchDestinationPortID == 4 {
			panic("egress callout bug")
		}
	})
	r.start()
	r.settle()
	st := r.close()
	if bad.Panics() != 1 {
		t.Errorf("panics %d, want 1", bad.Panics())
	}
	tt := checkConservation(t, st, st.FloodCopies)
	if st.FloodCopies != 2*n {
		t.Errorf("FloodCopies %d, want %d (two per frame, each made)", st.FloodCopies, 2*n)
	}
	if tt.drops[vswitch.DropCalloutPanic] != 2 || tt.tx != 3*n-2 {
		t.Errorf("want the copy for port 4 and the original of frame 7 dropped: %v", tt)
	}
	for i, s := range sinks {
		want := map[uint32]int{}
		for id := uint32(0); id < n; id++ {
			if id != 7 || i == 1 { // port 3 (sinks[1]) got its copy of 7 before the panic
				want[id] = 1
			}
		}
		checkIDs(t, fmt.Sprint("sink ", i), s, want)
	}
	if g := gen.Stats(); g.Returned != n {
		t.Errorf("generator got %d of %d frames back", g.Returned, n)
	}
}

// TestStormLimit: two ports of the switch joined to each other outside it
// (a loop: what one transmits, the other receives) with a third port that
// sends one broadcast. Without a bound the broadcast would circle for ever;
// with a storm limit each port floods at most StormLimit frames per second
// of the switch's clock, the excess is dropped as DropStorm, logged once,
// and the switch closes with every frame accounted for.
func TestStormLimit(t *testing.T) {
	const limit = 100
	logs := &countingHandler{match: "storm limit"}
	r := manualRig(t, vswitch.Config{Logger: slog.New(logs), StormLimit: limit})
	bc := idFrame(t, macN(1), broadcast, 64, 0)
	r.gen(1, vswitch.PortConfig{ID: 1, Name: "gen"}, bc)
	a := newLoopPort(t)
	b := newLoopPort(t)
	a.peer, b.peer = b, a
	for i, lp := range []*loopPort{a, b} {
		if err := r.sw.AddPort(lp, vswitch.PortConfig{ID: uint32(i + 2), Name: fmt.Sprint("loop", i)}); err != nil {
			t.Fatal(err)
		}
	}
	r.start()
	// The clock stands still in a test this short (whole seconds): the
	// budget of the current second is all the loop gets.
	for i := 0; i < 4*limit; i++ {
		r.sw.Step()
	}
	st := r.close()
	tt := sum(st)
	storm := tt.drops[vswitch.DropStorm]
	if storm == 0 {
		t.Fatalf("no storm drops: %v", tt)
	}
	for i, p := range st.Ports[1:] {
		// Each loop port received the broadcast back and forth; what it
		// flooded is bounded by the limit (plus the second the clock may
		// have turned).
		if p.RxPackets > 2*limit+1 {
			t.Errorf("loop port %d received %d frames: the storm limit did not hold", i, p.RxPackets)
		}
	}
	if in, out := tt.rx+tt.injected+st.FloodCopies, tt.tx+tt.dropped+tt.absorbed; in != out+a.inFlight()+b.inFlight() {
		t.Errorf("conservation: in %d, out %d, in the loop %d: %v", in, out, a.inFlight()+b.inFlight(), tt)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.n != 1 {
		t.Errorf("the storm was logged %d times, want once", logs.n)
	}
}

// loopPort is a port wired to a peer: every frame sent on it is copied into
// a frame the peer will receive (a cable of two switch ports joined
// outside the switch).
type loopPort struct {
	t     testing.TB
	pool  *nbl.Pool
	cache *nbl.Cache
	peer  *loopPort
	rx    []*nbl.NetBufferList // frames the peer sent, to be received here
	done  []*nbl.NetBufferList // frames sent here, to be reclaimed
}

func newLoopPort(t testing.TB) *loopPort {
	p, err := nbl.NewPool(nbl.Config{NBLs: 1024, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.NewCache(64)
	if err != nil {
		t.Fatal(err)
	}
	lp := &loopPort{t: t, pool: p, cache: c}
	t.Cleanup(func() {
		if !p.Full() {
			t.Errorf("loop port pool: %d NBLs in use at the end", p.InUse())
		}
	})
	return lp
}

func (p *loopPort) Receive(out []*nbl.NetBufferList) (int, error) {
	n := copy(out, p.rx)
	p.rx = append(p.rx[:0], p.rx[n:]...)
	return n, nil
}

func (p *loopPort) Send(in []*nbl.NetBufferList) (int, error) {
	for _, l := range in {
		d := nblBytes(l)
		if c, err := p.peer.cache.AllocateCopy(d); err == nil {
			p.peer.rx = append(p.peer.rx, c)
		}
		p.done = append(p.done, l)
	}
	return len(in), nil
}

func (p *loopPort) Reclaim(out []*nbl.NetBufferList) int {
	n := copy(out, p.done)
	p.done = append(p.done[:0], p.done[n:]...)
	return n
}

// inFlight is the frames sent to this port's peer that it has not received.
func (p *loopPort) inFlight() uint64 { return uint64(len(p.rx)) }

func (p *loopPort) Close() error {
	for _, l := range p.rx {
		p.cache.Free(l)
	}
	p.rx = nil
	p.cache.Flush()
	return nil
}

// eofPort gives its frames, then io.EOF (or, with transient, an error on
// every call while it still has frames), and counts its Receive calls.
type eofPort struct {
	*memport.Port
	left      int
	transient error
	calls     int
	eof       bool
	afterEOF  int
}

func (p *eofPort) Receive(out []*nbl.NetBufferList) (int, error) {
	p.calls++
	if p.left == 0 {
		if p.transient != nil {
			return 0, nil
		}
		if p.eof {
			p.afterEOF++
		}
		p.eof = true
		return 0, io.EOF
	}
	n, _ := p.Port.Receive(out[:min(len(out), p.left)])
	p.left -= n
	return n, p.transient
}

// TestReceiveErrors: a port's receive errors are counted, the frames
// returned with an error are switched, and io.EOF ends the port's input
// (Receive is not called again) while the port still gets frames sent.
func TestReceiveErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transient error
	}{{"eof", nil}, {"transient", syscall.EIO}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 100
			r := manualRig(t, vswitch.Config{})
			mp, err := memport.New(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: n})
			if err != nil {
				t.Fatal(err)
			}
			src := &eofPort{Port: mp, left: n, transient: tc.transient}
			if err := r.sw.AddPort(src, vswitch.PortConfig{ID: 1, Name: "src"}); err != nil {
				t.Fatal(err)
			}
			back := r.gen(n, vswitch.PortConfig{ID: 2, Name: "back"}, udpFrame(t, macN(2), macN(1), 64))
			r.start()
			for range 200 {
				r.sw.Step()
			}
			st := r.close()
			if g := back.Stats(); g.Returned != n {
				t.Errorf("frames back to the second port: %d of %d", g.Returned, n)
			}
			if mp.Stats().Sent != n {
				t.Errorf("frames sent to the port after its input ended: %d, want %d", mp.Stats().Sent, n)
			}
			tt := checkConservation(t, st, 0)
			if tt.rx != 2*n || tt.tx != 2*n {
				t.Errorf("%v", tt)
			}
			rxErr := st.Ports[0].RxErrors
			if tc.transient == nil {
				if rxErr != 1 || src.afterEOF != 0 {
					t.Errorf("RxErrors %d, Receive called %d times after io.EOF; want 1 and 0", rxErr, src.afterEOF)
				}
			} else if want := uint64(n/32 + 1); rxErr != want {
				t.Errorf("RxErrors %d, want %d (one per receive call that returned frames)", rxErr, want)
			}
		})
	}
}

// TestTrunkTaggedNativeVLAN: a trunk accepts frames of its native VLAN
// whether they arrive untagged or tagged with that VLAN (the native VLAN
// need not be listed in Allowed), and sends them out untagged.
func TestTrunkTaggedNativeVLAN(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	plain := idFrame(t, macN(1), macN(9), 64, 1)
	tagged := tagFrame(idFrame(t, macN(1), macN(9), 64, 2), 10, 0)
	other := tagFrame(idFrame(t, macN(1), macN(9), 64, 3), 30, 0)
	r.gen(3, vswitch.PortConfig{ID: 1, Name: "trunk", Mode: vswitch.Trunk, VLAN: 10, Allowed: []uint16{20}}, plain, tagged, other)
	out := r.port(memport.Config{Capture: 8}, vswitch.PortConfig{ID: 2, Name: "access10", Mode: vswitch.Access, VLAN: 10})
	r.start()
	r.settle()
	st := r.close()
	checkConservation(t, st, 0)
	got := out.Captured()
	if len(got) != 2 {
		t.Fatalf("access port got %d frames, want 2 (untagged and tagged native VLAN)", len(got))
	}
	for _, f := range got {
		if len(f) < 14 || f[12] == 0x81 {
			t.Errorf("frame left the access port tagged: % x", f[:16])
		}
	}
	if d := st.Ports[0].Drops[vswitch.DropVLANMismatch]; d != 1 {
		t.Errorf("%d VLAN mismatches, want 1 (VLAN 30)", d)
	}
}
