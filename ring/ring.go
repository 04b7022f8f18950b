package ring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// Mode chooses, at construction, whether several goroutines may enqueue
// (multi-producer) and whether several may dequeue (multi-consumer).
// The single-goroutine sides need no compare-and-swap and cache the other
// side's index; choose the narrowest mode that is true for your program.
type Mode uint8

const (
	SPSC Mode = iota // one producer goroutine, one consumer goroutine
	MPSC             // many producers, one consumer
	SPMC             // one producer, many consumers
	MPMC             // many producers, many consumers
)

var modeNames = [...]string{SPSC: "SPSC", MPSC: "MPSC", SPMC: "SPMC", MPMC: "MPMC"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// MultiProducer reports whether several goroutines may enqueue at once.
func (m Mode) MultiProducer() bool { return m == MPSC || m == MPMC }

// MultiConsumer reports whether several goroutines may dequeue at once.
func (m Mode) MultiConsumer() bool { return m == SPMC || m == MPMC }

// MaxCapacity is the largest capacity New accepts.
const MaxCapacity = 1 << 30

var (
	// ErrCapacity is returned by New for a capacity that is not a power of
	// two between 1 and MaxCapacity.
	ErrCapacity = errors.New("ring: capacity must be a power of two between 1 and 2^30")
	// ErrMode is returned by New for a Mode that is not one of the four.
	ErrMode = errors.New("ring: unknown mode")
)

// side is the state written by one side (producers or consumers). Each side
// sits on its own padded cache lines, so that a producer's stores never
// invalidate the line a consumer spins on, and the other way round.
type side struct {
	// head is the next index to reserve. Only the multi-goroutine side uses
	// it (reservation by compare-and-swap); a single side reserves and
	// publishes in one step through tail.
	head atomic.Uint64
	// tail is the published index: every slot below it is complete. The
	// other side reads it.
	tail atomic.Uint64
	// other is the single side's private copy of the opposite side's tail.
	// It is reloaded only when it says there is not enough room (producer)
	// or not enough items (consumer). The multi side never uses it.
	other uint64
}

// Ring is a bounded lock-free FIFO of T, modelled on DPDK's rte_ring.
//
// Indexes run free as 64-bit counters and are masked on access, so
// occupancy is an unsigned subtraction and wrap-around needs no special
// case. Bulk operations move all of their items or none; Burst operations
// move as many as fit. Each side publishes its index once per call, so the
// cost of the atomic store is shared by the items of a burst.
//
// Dequeued slots are cleared, so the ring holds no stale references.
//
// The zero Ring is not usable; call New.
type Ring[T any] struct {
	_ noCopy

	// Read-only after New: shared by both sides without traffic.
	slots    []T
	mask     uint64
	capacity uint64
	mode     Mode
	mp, mc   bool

	_    cpu.CacheLinePad
	prod side // written by producers
	_    cpu.CacheLinePad
	cons side // written by consumers
	_    cpu.CacheLinePad
}

// New returns an empty ring that holds up to capacity items.
// capacity must be a power of two between 1 and MaxCapacity.
func New[T any](capacity int, mode Mode) (*Ring[T], error) {
	return newAt[T](capacity, mode, 0)
}

// newAt is New with every index starting at start, so tests can run the
// wrap of the 64-bit counters.
func newAt[T any](capacity int, mode Mode, start uint64) (*Ring[T], error) {
	if capacity < 1 || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("%w: got %d", ErrCapacity, capacity)
	}
	if mode > MPMC {
		return nil, fmt.Errorf("%w: %d", ErrMode, uint8(mode))
	}
	r := &Ring[T]{
		slots:    make([]T, capacity),
		mask:     uint64(capacity - 1),
		capacity: uint64(capacity),
		mode:     mode,
		mp:       mode.MultiProducer(),
		mc:       mode.MultiConsumer(),
	}
	r.prod.head.Store(start)
	r.prod.tail.Store(start)
	r.prod.other = start
	r.cons.head.Store(start)
	r.cons.tail.Store(start)
	r.cons.other = start
	return r, nil
}

// Cap returns the number of items the ring holds when full.
func (r *Ring[T]) Cap() int { return int(r.capacity) }

// Mode returns the mode the ring was made with.
func (r *Ring[T]) Mode() Mode { return r.mode }

// Len returns the number of items published and not yet consumed. With
// other goroutines at work it is a snapshot that may be stale at once.
func (r *Ring[T]) Len() int {
	// Load the consumer tail first: it never passes the producer tail, so
	// the difference cannot go negative.
	c := r.cons.tail.Load() // pairs with the consumers' cons.tail.Store
	p := r.prod.tail.Load() // pairs with the producers' prod.tail.Store
	n := p - c
	if n > r.capacity {
		n = r.capacity
	}
	return int(n)
}

// Free returns the number of free slots (a snapshot, like Len).
func (r *Ring[T]) Free() int { return int(r.capacity) - r.Len() }

// Enqueue adds v and reports whether there was room.
func (r *Ring[T]) Enqueue(v T) bool {
	head, n := r.reserveProd(1, true)
	if n == 0 {
		return false
	}
	r.slots[head&r.mask] = v
	r.publishProd(head, 1)
	return true
}

// Dequeue removes and returns the oldest item; ok is false if the ring was
// empty.
func (r *Ring[T]) Dequeue() (v T, ok bool) {
	head, n := r.reserveCons(1, true)
	if n == 0 {
		return v, false
	}
	i := head & r.mask
	v = r.slots[i]
	var zero T
	r.slots[i] = zero
	r.publishCons(head, 1)
	return v, true
}

