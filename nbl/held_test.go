//go:build !nblpipe_debug

package nbl_test

// Free and FreeClone of an NBL that is still held return
// ErrInvalidParameter in normal builds; nblpipe_debug builds panic instead
// (debug_test.go), so these tests are left out of them.

import (
	"errors"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

func TestDebugChecksOff(t *testing.T) {
	if nbl.DebugChecks {
		t.Fatal("DebugChecks is true without the nblpipe_debug tag")
	}
}

func TestFreeRefusesHeld(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8})
	c := newCache(t, p, 4)
	o := newCountingOriginator()
	orig := mustAllocate(t, c, 128, 32)
	orig.Originator, orig.OriginatorContext = o, 1
	orig.FirstNetBuffer().CopyIn(0, pattern(0, 32))
	clone := mustClone(t, c, orig)
	grandchild := mustClone(t, c, clone)

	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, nbl.ErrInvalidParameter) || nbl.StatusOf(err) != nbl.StatusInvalidParameter {
			t.Fatalf("%s = %v, want STATUS_INVALID_PARAMETER", what, err)
		}
		if o.count(1) != 0 {
			t.Fatalf("%s released the NBL", what)
		}
		if orig.ChildRefCount() != 1 || clone.ChildRefCount() != 1 || clone.Parent() != orig || grandchild.Parent() != clone {
			t.Fatalf("%s changed the clone tree", what)
		}
		if orig.FirstNetBuffer().DataLength() != 32 || grandchild.FirstNetBuffer().DataLength() != 32 {
			t.Fatalf("%s changed a NetBuffer", what)
		}
	}
	refused("Free of an NBL with a live clone", c.Free(orig))
	refused("Pool.Free of an NBL with a live clone", p.Free(orig))
	refused("FreeClone of a clone with a live clone", c.FreeClone(clone))
	refused("Pool.FreeClone of a clone with a live clone", p.FreeClone(clone))

	other := mustAllocate(t, c, 0, 0)
	n, err := c.FreeBurst([]*nbl.NetBufferList{other, orig, other})
	if n != 1 {
		t.Fatalf("FreeBurst freed %d, want 1 (it stops at the held NBL)", n)
	}
	refused("FreeBurst over a held NBL", err)

	must(t, c.FreeClone(grandchild), "FreeClone")
	must(t, c.FreeClone(clone), "FreeClone")

	// A reference holds it too.
	orig.Reference()
	if err := c.Free(orig); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("Free of a referenced NBL = %v", err)
	}
	if orig.RefCount() != 1 || o.count(1) != 0 {
		t.Fatal("refused Free changed the reference count or released it")
	}
	orig.Dereference()
	must(t, c.Free(orig), "Free once nothing holds it")
	if o.count(1) != 1 {
		t.Fatalf("returned %d times", o.count(1))
	}
	checkFull(t, p, c)
}
