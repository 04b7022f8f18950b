package inject

// Tests of the single-NBL fast path of the vSwitch injection and of the
// completion of unaltered originals: each refusal is the one the general
// chain check gives, nothing changes on a refusal, the remembered switch is
// matched on all 16 bytes of its ID, and the inspect pattern's round trip
// does not allocate.

import (
	"errors"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// TestSingleNBLRefusalsMatchCheckChain injects one faulty NBL through both
// forms of the vSwitch injection and wants, for each fault, exactly the
// error checkChain reports for it (text and status), no call into the
// switch, nothing written on the NBL, no pending injection left and one
// more refusal counted.
func TestSingleNBLRefusalsMatchCheckChain(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	other := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 8)
	sw := newVSwitch(t, s, nil)
	id := sw.id.Bytes()
	o := newOriginator(p.Cap())
	rec := newRecorder(t, false)
	fn := Done{Fn: rec.fn}

	orig := allocOriginal(t, p, o)
	created := alloc(t, p)
	clone, err := p.Clone(orig)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &nbl.NetBufferList{} // not from a pool

	for _, c := range []struct {
		name  string
		l     *nbl.NetBufferList
		done  Done
		setup func()
		undo  func()
	}{
		{name: "not from a pool", l: foreign, done: fn},
		{name: "not from a pool, no completion function", l: foreign},
		{name: "in flight through another handle", l: created, done: fn,
			setup: func() { created.Completion.Owner = other },
			undo:  func() { created.Completion.Owner = nil }},
		{name: "clone without a completion function", l: clone,
			setup: func() { clone.Reference() }, undo: func() { clone.Dereference() }},
		{name: "created NBL without a completion function", l: created,
			setup: func() { created.Reference() }, undo: func() { created.Dereference() }},
		{name: "original without a reference or completion function", l: orig},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			if c.undo != nil {
				defer c.undo()
			}
			_, want := checkChain(c.l, c.done)
			if want == nil {
				t.Fatal("checkChain accepts the case: it tests nothing")
			}
			tagBefore, complBefore := c.l.Tag, c.l.Completion
			refusedBefore := h.Stats().Refused
			err := h.InjectVSwitchIngress(id, 0, 0, c.l, nil, c.done)
			if err == nil || err.Error() != want.Error() || nbl.StatusOf(err) != nbl.StatusOf(want) {
				t.Fatalf("InjectVSwitchIngress: %v, want %v", err, want)
			}
			st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, id, 0, 0, c.l, c.done.Fn, nil)
			if st != nbl.StatusOf(want) {
				t.Fatalf("FwpsInjectvSwitchEthernetIngressAsync0: %v, want %v", st, nbl.StatusOf(want))
			}
			if c.l.Tag != tagBefore || c.l.Completion.Owner != complBefore.Owner || c.l.Completion.Fn != nil {
				t.Fatalf("a refused injection wrote on the NBL: tag %+v, completion %+v", c.l.Tag, c.l.Completion)
			}
			if got := h.Stats(); got.Pending != 0 || got.Refused != refusedBefore+2 {
				t.Fatalf("stats %+v, want nothing pending and %d refusals", got, refusedBefore+2)
			}
			if sw.numCalls() != 0 {
				t.Fatalf("the switch got %d calls", sw.numCalls())
			}
		})
	}

	// The same NBLs made right go through, one by one.
	q := newQueue(t, s, 8, nil)
	sw.deliver = completeNow(q, STATUS_SUCCESS)
	orig.Reference()
	if err := h.InjectVSwitchIngress(id, 0, 0, orig, nil, Done{}); err != nil {
		t.Fatalf("referenced original without a completion function: %v", err)
	}
	if err := h.InjectVSwitchIngress(id, 0, 0, clone, nil, fn); err != nil {
		t.Fatalf("clone with a completion function: %v", err)
	}
	q.Flush()
	if rec.count() != 1 || orig.RefCount() != 0 || sw.numCalls() != 2 {
		t.Fatalf("%d completions, original's references %d, %d switch calls", rec.count(), orig.RefCount(), sw.numCalls())
	}
	if st := h.Stats(); st.Pending != 0 || st.Completed != 2 {
		t.Fatalf("stats %+v", st)
	}
	freeNBL(t, clone)
	freeNBL(t, created)
	freeNBL(t, orig)
	checkFull(t, p)
}

