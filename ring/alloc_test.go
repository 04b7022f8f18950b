package ring

import (
	"testing"
)

// TestNoAllocs checks that no operation allocates, whether it moves items
// or finds the ring full or empty, for a single-goroutine and a
// multi-goroutine mode with a pointer element type.
func TestNoAllocs(t *testing.T) {
	const (
		capacity = 1 << 14
		runs     = 100
		batch    = 8
	)
	for _, mode := range []Mode{SPSC, MPMC} {
		t.Run(mode.String(), func(t *testing.T) {
			r, err := New[*int](capacity, mode)
			if err != nil {
				t.Fatal(err)
			}
			item := new(int)
			in := make([]*int, batch)
			for i := range in {
				in[i] = item
			}
			out := make([]*int, batch)
			// fill and empty check their counts exactly, and are bounded,
			// so that a broken ring fails rather than hangs.
			fill := func() {
				want := capacity - r.Len()
				n := 0
				for n <= capacity && r.Enqueue(item) {
					n++
				}
				if n != want {
					t.Fatalf("%v: filling took %d Enqueue calls, want %d", mode, n, want)
				}
			}
			empty := func() {
				want := r.Len()
				n := 0
				for n <= capacity {
					if _, ok := r.Dequeue(); !ok {
						break
					}
					n++
				}
				if n != want {
					t.Fatalf("%v: emptying took %d Dequeue calls, want %d", mode, n, want)
				}
			}

			cases := []struct {
				name  string
				setup func() // puts the ring in the state the op needs
				op    func()
				ok    func() bool // reports whether the op did its work
			}{
				{"Enqueue", empty, func() { r.Enqueue(item) }, func() bool { return r.Len() == runs+1 }},
				{"Enqueue/full", fill, func() { r.Enqueue(item) }, func() bool { return r.Len() == capacity }},
				{"Dequeue", fill, func() { r.Dequeue() }, func() bool { return r.Len() == capacity-runs-1 }},
				{"Dequeue/empty", empty, func() { r.Dequeue() }, func() bool { return r.Len() == 0 }},
				{"EnqueueBulk", empty, func() { r.EnqueueBulk(in) }, func() bool { return r.Len() == (runs+1)*batch }},
				{"EnqueueBulk/full", fill, func() { r.EnqueueBulk(in) }, func() bool { return r.Len() == capacity }},
				{"DequeueBulk", fill, func() { r.DequeueBulk(out) }, func() bool { return r.Len() == capacity-(runs+1)*batch }},
				{"DequeueBulk/empty", empty, func() { r.DequeueBulk(out) }, func() bool { return r.Len() == 0 }},
				{"EnqueueBurst", empty, func() { r.EnqueueBurst(in) }, func() bool { return r.Len() == (runs+1)*batch }},
				{"EnqueueBurst/full", fill, func() { r.EnqueueBurst(in) }, func() bool { return r.Len() == capacity }},
				{"DequeueBurst", fill, func() { r.DequeueBurst(out) }, func() bool { return r.Len() == capacity-(runs+1)*batch }},
				{"DequeueBurst/empty", empty, func() { r.DequeueBurst(out) }, func() bool { return r.Len() == 0 }},
				{"Len", fill, func() { _ = r.Len() }, func() bool { return r.Len() == capacity }},
				{"Free", fill, func() { _ = r.Free() }, func() bool { return r.Free() == 0 }},
			}
			for _, tc := range cases {
				tc.setup()
				allocs := testing.AllocsPerRun(runs, tc.op)
				if allocs != 0 {
					t.Fatalf("%v %s: %v allocations per call, want 0", mode, tc.name, allocs)
				}
				if !tc.ok() {
					t.Fatalf("%v %s: Len %d after %d calls: the op did not do what was measured", mode, tc.name, r.Len(), runs+1)
				}
			}
		})
	}
}
