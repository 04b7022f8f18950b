package vswitch_test

// The conformance cases of wfp-semantics.md that concern the virtual
// switch, run through a real switch: injection with
// FwpsInjectvSwitchEthernetIngressAsync0, completions, injection states seen
// by callouts, classify actions and rights, the inspect sequence, and the
// incoming values and metadata of the vSwitch layers.

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

const (
	ingress = vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET
	egress  = vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET
)

// Case 17: flags or reserved not zero -> STATUS_INVALID_PARAMETER, and the
// NBL is untouched and never completed; with both zero the same NBL goes
// through.
func TestCase17_IngressFlagsReserved(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	r.sink(0, vswitch.PortConfig{ID: 1, Name: "src"})
	sink := r.sink(1, vswitch.PortConfig{ID: 2, Name: "sink"})
	r.start()
	h := r.handle()
	pool := r.pool(8)
	f := &freer{pool: pool}
	frame := udpFrame(t, macN(1), macN(2), 64)
	l := alloc(t, pool, frame)
	for _, c := range []struct {
		flags    uint32
		reserved uintptr
	}{{1, 0}, {0, 1}, {0x80000000, 0xdead}} {
		st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, "ctx", c.flags, c.reserved, r.id.Bytes(), 1, 0, l, f.fn, nil)
		if st != inject.STATUS_INVALID_PARAMETER {
			t.Errorf("flags 0x%x reserved 0x%x: %v, want STATUS_INVALID_PARAMETER", c.flags, c.reserved, st)
		}
		if l.Completion.Owner != nil || l.Completion.Fn != nil || l.Tag.Handle != 0 || l.Tag.Hops != 0 || l.Tag.Context != nil || l.Next != nil {
			t.Errorf("flags 0x%x reserved 0x%x: the refused NBL was changed: %+v %+v", c.flags, c.reserved, l.Completion, l.Tag)
		}
	}
	r.settle()
	if n := f.count(); n != 0 {
		t.Errorf("%d completions for refused injections", n)
	}
	if s := sink.Stats().Sent; s != 0 {
		t.Errorf("a refused injection reached the sink (%d frames)", s)
	}
	if s := h.Stats(); s.Injected != 0 || s.Refused != 3 || s.Pending != 0 {
		t.Errorf("handle after refusals: %+v", s)
	}
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, "ctx", 0, 0, r.id.Bytes(), 1, 0, l, f.fn, nil); st != inject.STATUS_SUCCESS {
		t.Fatalf("flags 0 reserved 0: %v", st)
	}
	r.stepUntil("the completion", func() bool { return f.count() == 1 })
	r.settle()
	r.close()
	if got := sink.Captured(); len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Errorf("sink captured %d frames, want the injected one", len(got))
	}
	if f.count() != 1 || f.statuses[0] != inject.STATUS_SUCCESS {
		t.Errorf("completions %v", f.statuses)
	}
}

// Case 18 (and 19, 21): one injected NBL -> exactly one completion with the
// same NBL and completion context; dispatchLevel tells whether it ran on a
// worker; a frame the switch cannot deliver completes once with a failure.
func TestCase18_OneCompletionPerNBL(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manual   bool
		size     int
		wantSent uint64
		want     inject.Status
	}{
		{"manual", true, 64, 1, inject.STATUS_SUCCESS},
		{"workers", false, 64, 1, inject.STATUS_SUCCESS},
		{"oversize", true, 200, 0, inject.STATUS_INVALID_BUFFER_SIZE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, vswitch.Config{Manual: tc.manual, MaxFrameSize: 128})
			r.sink(0, vswitch.PortConfig{ID: 1, Name: "src"})
			sink := r.sink(1, vswitch.PortConfig{ID: 2, Name: "sink"})
			r.start()
			h := r.handle()
			pool := r.pool(8)
			f := &freer{pool: pool}
			frame := udpFrame(t, macN(1), macN(2), tc.size)
			l := alloc(t, pool, frame)
			ctx := &struct{ name string }{"completion context"}
			if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, "injection context", 0, 0, r.id.Bytes(), 1, 0, l, f.fn, ctx); st != inject.STATUS_SUCCESS {
				t.Fatal(st)
			}
			if tc.manual {
				r.stepUntil("the completion", func() bool { return f.count() == 1 })
				r.settle()
			} else {
				r.waitUntil("the completion", func() bool { return f.count() == 1 })
			}
			st := r.close()
			if f.count() != 1 {
				t.Fatalf("%d completions, want 1", f.count())
			}
			if f.nbls[0] != l || f.ctxs[0] != any(ctx) {
				t.Errorf("completion got NBL %p context %v, want %p and %v", f.nbls[0], f.ctxs[0], l, ctx)
			}
			if f.statuses[0] != tc.want || inject.NT_SUCCESS(f.statuses[0]) != (tc.want == inject.STATUS_SUCCESS) {
				t.Errorf("status %v, want %v", f.statuses[0], tc.want)
			}
			if f.dispatch[0] == tc.manual {
				t.Errorf("dispatchLevel %v on a %s switch", f.dispatch[0], tc.name)
			}
			if sink.Stats().Sent != tc.wantSent {
				t.Errorf("sink got %d frames, want %d", sink.Stats().Sent, tc.wantSent)
			}
			if tc.wantSent == 1 && !bytes.Equal(sink.Captured()[0], frame) {
				t.Error("the sink's frame differs from the injected one")
			}
			if s := h.Stats(); s.Injected != 1 || s.Completed != 1 || s.Pending != 0 {
				t.Errorf("handle: %+v", s)
			}
			checkConservation(t, st, 0)
		})
	}
}

