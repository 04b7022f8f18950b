//go:build nblpipe_debug

package pool

import (
	"fmt"
	"strings"
	"testing"
)

// mustPanic runs f and fails the test unless it panics with a message that
// contains want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	var r any
	func() {
		defer func() { r = recover() }()
		f()
	}()
	if r == nil {
		t.Fatalf("no panic, want one mentioning %q", want)
	}
	if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
		t.Fatalf("panic %q does not mention %q", msg, want)
	}
}

const (
	msgDoublePut = "double Put"
	msgForeign   = "does not belong"
)

func TestDebugEnabled(t *testing.T) {
	if !debugEnabled {
		t.Fatal("built with nblpipe_debug but debugEnabled is false")
	}
}

func TestDebugDoublePut(t *testing.T) {
	// 16 objects: the ring is exactly full after the first Put, and 10: it
	// has room to spare, so only the debug state can catch the second Put.
	for _, n := range []int{16, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newItemPool(t, n)
			v, _ := p.Get()
			p.Put(v)
			mustPanic(t, msgDoublePut, func() { p.Put(v) })
			checkCounts(t, p, n) // the rejected Put changed nothing

			w, _ := p.Get()
			mustPanic(t, msgDoublePut, func() { p.PutBulk([]*item{w, w}) })
			mustPanic(t, msgDoublePut, func() { p.PutBulk([]*item{p.At(0)}) }) // never handed out
		})
	}
}

func TestDebugForeignPut(t *testing.T) {
	p := newItemPool(t, 8)
	q := newItemPool(t, 8)
	var onStack item
	fromQ, _ := q.Get()
	for _, f := range []struct {
		name string
		v    *item
	}{
		{"stack", &onStack},
		{"heap", new(item)},
		{"nil", nil},
		{"otherPool", fromQ},
	} {
		t.Run(f.name, func(t *testing.T) {
			mustPanic(t, msgForeign, func() { p.Put(f.v) })
			mustPanic(t, msgForeign, func() { p.PutBulk([]*item{f.v}) })
			c := newItemCache(t, p, 4)
			mustPanic(t, msgForeign, func() { c.Put(f.v) })
			mustPanic(t, msgForeign, func() { c.PutBulk([]*item{f.v}) })
			if c.Len() != 0 {
				t.Fatalf("cache took a foreign object: Len %d", c.Len())
			}
			checkCounts(t, p, 8)
		})
	}
	// The object from q is still q's, and q accepts it.
	q.Put(fromQ)
	checkCounts(t, q, 8)
}

func TestDebugCacheDoublePut(t *testing.T) {
	p := newItemPool(t, 32)
	c := newItemCache(t, p, 8)
	v, _ := c.Get()
	c.Put(v)
	mustPanic(t, msgDoublePut, func() { c.Put(v) }) // while in the cache
	mustPanic(t, msgDoublePut, func() { c.PutBulk([]*item{v}) })

	c.Flush()
	mustPanic(t, msgDoublePut, func() { c.Put(v) }) // after it went back to the pool
	mustPanic(t, msgDoublePut, func() { p.Put(v) })

	// A PutBulk larger than the cache goes to the pool, checked there.
	out := make([]*item, 9)
	if !c.GetBulk(out) {
		t.Fatal("GetBulk failed")
	}
	out[8] = out[0]
	mustPanic(t, msgDoublePut, func() { c.PutBulk(out) })

	// Objects move legitimately between caches and the pool without
	// tripping the checks.
	d := newItemCache(t, p, 4)
	x, _ := c.Get()
	y, _ := d.Get()
	c.Put(y)
	d.Put(x)
	z, _ := p.Get()
	c.Put(z)
}

func TestDebugCacheCachedDoublePut(t *testing.T) {
	p := newItemPool(t, 32)
	c := newItemCache(t, p, 4)
	v, ok := c.GetCached()
	if ok {
		t.Fatalf("GetCached on a new cache = %p, true; want it empty", v)
	}
	v, _ = c.Get()
	if !c.PutCached(v) {
		t.Fatal("PutCached into a cache with room failed")
	}
	mustPanic(t, msgDoublePut, func() { c.PutCached(v) }) // while in the cache
	w, ok := c.GetCached()
	if !ok || w != v {
		t.Fatalf("GetCached = %p, %v; want %p, true", w, ok, v)
	}
	mustPanic(t, msgForeign, func() { c.PutCached(new(item)) })
	// The failed Puts took nothing: the cache is empty, v is in use.
	checkCache(t, c, 1, 30) // the Get above refilled half: 2, one handed out, one left
	c.Put(v)
	c.Flush()
	if p.InUse() != 0 {
		t.Fatalf("InUse() = %d after Flush", p.InUse())
	}
}
