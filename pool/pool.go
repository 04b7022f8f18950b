package pool

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/nblpipe/nblpipe/ring"
)

var (
	// ErrSize is returned by New for a non-positive object count or one
	// larger than MaxObjects.
	ErrSize = errors.New("pool: object count must be between 1 and 2^30")
	// ErrZeroSize is returned by New for a type of size zero: all its
	// values share one address, so a pool could not tell them apart.
	ErrZeroSize = errors.New("pool: objects of a zero-size type cannot be pooled")
	// ErrCacheSize is returned by NewCache for a size below 2.
	ErrCacheSize = errors.New("pool: cache size must be at least 2")
)

// MaxObjects is the largest number of objects one pool holds.
const MaxObjects = 1 << 30

// Pool is a fixed set of n objects of type T, allocated once in one slice
// and handed out by pointer. Free objects wait in an MPMC ring, so Get and
// Put are safe from any number of goroutines and never block or allocate:
// an empty pool is a false return, not a wait.
//
// A per-worker Cache in front of the pool (NewCache) turns most Gets and Puts
// into plain slice operations.
type Pool[T any] struct {
	objs  []T
	base  uintptr // address of objs[0]
	size  uintptr // unsafe.Sizeof(T), never 0
	free  *ring.Ring[*T]
	debug *debugState
}

// New preallocates n objects and returns a full pool. init, if not nil, is
// called once for each object with its index, before any Get; use it to
// set fields that stay for the object's lifetime (an index, a buffer).
func New[T any](n int, init func(i int, v *T)) (*Pool[T], error) {
	if n < 1 || n > MaxObjects {
		return nil, fmt.Errorf("%w: got %d", ErrSize, n)
	}
	if unsafe.Sizeof(*new(T)) == 0 {
		return nil, ErrZeroSize
	}
	capacity := 1
	for capacity < n {
		capacity <<= 1
	}
	free, err := ring.New[*T](capacity, ring.MPMC)
	if err != nil {
		return nil, err
	}
	p := &Pool[T]{
		objs: make([]T, n),
		free: free,
		size: unsafe.Sizeof(*new(T)),
	}
	p.base = uintptr(unsafe.Pointer(&p.objs[0]))
	ptrs := make([]*T, n)
	for i := range p.objs {
		if init != nil {
			init(i, &p.objs[i])
		}
		ptrs[i] = &p.objs[i]
	}
	if !free.EnqueueBulk(ptrs) {
		panic("pool: free ring smaller than the pool") // cannot happen: capacity >= n
	}
	p.debug = newDebugState(n)
	return p, nil
}

// Cap returns the number of objects the pool was made with.
func (p *Pool[T]) Cap() int { return len(p.objs) }

// Available returns the number of objects in the shared free ring (not
// counting those held in caches). A snapshot under concurrency.
func (p *Pool[T]) Available() int { return p.free.Len() }

// InUse returns the number of objects not in the shared free ring: handed
// out, or held in a Cache. A snapshot under concurrency.
func (p *Pool[T]) InUse() int { return len(p.objs) - p.free.Len() }

// Get takes a free object; ok is false when none is left.
func (p *Pool[T]) Get() (v *T, ok bool) {
	v, ok = p.free.Dequeue()
	if debugEnabled && ok {
		p.debug.get(p.index(v))
	}
	return v, ok
}

// Put returns an object taken from this pool. Putting an object twice, or one
// that came from elsewhere, corrupts the pool; the nblpipe_debug build tag
// turns both into panics.
func (p *Pool[T]) Put(v *T) {
	if debugEnabled {
		p.debug.put(p.checkedIndex(v))
	}
	if !p.free.Enqueue(v) {
		panic("pool: Put overflowed the free ring (an object was put twice or does not belong to this pool)")
	}
}

// GetBulk fills all of out with free objects and returns true, or takes
// nothing and returns false if fewer than len(out) are free.
func (p *Pool[T]) GetBulk(out []*T) bool {
	if !p.free.DequeueBulk(out) {
		return false
	}
	if debugEnabled {
		for _, v := range out {
			p.debug.get(p.index(v))
		}
	}
	return true
}

// PutBulk returns every object of in to the pool. The same rules as for Put
// apply to each.
func (p *Pool[T]) PutBulk(in []*T) {
	if debugEnabled {
		for _, v := range in {
			p.debug.put(p.checkedIndex(v))
		}
	}
	if !p.free.EnqueueBulk(in) {
		panic("pool: PutBulk overflowed the free ring (an object was put twice or does not belong to this pool)")
	}
}

// Index returns the position of v in the pool (0 to Cap()-1), or -1 if v
// does not belong to the pool. Objects keep their index for the pool's
// lifetime, so an index can stand for an object, as DPDK's mbuf pools and
// AF_XDP's UMEM frames do.
func (p *Pool[T]) Index(v *T) int {
	if v == nil {
		return -1
	}
	off := uintptr(unsafe.Pointer(v)) - p.base
	if off >= uintptr(len(p.objs))*p.size || off%p.size != 0 {
		return -1
	}
	return int(off / p.size)
}

// At returns the object at index i. It panics if i is out of range.
func (p *Pool[T]) At(i int) *T { return &p.objs[i] }

// Owns reports whether v is one of this pool's objects.
func (p *Pool[T]) Owns(v *T) bool { return p.Index(v) >= 0 }

func (p *Pool[T]) index(v *T) int {
	return int((uintptr(unsafe.Pointer(v)) - p.base) / p.size)
}

func (p *Pool[T]) checkedIndex(v *T) int {
	i := p.Index(v)
	if i < 0 {
		panic(fmt.Sprintf("pool: Put of an object that does not belong to this pool (%p)", v))
	}
	return i
}
