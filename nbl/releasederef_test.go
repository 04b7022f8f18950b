package nbl_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// ReleaseDereferenceBurst is Release and Dereference together: NBLs whose
// last hold was the dropped reference leave at once, in one run; one with
// another reference stays until it is dropped; an NBL of another pool in
// the burst goes back to its own pool; and the pools are full at the end.
func TestReleaseDereferenceBurst(t *testing.T) {
	p, err := nbl.NewPool(nbl.Config{NBLs: 32, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	q, err := nbl.NewPool(nbl.Config{NBLs: 4, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p.NewCache(16)
	o := &batchOrig{}
	var ls []*nbl.NetBufferList
	for range 5 {
		l, err := c.Allocate(0, 64)
		if err != nil {
			t.Fatal(err)
		}
		l.Originator = o
		l.Reference()
		ls = append(ls, l)
	}
	ls[1].Reference() // a second reference: it stays
	f, err := q.Allocate(0, 64)
	if err != nil {
		t.Fatal(err)
	}
	f.Reference()
	ls = append(ls, f)
	c.ReleaseDereferenceBurst(ls)
	if len(o.got) != 4 || o.got[0] != ls[0] || o.got[1] != ls[2] {
		t.Fatalf("originator got %d NBLs, want 4: all but ls[1] and the other pool's", len(o.got))
	}
	if got := ls[1].RefCount(); got != 1 {
		t.Errorf("the twice-referenced NBL has %d references left, want 1", got)
	}
	if !q.Full() {
		t.Errorf("the other pool has %d NBLs in use", q.InUse())
	}
	ls[1].Dereference() // it was released: it leaves now
	if len(o.got) != 5 {
		t.Errorf("originator got %d NBLs, want 5", len(o.got))
	}
	c.Flush()
	if !p.Full() {
		t.Errorf("%d NBLs in use", p.InUse())
	}
}

// ReleaseDereferenceBurst refuses, with a panic and nothing dropped from
// the bad NBL, one without a reference and one released already; the NBLs
// before it in the burst are done.
func TestReleaseDereferenceBurstMisuse(t *testing.T) {
	p, err := nbl.NewPool(nbl.Config{NBLs: 8, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p.NewCache(4)
	expect := func(what string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), "ReleaseDereference") {
				t.Fatalf("%s: recovered %v, want a ReleaseDereference panic", what, r)
			}
		}()
		f()
	}
	good, _ := c.Allocate(0, 64)
	good.Reference()
	noRef, _ := c.Allocate(0, 64)
	expect("no reference", func() { c.ReleaseDereferenceBurst([]*nbl.NetBufferList{good, noRef}) })
	c.Flush() // InUse counts what the cache keeps
	if good.RefCount() != 0 || p.InUse() != 1 {
		t.Errorf("before the bad NBL: %d references left, %d NBLs in use (want 0, 1)", good.RefCount(), p.InUse())
	}
	released, _ := c.Allocate(0, 64)
	released.Reference()
	c.Release(released)
	expect("released twice", func() { c.ReleaseDereferenceBurst([]*nbl.NetBufferList{released}) })
	if released.RefCount() != 1 {
		t.Errorf("the released NBL lost its reference: %d", released.RefCount())
	}
	released.Dereference()
	if err := c.Free(noRef); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	if !p.Full() {
		t.Errorf("%d NBLs in use", p.InUse())
	}
}
