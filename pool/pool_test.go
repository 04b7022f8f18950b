package pool

import (
	"errors"
	"math"
	"testing"
	"time"
)

// item is the element type most tests use: it remembers the index init gave
// it, so a test can tell objects apart by content as well as by address.
type item struct {
	idx  int
	data [24]byte
}

// newItemPool returns a full pool of n items whose idx field is their index.
func newItemPool(t testing.TB, n int) *Pool[item] {
	t.Helper()
	p, err := New(n, func(i int, v *item) { v.idx = i })
	if err != nil {
		t.Fatalf("New(%d): %v", n, err)
	}
	return p
}

// checkCounts fails the test unless the pool reports avail objects in its
// ring and the rest in use.
func checkCounts[T any](t testing.TB, p *Pool[T], avail int) {
	t.Helper()
	if got := p.Available(); got != avail {
		t.Fatalf("Available() = %d, want %d", got, avail)
	}
	if got, want := p.InUse(), p.Cap()-avail; got != want {
		t.Fatalf("InUse() = %d, want %d (Cap %d)", got, want, p.Cap())
	}
}

// withTimeout runs f and fails the test if it does not return within d: a
// guard for operations that must never block.
func withTimeout(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (blocked?)", what, d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{"zero", 0},
		{"negative", -1},
		{"minInt", math.MinInt},
		{"aboveMax", MaxObjects + 1},
		{"maxInt", math.MaxInt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			p, err := New(tc.n, func(int, *item) { called = true })
			if !errors.Is(err, ErrSize) {
				t.Fatalf("New(%d) error = %v, want ErrSize", tc.n, err)
			}
			if p != nil {
				t.Fatalf("New(%d) returned a pool with an error", tc.n)
			}
			if called {
				t.Fatalf("New(%d) called init despite failing", tc.n)
			}
		})
	}
}

func TestNewSizes(t *testing.T) {
	// Powers of two and the sizes around them: the free ring is rounded up
	// to a power of two and must still hold exactly n objects.
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 1000} {
		p, err := New[item](n, nil)
		if err != nil {
			t.Fatalf("New(%d): %v", n, err)
		}
		if p.Cap() != n {
			t.Fatalf("New(%d).Cap() = %d", n, p.Cap())
		}
		checkCounts(t, p, n)
	}
}

func TestNewCacheErrors(t *testing.T) {
	p := newItemPool(t, 8)
	for _, size := range []int{math.MinInt, -1, 0, 1} {
		c, err := p.NewCache(size)
		if !errors.Is(err, ErrCacheSize) {
			t.Fatalf("NewCache(%d) error = %v, want ErrCacheSize", size, err)
		}
		if c != nil {
			t.Fatalf("NewCache(%d) returned a cache with an error", size)
		}
	}
	for _, size := range []int{2, 3, 8, 256, 1000} { // larger than the pool is allowed
		c, err := p.NewCache(size)
		if err != nil {
			t.Fatalf("NewCache(%d): %v", size, err)
		}
		if c.Len() != 0 {
			t.Fatalf("NewCache(%d).Len() = %d, want 0", size, c.Len())
		}
		if c.Pool() != p {
			t.Fatalf("NewCache(%d).Pool() is not the pool it was made from", size)
		}
	}
	checkCounts(t, p, 8) // making caches takes nothing from the pool
}

