package nbl_test

import (
	"bytes"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// TestCloneShapes: a clone describes exactly its original's data whatever
// the original's shape (data in one MDL, which Clone handles apart; data
// over a prepended header MDL; no data), and once freed its descriptor
// comes back as an ordinary NBL with a context and its own frame.
func TestCloneShapes(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, FrameSize: 512, Headroom: 64})
	c := newCache(t, p, 4)
	cases := []struct {
		name    string
		prepare func(l *nbl.NetBufferList)
		mdls    int
	}{
		{"one MDL", func(*nbl.NetBufferList) {}, 1},
		{"advanced", func(l *nbl.NetBufferList) {
			must(t, l.FirstNetBuffer().Advance(14, false), "Advance")
		}, 1},
		{"prepended MDL", func(l *nbl.NetBufferList) {
			// More than the backfill: a header MDL goes in front.
			must(t, l.FirstNetBuffer().Retreat(100, 0), "Retreat")
		}, 2},
		{"no data", func(l *nbl.NetBufferList) {
			must(t, l.FirstNetBuffer().Advance(60, false), "Advance")
		}, 1},
	}
	for _, tc := range cases {
		orig := mustAllocate(t, c, 64, 60)
		nb := orig.FirstNetBuffer()
		if d, ok := nb.Data(); ok {
			copy(d, pattern(7, len(d)))
		}
		tc.prepare(orig)
		want := make([]byte, nb.DataLength())
		nb.CopyOut(want, 0)
		cl := mustClone(t, c, orig)
		cnb := cl.FirstNetBuffer()
		if cnb.DataOffset() != 0 || cnb.CurrentMdlOffset() != 0 || cnb.DataLength() != len(want) {
			t.Errorf("%s: clone offset %d, current offset %d, length %d; want 0, 0, %d", tc.name, cnb.DataOffset(), cnb.CurrentMdlOffset(), cnb.DataLength(), len(want))
		}
		n := 0
		for m := cnb.MdlChain(); m != nil; m = m.Next() {
			n++
		}
		if n != tc.mdls || cnb.CurrentMdl() != cnb.MdlChain() {
			t.Errorf("%s: clone has %d MDLs (want %d), current MDL first: %v", tc.name, n, tc.mdls, cnb.CurrentMdl() == cnb.MdlChain())
		}
		got := make([]byte, cnb.DataLength())
		cnb.CopyOut(got, 0)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: clone data % x, want % x", tc.name, got, want)
		}
		if !cl.IsClone() || cl.Parent() != orig || cl.Context() != nil || orig.ChildRefCount() != 1 {
			t.Errorf("%s: IsClone %v, parent %p (orig %p), context %v, ChildRefCount %d", tc.name, cl.IsClone(), cl.Parent(), orig, cl.Context(), orig.ChildRefCount())
		}
		must(t, c.FreeClone(cl), "FreeClone")
		must(t, c.Free(orig), "Free")
		// The cache hands the last freed descriptor (orig) out first, then
		// the clone's: both must be ordinary NBLs again.
		for range 2 {
			l := mustAllocate(t, c, 64, 60)
			if l.IsClone() || l.Parent() != nil || l.Context() == nil {
				t.Errorf("%s: reallocated descriptor %d: IsClone %v, parent %p, context %v", tc.name, l.Index(), l.IsClone(), l.Parent(), l.Context())
			}
			if m := l.FirstNetBuffer().MdlChain(); m == nil || m.Next() != nil || len(m.Bytes()) != len(p.Frames().Frame(l.Index())) {
				t.Errorf("%s: reallocated descriptor %d does not describe its own frame alone", tc.name, l.Index())
			}
			defer func() { must(t, c.Free(l), "Free") }()
		}
	}
	t.Cleanup(func() { checkFull(t, p, c) })
}

// TestCloneReshaped: a clone Clone made on its usual path (its built-in
// NetBuffer over its built-in MDL) that a retreat then reshapes gives its
// header MDL back when freed, and its descriptor comes back plain.
func TestCloneReshaped(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, FrameSize: 512, Headroom: 64})
	c := newCache(t, p, 4)
	_, mdls0 := p.ExtraInUse()
	orig := mustAllocate(t, c, 64, 60)
	cl := mustClone(t, c, orig)
	cnb := cl.FirstNetBuffer()
	if cnb.MdlChain() == nil || cnb.MdlChain().Next() != nil {
		t.Fatal("clone of a one-MDL original has more than one MDL")
	}
	// A clone has no backfill: the retreat prepends a header MDL.
	must(t, cnb.Retreat(14, 0), "Retreat on the clone")
	if _, mdls := p.ExtraInUse(); mdls != mdls0+1 || cnb.MdlChain().Next() == nil {
		t.Fatalf("after the retreat: %d extra MDLs in use (want %d), chain of one: %v", mdls, mdls0+1, cnb.MdlChain().Next() == nil)
	}
	must(t, c.FreeClone(cl), "FreeClone")
	if _, mdls := p.ExtraInUse(); mdls != mdls0 {
		t.Fatalf("after FreeClone: %d extra MDLs in use, want %d", mdls, mdls0)
	}
	must(t, c.Free(orig), "Free")
	for range 2 {
		l := mustAllocate(t, c, 64, 60)
		if l.IsClone() || l.Parent() != nil || l.Context() == nil {
			t.Errorf("reallocated descriptor %d: IsClone %v, parent %p, context %v", l.Index(), l.IsClone(), l.Parent(), l.Context())
		}
		if m := l.FirstNetBuffer().MdlChain(); m == nil || m.Next() != nil || len(m.Bytes()) != len(p.Frames().Frame(l.Index())) {
			t.Errorf("reallocated descriptor %d does not describe its own frame alone", l.Index())
		}
		defer func() { must(t, c.Free(l), "Free") }()
	}
	t.Cleanup(func() { checkFull(t, p, c) })
}
