package nbl_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// TestLend: a cache lent to its pool serves the pool's own methods on the
// lending goroutine only (what they free lands in the cache, not the
// shared ring); one goroutine at a time may lend; Unlend ends it; other
// goroutines keep using the shared ring concurrently.
func TestLend(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("no cheap goroutine identity on " + runtime.GOARCH)
	}
	p, err := nbl.NewPool(nbl.Config{NBLs: 256, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p.NewCache(64)
	other, _ := p.NewCache(64)
	if c.Lent() {
		t.Fatal("Lent before Lend")
	}
	if !c.Lend() {
		t.Fatal("Lend refused on a pool with no lender")
	}
	if !c.Lent() || other.Lent() {
		t.Fatalf("after c.Lend: c.Lent %v, other.Lent %v; want true, false", c.Lent(), other.Lent())
	}
	if !c.Lend() {
		t.Fatal("a second Lend of the same cache on the same goroutine refused")
	}
	if other.Lend() {
		t.Fatal("a second cache of the pool was lent on the same goroutine")
	}
	done := make(chan bool)
	go func() { done <- other.Lend() }()
	if <-done {
		t.Fatal("another goroutine lent a cache of a pool already lent")
	}
	go func() { done <- c.Lent() }()
	if <-done {
		t.Fatal("c reported lent on a goroutine that did not lend it")
	}
	// Pool-level allocate and free go through c: the descriptors stay in
	// its stack, so the shared ring sees them as in use.
	var ls []*nbl.NetBufferList
	for range 8 {
		l, err := p.Allocate(0, 64)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		if err := p.Free(l); err != nil {
			t.Fatal(err)
		}
	}
	if p.Full() {
		t.Error("frees through the lent cache reached the shared ring")
	}
	// Meanwhile other goroutines use the pool-level methods: they take the
	// shared ring.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				l, err := p.Allocate(0, 64)
				if err != nil {
					t.Error(err)
					return
				}
				l.Reference()
				p.Release(l)
				l.Dereference()
			}
		}()
	}
	for range 1000 {
		l, err := p.Allocate(0, 64)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := p.Clone(l)
		if err != nil {
			t.Fatal(err)
		}
		p.Release(l)
		if err := p.FreeClone(cl); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	c.Unlend()
	if c.Lent() {
		t.Error("Lent after Unlend")
	}
	c.Flush()
	if !p.Full() {
		t.Errorf("%d NBLs in use after Unlend and Flush", p.InUse())
	}
	go func() { done <- other.Lend() }()
	if !<-done {
		t.Error("after Unlend, another goroutine could not lend")
	}
}

// TestLendAllocs: the pool-level methods through a lent cache allocate
// nothing.
func TestLendAllocs(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("no cheap goroutine identity")
	}
	p, _ := nbl.NewPool(nbl.Config{NBLs: 64, FrameSize: 512})
	c, _ := p.NewCache(16)
	c.Lend()
	defer c.Unlend()
	if a := testing.AllocsPerRun(200, func() {
		l, _ := p.Allocate(0, 64)
		cl, _ := p.Clone(l)
		l.Reference()
		p.Release(l)
		_ = p.FreeClone(cl)
		l.Dereference()
	}); a != 0 {
		t.Errorf("%v allocations", a)
	}
}
