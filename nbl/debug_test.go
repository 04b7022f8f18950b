//go:build nblpipe_debug

package nbl_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// mustPanic runs f and fails unless it panics with a message that contains
// want.
func mustPanic(t *testing.T, what, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("%s did not panic", what)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("%s panicked with %q, want a message containing %q", what, msg, want)
		}
	}()
	f()
}

func TestDebugChecksOn(t *testing.T) {
	if !nbl.DebugChecks {
		t.Fatal("DebugChecks is false with the nblpipe_debug tag")
	}
}

func TestDebugDoubleFreePanics(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	o := newCountingOriginator()

	l := mustAllocate(t, c, 128, 10)
	l.Originator, l.OriginatorContext = o, 1
	idx := fmt.Sprint(l.Index())
	must(t, c.Free(l), "Free")
	mustPanic(t, "a second Free", "descriptor "+idx, func() { _ = c.Free(l) })
	mustPanic(t, "a second Free through the pool", "after it was freed", func() { _ = p.Free(l) })
	mustPanic(t, "Release after Free", "after it was freed", func() { c.Release(l) })
	if o.count(1) != 1 {
		t.Fatalf("the Originator was told %d times, want 1", o.count(1))
	}

	orig := mustAllocate(t, c, 128, 10)
	cl := mustClone(t, c, orig)
	must(t, c.FreeClone(cl), "FreeClone")
	mustPanic(t, "a second FreeClone", "after it was freed", func() { _ = c.FreeClone(cl) })
	if orig.ChildRefCount() != 0 {
		t.Fatalf("the refused FreeClone changed ChildRefCount to %d", orig.ChildRefCount())
	}
	must(t, c.Free(orig), "Free")

	l = mustAllocate(t, c, 0, 0)
	c.Release(l)
	mustPanic(t, "a second Release", "after it was freed", func() { c.Release(l) })
	checkFull(t, p, c)
}

func TestDebugUseAfterFreePanics(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 10)
	nb := l.FirstNetBuffer()
	must(t, c.Free(l), "Free")

	if nb.DataLength() != 0xDEADBEEF || nb.DataOffset() != 0xDEADBEEF || l.FirstNetBuffer() != nil {
		t.Fatalf("freed descriptor not poisoned: DataOffset %#x DataLength %#x", nb.DataOffset(), nb.DataLength())
	}
	for _, tc := range []struct {
		what string
		f    func()
	}{
		{"Retreat", func() { _ = nb.Retreat(14, 0) }},
		{"Advance", func() { _ = nb.Advance(1, false) }},
		{"Clone", func() { _, _ = c.Clone(l) }},
		{"Pool.Clone", func() { _, _ = p.Clone(l) }},
		{"Reference", func() { l.Reference() }},
		{"Dereference", func() { l.Dereference() }},
		{"AppendNetBuffer", func() { _, _ = c.AppendNetBuffer(l, make([]byte, 8), 0, 8) }},
		{"Release", func() { c.Release(l) }},
	} {
		mustPanic(t, tc.what+" of a freed NBL", "after it was freed", tc.f)
	}
	if l.RefCount() != 0 || l.ChildRefCount() != 0 {
		t.Fatal("a refused use changed the freed descriptor's counts")
	}
	nbs, mdls := p.ExtraInUse()
	if nbs != 0 || mdls != 0 {
		t.Fatal("a refused use took an extra NetBuffer or MDL")
	}
	checkFull(t, p, c)
}

func TestDebugFreeHeldPanics(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8})
	c := newCache(t, p, 2)
	o := newCountingOriginator()
	orig := mustAllocate(t, c, 128, 10)
	orig.Originator, orig.OriginatorContext = o, 1
	clone := mustClone(t, c, orig)
	grandchild := mustClone(t, c, clone)

	mustPanic(t, "Free of a parent with a live clone", "clones", func() { _ = c.Free(orig) })
	mustPanic(t, "Pool.Free of a parent with a live clone", "clones", func() { _ = p.Free(orig) })
	mustPanic(t, "FreeBurst over a parent with a live clone", "clones", func() { _, _ = c.FreeBurst([]*nbl.NetBufferList{orig}) })
	mustPanic(t, "FreeClone of a clone with a live clone", "clones", func() { _ = c.FreeClone(clone) })
	if orig.ChildRefCount() != 1 || clone.ChildRefCount() != 1 || o.count(1) != 0 {
		t.Fatal("a refused Free changed the clone tree")
	}
	must(t, c.FreeClone(grandchild), "FreeClone")
	must(t, c.FreeClone(clone), "FreeClone")

	orig.Reference()
	mustPanic(t, "Free of a referenced NBL", "references", func() { _ = c.Free(orig) })
	if orig.RefCount() != 1 || o.count(1) != 0 {
		t.Fatal("a refused Free changed the reference count")
	}
	orig.Dereference()
	must(t, c.Free(orig), "Free")
	if o.count(1) != 1 {
		t.Fatalf("returned %d times", o.count(1))
	}
	checkFull(t, p, c)
}
