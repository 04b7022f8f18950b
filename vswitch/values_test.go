package vswitch_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// The incoming values and metadata follow each frame, though the switch
// writes the source port's name and the metadata's cache only when they
// change: frames from two ports with different addresses interleave with
// frames injected from another pool, with a known and an unknown source
// port, and every classify, at both layers, sees the values of its own
// frame.
func TestValuesFollowEachFrame(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	const perGen = 40
	r.gen(perGen, vswitch.PortConfig{ID: 1, Name: "vm-a"}, idFrame(t, macN(1), macN(3), 64, 1), idFrame(t, macN(1), bcast, 64, 2))
	r.gen(perGen, vswitch.PortConfig{ID: 2, Name: "vm-b"}, idFrame(t, macN(2), mcast, 64, 3))
	r.sink(0, vswitch.PortConfig{ID: 3, Name: "vm-c"})
	names := map[uint32]string{1: "vm-a", 2: "vm-b", 3: "vm-c"}

	var problems []string
	fail := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	typ := func(mac []byte) uint64 {
		switch {
		case bytes.Equal(mac, bcast):
			return uint64(vswitch.DlBroadcast)
		case mac[0]&1 != 0:
			return uint64(vswitch.DlMulticast)
		}
		return uint64(vswitch.DlUnicast)
	}
	calls := map[uint16]int{}
	withCache := 0
	check := func(layer string, in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList) {
		calls[in.LayerID]++
		f := nblBytes(l)
		if v := in.IncomingValue(0).Bytes; !bytes.Equal(v, f[6:12]) {
			fail("%s: source address % x, frame's % x", layer, v, f[6:12])
		}
		if v := in.IncomingValue(2).Bytes; !bytes.Equal(v, f[0:6]) {
			fail("%s: destination address % x, frame's % x", layer, v, f[0:6])
		}
		if v, w := in.IncomingValue(1).Uint, typ(f[6:12]); v != w {
			fail("%s: source address type %d, want %d", layer, v, w)
		}
		if v, w := in.IncomingValue(3).Uint, typ(f[0:6]); v != w {
			fail("%s: destination address type %d, want %d", layer, v, w)
		}
		if v, w := in.IncomingValue(4).Uint, uint64(f[12])<<8|uint64(f[13]); v != w {
			fail("%s: EtherType 0x%x, want 0x%x", layer, v, w)
		}
		want := names[meta.VSwitchSourcePortID] // "" for an unknown port
		if v := in.IncomingValue(9).Bytes; string(v) != want {
			fail("%s: source interface %q for source port %d, want %q", layer, v, meta.VSwitchSourcePortID, want)
		}
		if meta.VSwitchSourcePortID != l.Info.Switch.SourcePortID {
			fail("%s: metadata source port %d, frame's %d", layer, meta.VSwitchSourcePortID, l.Info.Switch.SourcePortID)
		}
		if c := meta.Cache; c != nil {
			withCache++
			if c.Pool() != l.Pool() {
				fail("%s: metadata cache of another pool than the frame's", layer)
			}
		}
	}
	r.callout("in", ingress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		check("ingress", in, meta, l)
		permit(out)
	})
	r.callout("out", egress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		check("egress", in, meta, l)
		if v, w := string(in.IncomingValue(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID).Bytes), names[meta.VSwitchDestinationPortID]; v != w || w == "" {
			fail("egress: destination interface %q for port %d", v, meta.VSwitchDestinationPortID)
		}
		permit(out)
	})
	r.start()
	h := r.handle()
	pool := r.pool(8)
	f := &freer{pool: pool}
	// Frames injected between the ports' bursts: from a pool the workers
	// have no cache for, with an unknown source port (99) and a known one.
	injected := 0
	for i := range 6 {
		r.sw.Step()
		src := uint32(99)
		if i%2 == 1 {
			src = 2
		}
		frame := idFrame(t, macN(10+i), macN(3), 64, uint32(100+i))
		if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), src, 0, alloc(t, pool, frame), f.fn, nil); st != inject.STATUS_SUCCESS {
			t.Fatal(st)
		}
		injected++
	}
	r.stepUntil("every frame through", func() bool {
		return f.count() == injected && calls[ingress] == 2*perGen+injected
	})
	r.settle()
	r.close()
	for _, p := range problems {
		t.Error(p)
	}
	// Ingress: every frame once. Egress: unicast to a learnt or unknown
	// address, broadcast and multicast flood: at least one per frame.
	if calls[ingress] != 2*perGen+injected || calls[egress] < calls[ingress] {
		t.Errorf("%d ingress and %d egress classifies for %d frames", calls[ingress], calls[egress], 2*perGen+injected)
	}
	if withCache == 0 {
		t.Error("no classify saw a worker cache in its metadata")
	}
}