// TestSingleNBLClosingHandle: a good single NBL injected through a handle
// whose Destroy has begun is refused with ErrHandleClosing, the pending
// count it reserved is given back (Destroy returns), and the NBL is as it
// was.
func TestSingleNBLClosingHandle(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	sw := newVSwitch(t, s, nil)
	l := allocOriginal(t, p, newOriginator(p.Cap()))
	destroyBounded(t, h)
	l.Reference()
	if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, nil, Done{}); !errors.Is(err, ErrHandleClosing) {
		t.Fatalf("inject into a destroyed handle: %v", err)
	}
	if st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, nil, nil); st != STATUS_FWP_INJECT_HANDLE_CLOSING {
		t.Fatalf("FwpsInjectvSwitchEthernetIngressAsync0 into a destroyed handle: %v", st)
	}
	if st := h.Stats(); st.Pending != 0 || st.Refused != 2 {
		t.Fatalf("stats %+v", st)
	}
	if l.Completion.Owner != nil || l.Tag.Handle != 0 || l.RefCount() != 1 || sw.numCalls() != 0 {
		t.Fatalf("refused NBL changed: owner %v, tag %d, references %d; %d switch calls", l.Completion.Owner, l.Tag.Handle, l.RefCount(), sw.numCalls())
	}
	l.Dereference()
	freeNBL(t, l)
	checkFull(t, p)
}

// TestVSwitchLookupRemembered: the switch found last is remembered and
// compared on both halves of its ID, so that switches whose GUIDs differ
// only in bytes 0-7, or only in bytes 8-15, each get their own injections
// when they alternate; an unregistered switch is forgotten, and one
// registered again under the same GUID is found.
func TestVSwitchLookupRemembered(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	q := newQueue(t, s, 4, nil)
	base := nextGUID()
	lowDiff, highDiff := base, base
	lowDiff[0] ^= 0x80
	highDiff[15] ^= 0x01
	sws := map[GUID]*fakeVSwitch{}
	for _, g := range []GUID{base, lowDiff, highDiff} {
		f := &fakeVSwitch{id: g, deliver: completeNow(q, STATUS_SUCCESS)}
		if err := s.RegisterVSwitch(f); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.UnregisterVSwitch(g) })
		sws[g] = f
	}
	rec := newRecorder(t, false)
	l := alloc(t, p)
	inject := func(g GUID) error {
		err := h.InjectVSwitchIngress(g.Bytes(), 0, 0, l, nil, Done{Fn: rec.fn})
		q.Flush()
		return err
	}
	want := map[GUID]int{}
	for _, g := range []GUID{base, base, lowDiff, base, highDiff, highDiff, lowDiff, base} {
		if err := inject(g); err != nil {
			t.Fatalf("inject into %s: %v", g, err)
		}
		want[g]++
		for sg, f := range sws {
			if f.numCalls() != want[sg] {
				t.Fatalf("after injecting into %s, switch %s has %d calls, want %d", g, sg, f.numCalls(), want[sg])
			}
		}
	}
	s.UnregisterVSwitch(base)
	wantErr(t, "inject into the unregistered switch found last", inject(base), STATUS_NOT_FOUND)
	if err := inject(lowDiff); err != nil {
		t.Fatalf("inject into a remaining switch: %v", err)
	}
	again := &fakeVSwitch{id: base, deliver: completeNow(q, STATUS_SUCCESS)}
	if err := s.RegisterVSwitch(again); err != nil {
		t.Fatal(err)
	}
	if err := inject(base); err != nil || again.numCalls() != 1 || sws[base].numCalls() != want[base] {
		t.Fatalf("inject after re-registering: %v; new switch %d calls, old %d", err, again.numCalls(), sws[base].numCalls())
	}
	short := base.Bytes()[:15]
	err := h.InjectVSwitchIngress(short, 0, 0, l, nil, Done{Fn: rec.fn})
	if !errors.Is(err, ErrInvalidParameter) || err.Error() != "STATUS_INVALID_PARAMETER (0xC000000D): vSwitch ID of 15 bytes, want 16" {
		t.Fatalf("15-byte ID: %v", err)
	}
	freeNBL(t, l)
	checkFull(t, p)
}

