package ring

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tagged is what the stress test sends: which producer, and the position in
// that producer's sequence.
type tagged struct {
	prod, seq int
}

// TestStress runs producers and consumers concurrently on every mode (one
// goroutine on a single side, four on a multi side), each mixing single,
// bulk and burst calls of random sizes on a small ring, and checks that
// every item is delivered exactly once, that each consumer sees each
// producer's items in sequence order, and that the ring ends empty with
// every slot cleared. The indexes start just below the 64-bit wrap, which
// the run crosses.
func TestStress(t *testing.T) {
	perProducer := 1000000
	if raceEnabled {
		perProducer = 200000
	}
	if testing.Short() {
		perProducer /= 4
	}
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			stress(t, mode, perProducer)
		})
	}
}

func stress(t *testing.T, mode Mode, perProducer int) {
	const capacity = 64
	const maxBatch = 48 // bulk calls stay at or below capacity/2; bursts may ask for more than fits
	nProd, nCons := 1, 1
	if mode.MultiProducer() {
		nProd = 4
	}
	if mode.MultiConsumer() {
		nCons = 4
	}
	total := nProd * perProducer
	start := ^uint64(0) - uint64(total)/2
	r, err := newAt[*tagged](capacity, mode, start)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("%v: %d producers × %d items, %d consumers, seed %d", mode, nProd, perProducer, nCons, seed)

	items := make([][]tagged, nProd)
	for p := range items {
		items[p] = make([]tagged, perProducer)
		for s := range items[p] {
			items[p][s] = tagged{p, s}
		}
	}

	var (
		stop     atomic.Bool  // set on timeout: every goroutine returns
		consumed atomic.Int64 // items dequeued so far, all consumers
		produced atomic.Int64
		fullHits atomic.Int64 // producer calls that moved nothing
		emptyHit atomic.Int64 // consumer calls that moved nothing
		wg       sync.WaitGroup
	)
	// seen[c][p] is a bitset of the items of producer p that consumer c
	// took.
	seen := make([][][]uint64, nCons)
	for c := range seen {
		seen[c] = make([][]uint64, nProd)
		for p := range seen[c] {
			seen[c][p] = make([]uint64, (perProducer+63)/64)
		}
	}
	errs := make([]error, nProd+nCons)

	wg.Add(nProd + nCons)
	for p := range nProd {
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(p)))
			buf := make([]*tagged, maxBatch)
			// batch returns the next k items to send.
			batch := func(sent, k int) []*tagged {
				for i := range k {
					buf[i] = &items[p][sent+i]
				}
				return buf[:k]
			}
			for sent := 0; sent < perProducer && !stop.Load(); {
				rest := perProducer - sent
				var n int
				switch rng.IntN(3) {
				case 0:
					if r.Enqueue(&items[p][sent]) {
						n = 1
					}
				case 1:
					k := 1 + rng.IntN(min(rest, capacity/2))
					if r.EnqueueBulk(batch(sent, k)) {
						n = k
					}
				case 2:
					k := 1 + rng.IntN(min(rest, maxBatch))
					n = r.EnqueueBurst(batch(sent, k))
					if n < 0 || n > k {
						errs[p] = fmt.Errorf("producer %d: EnqueueBurst(%d) = %d", p, k, n)
						stop.Store(true)
						return
					}
				}
				sent += n
				produced.Add(int64(n))
				if n == 0 {
					fullHits.Add(1)
					runtime.Gosched()
				}
			}
		}()
	}
	for c := range nCons {
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(1000+c)))
			last := make([]int, nProd) // last seq seen from each producer
			for i := range last {
				last[i] = -1
			}
			buf := make([]*tagged, maxBatch)
			for consumed.Load() < int64(total) && !stop.Load() {
				var out []*tagged
				switch rng.IntN(3) {
				case 0:
					if v, ok := r.Dequeue(); ok {
						buf[0] = v
						out = buf[:1]
					} else if v != nil {
						errs[nProd+c] = fmt.Errorf("consumer %d: failed Dequeue returned %p", c, v)
						stop.Store(true)
						return
					}
				case 1:
					k := 1 + rng.IntN(capacity/2)
					if r.DequeueBulk(buf[:k]) {
						out = buf[:k]
					}
				case 2:
					k := 1 + rng.IntN(maxBatch)
					n := r.DequeueBurst(buf[:k])
					if n < 0 || n > k {
						errs[nProd+c] = fmt.Errorf("consumer %d: DequeueBurst(%d) = %d", c, k, n)
						stop.Store(true)
						return
					}
					out = buf[:n]
				}
				if len(out) == 0 {
					emptyHit.Add(1)
					runtime.Gosched()
					continue
				}
				for _, v := range out {
					if v == nil || v.prod < 0 || v.prod >= nProd || v.seq < 0 || v.seq >= perProducer ||
						v != &items[v.prod][v.seq] {
						errs[nProd+c] = fmt.Errorf("consumer %d: got %p (%+v), not an item that was sent", c, v, v)
						stop.Store(true)
						return
					}
					if v.seq <= last[v.prod] {
						errs[nProd+c] = fmt.Errorf("consumer %d: producer %d's item %d arrived after its item %d",
							c, v.prod, v.seq, last[v.prod])
						stop.Store(true)
						return
					}
					if nCons == 1 && v.seq != last[v.prod]+1 {
						// The only consumer sees every item: each
						// producer's sequence arrives without gaps.
						errs[nProd+c] = fmt.Errorf("consumer %d: producer %d's item %d followed its item %d; the only consumer must get every item in order",
							c, v.prod, v.seq, last[v.prod])
						stop.Store(true)
						return
					}
					last[v.prod] = v.seq
					seen[c][v.prod][v.seq/64] |= 1 << (v.seq % 64)
				}
				consumed.Add(int64(len(out)))
			}
		}()
	}

	// An observer checks that Len and Free stay within bounds while both
	// sides move.
	var observerErr error
	observerDone := make(chan struct{})
	go func() {
		defer close(observerDone)
		for consumed.Load() < int64(total) && !stop.Load() {
			if l := r.Len(); l < 0 || l > capacity {
				observerErr = fmt.Errorf("Len = %d during the run, want 0 to %d", l, capacity)
				return
			}
			if f := r.Free(); f < 0 || f > capacity {
				observerErr = fmt.Errorf("Free = %d during the run, want 0 to %d", f, capacity)
				return
			}
			runtime.Gosched()
		}
	}()

	done := make(chan struct{})
	go func() { wg.Wait(); <-observerDone; close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		stop.Store(true)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		t.Fatalf("timed out: %d of %d items enqueued, %d dequeued, Len %d", produced.Load(), total, consumed.Load(), r.Len())
	}
	t.Logf("producer calls that moved nothing: %d; consumer calls: %d", fullHits.Load(), emptyHit.Load())
	if observerErr != nil {
		t.Error(observerErr)
	}
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Exactly once: every item is in exactly one consumer's set.
	bad := 0
	for p := range nProd {
		for s := range perProducer {
			k := 0
			for c := range nCons {
				k += int(seen[c][p][s/64] >> (s % 64) & 1)
			}
			if k != 1 {
				if bad++; bad <= 10 {
					t.Errorf("producer %d item %d delivered %d times", p, s, k)
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d items in all not delivered exactly once", bad)
	}
	if n := consumed.Load(); n != int64(total) {
		t.Errorf("consumers took %d items, want %d", n, total)
	}

	// The ring is empty, idle and holds no references.
	if l := r.Len(); l != 0 {
		t.Errorf("Len = %d after all items were consumed", l)
	}
	pt, ct := r.prod.tail.Load(), r.cons.tail.Load()
	if pt != start+uint64(total) || ct != pt {
		t.Errorf("prod.tail %#x, cons.tail %#x; want both %#x", pt, ct, start+uint64(total))
	}
	if r.mp && r.prod.head.Load() != pt {
		t.Errorf("prod.head %#x != prod.tail %#x", r.prod.head.Load(), pt)
	}
	if r.mc && r.cons.head.Load() != ct {
		t.Errorf("cons.head %#x != cons.tail %#x", r.cons.head.Load(), ct)
	}
	for i, v := range r.slots {
		if v != nil {
			t.Errorf("slots[%d] = %+v, want nil", i, *v)
		}
	}
}
