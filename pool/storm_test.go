package pool

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stormObj is the element of the concurrency storm: owner says which worker
// holds it (0: nobody), and holder is written without atomics by whoever
// holds it, so that the race detector checks that the pool orders one
// holder's accesses before the next one's.
type stormObj struct {
	owner  atomic.Int32
	holder int32
	idx    int
	_      [32]byte
}

// stormWorker is one goroutine of the storm, working through its own cache
// or, if c is nil, on the pool directly.
type stormWorker struct {
	t      *testing.T
	id     int32
	p      *Pool[stormObj]
	c      *Cache[stormObj]
	rng    *rand.Rand
	held   []*stormObj
	isHeld []bool // by index
	failed *atomic.Bool
	ops    [4]int // successful get, put, getBulk, putBulk
}

func (w *stormWorker) errorf(format string, args ...any) {
	if !w.failed.Swap(true) { // report the first problem; the rest follow from it
		w.t.Errorf("worker %d: "+format, append([]any{w.id}, args...)...)
	}
}

func (w *stormWorker) take(v *stormObj) {
	i := w.p.Index(v)
	if i < 0 {
		w.errorf("got %p, which the pool does not own", v)
		return
	}
	if v.idx != i {
		w.errorf("object %d carries idx %d", i, v.idx)
	}
	if w.isHeld[i] {
		w.errorf("got object %d, which it already holds", i)
		return
	}
	if !v.owner.CompareAndSwap(0, w.id) {
		w.errorf("got object %d while worker %d holds it", i, v.owner.Load())
		return
	}
	v.holder = w.id
	w.isHeld[i] = true
	w.held = append(w.held, v)
}

// give removes k random held objects, marks them free and returns them.
func (w *stormWorker) give(k int) []*stormObj {
	out := make([]*stormObj, k)
	for j := range out {
		i := w.rng.IntN(len(w.held))
		v := w.held[i]
		w.held[i] = w.held[len(w.held)-1]
		w.held = w.held[:len(w.held)-1]
		if v.holder != w.id {
			w.errorf("object %d was written by worker %d while held", v.idx, v.holder)
		}
		if !v.owner.CompareAndSwap(w.id, 0) {
			w.errorf("object %d owned by worker %d while held", v.idx, v.owner.Load())
		}
		w.isHeld[v.idx] = false
		out[j] = v
	}
	return out
}

func (w *stormWorker) get() (*stormObj, bool) {
	if w.c != nil {
		return w.c.Get()
	}
	return w.p.Get()
}

func (w *stormWorker) put(v *stormObj) {
	if w.c != nil {
		w.c.Put(v)
		return
	}
	w.p.Put(v)
}

func (w *stormWorker) getBulk(out []*stormObj) bool {
	if w.c != nil {
		return w.c.GetBulk(out)
	}
	return w.p.GetBulk(out)
}

func (w *stormWorker) putBulk(in []*stormObj) {
	if w.c != nil {
		w.c.PutBulk(in)
		return
	}
	w.p.PutBulk(in)
}

func (w *stormWorker) run(iters, maxHeld, maxBulk int, deadline time.Time, stop *atomic.Bool) {
	out := make([]*stormObj, maxBulk)
	for i := 0; i < iters && !stop.Load() && !w.failed.Load(); i++ {
		if i%256 == 255 && time.Now().After(deadline) {
			break // out of time budget: a loaded machine, or the race detector
		}
		r := w.rng.IntN(100)
		if len(w.held) >= maxHeld && r < 50 {
			r += 50 // hold no more: put instead
		}
		switch {
		case r < 30:
			if v, ok := w.get(); ok {
				w.take(v)
				w.ops[0]++
			}
		case r < 50:
			k := 1 + w.rng.IntN(maxBulk)
			if w.getBulk(out[:k]) {
				for _, v := range out[:k] {
					w.take(v)
				}
				w.ops[2]++
			}
		case r < 80:
			if len(w.held) > 0 {
				w.put(w.give(1)[0])
				w.ops[1]++
			}
		case r < 99:
			if len(w.held) > 0 {
				k := 1 + w.rng.IntN(min(maxBulk, len(w.held)))
				w.putBulk(w.give(k))
				w.ops[3]++
			}
		default:
			if w.c != nil {
				w.c.Flush()
			}
		}
	}
	// Give everything back, through the same path, and flush.
	if len(w.held) > 0 {
		w.putBulk(w.give(len(w.held)))
	}
	if w.c != nil {
		w.c.Flush()
	}
}

