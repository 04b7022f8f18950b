package pool

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// newItemCache returns an empty cache of the given size in front of p.
func newItemCache(t testing.TB, p *Pool[item], size int) *Cache[item] {
	t.Helper()
	c, err := p.NewCache(size)
	if err != nil {
		t.Fatalf("NewCache(%d): %v", size, err)
	}
	return c
}

// checkCache fails the test unless the cache holds clen objects and the
// pool's ring avail.
func checkCache(t testing.TB, c *Cache[item], clen, avail int) {
	t.Helper()
	if got := c.Len(); got != clen {
		t.Fatalf("Cache.Len() = %d, want %d (Available %d)", got, clen, c.Pool().Available())
	}
	if got := c.Pool().Available(); got != avail {
		t.Fatalf("Pool.Available() = %d, want %d (Cache.Len %d)", got, avail, c.Len())
	}
}

// takeFromPool takes k objects straight from the pool, failing the test if
// it cannot.
func takeFromPool(t testing.TB, p *Pool[item], k int) []*item {
	t.Helper()
	out := make([]*item, k)
	if !p.GetBulk(out) {
		t.Fatalf("GetBulk(%d) failed with %d available", k, p.Available())
	}
	return out
}

func TestCacheGetRefillsHalf(t *testing.T) {
	t.Run("even", func(t *testing.T) {
		p := newItemPool(t, 32)
		c := newItemCache(t, p, 8) // half = 4
		for round := range 3 {
			avail := 32 - 4*round
			if _, ok := c.Get(); !ok {
				t.Fatalf("round %d: Get failed", round)
			}
			// One bulk dequeue of half the cache; one of them handed out.
			checkCache(t, c, 3, avail-4)
			for i := range 3 {
				if _, ok := c.Get(); !ok {
					t.Fatalf("round %d: Get %d from the cache failed", round, i)
				}
				checkCache(t, c, 2-i, avail-4) // served from the cache alone
			}
		}
		if p.InUse() != 12 {
			t.Fatalf("InUse() = %d, want 12", p.InUse())
		}
	})
	t.Run("odd", func(t *testing.T) {
		p := newItemPool(t, 32)
		c := newItemCache(t, p, 7) // half = 3
		if _, ok := c.Get(); !ok {
			t.Fatal("Get failed")
		}
		checkCache(t, c, 2, 29)
	})
	t.Run("size2", func(t *testing.T) {
		p := newItemPool(t, 4)
		c := newItemCache(t, p, 2) // half = 1: every refill is one object
		for i := range 4 {
			if _, ok := c.Get(); !ok {
				t.Fatalf("Get %d failed", i)
			}
			checkCache(t, c, 0, 3-i)
		}
		if _, ok := c.Get(); ok {
			t.Fatal("Get succeeded on an exhausted pool")
		}
	})
	t.Run("poolShort", func(t *testing.T) {
		// The pool has fewer than half the cache: the refill takes what
		// there is.
		p := newItemPool(t, 2)
		c := newItemCache(t, p, 8)
		if _, ok := c.Get(); !ok {
			t.Fatal("Get failed")
		}
		checkCache(t, c, 1, 0)
		if _, ok := c.Get(); !ok {
			t.Fatal("Get from the cache failed")
		}
		checkCache(t, c, 0, 0)
		if v, ok := c.Get(); ok || v != nil {
			t.Fatalf("Get with cache and pool empty = %p, %v; want nil, false", v, ok)
		}
		checkCache(t, c, 0, 0)
	})
}

func TestCachePutFlushesHalf(t *testing.T) {
	p := newItemPool(t, 32)
	c := newItemCache(t, p, 8) // half = 4
	held := takeFromPool(t, p, 16)
	for i := range 8 {
		c.Put(held[i])
		checkCache(t, c, i+1, 16) // room in the cache: the pool is not touched
	}
	// The cache is full: the ninth Put flushes the four oldest first.
	c.Put(held[8])
	checkCache(t, c, 5, 20)
	// The cache keeps the most recently put objects and hands them out
	// last in, first out.
	for i := 8; i >= 4; i-- {
		v, ok := c.Get()
		if !ok || v != held[i] {
			t.Fatalf("Get = object %d (ok %v), want the object put %d-th (index %d)", v.idx, ok, i, held[i].idx)
		}
	}
	checkCache(t, c, 0, 20)
	// The four flushed objects are back in the pool, not lost.
	flushed := make(map[*item]bool)
	for _, v := range held[:4] {
		flushed[v] = true
	}
	rest := takeFromPool(t, p, 20)
	for _, v := range rest {
		delete(flushed, v)
	}
	if len(flushed) != 0 {
		t.Fatalf("%d flushed objects did not reach the pool", len(flushed))
	}

	// Put then Get of one object is served by the cache alone.
	c.Put(rest[0])
	checkCache(t, c, 1, 0)
	if v, ok := c.Get(); !ok || v != rest[0] {
		t.Fatal("Get after Put did not return the object just put")
	}
	checkCache(t, c, 0, 0)
}