// TestAllocsReinjectOriginal: the inspect pattern through the WFP-named
// functions (reference, inject alone with no completion function, complete
// into a queue with the worker's cache, flush) allocates nothing, and each
// round drops exactly the reference it took.
func TestAllocsReinjectOriginal(t *testing.T) {
	r := newHoldingRig(t, 64)
	h, p, cache, q, hold, id := r.h, r.p, r.cache, r.q, r.hold, r.id
	o := newOriginator(p.Cap())
	ls := make([]*nbl.NetBufferList, 32)
	for i := range ls {
		ls[i] = allocOriginal(t, p, o)
	}
	wantNoAllocs(t, "reference + FwpsInjectvSwitchEthernetIngressAsync0 + Complete of 32, one Flush", func() {
		for _, l := range ls {
			FwpsReferenceNetBufferList0(l, false)
			if st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, id, 1, 0, l, nil, nil); st != STATUS_SUCCESS {
				panic(st)
			}
		}
		hold.completeHeld(q)
	})
	if st := h.Stats(); st.Pending != 0 || st.Completed != 201*32 {
		t.Fatalf("stats %+v", st)
	}
	for _, l := range ls {
		if l.RefCount() != 0 || l.Completion.Owner != nil {
			t.Fatalf("NBL %d: references %d, owner %v after its completion", l.Index(), l.RefCount(), l.Completion.Owner)
		}
	}
	if o.total.Load() != 0 {
		t.Fatalf("%d originals returned while their owner still holds them", o.total.Load())
	}
	for _, l := range ls {
		freeNBL(t, l)
	}
	checkFull(t, p, cache)
	if o.total.Load() != 32 || o.badHolds.Load() != 0 {
		t.Fatalf("%d originals returned (%d with holds), want 32", o.total.Load(), o.badHolds.Load())
	}
}

// TestOriginalsAfterDereferencePanic: an original dereferenced behind the
// injection's back makes the flush's Dereference panic (case 51) just as
// the queue's list of references to drop is full. The flush recovers and
// counts it; the next flush of originals starts from the list that panic
// left spent and must still gather, drop every reference once and end.
func TestOriginalsAfterDereferencePanic(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	const n = 64 // the queue's size and the capacity of its list of references
	p := newPool(t, n)
	q := newQueue(t, s, n, nil)
	hold := &holdingTarget{id: nextGUID()}
	if err := s.RegisterVSwitch(hold); err != nil {
		t.Fatal(err)
	}
	id := hold.id.Bytes()
	o := newOriginator(p.Cap())
	ls := make([]*nbl.NetBufferList, n)
	for i := range ls {
		ls[i] = allocOriginal(t, p, o)
	}
	reinject := func() {
		for _, l := range ls {
			if l.RefCount() == 0 {
				l.Reference()
			}
			if err := h.InjectVSwitchIngress(id, 0, 0, l, nil, Done{}); err != nil {
				t.Fatalf("inject NBL %d: %v", l.Index(), err)
			}
		}
		hold.completeHeld(q)
	}
	bad := ls[0]
	for _, l := range ls {
		l.Reference()
		if err := h.InjectVSwitchIngress(id, 0, 0, l, nil, Done{}); err != nil {
			t.Fatal(err)
		}
	}
	bad.Dereference() // behind the injection's back
	hold.completeHeld(q)
	if st := q.Stats(); st.Panics != 1 || st.Delivered != n {
		t.Fatalf("queue stats %+v, want 1 panic and %d delivered", st, n)
	}
	// The panic stopped the drop at bad: the others keep the reference
	// the injection took over.
	for _, l := range ls[1:] {
		if l.RefCount() != 1 {
			t.Fatalf("NBL %d: %d references, want 1", l.Index(), l.RefCount())
		}
	}
	reinject()
	if st := q.Stats(); st.Panics != 1 || st.Delivered != 2*n {
		t.Fatalf("queue stats %+v, want 1 panic and %d delivered", st, 2*n)
	}
	if st := h.Stats(); st.Pending != 0 || st.Completed != 2*n {
		t.Fatalf("handle stats %+v", st)
	}
	// Each reinjection took over the one reference its NBL had (the one
	// the panic left, or a new one for bad), and its completion dropped it.
	for _, l := range ls {
		if l.RefCount() != 0 {
			t.Fatalf("NBL %d: %d references after its completion, want 0", l.Index(), l.RefCount())
		}
	}
	for _, l := range ls {
		freeNBL(t, l)
	}
	checkFull(t, p)
}

