package vswitch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestFDBInsertNeverShowsAWrongPort: while one goroutine learns new
// addresses on port index 1, another looks up the addresses being learnt.
// A lookup may find an address unknown (-1) until its entry is complete,
// never on another port. (Regression: a slot's key was published before its
// value, and a reader in between read the zero value as port index 0; the
// switch then dropped frames as having no destination.)
func TestFDBInsertNeverShowsAWrongPort(t *testing.T) {
	const n = 1 << 15
	tab := newFDB(2*n, []int64{n, n}, 300)
	mac := func(i uint64) []byte { return []byte{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)} }
	var next atomic.Uint64
	var wrong atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := next.Load()
			for d := uint64(0); d < 3; d++ {
				if p := tab.lookup(1, mac(i+d), 0); p != -1 && p != 1 {
					wrong.Add(1)
				}
			}
			runtime.Gosched()
		}
	}()
	for i := uint64(0); i < n; i++ {
		next.Store(i)
		if r := tab.learn(1, mac(i), 1, 0); r != learnInserted && r != learnTableFull {
			t.Fatalf("learn %d: result %d", i, r)
		}
	}
	close(stop)
	wg.Wait()
	if w := wrong.Load(); w != 0 {
		t.Fatalf("%d lookups found an address on port index 0 while it was being learnt on 1", w)
	}
	for i := uint64(0); i < 64; i++ {
		if p := tab.lookup(1, mac(i), 0); p != 1 && p != -1 {
			t.Errorf("address %d on port %d after learning", i, p)
		}
	}
}

// TestFDBTakeOverAged: an aged entry's slot is taken over by a new
// address, which then reads as its own port, and the ports' counts follow.
func TestFDBTakeOverAged(t *testing.T) {
	tab := newFDB(1, []int64{4, 4}, 10) // one slot
	a := []byte{2, 0, 0, 0, 0, 1}
	b := []byte{2, 0, 0, 0, 0, 2}
	if r := tab.learn(1, a, 0, 0); r != learnInserted {
		t.Fatalf("learn a: %d", r)
	}
	if r := tab.learn(1, b, 1, 5); r != learnTableFull {
		t.Fatalf("learn b while a is fresh: %d, want table full", r)
	}
	if r := tab.learn(1, b, 1, 11); r != learnInserted {
		t.Fatalf("learn b after a aged: %d", r)
	}
	if p := tab.lookup(1, b, 11); p != 1 {
		t.Errorf("b on port %d, want 1", p)
	}
	if p := tab.lookup(1, a, 11); p != -1 {
		t.Errorf("a on port %d, want -1", p)
	}
	if tab.entries(0) != 0 || tab.entries(1) != 1 {
		t.Errorf("entries %d and %d, want 0 and 1", tab.entries(0), tab.entries(1))
	}
}