// Case 22: a chain of three NBLs -> three completions, one per NBL, each
// with the same context; the frames arrive in order.
func TestCase22_ChainOfThree(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	r.sink(0, vswitch.PortConfig{ID: 1, Name: "src"})
	sink := r.sink(8, vswitch.PortConfig{ID: 2, Name: "sink"})
	r.start()
	h := r.handle()
	pool := r.pool(8)
	f := &freer{pool: pool}
	var ls [3]*nbl.NetBufferList
	var frames [3][]byte
	for i := range ls {
		frames[i] = idFrame(t, macN(1), macN(2), 80, uint32(i))
		ls[i] = alloc(t, pool, frames[i])
		if i > 0 {
			ls[i-1].Next = ls[i]
		}
	}
	ctx := &struct{ n int }{3}
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), 1, 0, ls[0], f.fn, ctx); st != inject.STATUS_SUCCESS {
		t.Fatal(st)
	}
	r.stepUntil("three completions", func() bool { return f.count() == 3 })
	r.settle()
	r.close()
	if f.count() != 3 {
		t.Fatalf("%d completions, want 3", f.count())
	}
	seen := map[*nbl.NetBufferList]int{}
	for i := range f.nbls {
		seen[f.nbls[i]]++
		if f.ctxs[i] != any(ctx) || f.statuses[i] != inject.STATUS_SUCCESS {
			t.Errorf("completion %d: context %v status %v", i, f.ctxs[i], f.statuses[i])
		}
	}
	for i, l := range ls {
		if seen[l] != 1 {
			t.Errorf("NBL %d of the chain completed %d times", i, seen[l])
		}
	}
	got := sink.Captured()
	if len(got) != 3 {
		t.Fatalf("sink got %d frames", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i], frames[i]) {
			t.Errorf("frame %d at the sink is id %d", i, frameID(got[i]))
		}
	}
	if s := h.Stats(); s.Injected != 3 || s.Completed != 3 || s.Pending != 0 {
		t.Errorf("handle: %+v", s)
	}
}

// Case 29: a clone, or an NBL the caller allocated, injected without a
// completion function is refused with STATUS_INVALID_PARAMETER and left as
// it was; an unaltered original (lent by a port) is accepted, delivered,
// and goes back to its port exactly once.
func TestCase29_NilCompletion(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	frame := idFrame(t, macN(1), macN(2), 90, 29)
	gen := r.gen(1, vswitch.PortConfig{ID: 1, Name: "gen"}, frame)
	sink := r.sink(4, vswitch.PortConfig{ID: 2, Name: "sink"})
	h := r.handle()
	var held *nbl.NetBufferList
	r.callout("grab", ingress, 1, h, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		if inject.FwpsQueryPacketInjectionState0(h, l, nil) == inject.FWPS_PACKET_INJECTED_BY_SELF {
			permit(out)
			return
		}
		inject.FwpsReferenceNetBufferList0(l, false)
		held = l
		absorb(out)
	})
	r.start()
	r.stepUntil("the callout to hold the frame", func() bool { return held != nil })
	r.settle()
	if held.Originator == nil || held.IsClone() {
		t.Fatal("the frame from the generator is not an original with an originator")
	}
	if got := gen.Stats().Returned; got != 0 {
		t.Fatalf("the referenced original went back to its port (%d) while held", got)
	}

	var cl *nbl.NetBufferList
	if st := inject.FwpsAllocateCloneNetBufferList0(held, nil, nil, 0, &cl); st != inject.STATUS_SUCCESS {
		t.Fatal(st)
	}
	tag := cl.Tag
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), 1, 0, cl, nil, nil); st != inject.STATUS_INVALID_PARAMETER {
		t.Errorf("clone with a nil completion: %v, want STATUS_INVALID_PARAMETER", st)
	}
	if cl.Completion.Owner != nil || cl.Completion.Fn != nil || cl.Tag.Handle != tag.Handle || cl.Tag.Hops != tag.Hops {
		t.Error("the refused clone was changed")
	}
	if st := inject.FwpsFreeCloneNetBufferList0(cl, 0); st != inject.STATUS_SUCCESS {
		t.Fatal(st)
	}
	pool := r.pool(4)
	own := alloc(t, pool, frame)
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), 1, 0, own, nil, nil); st != inject.STATUS_INVALID_PARAMETER {
		t.Errorf("caller-allocated NBL with a nil completion: %v, want STATUS_INVALID_PARAMETER", st)
	}
	if err := pool.Free(own); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if sink.Stats().Sent != 0 {
		t.Fatal("a refused NBL reached the sink")
	}

	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), 1, 0, held, nil, nil); st != inject.STATUS_SUCCESS {
		t.Fatalf("original with a nil completion: %v", st)
	}
	r.stepUntil("the original at the sink", func() bool { return sink.Stats().Sent == 1 })
	r.settle()
	if got := gen.Stats().Returned; got != 1 {
		t.Errorf("the original went back to its port %d times, want 1", got)
	}
	if got := sink.Captured(); len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Error("the sink did not get the original unchanged")
	}
	if s := h.Stats(); s.Injected != 1 || s.Completed != 1 || s.Pending != 0 || s.Refused != 2 {
		t.Errorf("handle: %+v", s)
	}
	tt := checkConservation(t, r.close(), 0)
	if tt.absorbed != 1 || tt.injected != 1 || tt.tx != 1 {
		t.Errorf("%v", tt)
	}
}

type stateSeen struct {
	who string
	st  inject.FWPS_PACKET_INJECTION_STATE
	ctx any
}

