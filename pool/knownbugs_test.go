//go:build nblpipe_knownbugs

// Reproductions of bugs found while writing the tests, kept out of the
// normal runs so that the suite stays green until they are fixed:
//
//	go test -tags nblpipe_knownbugs -run KnownBug ./pool
//	go test -tags nblpipe_knownbugs,nblpipe_debug -run KnownBug ./pool
//
// Delete the tag line (and this file's entry in the report) once fixed.

package pool

import (
	"errors"
	"math"
	"testing"
)

// TestKnownBugZeroSizeDebug: all objects of a zero-size type have the same
// address, so Pool.index maps every one of them to 0. Under nblpipe_debug
// they share debug state slot 0: the second Get of a Pool[struct{}] panics
// "object 0 handed out while already in use", although the pool has free
// objects and nothing was misused.
func TestKnownBugZeroSizeDebug(t *testing.T) {
	p, err := New[struct{}](2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Get of the second zero-size object panicked: %v", r)
		}
	}()
	a, ok1 := p.Get()
	b, ok2 := p.Get() // panics under nblpipe_debug
	if !ok1 || !ok2 {
		t.Fatal("Get failed on a pool with 2 free objects")
	}
	p.Put(a)
	p.Put(b) // would panic "double Put of object 0" under nblpipe_debug
	if p.Available() != 2 {
		t.Fatalf("Available() = %d, want 2", p.Available())
	}
}

// TestKnownBugZeroSizeIndex: Index(At(i)) is 0 for every i of a zero-size
// pool, against "Objects keep their index", and Owns accepts any pointer to
// a zero-size value (new(struct{}) has the same address).
func TestKnownBugZeroSizeIndex(t *testing.T) {
	p, err := New[struct{}](3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if got := p.Index(p.At(i)); got != i {
			t.Errorf("Index(At(%d)) = %d", i, got)
		}
	}
	if p.Owns(new(struct{})) {
		t.Errorf("Owns(new(struct{})) = true for a value that is not the pool's")
	}
}

// TestKnownBugSlabFrameSizeOverflow: for FrameSize within 63 of MaxInt the
// rounding to a multiple of 64 overflows to a negative stride, which
// passes the MaxSlabBytes check (it only compares stride > limit); NewSlab
// then fails in mmap with EINVAL instead of returning ErrSlabConfig.
func TestKnownBugSlabFrameSizeOverflow(t *testing.T) {
	cfg := SlabConfig{Frames: 1, FrameSize: math.MaxInt}
	s, err := NewSlab(cfg)
	if s != nil {
		s.Close()
	}
	if !errors.Is(err, ErrSlabConfig) {
		t.Fatalf("NewSlab(%+v) error = %v, want ErrSlabConfig", cfg, err)
	}
}
