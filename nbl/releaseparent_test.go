package nbl_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// ReleaseParentWhenFreed hands the owner's release of a parent to one of
// its clones: the parent stays while anything holds it (the clone, a
// reference, another clone), whichever is dropped last, and leaves exactly
// once when the last hold goes; a clone of another pool drops its parent
// through the parent's pool. The pools are full at the end.
func TestReleaseParentWhenFreed(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 16, FrameSize: 512})
	q := newPool(t, nbl.Config{NBLs: 4, FrameSize: 512})
	c := newCache(t, p, 8)
	cq := newCache(t, q, 2)
	for _, tc := range []struct {
		name    string
		foreign bool // the clone is of q's
		refs    int  // references the test takes on the parent
		second  bool // a second clone, freed last
		refLast bool // references dropped after the clone is freed
	}{
		{name: "clone alone"},
		{name: "clone of another pool", foreign: true},
		{name: "reference dropped first", refs: 1},
		{name: "references dropped last", refs: 2, refLast: true},
		{name: "second clone freed last", second: true},
		{name: "another pool, reference last", foreign: true, refs: 1, refLast: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &countOrig{}
			orig := mustAllocate(t, c, 0, 64)
			orig.Originator = o
			for range tc.refs {
				orig.Reference()
			}
			cc := c
			if tc.foreign {
				cc = cq
			}
			cl := mustClone(t, cc, orig)
			var cl2 *nbl.NetBufferList
			want := tc.refs // holds besides cl's
			if tc.second {
				cl2 = mustClone(t, c, orig)
				want++
			}
			cl.ReleaseParentWhenFreed()
			if got := orig.ChildRefCount(); got != int32(want-tc.refs+1) {
				t.Fatalf("ChildRefCount %d after the hand-over", got)
			}
			left := func(wantGone bool, when string) {
				t.Helper()
				if gone := len(o.got) == 1; gone != wantGone {
					t.Fatalf("%s: parent returned %d times, want gone=%v", when, len(o.got), wantGone)
				}
			}
			dropRefs := func() {
				for range tc.refs {
					orig.Dereference()
				}
			}
			if !tc.refLast {
				dropRefs()
				left(false, "references dropped, clone alive")
			}
			must(t, cc.FreeClone(cl), "FreeClone")
			left(want == 0 || (!tc.refLast && !tc.second), "clone freed")
			if tc.refLast {
				dropRefs()
				left(!tc.second, "references dropped after the clone")
			}
			if tc.second {
				must(t, c.FreeClone(cl2), "FreeClone of the second clone")
			}
			left(true, "everything dropped")
			checkFull(t, p, c)
			checkFull(t, q, cq)
		})
	}
}

// ReleaseParentWhenFreed refuses an NBL that is not a clone, a second call
// for the same clone, and a parent its owner released already, with a
// panic that names it; nothing changes, and the NBLs can still be freed.
func TestReleaseParentWhenFreedMisuse(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, FrameSize: 512})
	c := newCache(t, p, 4)
	expect := func(what string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "ReleaseParentWhenFreed") {
				t.Fatalf("%s: recovered %v, want a ReleaseParentWhenFreed panic", what, r)
			}
		}()
		f()
	}
	orig := mustAllocate(t, c, 0, 64)
	expect("not a clone", orig.ReleaseParentWhenFreed)
	cl := mustClone(t, c, orig)
	cl.ReleaseParentWhenFreed()
	expect("second call", cl.ReleaseParentWhenFreed)
	must(t, c.FreeClone(cl), "FreeClone") // orig leaves with it
	checkFull(t, p, c)

	orig = mustAllocate(t, c, 0, 64)
	cl = mustClone(t, c, orig)
	c.Release(orig)
	expect("released parent", cl.ReleaseParentWhenFreed)
	must(t, c.FreeClone(cl), "FreeClone")
	checkFull(t, p, c)

	// The release handed to one clone cannot be handed to another, or
	// given as well by Release or ReleaseDereferenceBurst.
	orig = mustAllocate(t, c, 0, 64)
	a, b := mustClone(t, c, orig), mustClone(t, c, orig)
	a.ReleaseParentWhenFreed()
	expect("hand-over to a second clone", b.ReleaseParentWhenFreed)
	expectMsg := func(what, want string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), want) {
				t.Fatalf("%s: recovered %v, want a panic containing %q", what, r, want)
			}
		}()
		f()
	}
	expectMsg("Release after the hand-over", "ReleaseParentWhenFreed", func() { c.Release(orig) })
	orig.Reference()
	expectMsg("ReleaseDereferenceBurst after the hand-over", "ReleaseDereference", func() { c.ReleaseDereferenceBurst([]*nbl.NetBufferList{orig}) })
	orig.Dereference()
	must(t, c.FreeClone(b), "FreeClone")
	must(t, c.FreeClone(a), "FreeClone") // orig leaves with it, once
	checkFull(t, p, c)
	// A descriptor that was a handed parent comes back clean: it can be
	// released as usual.
	for range p.Cap() {
		l := mustAllocate(t, c, 0, 64)
		c.Release(l)
	}
	checkFull(t, p, c)
}

// holds keeps references and clones in one word: the counts read back
// exactly with both at once, and Dereference refuses an NBL that only
// clones hold (no reference to drop), before and after references come
// and go.
func TestRefsAndClonesCounted(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, FrameSize: 512})
	c := newCache(t, p, 4)
	orig := mustAllocate(t, c, 0, 64)
	check := func(refs, clones int32) {
		t.Helper()
		if r, k := orig.RefCount(), orig.ChildRefCount(); r != refs || k != clones {
			t.Fatalf("RefCount %d, ChildRefCount %d; want %d, %d", r, k, refs, clones)
		}
	}
	noRef := func() {
		t.Helper()
		defer func() {
			t.Helper()
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "without a matching Reference") {
				t.Fatalf("Dereference with clones alone: recovered %v", r)
			}
		}()
		orig.Dereference()
	}
	a := mustClone(t, c, orig)
	b := mustClone(t, c, orig)
	check(0, 2)
	noRef()
	check(0, 2)
	for range 3 {
		orig.Reference()
	}
	check(3, 2)
	c.Release(orig)
	check(3, 2)
	must(t, c.FreeClone(a), "FreeClone")
	check(3, 1)
	for range 3 {
		c.Dereference(orig)
	}
	check(0, 1)
	noRef()
	must(t, c.FreeClone(b), "FreeClone") // the last hold: orig leaves
	checkFull(t, p, c)
}