// Cases 30-34 through the switch: the callouts of two handles query the
// frames they see. A frame from a port is NOT_INJECTED; injected by H1 with
// C1 it is BY_SELF (C1) for H1 and BY_OTHER (no context) for H2 and any
// other handle; a clone of it injected by H2 with C2 is
// PREVIOUSLY_INJECTED_BY_SELF (C1) for H1 and BY_SELF (C2) for H2. A nil
// context pointer still gets the state.
func TestCase31_33(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	frame := idFrame(t, macN(1), macN(2), 100, 31)
	gen := r.gen(1, vswitch.PortConfig{ID: 1, Name: "gen"}, frame)
	sink := r.sink(4, vswitch.PortConfig{ID: 2, Name: "sink"})
	h1, h2, h3 := r.handle(), r.handle(), r.handle()
	c1, c2 := &struct{ s string }{"C1"}, &struct{ s string }{"C2"}
	var seen []stateSeen
	var problems []string
	query := func(who string, h *inject.Handle, l *nbl.NetBufferList) inject.FWPS_PACKET_INJECTION_STATE {
		var ctx any = "not written"
		st := inject.FwpsQueryPacketInjectionState0(h, l, &ctx)
		seen = append(seen, stateSeen{who, st, ctx})
		if again := inject.FwpsQueryPacketInjectionState0(h, l, nil); again != st {
			problems = append(problems, fmt.Sprintf("%s: %v with a nil context pointer, %v without", who, again, st))
		}
		return st
	}
	var stash *nbl.NetBufferList
	var cloneDone atomic.Int32
	r.callout("h1", ingress, 20, h1, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		if query("H1", h1, l) == inject.FWPS_PACKET_NOT_INJECTED {
			inject.FwpsReferenceNetBufferList0(l, false)
			stash = l
			absorb(out)
		}
	})
	r.callout("h2", ingress, 10, h2, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		switch query("H2", h2, l) {
		case inject.FWPS_PACKET_INJECTED_BY_SELF:
			permit(out)
		case inject.FWPS_PACKET_INJECTED_BY_OTHER:
			query("H2 asks H1", h1, l)
			query("H2 asks H3", h3, l)
			var cl *nbl.NetBufferList
			if st := inject.FwpsAllocateCloneNetBufferList0(l, nil, nil, 0, &cl); st != inject.STATUS_SUCCESS {
				problems = append(problems, "clone: "+st.Error())
				return
			}
			done := func(ctx any, cl *nbl.NetBufferList, _ bool) {
				if ctx != "H2 completion" {
					problems = append(problems, fmt.Sprintf("H2 completion context %v", ctx))
				}
				inject.FwpsFreeCloneNetBufferList0(cl, 0)
				cloneDone.Add(1)
			}
			if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h2, c2, 0, 0, r.id.Bytes(), meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, cl, done, "H2 completion"); st != inject.STATUS_SUCCESS {
				problems = append(problems, "inject the clone: "+st.Error())
				inject.FwpsFreeCloneNetBufferList0(cl, 0)
				return
			}
			absorb(out)
		default:
			problems = append(problems, "H2 saw a frame H1 should have absorbed")
		}
	})
	r.start()
	r.stepUntil("H1 to absorb the frame", func() bool { return stash != nil })
	r.settle()
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h1, c1, 0, 0, r.id.Bytes(), 1, 0, stash, nil, nil); st != inject.STATUS_SUCCESS {
		t.Fatal(st)
	}
	r.stepUntil("the clone at the sink", func() bool { return sink.Stats().Sent == 1 })
	r.settle()
	r.close()
	for _, p := range problems {
		t.Error(p)
	}
	want := []stateSeen{
		{"H1", inject.FWPS_PACKET_NOT_INJECTED, nil},               // case 30
		{"H1", inject.FWPS_PACKET_INJECTED_BY_SELF, c1},            // case 31
		{"H2", inject.FWPS_PACKET_INJECTED_BY_OTHER, nil},          // case 32
		{"H2 asks H1", inject.FWPS_PACKET_INJECTED_BY_SELF, c1},    // case 31, from H2's callout
		{"H2 asks H3", inject.FWPS_PACKET_INJECTED_BY_OTHER, nil},  // case 32
		{"H1", inject.FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF, c1}, // case 33
		{"H2", inject.FWPS_PACKET_INJECTED_BY_SELF, c2},            // case 33
	}
	if len(seen) != len(want) {
		t.Fatalf("queries: got %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i].who != want[i].who || seen[i].st != want[i].st || seen[i].ctx != want[i].ctx {
			t.Errorf("query %d: got %s %v %v, want %s %v %v", i, seen[i].who, seen[i].st, seen[i].ctx, want[i].who, want[i].st, want[i].ctx)
		}
	}
	if cloneDone.Load() != 1 {
		t.Errorf("the clone completed %d times", cloneDone.Load())
	}
	if got := sink.Captured(); len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Error("the sink did not get the frame unchanged")
	}
	if gen.Stats().Returned != 1 {
		t.Errorf("the original went back %d times", gen.Stats().Returned)
	}
	for i, h := range []*inject.Handle{h1, h2} {
		if s := h.Stats(); s.Injected != 1 || s.Completed != 1 || s.Pending != 0 {
			t.Errorf("H%d: %+v", i+1, s)
		}
	}
}

