package inject

import (
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// Originals whose owner handed its release to the completion
// (nbl.Completion.OwnerRelease), completed in one flush among originals
// whose owner still holds them: each run is dropped the right way, through
// the queue's cache for one pool and without a cache for the other. An
// original that rides on its completion and has no other hold leaves; one
// with a second reference leaves when that is dropped; one whose owner did
// not hand its release over stays until the owner releases it.
func TestOwnerReleaseRidesOnCompletion(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p1, p2 := newPool(t, 16), newPool(t, 16)
	cache, err := p1.NewCache(16)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(t, s, 64, cache) // no cache for p2
	hold := &holdingTarget{id: nextGUID()}
	if err := s.RegisterVSwitch(hold); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.UnregisterVSwitch(hold.id) })
	o := newOriginator(16)
	type step struct {
		p     *nbl.Pool
		rides bool // the owner hands its release to the completion
		extra bool // and holds a second reference
	}
	steps := []step{
		{p1, true, false}, {p1, true, false}, {p1, false, false}, {p1, true, true},
		{p2, true, false}, {p2, false, false}, {p2, true, true}, {p1, true, false},
	}
	var kept, extra []*nbl.NetBufferList
	for i, st := range steps {
		l := alloc(t, st.p)
		l.Originator = o
		l.Reference()
		if err := h.InjectVSwitchIngress(hold.id.Bytes(), 0, 0, l, nil, Done{}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		switch {
		case !st.rides:
			kept = append(kept, l)
		case st.extra:
			l.Reference()
			extra = append(extra, l)
		}
		if st.rides {
			l.Completion.OwnerRelease = true // after the injection, as the switch does
		}
	}
	hold.completeHeld(q)
	if st := q.Stats(); st.Delivered != uint64(len(steps)) || st.Panics != 0 {
		t.Fatalf("queue stats %+v, want %d delivered, no panic", st, len(steps))
	}
	if st := h.Stats(); st.Completed != uint64(len(steps)) || st.Pending != 0 {
		t.Fatalf("handle stats %+v", st)
	}
	leaving := len(steps) - len(kept) - len(extra)
	if got := o.total.Load(); got != int64(leaving) {
		t.Fatalf("%d originals returned, want %d (the ones riding with no other hold)", got, leaving)
	}
	for _, l := range append(kept, extra...) {
		if l.RefCount() != boolInt(contains(extra, l)) || l.Completion.OwnerRelease {
			t.Fatalf("original %d: %d references, OwnerRelease %v after its completion", l.Index(), l.RefCount(), l.Completion.OwnerRelease)
		}
	}
	for _, l := range extra {
		l.Dereference() // released already: it leaves
	}
	if got := o.total.Load(); got != int64(leaving+len(extra)) {
		t.Fatalf("%d originals returned after the extra references dropped, want %d", got, leaving+len(extra))
	}
	for _, l := range kept {
		l.Pool().Release(l) // the owner that kept its release
	}
	checkFull(t, p1, cache)
	checkFull(t, p2)
	if got := o.total.Load(); got != int64(len(steps)) || o.badHolds.Load() != 0 {
		t.Fatalf("%d originals returned (%d with holds), want %d", got, o.badHolds.Load(), len(steps))
	}
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func contains(ls []*nbl.NetBufferList, l *nbl.NetBufferList) bool {
	for _, m := range ls {
		if m == l {
			return true
		}
	}
	return false
}