func TestCacheGetBulk(t *testing.T) {
	p := newItemPool(t, 64)
	c := newItemCache(t, p, 8) // half = 4
	got := make(map[*item]bool)
	getBulk := func(k, clen, avail int) {
		t.Helper()
		out := make([]*item, k)
		if !c.GetBulk(out) {
			t.Fatalf("GetBulk(%d) failed", k)
		}
		for _, v := range out {
			if v == nil || !p.Owns(v) || got[v] {
				t.Fatalf("GetBulk(%d) returned %p: nil, foreign or already handed out", k, v)
			}
			got[v] = true
		}
		checkCache(t, c, clen, avail)
	}
	// Empty cache: refill to the request plus half the cache, in one bulk
	// dequeue, then serve from the cache.
	getBulk(3, 4, 57)
	getBulk(4, 0, 57) // from the cache alone
	getBulk(2, 4, 51) // refill min(2+4, 8) = 6, hand out 2
	getBulk(5, 3, 47) // have 4: refill to min(5+4, 8) = 8, hand out 5
	getBulk(8, 0, 42) // a request of the cache's size still goes through it
	getBulk(0, 0, 42) // an empty request succeeds and moves nothing

	// Larger than the cache: straight from the pool, the cache untouched.
	c.Put(takeFromPool(t, p, 1)[0])
	checkCache(t, c, 1, 41)
	getBulk(9, 1, 32)
	getBulk(32, 1, 0)
	if p.InUse()-c.Len() != len(got) {
		t.Fatalf("InUse %d - Len %d != %d objects handed out", p.InUse(), c.Len(), len(got))
	}
}

func TestCacheGetBulkFailure(t *testing.T) {
	p := newItemPool(t, 10)
	c := newItemCache(t, p, 8) // half = 4
	held := takeFromPool(t, p, 5)
	checkCache(t, c, 0, 5)

	// Cache and pool together have 5 < 6: fails. The cache may have pulled
	// objects in while trying, but none is lost: pool + cache + caller's
	// objects still add up to Cap.
	out := make([]*item, 6)
	if c.GetBulk(out) {
		t.Fatal("GetBulk(6) succeeded with 5 objects free")
	}
	if got := p.Available() + c.Len() + len(held); got != p.Cap() {
		t.Fatalf("after a failed GetBulk: Available %d + Len %d + held %d = %d, want Cap %d",
			p.Available(), c.Len(), len(held), got, p.Cap())
	}
	if c.Len() != 5 || p.Available() != 0 {
		// The refill is a burst: it takes what there is.
		t.Fatalf("after a failed GetBulk: Len %d, Available %d; want 5, 0", c.Len(), p.Available())
	}

	// The five free objects can still all be taken, exactly.
	five := make([]*item, 5)
	if !c.GetBulk(five) {
		t.Fatal("GetBulk(5) failed with 5 objects free")
	}
	checkCache(t, c, 0, 0)
	seen := make(map[*item]bool)
	for _, v := range append(held, five...) {
		if seen[v] {
			t.Fatalf("object %d handed out twice", v.idx)
		}
		seen[v] = true
	}
	if len(seen) != p.Cap() {
		t.Fatalf("%d distinct objects out, want %d", len(seen), p.Cap())
	}
	if c.GetBulk(make([]*item, 1)) {
		t.Fatal("GetBulk(1) succeeded with nothing free")
	}
	checkCache(t, c, 0, 0)

	// Bypass path: larger than the cache, the pool short: fails, takes
	// nothing from the pool, leaves the cache alone.
	c.PutBulk(five[:2])
	p.PutBulk(held)
	checkCache(t, c, 2, 5)
	if c.GetBulk(make([]*item, 9)) {
		t.Fatal("GetBulk(9) succeeded")
	}
	checkCache(t, c, 2, 5)
}