// Case 36: BLOCK with ABSORB -> the frame vanishes: not transmitted, not
// counted as a drop, counted as absorbed (at the source port at ingress, at
// the destination port at egress); the switch releases it, so it goes back
// to its port, and an injected one completes with success.
func TestCase36_BlockAbsorb(t *testing.T) {
	const n = 100
	for _, layer := range []uint16{ingress, egress} {
		t.Run(fmt.Sprint("layer", layer), func(t *testing.T) {
			r := manualRig(t, vswitch.Config{})
			gen := r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, udpFrame(t, macN(1), macN(2), 64))
			sink := r.sink(0, vswitch.PortConfig{ID: 2, Name: "sink"})
			calls := 0
			r.callout("absorb", layer, 1, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
				calls++
				absorb(out)
			})
			r.start()
			r.stepUntil("every frame back", func() bool { return gen.Stats().Returned == n })
			r.settle()
			st := r.close()
			tt := checkConservation(t, st, 0)
			if calls != n || tt.absorbed != n || tt.dropped != 0 || tt.tx != 0 || sink.Stats().Sent != 0 {
				t.Errorf("%d classifies; %v; sink %d", calls, tt, sink.Stats().Sent)
			}
			at := 0
			if layer == egress {
				at = 1
			}
			if st.Ports[at].Absorbed != n {
				t.Errorf("port %d counted %d absorbed, want %d", at, st.Ports[at].Absorbed, n)
			}
		})
	}
	t.Run("injected", func(t *testing.T) {
		r := manualRig(t, vswitch.Config{})
		r.sink(0, vswitch.PortConfig{ID: 1, Name: "src"})
		sink := r.sink(0, vswitch.PortConfig{ID: 2, Name: "sink"})
		r.callout("absorb", ingress, 1, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
			absorb(out)
		})
		r.start()
		h := r.handle()
		pool := r.pool(8)
		f := &freer{pool: pool}
		for i := 0; i < 3; i++ {
			if err := h.InjectVSwitchIngress(r.id.Bytes(), 1, 0, alloc(t, pool, udpFrame(t, macN(1), macN(2), 64)), nil, inject.Done{Fn: f.fn}); err != nil {
				t.Fatal(err)
			}
		}
		r.stepUntil("three completions", func() bool { return f.count() == 3 })
		r.settle()
		tt := checkConservation(t, r.close(), 0)
		for _, s := range f.statuses {
			if s != inject.STATUS_SUCCESS {
				t.Errorf("absorbed injection completed with %v", s)
			}
		}
		if tt.absorbed != 3 || tt.dropped != 0 || sink.Stats().Sent != 0 {
			t.Errorf("%v, sink %d", tt, sink.Stats().Sent)
		}
	})
}

// Case 38: a callout whose rights lack FWPS_RIGHT_ACTION_WRITE may veto
// (BLOCK) but not PERMIT: the PERMIT is ignored, counted, and the filters
// below still decide.
func TestCase38_PermitWithoutWriteRightIgnored(t *testing.T) {
	const n = 50
	type layout struct {
		clear      bool   // a weight-30 callout clears the write right and continues
		clearByFlt bool   // a weight-30 static PERMIT with FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT
		lower      uint32 // FWP_ACTION_PERMIT or _BLOCK written by the weight-20 callout
		block      bool   // a weight-10 static BLOCK filter
	}
	for _, tc := range []struct {
		name       string
		l          layout
		violations uint64
		delivered  uint64
		drop       vswitch.DropReason
		rightsSeen uint32
	}{
		{"permit-ignored", layout{clear: true, lower: uint32(vswitch.FWP_ACTION_PERMIT), block: true}, n, 0, vswitch.DropFilterBlock, 0},
		{"control-permit-with-right", layout{lower: uint32(vswitch.FWP_ACTION_PERMIT), block: true}, 0, n, 0, vswitch.FWPS_RIGHT_ACTION_WRITE},
		{"block-veto", layout{clear: true, lower: uint32(vswitch.FWP_ACTION_BLOCK)}, 0, 0, vswitch.DropCalloutBlock, 0},
		{"filter-permit-stands", layout{clearByFlt: true, lower: uint32(vswitch.FWP_ACTION_PERMIT)}, n, n, 0, 0},
		{"filter-permit-veto", layout{clearByFlt: true, lower: uint32(vswitch.FWP_ACTION_BLOCK)}, 0, 0, vswitch.DropCalloutBlock, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := manualRig(t, vswitch.Config{})
			r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, udpFrame(t, macN(1), macN(2), 64))
			sink := r.sink(0, vswitch.PortConfig{ID: 2, Name: "sink"})
			if tc.l.clear {
				r.callout("clear", ingress, 30, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
					out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
					out.ActionType = vswitch.FWP_ACTION_CONTINUE
				})
			}
			if tc.l.clearByFlt {
				r.filter(&vswitch.Filter{Key: "permit-clear", LayerID: ingress, Weight: 30, Action: vswitch.FWP_ACTION_PERMIT, Flags: vswitch.FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT})
			}
			var rights []uint32
			r.callout("lower", ingress, 20, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
				rights = append(rights, out.Rights)
				out.ActionType = vswitch.FWP_ACTION_TYPE(tc.l.lower)
			})
			if tc.l.block {
				r.filter(&vswitch.Filter{Key: "block", LayerID: ingress, Weight: 10, Action: vswitch.FWP_ACTION_BLOCK})
			}
			r.start()
			r.settle()
			st := r.close()
			tt := checkConservation(t, st, 0)
			if st.RightsViolations != tc.violations {
				t.Errorf("RightsViolations %d, want %d", st.RightsViolations, tc.violations)
			}
			if sink.Stats().Sent != tc.delivered || tt.tx != tc.delivered {
				t.Errorf("delivered %d, want %d (%v)", sink.Stats().Sent, tc.delivered, tt)
			}
			if tc.delivered == 0 && tt.drops[tc.drop] != n {
				t.Errorf("%v drops %d, want %d (%v)", tc.drop, tt.drops[tc.drop], n, tt)
			}
			if len(rights) != n {
				t.Fatalf("the lower callout ran %d times", len(rights))
			}
			for _, rt := range rights {
				if rt&vswitch.FWPS_RIGHT_ACTION_WRITE != tc.rightsSeen {
					t.Fatalf("the lower callout saw rights 0x%x", rt)
				}
			}
		})
	}
}