// A callout that absorbs each frame and injects it as it is, with no
// completion function (the inspect pattern, whose release the switch hands
// to the completion), while it also holds some frames by a second
// reference: one dropped during the frame's second classify, before its
// completion, and one dropped only after every frame reached the sink. And
// some frames are followed into the injection queue by another frame, so
// that the switch releases them itself. Every frame reaches the sink once,
// a frame held after its completion is not returned to its generator until
// its last reference drops, and everything returns.
func TestReinjectedOriginalsWithHolds(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	const n = 60
	gen := r.gen(n, vswitch.PortConfig{ID: 1}, idFrame(t, macN(1), macN(2), 64, 1))
	sink := r.sink(0, vswitch.PortConfig{ID: 2})
	h := r.handle()
	extra := r.pool(n)
	f := &freer{pool: extra}
	var held []*nbl.NetBufferList
	heldUntil2nd := map[*nbl.NetBufferList]bool{}
	seen, followed := 0, 0
	var problems []string
	r.callout("inspect", ingress, 1, h, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		if st, _ := h.QueryState(l); st.SelfInjected() {
			if heldUntil2nd[l] {
				delete(heldUntil2nd, l)
				l.Dereference()
			}
			permit(out)
			return
		}
		seen++
		l.Reference() // handed to the injection
		switch seen % 4 {
		case 1:
			l.Reference()
			held = append(held, l)
		case 2:
			l.Reference()
			heldUntil2nd[l] = true
		}
		if err := h.InjectVSwitchIngress(r.id.Bytes(), meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, l, nil, inject.Done{}); err != nil {
			problems = append(problems, err.Error())
		}
		if seen%3 == 0 {
			followed++
			if err := injectExtra(t, r, h, extra, f); err != nil {
				problems = append(problems, err.Error())
			}
		}
		absorb(out)
	})
	r.start()
	r.stepUntil("every frame at the sink", func() bool {
		return sink.Stats().Sent == uint64(n+followed) && f.count() == followed
	})
	r.settle()
	for _, p := range problems {
		t.Error(p)
	}
	if len(heldUntil2nd) != 0 {
		t.Errorf("%d frames not seen again after their injection", len(heldUntil2nd))
	}
	wantReturned(t, gen, n, len(held))
	for _, l := range held {
		l.Dereference()
	}
	wantReturned(t, gen, n, 0)
	r.closeWant(n, n+followed)
}

// injectExtra injects a fresh frame from pool p into the rig's switch, as
// if from port 1; f frees it when it completes.
func injectExtra(t testing.TB, r *rig, h *inject.Handle, p *nbl.Pool, f *freer) error {
	return h.InjectVSwitchIngress(r.id.Bytes(), 1, 0, alloc(t, p, idFrame(t, macN(1), macN(2), 64, 2)), nil, inject.Done{Fn: f.fn})
}