func TestCachePutBulk(t *testing.T) {
	p := newItemPool(t, 64)
	c := newItemCache(t, p, 8) // half = 4
	held := takeFromPool(t, p, 40)
	next := 0
	putBulk := func(k, clen, avail int) {
		t.Helper()
		c.PutBulk(held[next : next+k])
		next += k
		checkCache(t, c, clen, avail)
	}
	putBulk(3, 3, 24)
	putBulk(4, 7, 24)
	putBulk(0, 7, 24) // empty: nothing moves
	putBulk(3, 6, 28) // room 1 < 3: flush half (4, more than the 2 needed)
	putBulk(8, 8, 34) // room 2 < 8: flush 6 (more than half), then fits exactly
	putBulk(9, 8, 43) // larger than the cache: straight to the pool
	putBulk(8, 8, 51) // flush all 8

	// The cache holds the last objects put, and hands them out in reverse.
	for i := next - 1; i >= next-8; i-- {
		v, ok := c.Get()
		if !ok || v != held[i] {
			t.Fatalf("Get = %d, want %d", v.idx, held[i].idx)
		}
	}
	checkCache(t, c, 0, 51)
	p.PutBulk(held[next:])
	checkCache(t, c, 0, 64-8)
}

func TestCacheFlush(t *testing.T) {
	p := newItemPool(t, 40)
	c := newItemCache(t, p, 16)
	c.Flush() // empty: no-op
	checkCache(t, c, 0, 40)

	var held []*item
	for range 11 {
		v, ok := c.Get()
		if !ok {
			t.Fatal("Get failed")
		}
		held = append(held, v)
	}
	out := make([]*item, 12)
	if !c.GetBulk(out) {
		t.Fatal("GetBulk failed")
	}
	held = append(held, out...)
	if c.Len() == 0 || p.InUse() == len(held) {
		t.Fatalf("test setup: expected objects parked in the cache (Len %d)", c.Len())
	}
	c.PutBulk(held[:5])
	for _, v := range held[5:] {
		c.Put(v)
	}
	c.Flush()
	checkCache(t, c, 0, 40)
	if p.InUse() != 0 {
		t.Fatalf("InUse() = %d after Flush, want 0", p.InUse())
	}
	c.Flush() // twice: no-op
	checkCache(t, c, 0, 40)

	// Nothing was duplicated on the way: the pool hands out each object once.
	all := takeFromPool(t, p, 40)
	seen := make(map[*item]bool)
	for _, v := range all {
		if seen[v] {
			t.Fatalf("object %d twice in the pool after Flush", v.idx)
		}
		seen[v] = true
	}
}

// TestCacheSharedPool puts objects through two caches and the pool directly
// in a crossed way: an object got from one cache may be put to another.
func TestCacheSharedPool(t *testing.T) {
	p := newItemPool(t, 20)
	a := newItemCache(t, p, 8)
	b := newItemCache(t, p, 4)
	x := make([]*item, 7)
	if !a.GetBulk(x) {
		t.Fatal("a.GetBulk failed")
	}
	y := make([]*item, 4)
	if !b.GetBulk(y) {
		t.Fatal("b.GetBulk failed")
	}
	b.PutBulk(x[:4])
	a.PutBulk(y)
	p.PutBulk(x[4:])
	a.Flush()
	b.Flush()
	if p.InUse() != 0 || p.Available() != p.Cap() {
		t.Fatalf("InUse %d, Available %d after flushing both caches", p.InUse(), p.Available())
	}
}

// cacheModel drives a pool, its caches and the objects a caller holds, and
// checks the accounting after every step.
type cacheModel struct {
	t      *testing.T
	rng    *rand.Rand
	p      *Pool[item]
	caches []*Cache[item]
	sizes  []int
	held   []*item
	isHeld []bool // by index
}

func (m *cacheModel) check(step int, op string) {
	m.t.Helper()
	total := m.p.Available() + len(m.held)
	for i, c := range m.caches {
		if c.Len() < 0 || c.Len() > m.sizes[i] {
			m.t.Fatalf("step %d (%s): cache %d Len %d outside [0, %d]", step, op, i, c.Len(), m.sizes[i])
		}
		total += c.Len()
	}
	if total != m.p.Cap() {
		m.t.Fatalf("step %d (%s): Available %d + cache lens + held %d = %d, want Cap %d",
			step, op, m.p.Available(), len(m.held), total, m.p.Cap())
	}
	if m.p.InUse() != m.p.Cap()-m.p.Available() {
		m.t.Fatalf("step %d (%s): InUse %d + Available %d != Cap", step, op, m.p.InUse(), m.p.Available())
	}
}