// EnqueueBulk adds all of vs, or none of them if there is not room for all;
// it reports which. An empty vs succeeds.
func (r *Ring[T]) EnqueueBulk(vs []T) bool {
	if len(vs) == 0 {
		return true
	}
	return r.enqueue(vs, true) == len(vs)
}

// EnqueueBurst adds as many of vs, in order from the front, as there is room
// for and returns how many it added.
func (r *Ring[T]) EnqueueBurst(vs []T) int {
	if len(vs) == 0 {
		return 0
	}
	return r.enqueue(vs, false)
}

// DequeueBulk fills all of out, or takes nothing if fewer than len(out) items
// are available; it reports which. An empty out succeeds.
func (r *Ring[T]) DequeueBulk(out []T) bool {
	if len(out) == 0 {
		return true
	}
	return r.dequeue(out, true) == len(out)
}

// DequeueBurst takes up to len(out) items into the front of out and returns
// how many it took.
func (r *Ring[T]) DequeueBurst(out []T) int {
	if len(out) == 0 {
		return 0
	}
	return r.dequeue(out, false)
}

func (r *Ring[T]) enqueue(vs []T, bulk bool) int {
	head, n := r.reserveProd(uint64(len(vs)), bulk)
	if n == 0 {
		return 0
	}
	vs = vs[:n]
	i := head & r.mask
	if c := copy(r.slots[i:], vs); c < len(vs) {
		copy(r.slots, vs[c:])
	}
	r.publishProd(head, n)
	return int(n)
}

func (r *Ring[T]) dequeue(out []T, bulk bool) int {
	head, n := r.reserveCons(uint64(len(out)), bulk)
	if n == 0 {
		return 0
	}
	out = out[:n]
	i := head & r.mask
	s := r.slots[i:]
	c := copy(out, s)
	clear(s[:c])
	if c < len(out) {
		c2 := copy(out[c:], r.slots)
		clear(r.slots[:c2])
	}
	r.publishCons(head, n)
	return int(n)
}

// reserveProd claims want slots (bulk) or up to want slots (burst) for a
// producer. It returns the first claimed index and the number claimed, 0 if
// none.
func (r *Ring[T]) reserveProd(want uint64, bulk bool) (head, n uint64) {
	if !r.mp {
		// Only this producer stores prod.tail, so the load sees its own
		// last store.
		head = r.prod.tail.Load()
		free := r.capacity + r.prod.other - head
		if free < want {
			// Slow path: refresh the cached consumer tail. Pairs with the
			// consumers' cons.tail.Store in publishCons, which follows their
			// reads and clears of the slots it frees.
			r.prod.other = r.cons.tail.Load()
			free = r.capacity + r.prod.other - head
			if free < want {
				if bulk || free == 0 {
					return head, 0
				}
				want = free
			}
		}
		return head, want
	}
	for {
		// Pairs with other producers' CompareAndSwap below.
		head = r.prod.head.Load()
		// Pairs with the consumers' cons.tail.Store in publishCons. Loaded
		// after head: if head is stale the CompareAndSwap fails, and if it
		// is current the consumer tail cannot have passed it.
		free := r.capacity + r.cons.tail.Load() - head
		n = want
		if free < n {
			if bulk || free == 0 {
				return head, 0
			}
			n = free
		}
		if r.prod.head.CompareAndSwap(head, head+n) {
			return head, n
		}
	}
}

// publishProd makes the slots [head, head+n) visible to consumers.
func (r *Ring[T]) publishProd(head, n uint64) {
	if r.mp {
		// Producers publish in the order they reserved: wait until every
		// earlier reservation has been published.
		waitFor(&r.prod.tail, head)
	}
	// Release: pairs with the consumers' prod.tail.Load in reserveCons, so
	// the slot writes above are visible before the new tail.
	r.prod.tail.Store(head + n)
}

// reserveCons claims want items (bulk) or up to want items (burst) for a
// consumer. It returns the first claimed index and the number claimed.
func (r *Ring[T]) reserveCons(want uint64, bulk bool) (head, n uint64) {
	if !r.mc {
		// Only this consumer stores cons.tail.
		head = r.cons.tail.Load()
		avail := r.cons.other - head
		if avail < want {
			// Slow path: refresh the cached producer tail. Pairs with the
			// producers' prod.tail.Store in publishProd, which follows
			// their slot writes.
			r.cons.other = r.prod.tail.Load()
			avail = r.cons.other - head
			if avail < want {
				if bulk || avail == 0 {
					return head, 0
				}
				want = avail
			}
		}
		return head, want
	}
	for {
		// Pairs with other consumers' CompareAndSwap below.
		head = r.cons.head.Load()
		// Pairs with the producers' prod.tail.Store in publishProd.
		avail := r.prod.tail.Load() - head
		if avail > r.capacity {
			// head moved on after we loaded it: retry with a fresh one.
			continue
		}
		n = want
		if avail < n {
			if bulk || avail == 0 {
				return head, 0
			}
			n = avail
		}
		if r.cons.head.CompareAndSwap(head, head+n) {
			return head, n
		}
	}
}

// publishCons hands the slots [head, head+n) back to producers.
func (r *Ring[T]) publishCons(head, n uint64) {
	if r.mc {
		waitFor(&r.cons.tail, head)
	}
	// Release: pairs with the producers' cons.tail.Load in reserveProd, so
	// our reads and clears of the slots happen before they are reused.
	r.cons.tail.Store(head + n)
}

// waitFor spins until idx reaches want. Another goroutine of the same side
// has reserved the slots before ours and is still copying; it will publish
// shortly, unless it has been descheduled, so yield now and then.
func waitFor(idx *atomic.Uint64, want uint64) {
	for i := 1; idx.Load() != want; i++ {
		if i%64 == 0 {
			runtime.Gosched()
		}
	}
}

// noCopy makes go vet's copylocks check flag copies of a Ring.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