// Case 39: the action, right and flag constants of fwptypes.h/fwpstypes.h,
// and the layer, field and metadata values the vSwitch layers use.
func TestCase39_ActionConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"FWP_ACTION_BLOCK", uint64(vswitch.FWP_ACTION_BLOCK), 0x1001},
		{"FWP_ACTION_PERMIT", uint64(vswitch.FWP_ACTION_PERMIT), 0x1002},
		{"FWP_ACTION_CALLOUT_TERMINATING", uint64(vswitch.FWP_ACTION_CALLOUT_TERMINATING), 0x5003},
		{"FWP_ACTION_CALLOUT_INSPECTION", uint64(vswitch.FWP_ACTION_CALLOUT_INSPECTION), 0x6004},
		{"FWP_ACTION_CALLOUT_UNKNOWN", uint64(vswitch.FWP_ACTION_CALLOUT_UNKNOWN), 0x4005},
		{"FWP_ACTION_CONTINUE", uint64(vswitch.FWP_ACTION_CONTINUE), 0x2006},
		{"FWP_ACTION_NONE", uint64(vswitch.FWP_ACTION_NONE), 7},
		{"FWP_ACTION_NONE_NO_MATCH", uint64(vswitch.FWP_ACTION_NONE_NO_MATCH), 8},
		{"FWP_ACTION_FLAG_TERMINATING", uint64(vswitch.FWP_ACTION_FLAG_TERMINATING), 0x1000},
		{"FWP_ACTION_FLAG_NON_TERMINATING", uint64(vswitch.FWP_ACTION_FLAG_NON_TERMINATING), 0x2000},
		{"FWP_ACTION_FLAG_CALLOUT", uint64(vswitch.FWP_ACTION_FLAG_CALLOUT), 0x4000},
		{"FWPS_RIGHT_ACTION_WRITE", uint64(vswitch.FWPS_RIGHT_ACTION_WRITE), 1},
		{"FWPS_CLASSIFY_OUT_FLAG_ABSORB", uint64(vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB), 1},
		{"FWPS_CLASSIFY_OUT_FLAG_BUFFER_LIMIT_REACHED", uint64(vswitch.FWPS_CLASSIFY_OUT_FLAG_BUFFER_LIMIT_REACHED), 2},
		{"FWPS_CLASSIFY_OUT_FLAG_NO_MORE_DATA", uint64(vswitch.FWPS_CLASSIFY_OUT_FLAG_NO_MORE_DATA), 4},
		{"FWPS_LAYER_INGRESS_VSWITCH_ETHERNET", uint64(vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET), 72},
		{"FWPS_LAYER_EGRESS_VSWITCH_ETHERNET", uint64(vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET), 73},
		{"FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_VSWITCH_ID", uint64(vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_VSWITCH_ID), 7},
		{"FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_L2_FLAGS", uint64(vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_L2_FLAGS), 12},
		{"FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX", uint64(vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX), 14},
		{"FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID", uint64(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID), 12},
		{"FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_L2_FLAGS", uint64(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_L2_FLAGS), 15},
		{"FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX", uint64(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX), 17},
		{"FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_PORT_ID", uint64(vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_PORT_ID), 4},
		{"FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_NIC_INDEX", uint64(vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_NIC_INDEX), 8},
		{"FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID", uint64(vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID), 0x20},
		{"FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION", uint64(vswitch.FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION), 8},
		{"FWP_VSWITCH_NETWORK_TYPE_EXTERNAL", uint64(vswitch.FWP_VSWITCH_NETWORK_TYPE_EXTERNAL), 3},
		{"STATUS_FWP_BLOCKED", uint64(vswitch.STATUS_FWP_BLOCKED), 0xC022001B},
	} {
		if c.got != c.want {
			t.Errorf("%s = 0x%x, want 0x%x", c.name, c.got, c.want)
		}
	}
	// The callout actions are filter actions that carry the callout flag;
	// the classify results are not.
	for _, a := range []vswitch.FWP_ACTION_TYPE{vswitch.FWP_ACTION_CALLOUT_TERMINATING, vswitch.FWP_ACTION_CALLOUT_INSPECTION, vswitch.FWP_ACTION_CALLOUT_UNKNOWN} {
		if a&vswitch.FWP_ACTION_FLAG_CALLOUT == 0 {
			t.Errorf("0x%x lacks FWP_ACTION_FLAG_CALLOUT", uint32(a))
		}
	}
	for _, a := range []vswitch.FWP_ACTION_TYPE{vswitch.FWP_ACTION_BLOCK, vswitch.FWP_ACTION_PERMIT, vswitch.FWP_ACTION_CONTINUE} {
		if a&vswitch.FWP_ACTION_FLAG_CALLOUT != 0 {
			t.Errorf("0x%x carries FWP_ACTION_FLAG_CALLOUT", uint32(a))
		}
	}
	m := &vswitch.Metadata{CurrentL2MetadataValues: 0x4}
	if !vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(m, 0x4) || vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(m, 0x4|0x8) {
		t.Error("FWPS_IS_L2_METADATA_FIELD_PRESENT must require every bit asked for")
	}
}