func TestNewInitOncePerObject(t *testing.T) {
	const n = 100
	calls := make([]int, n)
	ptrs := make([]*item, n)
	p, err := New(n, func(i int, v *item) {
		if i < 0 || i >= n {
			t.Fatalf("init called with index %d", i)
		}
		calls[i]++
		ptrs[i] = v
		v.idx = i
		v.data[0] = byte(i)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range calls {
		if c != 1 {
			t.Fatalf("init called %d times for index %d, want 1", c, i)
		}
		if ptrs[i] != p.At(i) {
			t.Fatalf("init got %p for index %d, At(%d) = %p", ptrs[i], i, i, p.At(i))
		}
	}
	// What init set is what Get hands out.
	seen := make([]bool, n)
	for range n {
		v, ok := p.Get()
		if !ok {
			t.Fatal("Get failed on a pool that should be full")
		}
		if v.data[0] != byte(v.idx) || p.Index(v) != v.idx {
			t.Fatalf("object at index %d carries idx %d, data[0] %d", p.Index(v), v.idx, v.data[0])
		}
		seen[v.idx] = true
	}
	for i, s := range seen {
		if !s {
			t.Fatalf("object %d never handed out", i)
		}
	}

	// A nil init is allowed: objects start as zero values.
	q, err := New[item](3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if *q.At(i) != (item{}) {
			t.Fatalf("object %d of a pool with nil init is not zero: %+v", i, *q.At(i))
		}
	}
}

func TestGetUntilExhausted(t *testing.T) {
	for _, n := range []int{1, 3, 8, 100} {
		p := newItemPool(t, n)
		got := make([]*item, 0, n)
		seen := make(map[*item]bool)
		for i := range n {
			v, ok := p.Get()
			if !ok || v == nil {
				t.Fatalf("n=%d: Get %d failed with %d available", n, i, p.Available())
			}
			if seen[v] {
				t.Fatalf("n=%d: object %d handed out twice", n, p.Index(v))
			}
			if !p.Owns(v) {
				t.Fatalf("n=%d: Get returned %p, which the pool does not own", n, v)
			}
			seen[v] = true
			got = append(got, v)
			checkCounts(t, p, n-i-1)
		}
		if p.InUse() != p.Cap() {
			t.Fatalf("n=%d: InUse() = %d, want Cap() = %d", n, p.InUse(), p.Cap())
		}
		withTimeout(t, 10*time.Second, "Get on an empty pool", func() {
			for range 3 {
				if v, ok := p.Get(); ok || v != nil {
					t.Errorf("n=%d: Get on an empty pool = %p, %v; want nil, false", n, v, ok)
				}
			}
		})
		checkCounts(t, p, 0)

		for i, v := range got {
			p.Put(v)
			checkCounts(t, p, i+1)
		}
		checkCounts(t, p, n)

		// The pool is usable again, and hands out every object once more.
		clear(seen)
		for range n {
			v, ok := p.Get()
			if !ok || seen[v] {
				t.Fatalf("n=%d: second round: Get = %p, %v (seen before: %v)", n, v, ok, seen[v])
			}
			seen[v] = true
		}
		if _, ok := p.Get(); ok {
			t.Fatalf("n=%d: second round: pool hands out more than Cap objects", n)
		}
	}
}

func TestDistinctObjects(t *testing.T) {
	const n = 50
	p := newItemPool(t, n)
	all := make([]*item, n)
	if !p.GetBulk(all) {
		t.Fatal("GetBulk(Cap) failed on a full pool")
	}
	idx := make([]bool, n)
	for _, v := range all {
		i := p.Index(v)
		if i < 0 || idx[i] {
			t.Fatalf("Index = %d: out of range or handed out twice", i)
		}
		idx[i] = true
		// Objects are distinct in memory too: write through every pointer,
		// then read back.
		v.data[1] = byte(i)
	}
	for _, v := range all {
		if v.data[1] != byte(p.Index(v)) {
			t.Fatalf("object %d was overwritten through another pointer", p.Index(v))
		}
	}
	// Put back in an order different from the one they came out in, then
	// cycle a few times: the set handed out stays the set of all objects.
	for i := n - 1; i >= 0; i -= 2 {
		p.Put(all[i])
	}
	for i := n - 2; i >= 0; i -= 2 {
		p.Put(all[i])
	}
	for round := range 3 {
		out := make([]*item, n)
		if !p.GetBulk(out) {
			t.Fatalf("round %d: GetBulk(Cap) failed", round)
		}
		clear(idx)
		for _, v := range out {
			i := p.Index(v)
			if i < 0 || idx[i] {
				t.Fatalf("round %d: Index = %d: out of range or twice", round, i)
			}
			idx[i] = true
		}
		p.PutBulk(out)
	}
}

func TestGetBulkAllOrNothing(t *testing.T) {
	const n = 10
	p := newItemPool(t, n)
	var held []*item

	get := func(k int, want bool) {
		t.Helper()
		before := p.Available()
		out := make([]*item, k)
		if ok := p.GetBulk(out); ok != want {
			t.Fatalf("GetBulk(%d) with %d available = %v, want %v", k, before, ok, want)
		}
		if !want {
			checkCounts(t, p, before) // a failed GetBulk takes nothing
			return
		}
		for _, v := range out {
			if v == nil || !p.Owns(v) {
				t.Fatalf("GetBulk(%d) returned %p", k, v)
			}
		}
		held = append(held, out...)
		checkCounts(t, p, before-k)
	}

	get(n+1, false)
	get(4, true)
	get(7, false)
	get(0, true) // an empty request succeeds and takes nothing
	get(6, true)
	get(1, false)
	get(0, true)
	checkCounts(t, p, 0)

	seen := make(map[*item]bool)
	for _, v := range held {
		if seen[v] {
			t.Fatalf("object %d handed out twice", p.Index(v))
		}
		seen[v] = true
	}

	p.PutBulk(nil) // empty: no-op
	checkCounts(t, p, 0)
	p.PutBulk(held[:3])
	held = held[3:]
	checkCounts(t, p, 3)
	get(4, false)
	get(3, true)
	p.PutBulk(held)
	checkCounts(t, p, n)
}

func TestPutBulk(t *testing.T) {
	const n = 33
	p := newItemPool(t, n)
	all := make([]*item, n)
	if !p.GetBulk(all) {
		t.Fatal("GetBulk(Cap) failed")
	}
	checkCounts(t, p, 0)
	// Mix single and bulk puts of different sizes.
	p.PutBulk(all[:1])
	checkCounts(t, p, 1)
	p.Put(all[1])
	p.PutBulk(all[2:20])
	checkCounts(t, p, 20)
	p.PutBulk(all[20:])
	checkCounts(t, p, n)
	// Everything put back can be taken again, exactly once each.
	again := make([]*item, n)
	if !p.GetBulk(again) {
		t.Fatal("GetBulk(Cap) after PutBulk failed")
	}
	seen := make(map[*item]bool)
	for _, v := range again {
		if seen[v] || !p.Owns(v) {
			t.Fatalf("object %p twice or foreign after PutBulk", v)
		}
		seen[v] = true
	}
}

func TestIndexAtOwns(t *testing.T) {
	const n = 17
	p := newItemPool(t, n)
	q := newItemPool(t, n) // same type, different pool
	for i := range n {
		v := p.At(i)
		if v.idx != i {
			t.Fatalf("At(%d).idx = %d", i, v.idx)
		}
		if got := p.Index(v); got != i {
			t.Fatalf("Index(At(%d)) = %d", i, got)
		}
		if !p.Owns(v) {
			t.Fatalf("Owns(At(%d)) = false", i)
		}
		if got := q.Index(v); got != -1 || q.Owns(v) {
			t.Fatalf("other pool: Index(At(%d)) = %d, Owns = %v; want -1, false", i, got, q.Owns(v))
		}
	}
	// Objects handed out keep their index.
	for range n {
		v, ok := p.Get()
		if !ok {
			t.Fatal("Get failed")
		}
		if p.At(p.Index(v)) != v {
			t.Fatalf("At(Index(v)) != v for object %d", v.idx)
		}
	}

	var stack item
	onHeap := new(item)
	arr := make([]item, n) // a slice shaped like the pool's own
	for _, f := range []struct {
		name string
		v    *item
	}{
		{"nil", nil},
		{"stack", &stack},
		{"heap", onHeap},
		{"slice", &arr[0]},
		{"sliceEnd", &arr[n-1]},
		{"otherPool0", q.At(0)},
		{"otherPoolLast", q.At(n - 1)},
	} {
		if got := p.Index(f.v); got != -1 {
			t.Errorf("Index(%s) = %d, want -1", f.name, got)
		}
		if p.Owns(f.v) {
			t.Errorf("Owns(%s) = true", f.name)
		}
	}

	for _, i := range []int{-1, n, n + 100} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("At(%d) did not panic", i)
				}
			}()
			_ = p.At(i)
		}()
	}
}

