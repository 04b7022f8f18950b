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
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 64)
	cache, err := p.NewCache(64)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, s, 64, cache)
	hold := &holdingTarget{id: nextGUID()}
	if err := s.RegisterVSwitch(hold); err != nil {
		t.Fatal(err)
	}
	id := hold.id.Bytes()
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
