package goid

import (
	"runtime"
	"sync"
	"testing"
)

func TestGetDistinctAndStable(t *testing.T) {
	a := Get()
	if a == 0 {
		t.Fatal("Get returned 0")
	}
	if b := Get(); a != b {
		t.Fatalf("Get changed on one goroutine: %d then %d", a, b)
	}
	const n = 8
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); ids[i] = Get() }()
	}
	wg.Wait()
	seen := map[uint64]bool{a: true}
	for _, id := range ids {
		if id == 0 || seen[id] {
			t.Fatalf("goroutine IDs not distinct: %v (main %d)", ids, a)
		}
		seen[id] = true
	}
}

func TestG(t *testing.T) {
	g := G()
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		if g != 0 {
			t.Fatalf("G() = %#x on %s, want 0", g, runtime.GOARCH)
		}
		return
	}
	if g == 0 {
		t.Fatal("G() = 0")
	}
	if G() != g {
		t.Fatal("G() changed on the same goroutine")
	}
	const n = 8
	seen := map[uintptr]bool{g: true}
	ch := make(chan uintptr)
	release := make(chan struct{})
	for range n {
		go func() { ch <- G(); <-release }()
	}
	for range n {
		v := <-ch
		if seen[v] {
			t.Errorf("two live goroutines share G %#x", v)
		}
		seen[v] = true
	}
	close(release)
	if a := testing.AllocsPerRun(100, func() { _ = G() }); a != 0 {
		t.Errorf("G allocates %v times", a)
	}
}
