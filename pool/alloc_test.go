package pool

import "testing"

// allocRuns is the number of runs AllocsPerRun averages over; any
// allocation in the measured function shows up as at least 1/allocRuns.
const allocRuns = 200

func checkNoAllocs(t *testing.T, name string, f func()) {
	t.Helper()
	if got := testing.AllocsPerRun(allocRuns, f); got != 0 {
		t.Fatalf("%s: %v allocations per run, want 0", name, got)
	}
}

func TestAllocsPool(t *testing.T) {
	p := newItemPool(t, 256)
	checkNoAllocs(t, "Pool Get+Put", func() {
		v, ok := p.Get()
		if !ok {
			panic("Get failed")
		}
		p.Put(v)
	})
	for _, k := range []int{8, 32} {
		buf := make([]*item, k)
		checkNoAllocs(t, "Pool GetBulk+PutBulk", func() {
			if !p.GetBulk(buf) {
				panic("GetBulk failed")
			}
			p.PutBulk(buf)
		})
	}
	// Failing operations do not allocate either.
	all := make([]*item, p.Cap())
	if !p.GetBulk(all) {
		t.Fatal("GetBulk(Cap) failed")
	}
	buf := make([]*item, 8)
	checkNoAllocs(t, "Pool Get/GetBulk on an empty pool", func() {
		if _, ok := p.Get(); ok {
			panic("Get succeeded on an empty pool")
		}
		if p.GetBulk(buf) {
			panic("GetBulk succeeded on an empty pool")
		}
	})
	p.PutBulk(all)
}

func TestAllocsCache(t *testing.T) {
	const size = 16 // small, so the runs below pass through refill and flush
	p := newItemPool(t, 512)
	c := newItemCache(t, p, size)

	checkNoAllocs(t, "Cache Get+Put", func() {
		v, ok := c.Get()
		if !ok {
			panic("Get failed")
		}
		c.Put(v)
	})

	checkNoAllocs(t, "Cache GetCached+PutCached, with Get and Put behind", func() {
		v, ok := c.GetCached()
		if !ok {
			v, ok = c.Get()
		}
		if !ok {
			panic("Get failed")
		}
		if !c.PutCached(v) {
			c.Put(v)
		}
	})

	// Take three cache-fulls one by one, then give them back one by one:
	// the Gets refill the cache several times and the Puts flush it.
	held := make([]*item, 3*size)
	refills := 0
	checkNoAllocs(t, "Cache Get+Put through refill and flush", func() {
		for i := range held {
			if c.Len() == 0 {
				refills++
			}
			v, ok := c.Get()
			if !ok {
				panic("Get failed")
			}
			held[i] = v
		}
		for _, v := range held {
			c.Put(v)
		}
	})
	if refills < allocRuns { // 48 Puts into a cache of 16 always flush
		t.Fatalf("test did not exercise the refill path (%d refills in %d runs)", refills, allocRuns)
	}

	for _, k := range []int{8, 32} { // 32 is larger than the cache: bypass
		buf := make([]*item, k)
		checkNoAllocs(t, "Cache GetBulk+PutBulk", func() {
			if !c.GetBulk(buf) {
				panic("GetBulk failed")
			}
			c.PutBulk(buf)
		})
	}

	// Bulks of 12 against a cache of 16: three gets in a row must refill,
	// three puts in a row must flush.
	bufs := [3][12]*item{}
	checkNoAllocs(t, "Cache GetBulk+PutBulk through refill and flush", func() {
		for i := range bufs {
			if !c.GetBulk(bufs[i][:]) {
				panic("GetBulk failed")
			}
		}
		for i := range bufs {
			c.PutBulk(bufs[i][:])
		}
	})

	checkNoAllocs(t, "Cache Flush and refill", func() {
		c.Flush()
		v, ok := c.Get()
		if !ok {
			panic("Get failed")
		}
		c.Put(v)
	})
	c.Flush()
	if p.InUse() != 0 {
		t.Fatalf("InUse() = %d after Flush", p.InUse())
	}
}

func TestAllocsCacheBulk32(t *testing.T) {
	// The benchmark's configuration: a cache of 256 and bulks of 32, which
	// go through the cache. Ten bulks in a row drain more than the cache
	// holds (refill), ten puts in a row overfill it (flush).
	p := newItemPool(t, 1024)
	c := newItemCache(t, p, 256)
	var bufs [10][32]*item
	refills, flushes := 0, 0
	checkNoAllocs(t, "Cache GetBulk+PutBulk(32) through refill and flush", func() {
		for i := range bufs {
			before := c.Len()
			if !c.GetBulk(bufs[i][:]) {
				panic("GetBulk failed")
			}
			if before < 32 {
				refills++
			}
		}
		for i := range bufs {
			before := p.Available()
			c.PutBulk(bufs[i][:])
			if p.Available() > before {
				flushes++
			}
		}
	})
	if refills < allocRuns || flushes < allocRuns {
		t.Fatalf("test did not exercise the slow paths: %d refills, %d flushes in %d runs", refills, flushes, allocRuns)
	}
	c.Flush()
	if p.InUse() != 0 {
		t.Fatalf("InUse() = %d after Flush", p.InUse())
	}
}