// Case 40: the inspect sequence through the switch: reference, BLOCK|ABSORB
// with WRITE cleared, clone, inject the clone, and in its completion free
// the clone and dereference the original; once inside classify, once on
// another goroutine that receives the originals through a channel. Every
// frame reaches the sink exactly once, byte for byte; each completion runs
// once; each original goes back to its port once; every pool is full at
// the end.
func TestCase40_InspectSequenceThroughSwitch(t *testing.T) {
	n := 4000
	if raceEnabled {
		n = 1000
	}
	for _, async := range []bool{false, true} {
		name := "inside-classify"
		if async {
			name = "other-goroutine"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, vswitch.Config{Manual: !async, Workers: 2})
			list, byID := idTemplates(t, 40, macN(1), macN(2), 128)
			gen := r.gen(uint64(n), vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
			chk := newIDSink(byID)
			sink := r.port(memportSink(chk), vswitch.PortConfig{ID: 2, Name: "sink"})
			h := r.handle()
			x := newInspector(h, r.id)
			var bad atomic.Int64
			x.check = func(orig, cl *nbl.NetBufferList) {
				// Before the clone is freed the original has the clone and
				// the callout's reference, and the same bytes.
				if cl.Parent() != orig || orig.ChildRefCount() != 1 || orig.RefCount() != 1 || !bytes.Equal(nblBytes(orig), nblBytes(cl)) {
					bad.Add(1)
				}
			}
			var wg sync.WaitGroup
			if async {
				// The generator may have its whole pool out, referenced and
				// queued: clones come from a pool of their own so that they
				// cannot run short.
				x.clonePool = r.clonePool(8192)
				x.async = make(chan *nbl.NetBufferList, 8192)
				wg.Add(1)
				go func() { defer wg.Done(); x.run() }()
			}
			r.callout("inspect", ingress, 1, h, x.classify)
			r.start()
			done := func() bool { return x.completions.Load() == int64(n) && chk.total.Load() == uint64(n) }
			if async {
				r.waitUntil("every completion", done)
				close(x.async)
				wg.Wait()
			} else {
				r.stepUntil("every completion", done)
				r.settle()
			}
			st := r.close()
			x.verify(t, int64(n))
			chk.check(t, n/40)
			if bad.Load() != 0 {
				t.Errorf("%d completions found the original without exactly one clone and one reference", bad.Load())
			}
			tt := checkConservation(t, st, 0)
			if tt.absorbed != uint64(n) || tt.injected != uint64(n) || tt.tx != uint64(n) || tt.dropped != 0 {
				t.Errorf("%v", tt)
			}
			if g := gen.Stats(); g.Generated != uint64(n) || sink.Stats().Sent != uint64(n) {
				t.Errorf("generator %+v, sink %+v", g, sink.Stats())
			}
		})
	}
}

// Case 41: the inspect sequence when the injection fails (the handle was
// destroyed; the switch is unknown): the callout frees the clone at once
// and dereferences the original; no completion runs, nothing is delivered,
// and nothing leaks.
func TestCase41_InspectInjectFails(t *testing.T) {
	const n = 64
	for _, tc := range []struct {
		name string
		want inject.Status
	}{
		{"handle-destroyed", inject.STATUS_FWP_INJECT_HANDLE_CLOSING},
		{"unknown-switch", inject.STATUS_NOT_FOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := manualRig(t, vswitch.Config{})
			gen := r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, udpFrame(t, macN(1), macN(2), 64))
			sink := r.sink(0, vswitch.PortConfig{ID: 2, Name: "sink"})
			h := r.handle()
			id := r.id
			if tc.want == inject.STATUS_NOT_FOUND {
				id = newGUID()
			} else if st := inject.FwpsInjectionHandleDestroy0(h); st != inject.STATUS_SUCCESS {
				t.Fatal(st)
			}
			x := newInspector(h, id)
			r.callout("inspect", ingress, 1, h, x.classify)
			r.start()
			r.stepUntil("every frame back", func() bool { return gen.Stats().Returned == n })
			r.settle()
			tt := checkConservation(t, r.close(), 0)
			if x.injectFails.Load() != n || x.completions.Load() != 0 || x.injected.Load() != 0 {
				t.Errorf("%d failed injections, %d completions, %d injected; want %d, 0, 0", x.injectFails.Load(), x.completions.Load(), x.injected.Load(), n)
			}
			if st := inject.Status(x.lastInjectStatus.Load()); st != tc.want {
				t.Errorf("injection failed with %v, want %v", st, tc.want)
			}
			if sink.Stats().Sent != 0 || tt.absorbed != n || tt.tx != 0 {
				t.Errorf("%v, sink %d", tt, sink.Stats().Sent)
			}
			if s := h.Stats(); s.Injected != 0 || s.Refused != n || s.Pending != 0 {
				t.Errorf("handle %+v", s)
			}
		})
	}
}