func TestLargeElement(t *testing.T) {
	// A large element, as packet buffers are: indexes come from a division
	// by the element size, not by a power of two.
	type frame struct {
		buf [1500]byte
		n   int
	}
	const n = 9
	p, err := New(n, func(i int, v *frame) { v.n = i })
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if p.Index(p.At(i)) != i || p.At(i).n != i {
			t.Fatalf("Index(At(%d)) = %d", i, p.Index(p.At(i)))
		}
	}
	out := make([]*frame, n)
	if !p.GetBulk(out) {
		t.Fatal("GetBulk(Cap) failed")
	}
	for _, v := range out {
		if p.Index(v) != v.n {
			t.Fatalf("Index = %d for object %d", p.Index(v), v.n)
		}
	}
}

func TestNewZeroSize(t *testing.T) {
	// Every value of a zero-size type has the same address, so a pool could
	// not tell its objects apart (Index, Owns and the debug state all work
	// by address): New refuses such types.
	check := func(name string, err error, poolNil, called bool) {
		t.Helper()
		if !errors.Is(err, ErrZeroSize) {
			t.Errorf("%s: error = %v, want ErrZeroSize", name, err)
		}
		if !poolNil {
			t.Errorf("%s: returned a pool with an error", name)
		}
		if called {
			t.Errorf("%s: init called despite failing", name)
		}
	}
	var called bool
	p1, err := New(5, func(int, *struct{}) { called = true })
	check("struct{}", err, p1 == nil, called)
	p2, err := New(1, func(int, *[0]int) { called = true })
	check("[0]int", err, p2 == nil, called)
	type empty struct {
		_ [0]byte
		_ struct{}
	}
	p3, err := New(4, func(int, *empty) { called = true })
	check("empty struct", err, p3 == nil, called)

	// A bad count is still reported as such, whatever the type.
	if _, err := New[struct{}](0, nil); err == nil {
		t.Error("New[struct{}](0) succeeded")
	}
	// One byte is enough.
	if _, err := New[struct{ b byte }](3, nil); err != nil {
		t.Errorf("New of a one-byte type: %v", err)
	}
}