// TestFastPathFaultsMatchGeneralPath injects through both forms of the
// vSwitch injection every combination of a handle (L2 or not, open or
// closing), a switch ID (the one remembered, an unregistered one, a short
// one) and an NBL (sound, or with each fault the chain check finds) that
// holds at least one fault, and wants exactly the error the general path
// (injectVSwitchSlow) reports for the same arguments: so the fast path
// keeps the order in which faults are reported, not only the faults. A
// refused injection changes nothing but the refusal count.
func TestFastPathFaultsMatchGeneralPath(t *testing.T) {
	s := newStack(t)
	open := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	stale := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	closing := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	closingStale := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	destroyBounded(t, closing)
	destroyBounded(t, closingStale)
	p := newPool(t, 8)
	sw := newVSwitch(t, s, nil)
	good := sw.id.Bytes()
	unknown := nextGUID()
	o := newOriginator(p.Cap())
	fn := Done{Fn: newRecorder(t, false).fn}

	orig := allocOriginal(t, p, o)
	created := alloc(t, p)
	clone := mustClone(t, p, orig)
	foreign := &nbl.NetBufferList{}
	inFlight := alloc(t, p)
	inFlight.Completion.Owner = open
	orig.Reference() // a sound original without a completion function

	type nblCase struct {
		name  string
		l     *nbl.NetBufferList
		done  Done
		sound bool
	}
	nbls := []nblCase{
		{"sound original without a completion function", orig, Done{}, true},
		{"sound NBL with a completion function", created, fn, true},
		{"nil NBL", nil, fn, false},
		{"not from a pool", foreign, fn, false},
		{"in flight", inFlight, fn, false},
		{"clone without a completion function", clone, Done{}, false},
		{"created NBL without a completion function", created, Done{}, false},
	}
	handles := []struct {
		name  string
		h     *Handle
		sound bool
	}{{"L2", open, true}, {"not L2", stale, false}, {"closing L2", closing, false}, {"closing, not L2", closingStale, false}, {"nil", nil, false}}
	ids := []struct {
		name  string
		id    []byte
		sound bool
	}{{"remembered", good, true}, {"unregistered", unknown.Bytes(), false}, {"15 bytes", good[:15], false}}

	tested := 0
	for _, hc := range handles {
		for _, ic := range ids {
			for _, nc := range nbls {
				if hc.sound && ic.sound && nc.sound {
					continue
				}
				name := hc.name + " handle, " + ic.name + " switch, " + nc.name
				if _, ok := s.lookupVSwitch(good); !ok { // remember the switch
					t.Fatal("the switch is not registered")
				}
				var before nblSnap
				if nc.l != nil {
					before = snap(nc.l)
				}
				refused := func() uint64 {
					if hc.h == nil {
						return 0
					}
					return hc.h.Stats().Refused
				}
				r0 := refused()
				done := nc.done
				want := hc.h.injectVSwitchSlow(nil, ic.id, 0, 0, nc.l, &done)
				if want == nil {
					t.Fatalf("%s: the general path accepts it", name)
				}
				r1 := refused()
				got := hc.h.InjectVSwitchIngress(ic.id, 0, 0, nc.l, nil, nc.done)
				if got == nil || got.Error() != want.Error() || nbl.StatusOf(got) != nbl.StatusOf(want) {
					t.Fatalf("%s: InjectVSwitchIngress: %v, the general path: %v", name, got, want)
				}
				st := FwpsInjectvSwitchEthernetIngressAsync0(hc.h, nil, 0, 0, ic.id, 0, 0, nc.l, nc.done.Fn, nil)
				if st != nbl.StatusOf(want) {
					t.Fatalf("%s: FwpsInjectvSwitchEthernetIngressAsync0: %v, want %v", name, st, nbl.StatusOf(want))
				}
				if r2 := refused(); r2-r1 != 2*(r1-r0) {
					t.Fatalf("%s: the two calls counted %d refusals, the general path %d for one", name, r2-r1, r1-r0)
				}
				if nc.l != nil && snap(nc.l) != before {
					t.Fatalf("%s: a refused injection changed the NBL: %+v, was %+v", name, snap(nc.l), before)
				}
				if hc.h != nil && hc.h.Stats().Pending != 0 {
					t.Fatalf("%s: %d injections left pending", name, hc.h.Stats().Pending)
				}
				tested++
			}
		}
	}
	if sw.numCalls() != 0 {
		t.Fatalf("the switch got %d calls", sw.numCalls())
	}
	if tested != len(handles)*len(ids)*len(nbls)-2 {
		t.Fatalf("%d cases tested", tested)
	}
	inFlight.Completion.Owner = nil
	orig.Dereference()
	for _, l := range []*nbl.NetBufferList{clone, created, inFlight, orig} {
		freeNBL(t, l)
	}
	checkFull(t, p)
}

