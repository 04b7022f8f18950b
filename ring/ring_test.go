package ring

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var allModes = [...]Mode{SPSC, MPSC, SPMC, MPMC}

// startsFor returns the index every conformance case starts at: zero, and
// points just below the wrap of the 64-bit counters, so that each case
// crosses it within its first few operations.
func startsFor(capacity int) []uint64 {
	c := uint64(capacity)
	s := []uint64{
		0,
		^uint64(0) - 5,
		^uint64(0) - c/2,
		^uint64(0) - c + 1,
		^uint64(0),
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// harness drives a ring from one goroutine and checks every call against a
// slice model of the queue, and the ring's internal state against the model
// after every call.
//
// Items are fresh *int whose values count up from 0 in enqueue order, so
// FIFO order is also checked independently of the model: the n-th item
// dequeued must hold n.
type harness struct {
	tb       testing.TB
	r        *Ring[*int]
	mode     Mode
	capacity int
	start    uint64

	model   []*int // what the ring should hold, oldest first
	nextIn  int    // value of the next item to enqueue
	nextOut int    // value the next dequeued item must hold
	ops     int    // calls made, for messages
	last    string // last call made, for messages
	lastK   int    // its size argument, -1 for none
	spill   int    // calls whose slots straddled the end of the array
}

func newHarness(tb testing.TB, capacity int, mode Mode, start uint64) *harness {
	tb.Helper()
	r, err := newAt[*int](capacity, mode, start)
	if err != nil {
		tb.Fatalf("newAt(%d, %v, %#x): %v", capacity, mode, start, err)
	}
	h := &harness{tb: tb, r: r, mode: mode, capacity: capacity, start: start, last: "newAt", lastK: -1}
	h.check()
	return h
}

func (h *harness) String() string {
	return fmt.Sprintf("%v cap=%d start=%#x call#%d %s (model len %d)",
		h.mode, h.capacity, h.start, h.ops, h.call(), len(h.model))
}

func (h *harness) fatalf(format string, args ...any) {
	h.tb.Helper()
	h.tb.Fatalf("%v: %s", h, fmt.Sprintf(format, args...))
}

// call describes the last call made.
func (h *harness) call() string {
	if h.lastK < 0 {
		return h.last
	}
	return fmt.Sprintf("%s(%d)", h.last, h.lastK)
}

// begin records a call; k is its size argument, -1 for none.
func (h *harness) begin(op string, k int) {
	h.ops++
	h.last, h.lastK = op, k
}

// fresh returns n new items; unused ones are handed back with unfresh.
func (h *harness) fresh(n int) []*int {
	vs := make([]*int, n)
	for i := range vs {
		v := h.nextIn + i
		vs[i] = &v
	}
	h.nextIn += n
	return vs
}

// unfresh gives back the last n items fresh returned (not enqueued).
func (h *harness) unfresh(n int) { h.nextIn -= n }

// sentinel fills an output buffer so that writes past the count show.
var sentinel = new(int)

func outBuf(n int) []*int {
	out := make([]*int, n)
	for i := range out {
		out[i] = sentinel
	}
	return out
}

func (h *harness) room() int { return h.capacity - len(h.model) }

// noteSpill records whether n slots from index idx cross the end of the
// slot array.
func (h *harness) noteSpill(idx uint64, n int) {
	if n > 0 && int(idx&h.r.mask)+n > h.capacity {
		h.spill++
	}
}

func (h *harness) accept(vs []*int) {
	h.model = append(h.model, vs...)
}

// took checks that got are the oldest n items and removes them from the
// model.
func (h *harness) took(got []*int) {
	h.tb.Helper()
	for i, p := range got {
		if p == nil {
			h.fatalf("item %d of %d is nil", i, len(got))
		}
		if p != h.model[i] {
			h.fatalf("item %d of %d is %p (value %d), want %p (value %d)", i, len(got), p, *p, h.model[i], *h.model[i])
		}
		if *p != h.nextOut {
			h.fatalf("item %d of %d has value %d, want %d (FIFO order)", i, len(got), *p, h.nextOut)
		}
		h.nextOut++
	}
	h.model = append(h.model[:0], h.model[len(got):]...)
}

func (h *harness) enqueue() bool {
	h.tb.Helper()
	h.begin("Enqueue", -1)
	vs := h.fresh(1)
	want := h.room() >= 1
	h.noteSpill(h.r.prod.tail.Load(), 1)
	got := h.r.Enqueue(vs[0])
	if got != want {
		h.fatalf("Enqueue = %v, want %v", got, want)
	}
	if got {
		h.accept(vs)
	} else {
		h.unfresh(1)
	}
	h.check()
	return got
}

func (h *harness) enqueueBulk(n int) bool {
	h.tb.Helper()
	h.begin("EnqueueBulk", n)
	vs := h.fresh(n)
	orig := slices.Clone(vs)
	want := n <= h.room()
	if want {
		h.noteSpill(h.r.prod.tail.Load(), n)
	}
	got := h.r.EnqueueBulk(vs)
	if got != want {
		h.fatalf("EnqueueBulk(%d) = %v, want %v", n, got, want)
	}
	if !slices.Equal(vs, orig) {
		h.fatalf("EnqueueBulk(%d) modified its argument", n)
	}
	if got {
		h.accept(vs)
	} else {
		h.unfresh(n)
	}
	h.check()
	return got
}

func (h *harness) enqueueBurst(n int) int {
	h.tb.Helper()
	h.begin("EnqueueBurst", n)
	vs := h.fresh(n)
	orig := slices.Clone(vs)
	want := min(n, h.room())
	h.noteSpill(h.r.prod.tail.Load(), want)
	got := h.r.EnqueueBurst(vs)
	if got != want {
		h.fatalf("EnqueueBurst(%d) = %d, want %d", n, got, want)
	}
	if !slices.Equal(vs, orig) {
		h.fatalf("EnqueueBurst(%d) modified its argument", n)
	}
	h.accept(vs[:got])
	h.unfresh(n - got)
	h.check()
	return got
}

func (h *harness) dequeue() (*int, bool) {
	h.tb.Helper()
	h.begin("Dequeue", -1)
	want := len(h.model) > 0
	h.noteSpill(h.r.cons.tail.Load(), 1)
	v, ok := h.r.Dequeue()
	if ok != want {
		h.fatalf("Dequeue ok = %v, want %v", ok, want)
	}
	if ok {
		h.took([]*int{v})
	} else if v != nil {
		h.fatalf("failed Dequeue returned %p, want nil", v)
	}
	h.check()
	return v, ok
}

func (h *harness) dequeueBulk(n int) bool {
	h.tb.Helper()
	h.begin("DequeueBulk", n)
	out := outBuf(n)
	want := n <= len(h.model)
	if want {
		h.noteSpill(h.r.cons.tail.Load(), n)
	}
	got := h.r.DequeueBulk(out)
	if got != want {
		h.fatalf("DequeueBulk(%d) = %v, want %v", n, got, want)
	}
	if got {
		h.took(out)
	} else {
		for i, p := range out {
			if p != sentinel {
				h.fatalf("failed DequeueBulk(%d) wrote out[%d]", n, i)
			}
		}
	}
	h.check()
	return got
}

func (h *harness) dequeueBurst(n int) int {
	h.tb.Helper()
	h.begin("DequeueBurst", n)
	out := outBuf(n)
	want := min(n, len(h.model))
	h.noteSpill(h.r.cons.tail.Load(), want)
	got := h.r.DequeueBurst(out)
	if got != want {
		h.fatalf("DequeueBurst(%d) = %d, want %d", n, got, want)
	}
	h.took(out[:got])
	for i := got; i < n; i++ {
		if out[i] != sentinel {
			h.fatalf("DequeueBurst(%d) = %d but wrote out[%d]", n, got, i)
		}
	}
	h.check()
	return got
}

// check compares the ring with the model: the public accessors, the
// indexes, and every slot, which must hold exactly the queued items in
// order from the consumer tail and nil everywhere else (dequeued slots are
// cleared).
func (h *harness) check() {
	h.tb.Helper()
	r := h.r
	n := len(h.model)
	if got := r.Len(); got != n {
		h.fatalf("Len = %d, want %d", got, n)
	}
	if got := r.Free(); got != h.capacity-n {
		h.fatalf("Free = %d, want %d", got, h.capacity-n)
	}
	if got := r.Cap(); got != h.capacity {
		h.fatalf("Cap = %d, want %d", got, h.capacity)
	}
	if got := r.Mode(); got != h.mode {
		h.fatalf("Mode = %v, want %v", got, h.mode)
	}
	if len(r.slots) != h.capacity {
		h.fatalf("len(slots) = %d, want %d", len(r.slots), h.capacity)
	}
	pt, ct := r.prod.tail.Load(), r.cons.tail.Load()
	if pt-ct != uint64(n) {
		h.fatalf("prod.tail %#x - cons.tail %#x = %d, want %d", pt, ct, pt-ct, n)
	}
	// Between calls no reservation is outstanding.
	if r.mp && r.prod.head.Load() != pt {
		h.fatalf("idle multi-producer ring: prod.head %#x != prod.tail %#x", r.prod.head.Load(), pt)
	}
	if r.mc && r.cons.head.Load() != ct {
		h.fatalf("idle multi-consumer ring: cons.head %#x != cons.tail %#x", r.cons.head.Load(), ct)
	}
	// A single side's cached copy of the other side's tail is an old value
	// of it: the producer's copy is at most capacity behind the consumer
	// tail, the consumer's copy lies between its own tail and the producer
	// tail.
	if !r.mp {
		if d := ct - r.prod.other; d > uint64(h.capacity) {
			h.fatalf("prod.other %#x is not within capacity below cons.tail %#x", r.prod.other, ct)
		}
	}
	if !r.mc {
		if d := r.cons.other - ct; d > uint64(n) {
			h.fatalf("cons.other %#x is not between cons.tail %#x and prod.tail %#x", r.cons.other, ct, pt)
		}
	}
	for k := range h.capacity {
		i := (ct + uint64(k)) & r.mask
		got := r.slots[i]
		if k < n {
			if got != h.model[k] {
				h.fatalf("slots[%d] (queue position %d) = %p, want %p", i, k, got, h.model[k])
			}
		} else if got != nil {
			h.fatalf("slots[%d] (free, %d after the consumer tail) = %p (value %d), want nil: slot not cleared",
				i, k, got, *got)
		}
	}
}

// drain dequeues everything with single Dequeue calls.
func (h *harness) drain() {
	h.tb.Helper()
	for len(h.model) > 0 {
		h.dequeue()
	}
	if _, ok := h.dequeue(); ok {
		h.fatalf("Dequeue on drained ring succeeded")
	}
}

// conformance is the suite TestConformance runs for every mode and every
// start index. Each case gets a fresh, empty ring of its capacity.
var conformance = []struct {
	name     string
	capacity int
	run      func(t *testing.T, h *harness)
}{
	{"NewErrors", 8, func(t *testing.T, h *harness) {
		bad := []int64{0, -1, -8, math.MinInt64, 3, 6, 12, 1000, 1<<31 - 1, MaxCapacity + 1, MaxCapacity << 1, MaxCapacity + MaxCapacity/2, math.MaxInt64}
		for _, c := range bad {
			if c > math.MaxInt || c < math.MinInt {
				continue
			}
			r, err := newAt[*int](int(c), h.mode, h.start)
			if !errors.Is(err, ErrCapacity) || errors.Is(err, ErrMode) || r != nil {
				t.Errorf("newAt(%d, %v, %#x) = %p, %v; want nil, ErrCapacity", c, h.mode, h.start, r, err)
			}
			if h.start == 0 {
				r, err := New[*int](int(c), h.mode)
				if !errors.Is(err, ErrCapacity) || r != nil {
					t.Errorf("New(%d, %v) = %p, %v; want nil, ErrCapacity", c, h.mode, r, err)
				}
			}
		}
		for _, m := range []Mode{MPMC + 1, 7, 128, 255} {
			r, err := newAt[*int](8, m, h.start)
			if !errors.Is(err, ErrMode) || errors.Is(err, ErrCapacity) || r != nil {
				t.Errorf("newAt(8, %v, %#x) = %p, %v; want nil, ErrMode", m, h.start, r, err)
			}
			r, err = New[*int](8, m)
			if !errors.Is(err, ErrMode) || r != nil {
				t.Errorf("New(8, %v) = %p, %v; want nil, ErrMode", m, r, err)
			}
		}
		for c := 1; c <= 1<<12; c <<= 1 {
			r, err := newAt[*int](c, h.mode, h.start)
			if err != nil {
				t.Fatalf("newAt(%d, %v, %#x): %v", c, h.mode, h.start, err)
			}
			if r.Cap() != c || r.Len() != 0 || r.Free() != c || r.Mode() != h.mode {
				t.Errorf("newAt(%d, %v): Cap %d Len %d Free %d Mode %v", c, h.mode, r.Cap(), r.Len(), r.Free(), r.Mode())
			}
		}
		// The largest capacity is accepted; a zero-size element keeps the
		// slot array free.
		r, err := newAt[struct{}](MaxCapacity, h.mode, h.start)
		if err != nil {
			t.Fatalf("newAt(MaxCapacity, %v): %v", h.mode, err)
		}
		if r.Cap() != MaxCapacity || r.Free() != MaxCapacity || r.Len() != 0 {
			t.Errorf("MaxCapacity ring: Cap %d Free %d Len %d", r.Cap(), r.Free(), r.Len())
		}
		if !r.Enqueue(struct{}{}) || r.Len() != 1 {
			t.Errorf("MaxCapacity ring: Enqueue failed or Len %d != 1", r.Len())
		}
	}},

	{"EmptyAndZeroLength", 8, func(t *testing.T, h *harness) {
		if _, ok := h.dequeue(); ok {
			t.Fatal("Dequeue on new ring succeeded")
		}
		for _, n := range []int{1, 2, 8, 9} {
			if h.dequeueBulk(n) {
				t.Fatalf("DequeueBulk(%d) on empty ring succeeded", n)
			}
			if got := h.dequeueBurst(n); got != 0 {
				t.Fatalf("DequeueBurst(%d) on empty ring = %d", n, got)
			}
		}
		zeroLen := func() {
			t.Helper()
			if !h.enqueueBulk(0) || h.enqueueBurst(0) != 0 || !h.dequeueBulk(0) || h.dequeueBurst(0) != 0 {
				t.Fatal("zero-length calls: want Bulk true, Burst 0")
			}
			if !h.r.EnqueueBulk(nil) || h.r.EnqueueBurst(nil) != 0 || !h.r.DequeueBulk(nil) || h.r.DequeueBurst(nil) != 0 {
				t.Fatal("nil-slice calls: want Bulk true, Burst 0")
			}
			h.check()
		}
		zeroLen()
		h.enqueueBulk(3)
		zeroLen()
		h.enqueueBulk(5)
		if h.r.Len() != 8 || h.r.Free() != 0 {
			t.Fatalf("full ring: Len %d Free %d", h.r.Len(), h.r.Free())
		}
		zeroLen()
		h.drain()
		zeroLen()
	}},

	{"FIFO", 8, func(t *testing.T, h *harness) {
		for round := range 3 {
			for i := range 8 {
				if !h.enqueue() {
					t.Fatalf("round %d: Enqueue %d of 8 failed", round, i)
				}
			}
			if h.enqueue() {
				t.Fatalf("round %d: Enqueue on full ring succeeded", round)
			}
			for i := range 8 {
				v, ok := h.dequeue()
				if !ok || *v != round*8+i {
					t.Fatalf("round %d: Dequeue %d = %v, %v", round, i, v, ok)
				}
			}
		}
		// Interleaved: the queue grows by one each step, then drains.
		for range 7 {
			h.enqueue()
			h.enqueue()
			h.dequeue()
		}
		h.drain()
		if h.nextOut != h.nextIn {
			t.Fatalf("dequeued %d items, enqueued %d", h.nextOut, h.nextIn)
		}
	}},

	{"BulkAllOrNothing", 8, func(t *testing.T, h *harness) {
		if !h.enqueueBulk(5) {
			t.Fatal("EnqueueBulk(5) on empty ring of 8 failed")
		}
		if h.enqueueBulk(4) || h.r.Len() != 5 {
			t.Fatalf("EnqueueBulk(4) with 3 free: want false and Len 5, Len %d", h.r.Len())
		}
		if !h.enqueueBulk(3) || h.r.Len() != 8 {
			t.Fatalf("EnqueueBulk(3) with 3 free: want true and Len 8, Len %d", h.r.Len())
		}
		if h.enqueueBulk(1) || h.r.Len() != 8 {
			t.Fatal("EnqueueBulk(1) on full ring succeeded")
		}
		if h.dequeueBulk(9) || h.r.Len() != 8 {
			t.Fatal("DequeueBulk(9) from ring of 8 succeeded")
		}
		if !h.dequeueBulk(6) || h.r.Len() != 2 {
			t.Fatal("DequeueBulk(6) with 8 queued failed")
		}
		if h.dequeueBulk(3) || h.r.Len() != 2 {
			t.Fatal("DequeueBulk(3) with 2 queued succeeded")
		}
		if !h.dequeueBulk(2) || h.r.Len() != 0 {
			t.Fatal("DequeueBulk(2) with 2 queued failed")
		}
		if h.enqueueBulk(9) || h.r.Len() != 0 {
			t.Fatal("EnqueueBulk(9) into empty ring of 8 succeeded")
		}
		if !h.enqueueBulk(8) || !h.dequeueBulk(8) {
			t.Fatal("EnqueueBulk(8)/DequeueBulk(8) on empty ring of 8 failed")
		}
	}},

	{"BurstPartial", 8, func(t *testing.T, h *harness) {
		steps := []struct {
			enq  bool
			n    int
			want int
		}{
			{true, 5, 5},
			{true, 6, 3}, // only the first 3 of 6 fit
			{true, 1, 0},
			{false, 2, 2},
			{true, 4, 2},
			{false, 10, 8}, // takes all 8 queued, leaves out[8:] alone
			{false, 1, 0},
			{true, 20, 8}, // more than the capacity: fills it
			{false, 3, 3},
			{false, 3, 3},
			{false, 3, 2},
		}
		for i, s := range steps {
			var got int
			if s.enq {
				got = h.enqueueBurst(s.n)
			} else {
				got = h.dequeueBurst(s.n)
			}
			if got != s.want {
				t.Fatalf("step %d: %s = %d, want %d", i, h.call(), got, s.want)
			}
		}
	}},

	{"WrapAround", 8, func(t *testing.T, h *harness) {
		enqs := []struct {
			name string
			f    func(int) bool
		}{
			{"bulk", h.enqueueBulk},
			{"burst", func(n int) bool { return h.enqueueBurst(n) == n }},
			{"single", func(n int) bool {
				for range n {
					if !h.enqueue() {
						return false
					}
				}
				return true
			}},
		}
		deqs := []struct {
			name string
			f    func(int) bool
		}{
			{"bulk", h.dequeueBulk},
			{"burst", func(n int) bool { return h.dequeueBurst(n) == n }},
			{"split", func(n int) bool { // a burst, then a bulk
				k := n / 2
				return h.dequeueBurst(k) == k && h.dequeueBulk(n-k)
			}},
		}
		for off := range 8 {
			for k := 1; k <= 8; k++ {
				for _, enq := range enqs {
					for _, deq := range deqs {
						// Move the indexes on by off, leaving a items
						// queued, then add k-a: the k items queued
						// start at off-a and straddle the end of the
						// array when off-a+k > 8.
						a := min(off, k) / 2
						if !h.enqueueBulk(off) || !h.dequeueBulk(off-a) {
							t.Fatalf("off %d: moving indexes failed", off)
						}
						if !enq.f(k - a) {
							t.Fatalf("off %d k %d: enqueue %s(%d) failed", off, k, enq.name, k-a)
						}
						if !deq.f(k) {
							t.Fatalf("off %d k %d: dequeue %s(%d) failed", off, k, deq.name, k)
						}
						if h.r.Len() != 0 {
							t.Fatalf("off %d k %d: Len %d after all dequeued", off, k, h.r.Len())
						}
					}
				}
			}
		}
		if h.spill == 0 {
			t.Fatal("no call straddled the end of the slot array")
		}
	}},

	{"OversizeRequests", 16, func(t *testing.T, h *harness) {
		if h.enqueueBulk(17) {
			t.Fatal("EnqueueBulk(cap+1) succeeded")
		}
		if got := h.enqueueBurst(40); got != 16 {
			t.Fatalf("EnqueueBurst(cap+24) = %d, want cap", got)
		}
		if h.dequeueBulk(17) {
			t.Fatal("DequeueBulk(cap+1) succeeded")
		}
		if got := h.dequeueBurst(40); got != 16 {
			t.Fatalf("DequeueBurst(cap+24) = %d, want cap", got)
		}
	}},

	{"Capacity1", 1, func(t *testing.T, h *harness) {
		for round := range 4 {
			if !h.enqueue() || h.r.Len() != 1 || h.r.Free() != 0 {
				t.Fatalf("round %d: Enqueue into empty ring of 1", round)
			}
			if h.enqueue() || h.enqueueBulk(1) || h.enqueueBurst(1) != 0 {
				t.Fatalf("round %d: enqueue into full ring of 1 succeeded", round)
			}
			if h.dequeueBulk(2) {
				t.Fatalf("round %d: DequeueBulk(2) succeeded", round)
			}
			switch round % 3 {
			case 0:
				h.dequeue()
			case 1:
				h.dequeueBulk(1)
			case 2:
				if h.dequeueBurst(2) != 1 {
					t.Fatalf("round %d: DequeueBurst(2) did not take the one item", round)
				}
			}
			if h.r.Len() != 0 {
				t.Fatalf("round %d: Len %d after dequeue", round, h.r.Len())
			}
			if h.enqueueBulk(2) {
				t.Fatalf("round %d: EnqueueBulk(2) into ring of 1 succeeded", round)
			}
			if h.enqueueBurst(2) != 1 || !h.dequeueBulk(1) {
				t.Fatalf("round %d: EnqueueBurst(2)/DequeueBulk(1)", round)
			}
		}
	}},

	{"SlotsCleared", 16, func(t *testing.T, h *harness) {
		allNil := func(when string) {
			t.Helper()
			for i, p := range h.r.slots {
				if p != nil {
					t.Fatalf("%s: slots[%d] = %p (value %d), want nil", when, i, p, *p)
				}
			}
		}
		// Put the indexes mid-array so the calls below straddle its end.
		h.enqueueBulk(11)
		h.dequeueBulk(11)
		allNil("after DequeueBulk")
		h.enqueueBulk(16)
		for range 4 {
			h.dequeue()
		}
		h.dequeueBulk(4)
		if h.dequeueBurst(20) != 8 {
			t.Fatal("DequeueBurst did not take the last 8")
		}
		allNil("after Dequeue, DequeueBulk and DequeueBurst of a full ring")
		h.enqueueBurst(9)
		h.dequeueBurst(9)
		allNil("after DequeueBurst")
	}},

	{"RandomOps", 32, func(t *testing.T, h *harness) {
		rng := rand.New(rand.NewPCG(1, h.start))
		for range 3000 {
			k := rng.IntN(40)
			switch rng.IntN(6) {
			case 0:
				h.enqueue()
			case 1:
				h.enqueueBulk(k)
			case 2:
				h.enqueueBurst(k)
			case 3:
				h.dequeue()
			case 4:
				h.dequeueBulk(k)
			case 5:
				h.dequeueBurst(k)
			}
		}
		h.drain()
	}},
}

// TestConformance runs the conformance suite for every mode and for start
// indexes at zero and just below the wrap of the 64-bit counters. It runs
// on one goroutine, which every mode allows.
func TestConformance(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					for _, start := range startsFor(tc.capacity) {
						t.Run(fmt.Sprintf("start=%#x", start), func(t *testing.T) {
							tc.run(t, newHarness(t, tc.capacity, mode, start))
						})
					}
				})
			}
		})
	}
}

func TestMode(t *testing.T) {
	for _, tc := range []struct {
		m      Mode
		name   string
		mp, mc bool
	}{
		{SPSC, "SPSC", false, false},
		{MPSC, "MPSC", true, false},
		{SPMC, "SPMC", false, true},
		{MPMC, "MPMC", true, true},
		{Mode(4), "Mode(4)", false, false},
		{Mode(255), "Mode(255)", false, false},
	} {
		if got := tc.m.String(); got != tc.name {
			t.Errorf("Mode(%d).String() = %q, want %q", uint8(tc.m), got, tc.name)
		}
		if got := tc.m.MultiProducer(); got != tc.mp {
			t.Errorf("%v.MultiProducer() = %v, want %v", tc.m, got, tc.mp)
		}
		if got := tc.m.MultiConsumer(); got != tc.mc {
			t.Errorf("%v.MultiConsumer() = %v, want %v", tc.m, got, tc.mc)
		}
	}
}
