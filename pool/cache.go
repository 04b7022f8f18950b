package pool

import (
	"fmt"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// Cache is a per-worker stack of free objects in front of a Pool, like the
// per-lcore rte_mempool_cache. It is not safe for concurrent use: give each
// worker goroutine its own.
//
// Get and Put work on the cache alone while it has objects (Get) or room
// (Put). When it runs empty it refills half its size from the pool in one
// bulk operation; when it runs full it flushes the older half back. Bulk
// requests larger than the cache go straight to the pool.
//
// Objects in a cache count as in use for Pool.InUse; call Flush before
// checking that a pool is full, and when the worker stops.
type Cache[T any] struct {
	// Padded on both sides: caches of several workers are often made one
	// after the other, and the allocator would put them side by side,
	// where each worker's writes of n would take the line from the next.
	_ cpu.CacheLinePad
	p *Pool[T]
	// objs[:n] are free objects, the most recently put last. The slots
	// above n may keep pointers to objects that left: they are objects of
	// p, which p keeps alive in any case, so clearing them on the way out
	// would keep nothing from the garbage collector and cost a store per
	// Get.
	objs []*T
	n    int
	half int
	_    cpu.CacheLinePad
}

// NewCache returns an empty cache of the given size (at least 2) in front
// of p.
func (p *Pool[T]) NewCache(size int) (*Cache[T], error) {
	if size < 2 {
		return nil, fmt.Errorf("%w: got %d", ErrCacheSize, size)
	}
	return &Cache[T]{p: p, objs: cpu.Isolated[*T](size, size), half: size / 2}, nil
}

// Pool returns the pool behind the cache.
func (c *Cache[T]) Pool() *Pool[T] { return c.p }

// Len returns the number of free objects the cache holds.
func (c *Cache[T]) Len() int { return c.n }

// Get takes a free object, from the cache if it has one; ok is false when
// both the cache and the pool are empty.
func (c *Cache[T]) Get() (v *T, ok bool) {
	if v, ok = c.GetCached(); ok {
		return v, ok
	}
	return c.refill()
}

// GetCached is Get from the cache alone: ok is false, and nothing
// changes, when the cache is empty (Get would refill it from the pool).
// It is small enough to inline, so that a packet path can write
//
//	v, ok := c.GetCached()
//	if !ok {
//		v, ok = c.Get()
//	}
//
// for a Get that costs no call while the cache has objects.
func (c *Cache[T]) GetCached() (v *T, ok bool) {
	// n-1 compared as unsigned is out of range both when the cache is
	// empty and past the end, which also spares the bounds check. The
	// slot keeps its pointer (see Cache).
	objs := c.objs
	if n := c.n - 1; uint(n) < uint(len(objs)) {
		v = objs[n]
		c.n = n
		if debugEnabled {
			c.p.debug.get(c.p.index(v))
		}
		return v, true
	}
	return nil, false
}

// refill is Get on an empty cache: it takes half the cache's size from
// the pool, as far as the pool can give, and hands out the newest.
func (c *Cache[T]) refill() (v *T, ok bool) {
	c.n = c.p.free.DequeueBurst(c.objs[:c.half])
	if c.n == 0 {
		return nil, false
	}
	c.n--
	v = c.objs[c.n]
	if debugEnabled {
		c.p.debug.get(c.p.index(v))
	}
	return v, true
}

// Put returns an object to the cache, flushing the older half to the pool
// first if the cache is full.
func (c *Cache[T]) Put(v *T) {
	if !c.PutCached(v) {
		c.putFull(v)
	}
}

// PutCached is Put into the cache alone: it reports false, and takes
// nothing, when the cache is full (Put would flush its older half to the
// pool). It is small enough to inline, so that a packet path can write
//
//	if !c.PutCached(v) {
//		c.Put(v)
//	}
//
// for a Put that costs no call while the cache has room. The same rules
// as for Put apply.
func (c *Cache[T]) PutCached(v *T) bool {
	objs := c.objs
	if n := c.n; uint(n) < uint(len(objs)) {
		if debugEnabled {
			c.p.debug.put(c.p.checkedIndex(v))
		}
		objs[n] = v
		c.n = n + 1
		return true
	}
	return false
}

// putFull is Put on a full cache: the older half goes to the pool first.
func (c *Cache[T]) putFull(v *T) {
	if debugEnabled {
		c.p.debug.put(c.p.checkedIndex(v))
	}
	c.flushOldest(c.half)
	c.objs[c.n] = v
	c.n++
}

// GetBulk fills all of out and returns true, or takes nothing and returns
// false. A request no larger than the cache fails only when the cache and
// the pool together hold fewer than len(out); a larger one goes to the pool
// alone and fails when the pool holds fewer.
func (c *Cache[T]) GetBulk(out []*T) bool {
	want := len(out)
	if want > len(c.objs) {
		return c.p.GetBulk(out)
	}
	if c.n < want {
		// Refill to want plus half the cache, as far as the pool can give.
		top := min(want+c.half, len(c.objs))
		c.n += c.p.free.DequeueBurst(c.objs[c.n:top])
		if c.n < want {
			return false
		}
	}
	c.n -= want
	src := c.objs[c.n : c.n+want]
	copy(out, src)
	if debugEnabled {
		for _, v := range out {
			c.p.debug.get(c.p.index(v))
		}
	}
	return true
}

// PutBulk returns every object of in, through the cache when it fits.
func (c *Cache[T]) PutBulk(in []*T) {
	if len(in) > len(c.objs) {
		c.p.PutBulk(in)
		return
	}
	if debugEnabled {
		for _, v := range in {
			c.p.debug.put(c.p.checkedIndex(v))
		}
	}
	if room := len(c.objs) - c.n; room < len(in) {
		// Flush the older objects, at least half the cache, so that the
		// next few Puts do not flush again.
		c.flushOldest(max(len(in)-room, c.half))
	}
	copy(c.objs[c.n:], in)
	c.n += len(in)
}

// Flush returns every object the cache holds to the pool.
func (c *Cache[T]) Flush() {
	if c.n == 0 {
		return
	}
	if !c.p.free.EnqueueBulk(c.objs[:c.n]) {
		panic("pool: cache flush overflowed the free ring (an object was put twice or does not belong to this pool)")
	}
	clear(c.objs[:c.n])
	c.n = 0
}

// flushOldest moves the k oldest cached objects (the bottom of the stack)
// to the pool and slides the rest down, keeping the most recently used ones,
// which are likely still in this core's cache.
func (c *Cache[T]) flushOldest(k int) {
	k = min(k, c.n)
	if !c.p.free.EnqueueBulk(c.objs[:k]) {
		panic("pool: cache flush overflowed the free ring (an object was put twice or does not belong to this pool)")
	}
	m := copy(c.objs, c.objs[k:c.n])
	clear(c.objs[m:c.n])
	c.n = m
}