// TestFastPathLeavesUnusualInjections: injections the fast path does not
// take, because the NBL was injected last by another handle (its tag moves
// into the history), it heads a chain, or the switch is not the one
// remembered, are accepted by the general path with the same effect: the
// NBLs tagged, their completion recorded, the switch called once with the
// chain, the pending count right.
func TestFastPathLeavesUnusualInjections(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	other := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 8)
	q := newQueue(t, s, 8, nil)
	sw := newVSwitch(t, s, completeNow(q, STATUS_SUCCESS))
	sw2 := newVSwitch(t, s, completeNow(q, STATUS_SUCCESS))
	rec := newRecorder(t, false)
	fn := Done{Fn: rec.fn}
	ictx, octx := newCtx("h"), newCtx("other")

	// Injected by other, then by h: other's injection moves to the history.
	l := alloc(t, p)
	if err := other.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, octx, fn); err != nil {
		t.Fatal(err)
	}
	if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, ictx, fn); err != nil {
		t.Fatal(err)
	}
	tg := l.Tag
	if tg.Handle != h.ID() || tg.Context != ictx || tg.HistoryLen != 1 || tg.History[0] != other.ID() || tg.HistoryContext[0] != octx || tg.Hops != 2 {
		t.Fatalf("tag after injections by other and h: %+v", tg)
	}
	if st, c := other.QueryState(l); st != FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF || c != octx {
		t.Fatalf("other's query: %v, %v", st, c)
	}
	if st, c := h.QueryState(l); st != FWPS_PACKET_INJECTED_BY_SELF || c != ictx {
		t.Fatalf("h's query: %v, %v", st, c)
	}
	// Injected by h again: the fast path, the history kept.
	if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, ictx, fn); err != nil {
		t.Fatal(err)
	}
	if l.Tag.HistoryLen != 1 || l.Tag.History[0] != other.ID() || l.Tag.Hops != 3 {
		t.Fatalf("tag after a second injection by h: %+v", l.Tag)
	}

	// A chain of two, into a switch other than the one remembered.
	a, b := alloc(t, p), alloc(t, p)
	if err := h.InjectVSwitchIngress(sw2.id.Bytes(), 7, 3, link(a, b), ictx, fn); err != nil {
		t.Fatal(err)
	}
	if sw2.numCalls() != 1 {
		t.Fatalf("second switch: %d calls", sw2.numCalls())
	}
	if c := sw2.call(0); c.count != 2 || len(c.nbls) != 2 || c.nbls[0] != a || c.nbls[1] != b || c.port != 7 || c.nic != 3 {
		t.Fatalf("chain call %+v", c)
	}
	for _, m := range []*nbl.NetBufferList{a, b} {
		if m.Tag.Handle != h.ID() || m.Tag.Context != ictx || m.Tag.Hops != 1 || m.Completion.Owner != nil {
			t.Fatalf("chain NBL after its completion: tag %+v, owner %v", m.Tag, m.Completion.Owner)
		}
	}
	if rec.count() != 5 || sw.numCalls() != 3 {
		t.Fatalf("%d completions, %d calls into the first switch", rec.count(), sw.numCalls())
	}
	for _, x := range []*Handle{h, other} {
		if st := x.Stats(); st.Pending != 0 || st.Refused != 0 {
			t.Fatalf("handle %d: %+v", x.ID(), st)
		}
	}
	if h.Stats().Completed != 4 || other.Stats().Completed != 1 {
		t.Fatalf("completed: h %d, other %d", h.Stats().Completed, other.Stats().Completed)
	}
	for _, m := range []*nbl.NetBufferList{l, a, b} {
		freeNBL(t, m)
	}
	checkFull(t, p)
}