func (m *cacheModel) take(step int, op string, v *item) {
	m.t.Helper()
	i := m.p.Index(v)
	if i < 0 {
		m.t.Fatalf("step %d (%s): got %p, which the pool does not own", step, op, v)
	}
	if v.idx != i {
		m.t.Fatalf("step %d (%s): object %d carries idx %d", step, op, i, v.idx)
	}
	if m.isHeld[i] {
		m.t.Fatalf("step %d (%s): object %d handed out while already held", step, op, i)
	}
	m.isHeld[i] = true
	m.held = append(m.held, v)
}

// give removes k random held objects and returns them.
func (m *cacheModel) give(k int) []*item {
	out := make([]*item, k)
	for j := range out {
		i := m.rng.IntN(len(m.held))
		v := m.held[i]
		m.held[i] = m.held[len(m.held)-1]
		m.held = m.held[:len(m.held)-1]
		m.isHeld[m.p.Index(v)] = false
		out[j] = v
	}
	return out
}

func (m *cacheModel) cacheFree(ci int) int { return m.caches[ci].Len() + m.p.Available() }

func (m *cacheModel) step(step int) {
	t := m.t
	ci := m.rng.IntN(len(m.caches))
	c, size := m.caches[ci], m.sizes[ci]
	maxK := 2*size + 2
	var op string
	switch r := m.rng.IntN(100); {
	case r < 10:
		op = "Pool.Get"
		wantOK := m.p.Available() > 0
		v, ok := m.p.Get()
		if ok != wantOK {
			t.Fatalf("step %d: %s = %v with %d available", step, op, ok, m.p.Available())
		}
		if ok {
			m.take(step, op, v)
		}
	case r < 18:
		op = "Pool.Put"
		if len(m.held) > 0 {
			m.p.Put(m.give(1)[0])
		}
	case r < 25:
		k := m.rng.IntN(maxK + 1)
		op = fmt.Sprintf("Pool.GetBulk(%d)", k)
		wantOK := m.p.Available() >= k
		out := make([]*item, k)
		ok := m.p.GetBulk(out)
		if ok != wantOK {
			t.Fatalf("step %d: %s = %v with %d available", step, op, ok, m.p.Available())
		}
		if ok {
			for _, v := range out {
				m.take(step, op, v)
			}
		}
	case r < 32:
		k := m.rng.IntN(min(maxK, len(m.held)) + 1)
		op = fmt.Sprintf("Pool.PutBulk(%d)", k)
		m.p.PutBulk(m.give(k))
	case r < 52:
		op = fmt.Sprintf("Cache[%d].Get", ci)
		wantOK := m.cacheFree(ci) > 0
		v, ok := c.Get()
		if ok != wantOK {
			t.Fatalf("step %d: %s = %v with %d free in cache and pool", step, op, ok, m.cacheFree(ci))
		}
		if ok {
			m.take(step, op, v)
		} else if v != nil {
			t.Fatalf("step %d: %s failed but returned %p", step, op, v)
		}
	case r < 72:
		op = fmt.Sprintf("Cache[%d].Put", ci)
		if len(m.held) > 0 {
			c.Put(m.give(1)[0])
		}
	case r < 84:
		k := m.rng.IntN(maxK + 1)
		op = fmt.Sprintf("Cache[%d].GetBulk(%d)", ci, k)
		// Requests larger than the cache go to the pool alone.
		wantOK := m.cacheFree(ci) >= k
		if k > size {
			wantOK = m.p.Available() >= k
		}
		lenBefore := c.Len()
		out := make([]*item, k)
		ok := c.GetBulk(out)
		if ok != wantOK {
			t.Fatalf("step %d: %s = %v with Len %d, Available %d", step, op, ok, c.Len(), m.p.Available())
		}
		if k > size && c.Len() != lenBefore {
			t.Fatalf("step %d: %s bypassing the cache changed its Len from %d to %d", step, op, lenBefore, c.Len())
		}
		if ok {
			for _, v := range out {
				m.take(step, op, v)
			}
		}
	case r < 96:
		k := m.rng.IntN(min(maxK, len(m.held)) + 1)
		op = fmt.Sprintf("Cache[%d].PutBulk(%d)", ci, k)
		lenBefore := c.Len()
		c.PutBulk(m.give(k))
		if k > size && c.Len() != lenBefore {
			t.Fatalf("step %d: %s bypassing the cache changed its Len from %d to %d", step, op, lenBefore, c.Len())
		}
	default:
		op = fmt.Sprintf("Cache[%d].Flush", ci)
		avail := m.p.Available() + c.Len()
		c.Flush()
		if c.Len() != 0 || m.p.Available() != avail {
			t.Fatalf("step %d: %s left Len %d, Available %d (want 0, %d)", step, op, c.Len(), m.p.Available(), avail)
		}
	}
	m.check(step, op)
}

