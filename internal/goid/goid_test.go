package goid

import (
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