// TestOriginalsRunsOfPoolsAndHandles completes, in one flush, originals of
// two pools and two handles, interleaved, with completion functions and
// NBLs that were never injected among them, through a queue with a cache
// for one of the pools: every injection's reference is dropped once, each
// handle's counts end right, the queue's Delivered counts every NBL, also
// as read from a completion function during the flush, and the originals
// go back to their originator only once their owner lets go.
func TestOriginalsRunsOfPoolsAndHandles(t *testing.T) {
	s := newStack(t)
	h1 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	h2 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p1, p2 := newPool(t, 16), newPool(t, 16)
	cache, err := p1.NewCache(16)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, s, 64, cache)
	hold := &holdingTarget{id: nextGUID()}
	if err := s.RegisterVSwitch(hold); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.UnregisterVSwitch(hold.id) })
	id := hold.id.Bytes()
	o := newOriginator(16)
	var seen []uint64 // Delivered as each completion function sees it
	fn := Done{Fn: func(_ any, _ *nbl.NetBufferList, _ bool) { seen = append(seen, q.Stats().Delivered) }}

	type step struct {
		h    *Handle // nil: never injected
		p    *nbl.Pool
		done Done
	}
	steps := []step{
		{h1, p1, Done{}}, {h1, p1, Done{}}, {h1, p2, Done{}}, {h2, p2, Done{}}, {h2, p1, Done{}},
		{h1, p1, fn}, {h1, p1, Done{}}, {nil, p2, Done{}}, {h2, p1, Done{}}, {h2, p1, fn}, {h1, p2, Done{}},
	}
	var originals, others []*nbl.NetBufferList
	for i, st := range steps {
		l := alloc(t, st.p)
		if st.h == nil {
			hold.nbls[hold.n] = l // completed without an injection: released
			hold.n++
			continue
		}
		if st.done.Fn == nil {
			l.Originator = o
			l.Reference()
			originals = append(originals, l)
		} else {
			others = append(others, l)
		}
		if err := st.h.InjectVSwitchIngress(id, 0, 0, l, nil, st.done); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	hold.completeHeld(q)
	if st := q.Stats(); st.Delivered != uint64(len(steps)) || st.Panics != 0 || st.Batches != 1 {
		t.Fatalf("queue stats %+v, want %d delivered in one batch", st, len(steps))
	}
	if len(seen) != 2 || seen[0] != 6 || seen[1] != 10 {
		t.Fatalf("completion functions saw Delivered %v, want [6 10]", seen)
	}
	if st := h1.Stats(); st.Completed != 6 || st.Pending != 0 {
		t.Fatalf("h1 stats %+v", st)
	}
	if st := h2.Stats(); st.Completed != 4 || st.Pending != 0 {
		t.Fatalf("h2 stats %+v", st)
	}
	for _, l := range originals {
		if c := l.Completion; l.RefCount() != 0 || c.Fn != nil || c.Batch != nil || c.Context != nil || c.Owner != nil {
			t.Fatalf("original %d: %d references, completion %+v", l.Index(), l.RefCount(), l.Completion)
		}
	}
	if o.total.Load() != 0 {
		t.Fatalf("%d originals returned while their owner holds them", o.total.Load())
	}
	for _, l := range append(originals, others...) {
		freeNBL(t, l)
	}
	checkFull(t, p1, cache)
	checkFull(t, p2)
	if o.total.Load() != int64(len(originals)) || o.badHolds.Load() != 0 {
		t.Fatalf("%d originals returned (%d with holds), want %d", o.total.Load(), o.badHolds.Load(), len(originals))
	}
}

// TestAllocsAlternatingInjectors: an NBL injected by two handles in turn
// takes the general path each time (its tag names the other handle), and
// neither that path nor the history it keeps allocates.
func TestAllocsAlternatingInjectors(t *testing.T) {
	s := newStack(t)
	h1 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	h2 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	q := newQueue(t, s, 8, nil)
	tg := &completingTarget{id: nextGUID(), q: q}
	if err := s.RegisterVSwitch(tg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.UnregisterVSwitch(tg.id) })
	id := tg.id.Bytes()
	l := alloc(t, p)
	c1, c2 := newCtx("1"), newCtx("2")
	allocCompleted = 0
	wantNoAllocs(t, "injections alternating between two handles", func() {
		if err := h1.InjectVSwitchIngress(id, 0, 0, l, c1, Done{Fn: allocFn}); err != nil {
			panic(err)
		}
		q.Flush()
		if err := h2.InjectVSwitchIngress(id, 0, 0, l, c2, Done{Fn: allocFn}); err != nil {
			panic(err)
		}
		q.Flush()
	})
	if allocCompleted != 402 || l.Tag.HistoryLen != nbl.MaxInjectionHistory || l.Tag.History[0] != h1.ID() || l.Tag.Handle != h2.ID() {
		t.Fatalf("%d completions, tag %+v", allocCompleted, l.Tag)
	}
	freeNBL(t, l)
	checkFull(t, p)
}