func TestCacheAccountingProperty(t *testing.T) {
	configs := []struct {
		n     int
		sizes []int
	}{
		{1, []int{2}},
		{3, []int{2, 4}},
		{7, []int{8}}, // a cache larger than the pool
		{64, []int{8, 3}},
		{100, []int{16, 16, 5}},
		{256, []int{32}},
	}
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for _, cfg := range configs {
		for seed := uint64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("n%d/caches%v/seed%d", cfg.n, cfg.sizes, seed), func(t *testing.T) {
				m := &cacheModel{
					t:      t,
					rng:    rand.New(rand.NewPCG(seed, uint64(cfg.n))),
					p:      newItemPool(t, cfg.n),
					sizes:  cfg.sizes,
					isHeld: make([]bool, cfg.n),
				}
				for _, s := range cfg.sizes {
					m.caches = append(m.caches, newItemCache(t, m.p, s))
				}
				for i := range steps {
					m.step(i)
				}
				// Give everything back and flush: the pool is full again and
				// holds every object exactly once.
				for _, c := range m.caches {
					c.PutBulk(m.give(min(len(m.held), 3)))
				}
				m.p.PutBulk(m.give(len(m.held)))
				for _, c := range m.caches {
					c.Flush()
				}
				m.check(steps, "final flush")
				if m.p.InUse() != 0 || m.p.Available() != m.p.Cap() {
					t.Fatalf("after flushing: InUse %d, Available %d", m.p.InUse(), m.p.Available())
				}
				all := takeFromPool(t, m.p, cfg.n)
				seen := make([]bool, cfg.n)
				for _, v := range all {
					i := m.p.Index(v)
					if i < 0 || seen[i] {
						t.Fatalf("object %d twice in the pool or foreign", i)
					}
					seen[i] = true
				}
			})
		}
	}
}

func TestCacheCached(t *testing.T) {
	p := newItemPool(t, 32)
	c := newItemCache(t, p, 4) // half = 2
	// An empty cache: GetCached fails and takes nothing from the pool.
	if v, ok := c.GetCached(); ok || v != nil {
		t.Fatalf("GetCached on an empty cache = %p, %v; want nil, false", v, ok)
	}
	checkCache(t, c, 0, 32)

	held := takeFromPool(t, p, 5)
	for i, v := range held[:4] {
		if !c.PutCached(v) {
			t.Fatalf("PutCached %d into a cache with room failed", i)
		}
		checkCache(t, c, i+1, 27)
	}
	// A full cache: PutCached fails and flushes nothing.
	if c.PutCached(held[4]) {
		t.Fatal("PutCached into a full cache succeeded")
	}
	checkCache(t, c, 4, 27)
	// Put does the flush: the older half goes to the pool.
	c.Put(held[4])
	checkCache(t, c, 3, 29)

	// GetCached hands out the most recently put first, from the cache
	// alone, until it is empty.
	for i, want := range []*item{held[4], held[3], held[2]} {
		v, ok := c.GetCached()
		if !ok || v != want {
			t.Fatalf("GetCached %d = %p, %v; want %p, true", i, v, ok, want)
		}
		checkCache(t, c, 2-i, 29)
	}
	if v, ok := c.GetCached(); ok {
		t.Fatalf("GetCached on an emptied cache = %p, true", v)
	}
	for _, v := range held[2:] {
		c.Put(v)
	}
	c.Flush()
	if p.InUse() != 0 {
		t.Fatalf("InUse() = %d after Flush", p.InUse())
	}
}