// Case 53: what an ingress classify sees: the NBL's first NetBuffer starts
// at the Ethernet header; VSWITCH_ID (value 7) is a 16-byte blob equal to
// the switch's GUID; the metadata carries the source port and NIC (bits
// 0x4 and 0x8) of the port, or of the injection. The egress classify adds
// the destination.
func TestCase53_IngressLayerData(t *testing.T) {
	r := manualRig(t, vswitch.Config{NetworkType: vswitch.FWP_VSWITCH_NETWORK_TYPE_EXTERNAL})
	frame := idFrame(t, macN(1), macN(2), 100, 53)
	r.gen(1, vswitch.PortConfig{ID: 7, NicIndex: 3, Name: "vm-a"}, frame)
	sink := r.sink(0, vswitch.PortConfig{ID: 9, NicIndex: 5, Name: "vm-b"})
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	wantNIC := uint16(3)
	common := func(layer string, in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList) {
		nb := l.FirstNetBuffer()
		if d, ok := nb.Data(); !ok || !bytes.Equal(d, frame) {
			fail("%s: the NBL's data is not the frame from its Ethernet header on", layer)
		}
		if v := in.IncomingValue(vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_VSWITCH_ID); v.Type != vswitch.FWP_BYTE_BLOB_TYPE || len(v.Bytes) != 16 || !bytes.Equal(v.Bytes, r.id[:]) {
			fail("%s: VSWITCH_ID is %v % x, want the switch GUID as a blob", layer, v.Type, v.Bytes)
		}
		checks := []struct {
			i    int
			typ  vswitch.FWP_DATA_TYPE
			u    uint64
			b    []byte
			name string
		}{
			{0, vswitch.FWP_BYTE_ARRAY6_TYPE, 0, macN(1), "MAC_SOURCE_ADDRESS"},
			{1, vswitch.FWP_UINT8, uint64(vswitch.DlUnicast), nil, "MAC_SOURCE_ADDRESS_TYPE"},
			{2, vswitch.FWP_BYTE_ARRAY6_TYPE, 0, macN(2), "MAC_DESTINATION_ADDRESS"},
			{3, vswitch.FWP_UINT8, uint64(vswitch.DlUnicast), nil, "MAC_DESTINATION_ADDRESS_TYPE"},
			{4, vswitch.FWP_UINT16, 0x0800, nil, "ETHER_TYPE"},
			{5, vswitch.FWP_UINT16, 1, nil, "VLAN_ID"},
			{8, vswitch.FWP_UINT8, uint64(vswitch.FWP_VSWITCH_NETWORK_TYPE_EXTERNAL), nil, "VSWITCH_NETWORK_TYPE"},
			{9, vswitch.FWP_BYTE_BLOB_TYPE, 0, []byte("vm-a"), "VSWITCH_SOURCE_INTERFACE_ID"},
		}
		for _, c := range checks {
			v := in.IncomingValue(c.i)
			if v.Type != c.typ || v.Uint != c.u || !bytes.Equal(v.Bytes, c.b) {
				fail("%s: %s = %v %d % x, want %v %d % x", layer, c.name, v.Type, v.Uint, v.Bytes, c.typ, c.u, c.b)
			}
		}
		for _, bit := range []uint32{vswitch.FWPS_L2_METADATA_FIELD_ETHERNET_MAC_HEADER_SIZE, vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_PORT_ID, vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_NIC_INDEX} {
			if !vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(meta, bit) {
				fail("%s: metadata bit 0x%x missing (0x%x)", layer, bit, meta.CurrentL2MetadataValues)
			}
		}
		var nic uint16 = meta.VSwitchSourceNicIndex // 16-bit, as in WFP
		if meta.VSwitchSourcePortID != 7 || nic != wantNIC || meta.EthernetMacHeaderSize != 14 {
			fail("%s: source port %d NIC %d header %d, want 7, %d, 14", layer, meta.VSwitchSourcePortID, nic, meta.EthernetMacHeaderSize, wantNIC)
		}
	}
	ingressCalls, egressCalls := 0, 0
	r.callout("ingress", ingress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		ingressCalls++
		if in.LayerID != ingress || in.ValueCount != vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX {
			fail("ingress: layer %d with %d values", in.LayerID, in.ValueCount)
		}
		common("ingress", in, meta, l)
		if v := in.IncomingValue(vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_L2_FLAGS); v.Type != vswitch.FWP_UINT32 || v.Uint&uint64(vswitch.FWP_CONDITION_L2_IS_NATIVE_ETHERNET) == 0 {
			fail("ingress: L2_FLAGS %v 0x%x", v.Type, v.Uint)
		}
		if vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(meta, vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID) {
			fail("ingress: a destination port in the metadata")
		}
		permit(out)
	})
	r.callout("egress", egress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		egressCalls++
		if in.LayerID != egress || in.ValueCount != vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX {
			fail("egress: layer %d with %d values", in.LayerID, in.ValueCount)
		}
		common("egress", in, meta, l)
		if v := in.IncomingValue(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID); !bytes.Equal(v.Bytes, []byte("vm-b")) {
			fail("egress: destination interface % x", v.Bytes)
		}
		if !vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(meta, vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID) || meta.VSwitchDestinationPortID != 9 {
			fail("egress: destination port %d (bits 0x%x)", meta.VSwitchDestinationPortID, meta.CurrentL2MetadataValues)
		}
		if meta.L2Flags&vswitch.FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION != 0 {
			fail("egress: a single-destination frame flagged multi-destination")
		}
		permit(out)
	})
	r.start()
	r.stepUntil("the frame at the sink", func() bool { return sink.Stats().Sent == 1 })
	// An injected frame carries the port and NIC given to the injection.
	wantNIC = 4
	h := r.handle()
	pool := r.pool(4)
	f := &freer{pool: pool}
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), 7, 4, alloc(t, pool, frame), f.fn, nil); st != inject.STATUS_SUCCESS {
		t.Fatal(st)
	}
	r.stepUntil("the injected frame at the sink", func() bool { return f.count() == 1 })
	r.settle()
	r.close()
	for _, p := range problems {
		t.Error(p)
	}
	if ingressCalls != 2 || egressCalls != 2 || sink.Stats().Sent != 2 {
		t.Errorf("%d ingress and %d egress classifies, %d frames at the sink; want 2 each", ingressCalls, egressCalls, sink.Stats().Sent)
	}
}

