package pool

import "fmt"

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
	p    *Pool[T]
	objs []*T // objs[:n] are free objects, the most recently put last
	n    int
	half int
}

// NewCache returns an empty cache of the given size (at least 2) in front
// of p.
func (p *Pool[T]) NewCache(size int) (*Cache[T], error) {
	if size < 2 {
		return nil, fmt.Errorf("%w: got %d", ErrCacheSize, size)
	}
	return &Cache[T]{p: p, objs: make([]*T, size), half: size / 2}, nil
}

// Pool returns the pool behind the cache.
func (c *Cache[T]) Pool() *Pool[T] { return c.p }

// Len returns the number of free objects the cache holds.
func (c *Cache[T]) Len() int { return c.n }

// Get takes a free object, from the cache if it has one; ok is false when
// both the cache and the pool are empty.
func (c *Cache[T]) Get() (v *T, ok bool) {
	if c.n == 0 {
		c.n = c.p.free.DequeueBurst(c.objs[:c.half])
		if c.n == 0 {
			return nil, false
		}
	}
	c.n--
	v = c.objs[c.n]
	c.objs[c.n] = nil
	if debugEnabled {
		c.p.debug.get(c.p.index(v))
	}
	return v, true
}

// Put returns an object to the cache, flushing the older half to the pool
// first if the cache is full.
func (c *Cache[T]) Put(v *T) {
	if debugEnabled {
		c.p.debug.put(c.p.checkedIndex(v))
	}
	if c.n == len(c.objs) {
		c.flushOldest(c.half)
	}
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
	clear(src)
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