func TestConcurrentStorm(t *testing.T) {
	const (
		n            = 192
		cacheWorkers = 4
		poolWorkers  = 2
		maxHeld      = 48
		maxBulk      = 40 // more than the smaller caches: some bulks bypass them
	)
	// A bounded count, and a time budget on top: the ring's producers and
	// consumers wait for each other to publish in order, so when the OS
	// deschedules a thread in the middle of an operation (a loaded machine)
	// the others spin until it is back, and under the race detector each
	// spin is slow. The budget keeps the test short then; the properties are
	// checked however much work got done.
	iters, budget := 1_000_000, 3*time.Second
	if raceEnabled {
		iters = 200_000
	}
	if testing.Short() {
		iters, budget = iters/10, budget/3
	}

	p, err := New(n, func(i int, v *stormObj) { v.idx = i })
	if err != nil {
		t.Fatal(err)
	}
	var (
		failed  atomic.Bool
		stop    atomic.Bool
		wg      sync.WaitGroup
		workers []*stormWorker
	)
	for id := int32(1); id <= cacheWorkers+poolWorkers; id++ {
		w := &stormWorker{
			t:      t,
			id:     id,
			p:      p,
			rng:    rand.New(rand.NewPCG(uint64(id), 0x5707)),
			isHeld: make([]bool, n),
			failed: &failed,
		}
		if id <= cacheWorkers {
			sizes := [...]int{16, 32, 8, 64}
			if w.c, err = p.NewCache(sizes[id-1]); err != nil {
				t.Fatal(err)
			}
		}
		workers = append(workers, w)
	}

	start := make(chan struct{})
	deadline := time.Now().Add(budget)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			w.run(iters, maxHeld, maxBulk, deadline, &stop)
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	// Past the budget, every worker stops within one operation; one that
	// does not is stuck in the pool.
	limit := budget + 30*time.Second
	if d, ok := t.Deadline(); ok && time.Until(d)-5*time.Second < limit {
		limit = time.Until(d) - 5*time.Second
	}
	close(start)
	select {
	case <-done:
	case <-time.After(limit):
		stop.Store(true)
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("storm did not finish within %v (livelock or lost wake-up?); goroutines:\n%s", limit, buf)
	}
	if t.Failed() {
		return
	}

	var total [4]int
	for _, w := range workers {
		for i, c := range w.ops {
			total[i] += c
		}
		if w.c != nil && w.c.Len() != 0 {
			t.Errorf("worker %d: cache holds %d after Flush", w.id, w.c.Len())
		}
	}
	t.Logf("successful get %d, put %d, getBulk %d, putBulk %d in %v", total[0], total[1], total[2], total[3],
		time.Since(deadline.Add(-budget)).Round(time.Millisecond))
	for i, c := range total {
		if c == 0 {
			t.Errorf("operation %d never succeeded: the storm did not exercise it", i)
		}
	}

	if p.InUse() != 0 || p.Available() != p.Cap() {
		t.Fatalf("after the storm: InUse %d, Available %d, Cap %d", p.InUse(), p.Available(), p.Cap())
	}
	all := make([]*stormObj, n)
	if !p.GetBulk(all) {
		t.Fatal("GetBulk(Cap) failed after the storm")
	}
	seen := make([]bool, n)
	for _, v := range all {
		i := p.Index(v)
		if i < 0 || seen[i] {
			t.Fatalf("object %d foreign or twice in the pool after the storm", i)
		}
		seen[i] = true
		if o := v.owner.Load(); o != 0 {
			t.Fatalf("object %d still marked as owned by worker %d", i, o)
		}
	}
	if _, ok := p.Get(); ok {
		t.Fatal("pool hands out more than Cap objects after the storm")
	}
}

// TestConcurrentExhaustion has every worker grab as much as it can from a
// small pool at once, so that Get and GetBulk fail often and the ring runs
// empty and full under contention, then checks each object went to exactly
// one worker.
func TestConcurrentExhaustion(t *testing.T) {
	const n, workers = 64, 4
	rounds := 2000
	if raceEnabled {
		rounds = 300
	}
	p, err := New(n, func(i int, v *stormObj) { v.idx = i })
	if err != nil {
		t.Fatal(err)
	}
	var failed atomic.Bool
	for round := range rounds {
		var wg sync.WaitGroup
		got := make([][]*stormObj, workers)
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id := int32(w + 1)
				bulk := make([]*stormObj, 1+w*3)
				for {
					var ok bool
					if w%2 == 0 {
						var v *stormObj
						if v, ok = p.Get(); ok {
							bulk[0] = v
							got[w] = append(got[w], v)
						}
					} else if ok = p.GetBulk(bulk); ok {
						got[w] = append(got[w], bulk...)
					} else if v, ok1 := p.Get(); ok1 { // the tail a bulk cannot take
						ok = true
						got[w] = append(got[w], v)
					}
					if !ok {
						break
					}
				}
				for _, v := range got[w] {
					if !v.owner.CompareAndSwap(0, id) {
						if !failed.Swap(true) {
							t.Errorf("round %d: object %d given to workers %d and %d", round, v.idx, v.owner.Load(), id)
						}
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if failed.Load() {
			return
		}
		sum := 0
		for w := range workers {
			sum += len(got[w])
		}
		if sum != n || p.Available() != 0 {
			t.Fatalf("round %d: workers took %d objects in all, Available %d; want %d, 0", round, sum, p.Available(), n)
		}
		for w := range workers {
			for _, v := range got[w] {
				v.owner.Store(0)
			}
			p.PutBulk(got[w])
		}
		if p.Available() != n {
			t.Fatalf("round %d: Available %d after putting everything back", round, p.Available())
		}
	}
}

func ExampleCache() {
	p, err := New(1024, func(i int, v *[64]byte) { v[0] = byte(i) })
	if err != nil {
		panic(err)
	}
	c, _ := p.NewCache(64)
	v, _ := c.Get()
	c.Put(v)
	c.Flush()
	fmt.Println(p.InUse(), p.Available())
	// Output: 0 1024
}