// Case 54: a broadcast flooded to three ports is classified at egress once
// per copy, and exactly the second and later copies carry
// FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION; the unflagged one is
// the NBL the ingress layer saw. A reinjecting callout that follows the
// guidance (clone and inject only the first copy, absorb the later ones)
// delivers each frame to each port once.
func TestCase54_MultiDestinationFlag(t *testing.T) {
	const n = 12
	type egressSeen struct {
		dest     uint32
		flagged  bool
		original bool
	}
	t.Run("flags", func(t *testing.T) {
		r := manualRig(t, vswitch.Config{})
		list, _ := idTemplates(t, n, macN(1), broadcast, 64)
		r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
		for i := 2; i <= 4; i++ {
			r.sink(0, vswitch.PortConfig{ID: uint32(i), Name: fmt.Sprint("s", i)})
		}
		atIngress := map[uint32]*nbl.NetBufferList{}
		seen := map[uint32][]egressSeen{}
		presence := true
		r.callout("ingress", ingress, 1, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
			atIngress[frameID(nblBytes(l))] = l
		})
		r.callout("egress", egress, 1, nil, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
			id := frameID(nblBytes(l))
			seen[id] = append(seen[id], egressSeen{meta.VSwitchDestinationPortID, meta.L2Flags&vswitch.FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION != 0, atIngress[id] == l})
			presence = presence && vswitch.FWPS_IS_L2_METADATA_FIELD_PRESENT(meta, vswitch.FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID)
		})
		r.start()
		r.settle()
		st := r.close()
		checkConservation(t, st, 2*n)
		if st.Flooded != n {
			t.Errorf("Flooded %d, want %d", st.Flooded, n)
		}
		if !presence {
			t.Error("an egress classify without the destination port in its metadata")
		}
		for id := uint32(0); id < n; id++ {
			s := seen[id]
			dests := map[uint32]bool{}
			flagged, unflaggedOriginal := 0, 0
			for _, e := range s {
				dests[e.dest] = true
				if e.flagged {
					flagged++
					if e.original {
						t.Errorf("frame %d: the original NBL carries the multi-destination flag", id)
					}
				} else if e.original {
					unflaggedOriginal++
				}
			}
			if len(s) != 3 || len(dests) != 3 || flagged != 2 || unflaggedOriginal != 1 {
				t.Errorf("frame %d at egress: %+v; want 3 copies to 3 ports, 2 flagged, the unflagged one the original", id, s)
			}
		}
	})
	t.Run("guidance", func(t *testing.T) {
		r := manualRig(t, vswitch.Config{})
		list, byID := idTemplates(t, n, macN(1), broadcast, 64)
		gen := r.gen(n, vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
		var sinks []*idSink
		for i := 2; i <= 4; i++ {
			s := newIDSink(byID)
			sinks = append(sinks, s)
			r.port(memportSink(s), vswitch.PortConfig{ID: uint32(i), Name: fmt.Sprint("s", i)})
		}
		h := r.handle()
		x := newInspector(h, r.id)
		dropped := 0
		r.callout("egress-inject", egress, 1, h, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, c any, f *vswitch.Filter, fc uint64, out *vswitch.ClassifyOut) {
			if inject.FwpsQueryPacketInjectionState0(h, l, nil).SelfInjected() {
				permit(out)
				return
			}
			if meta.L2Flags&vswitch.FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION != 0 {
				dropped++
				absorb(out) // the injected clone will be fanned out again
				return
			}
			x.classify(in, meta, l, c, f, fc, out)
		})
		r.start()
		r.stepUntil("every original back", func() bool { return gen.Stats().Returned == n })
		r.settle()
		st := r.close()
		x.verify(t, n)
		for _, s := range sinks {
			s.check(t, 1)
		}
		if dropped != 2*n {
			t.Errorf("%d flagged copies absorbed, want %d", dropped, 2*n)
		}
		tt := checkConservation(t, st, 4*n)
		if tt.tx != 3*n || tt.absorbed != 3*n || tt.injected != n {
			t.Errorf("%v", tt)
		}
	})
}

// Case 55: frames injected through a handle that has no callout with a
// filter at the ingress layer (the injector's filter is at egress, or it
// has none) are counted in Stats.InjectedWithoutFilter, and are switched.
func TestCase55_InjectWithoutFilter(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	r.sink(0, vswitch.PortConfig{ID: 1, Name: "src"})
	sink := r.sink(0, vswitch.PortConfig{ID: 2, Name: "sink"})
	h1, h2, h3 := r.handle(), r.handle(), r.handle()
	pass := func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, _ *vswitch.ClassifyOut) {
	}
	r.callout("h1-ingress", ingress, 1, h1, pass)
	r.callout("h2-egress", egress, 1, h2, pass)
	r.start()
	pool := r.pool(32)
	f := &freer{pool: pool}
	counts := []int{3, 4, 5}
	for i, h := range []*inject.Handle{h1, h2, h3} {
		for j := 0; j < counts[i]; j++ {
			if err := h.InjectVSwitchIngress(r.id.Bytes(), 1, 0, alloc(t, pool, udpFrame(t, macN(1), macN(2), 64)), nil, inject.Done{Fn: f.fn}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.stepUntil("every completion", func() bool { return f.count() == 12 })
	r.settle()
	if got := r.sw.Stats().InjectedWithoutFilter; got != 9 {
		t.Errorf("InjectedWithoutFilter %d, want 9 (the frames of H2 and H3)", got)
	}
	r.close()
	if sink.Stats().Sent != 12 {
		t.Errorf("sink got %d frames, want 12", sink.Stats().Sent)
	}
}