// wantReturned fails the test unless gen generated n frames (0: any number)
// and has all but held of them back.
func wantReturned(t *testing.T, gen *memport.Port, n, held int) {
	t.Helper()
	if s := gen.Stats(); s.Returned != s.Generated-uint64(held) || n != 0 && held == 0 && s.Generated != uint64(n) {
		t.Errorf("generator: %d generated, %d returned with %d frames still held; want %d generated", s.Generated, s.Returned, held, n)
	}
}

// closeWant closes the rig's switch and fails the test unless it absorbed
// and transmitted those numbers of frames.
func (r *rig) closeWant(absorbed, tx int) {
	r.t.Helper()
	if got := sum(r.close()); got.absorbed != uint64(absorbed) || got.tx != uint64(tx) {
		r.t.Errorf("absorbed %d, sent %d; want %d, %d", got.absorbed, got.tx, absorbed, tx)
	}
}

// The clone pattern with the switch's release handed to the clone
// (nbl.NetBufferList.ReleaseParentWhenFreed): a callout references each new
// frame, clones it and injects the clone, whose completion drops the
// reference. The original goes back to its generator exactly once, and
// only when its last hold is gone, whatever comes last: the clone freed in
// its completion or kept and freed later, the reference dropped in the
// completion or later, a clone of another pool; and a clone followed by
// another injection (not last in the queue: the switch releases the frame
// itself). Every clone and extra frame reaches the sink once, and the
// pools are full at the end.
func TestClonedOriginalsHandTheirRelease(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	const n = 60
	gen := r.gen(n, vswitch.PortConfig{ID: 1}, idFrame(t, macN(1), macN(2), 64, 1))
	sink := r.sink(0, vswitch.PortConfig{ID: 2})
	h := r.handle()
	other := r.pool(n)
	extra := r.pool(n)
	f := &freer{pool: extra}
	var keptClones, heldOrigs []*nbl.NetBufferList
	completed, seen, followed := 0, 0, 0
	var problems []string
	// ctx says what the completion does: 1 keep the clone, 2 keep the
	// reference, else free and dereference at once.
	done := func(ctx any, cl *nbl.NetBufferList, _ bool) {
		completed++
		orig := cl.Parent()
		if ctx == 1 {
			keptClones = append(keptClones, cl)
		} else if err := cl.Pool().FreeClone(cl); err != nil {
			problems = append(problems, err.Error())
		}
		if ctx == 2 {
			heldOrigs = append(heldOrigs, orig)
			return
		}
		orig.Dereference()
	}
	r.callout("clone", ingress, 1, h, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		if st, _ := h.QueryState(l); st.SelfInjected() {
			permit(out)
			return
		}
		seen++
		l.Reference()
		mode := seen % 5
		var cl *nbl.NetBufferList
		var err error
		if mode == 3 {
			cl, err = other.Clone(l)
		} else {
			cl, err = l.Pool().Clone(l)
		}
		if err != nil {
			t.Fatalf("Clone: %v", err)
		}
		if err := h.InjectVSwitchIngress(r.id.Bytes(), meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, cl, nil, inject.Done{Fn: done, Context: mode}); err != nil {
			problems = append(problems, err.Error())
		}
		if mode == 4 {
			followed++
			if err := injectExtra(t, r, h, extra, f); err != nil {
				problems = append(problems, err.Error())
			}
		}
		absorb(out)
	})
	r.start()
	r.stepUntil("every frame at the sink", func() bool {
		return sink.Stats().Sent == uint64(n+followed) && completed == n && f.count() == followed
	})
	r.settle()
	for _, p := range problems {
		t.Error(p)
	}
	held := len(keptClones) + len(heldOrigs)
	if held == 0 {
		t.Fatal("no frame kept past its completion")
	}
	wantReturned(t, gen, n, held)
	for _, cl := range keptClones {
		if err := cl.Pool().FreeClone(cl); err != nil {
			t.Error(err)
		}
	}
	wantReturned(t, gen, n, len(heldOrigs))
	for _, l := range heldOrigs {
		l.Dereference()
	}
	wantReturned(t, gen, n, 0)
	r.closeWant(n, n+followed)
}
