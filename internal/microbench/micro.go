// Package microbench holds the ring and pool micro-benchmarks that the bench
// program reports, each beside the baseline a Go programmer would otherwise
// use. They are ordinary benchmark functions, run with testing.Benchmark, so
// they are the same code paths users call.
package microbench

import (
	"runtime"
	"sync"
	"testing"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/pool"
	"github.com/nblpipe/nblpipe/ring"
)

// Item stands for a packet descriptor: rings and pools move pointers to it.
type Item struct {
	ID  uint64
	Buf [48]byte
}

// Case is one micro-benchmark. One iteration moves Items items.
type Case struct {
	Name     string
	Items    int    // items moved per iteration (b.N counts iterations)
	Baseline string // name of the Case this one is compared with ("" for none)
	Bench    func(b *testing.B)
}

// Cases returns the micro-benchmarks in report order.
func Cases() []Case {
	return []Case{
		{Name: "baseline/chan/single/1goroutine", Items: 32, Bench: chanOneGoroutine(32)},
		{Name: "ring/SPSC/burst32/1goroutine", Items: 32, Baseline: "baseline/chan/single/1goroutine", Bench: ringOneGoroutine(ring.SPSC, 32)},
		{Name: "ring/MPMC/burst32/1goroutine", Items: 32, Baseline: "baseline/chan/single/1goroutine", Bench: ringOneGoroutine(ring.MPMC, 32)},

		{Name: "baseline/chan/single/2goroutines", Items: 1, Bench: chanTwoGoroutines()},
		{Name: "baseline/chan-of-batches32/2goroutines", Items: 32, Bench: chanBatchesTwoGoroutines()},
		{Name: "ring/SPSC/single/2cores", Items: 1, Baseline: "baseline/chan/single/2goroutines", Bench: ringTwoCores(ring.SPSC, 1, true)},
		{Name: "ring/SPSC/burst32/2cores", Items: 32, Baseline: "baseline/chan-of-batches32/2goroutines", Bench: ringTwoCores(ring.SPSC, 32, true)},
		{Name: "ring/SPSC/burst32/2goroutines", Items: 32, Baseline: "baseline/chan-of-batches32/2goroutines", Bench: ringTwoCores(ring.SPSC, 32, false)},
		{Name: "ring/MPMC/burst32/2cores", Items: 32, Baseline: "baseline/chan-of-batches32/2goroutines", Bench: ringTwoCores(ring.MPMC, 32, true)},

		{Name: "baseline/sync.Pool/single", Items: 1, Bench: syncPoolSingle()},
		{Name: "pool/direct/single", Items: 1, Baseline: "baseline/sync.Pool/single", Bench: poolSingle()},
		{Name: "pool/cache256/single", Items: 1, Baseline: "baseline/sync.Pool/single", Bench: cacheSingle()},
		{Name: "pool/cache256/bulk32", Items: 32, Baseline: "baseline/sync.Pool/single", Bench: cacheBulk(32)},
	}
}

func items(n int) []*Item {
	out := make([]*Item, n)
	for i := range out {
		out[i] = &Item{ID: uint64(i)}
	}
	return out
}

func mustRing(b *testing.B, capacity int, mode ring.Mode) *ring.Ring[*Item] {
	r, err := ring.New[*Item](capacity, mode)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// ringOneGoroutine enqueues a burst and dequeues it again on one goroutine.
func ringOneGoroutine(mode ring.Mode, burst int) func(b *testing.B) {
	return func(b *testing.B) {
		r := mustRing(b, 1024, mode)
		in, out := items(burst), make([]*Item, burst)
		b.ReportAllocs()
		for b.Loop() {
			if r.EnqueueBurst(in) != burst || r.DequeueBurst(out) != burst {
				b.Fatal("ring lost items")
			}
		}
	}
}

// twoGoroutines runs consume on a new goroutine and produce on the calling
// one, timing both until consume returns. With pin, the consumer's thread is
// bound to CPU 1 and the producer's to CPU 0 (the method of PERF.md). The
// channel baselines run unpinned: a goroutine locked to a thread makes every
// channel wake-up a thread hand-off, which slows channels several-fold, and
// nobody pins a channel pipeline.
func twoGoroutines(b *testing.B, pin bool, produce, consume func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	ready := make(chan struct{})
	go func() {
		defer wg.Done()
		if pin {
			unpin, _ := cpu.Pin(1)
			defer unpin()
		}
		close(ready)
		consume()
	}()
	<-ready
	if pin {
		unpin, _ := cpu.Pin(0)
		defer unpin()
	}
	b.ReportAllocs()
	b.ResetTimer()
	produce()
	wg.Wait()
}

// spin is called when a side finds nothing to do. On two pinned cores it
// returns at once most of the time; now and then it yields, so the test
// still ends where both goroutines share one CPU.
func spin(idle *int) {
	*idle++
	if *idle&1023 == 0 {
		runtime.Gosched()
	}
}

func ringTwoCores(mode ring.Mode, burst int, pin bool) func(b *testing.B) {
	return func(b *testing.B) {
		r := mustRing(b, 1024, mode)
		total := b.N * burst
		in := items(burst)
		twoGoroutines(b, pin, func() {
			idle := 0
			for sent := 0; sent < total; {
				var n int
				if burst == 1 {
					if r.Enqueue(in[0]) {
						n = 1
					}
				} else {
					n = r.EnqueueBurst(in[:min(burst, total-sent)])
				}
				if n == 0 {
					spin(&idle)
				}
				sent += n
			}
		}, func() {
			out := make([]*Item, burst)
			idle := 0
			for got := 0; got < total; {
				var n int
				if burst == 1 {
					if _, ok := r.Dequeue(); ok {
						n = 1
					}
				} else {
					n = r.DequeueBurst(out)
				}
				if n == 0 {
					spin(&idle)
				}
				got += n
			}
		})
	}
}

func chanOneGoroutine(burst int) func(b *testing.B) {
	return func(b *testing.B) {
		c := make(chan *Item, 1024)
		in := items(burst)
		b.ReportAllocs()
		for b.Loop() {
			for _, v := range in {
				c <- v
			}
			for range in {
				<-c
			}
		}
	}
}

func chanTwoGoroutines() func(b *testing.B) {
	return func(b *testing.B) {
		c := make(chan *Item, 1024)
		v := items(1)[0]
		twoGoroutines(b, false, func() {
			for i := 0; i < b.N; i++ {
				c <- v
			}
		}, func() {
			for i := 0; i < b.N; i++ {
				<-c
			}
		})
	}
}

func chanBatchesTwoGoroutines() func(b *testing.B) {
	return func(b *testing.B) {
		c := make(chan [32]*Item, 1024/32)
		var batch [32]*Item
		copy(batch[:], items(32))
		twoGoroutines(b, false, func() {
			for i := 0; i < b.N; i++ {
				c <- batch
			}
		}, func() {
			for i := 0; i < b.N; i++ {
				<-c
			}
		})
	}
}

func mustPool(b *testing.B) *pool.Pool[Item] {
	p, err := pool.New[Item](4096, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func poolSingle() func(b *testing.B) {
	return func(b *testing.B) {
		p := mustPool(b)
		b.ReportAllocs()
		for b.Loop() {
			v, ok := p.Get()
			if !ok {
				b.Fatal("pool empty")
			}
			p.Put(v)
		}
	}
}

func cacheSingle() func(b *testing.B) {
	return func(b *testing.B) {
		p := mustPool(b)
		c, err := p.NewCache(256)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			v, ok := c.Get()
			if !ok {
				b.Fatal("pool empty")
			}
			c.Put(v)
		}
		c.Flush()
	}
}

func cacheBulk(n int) func(b *testing.B) {
	return func(b *testing.B) {
		p := mustPool(b)
		c, err := p.NewCache(256)
		if err != nil {
			b.Fatal(err)
		}
		objs := make([]*Item, n)
		b.ReportAllocs()
		for b.Loop() {
			if !c.GetBulk(objs) {
				b.Fatal("pool empty")
			}
			c.PutBulk(objs)
		}
		c.Flush()
	}
}

func syncPoolSingle() func(b *testing.B) {
	return func(b *testing.B) {
		sp := sync.Pool{New: func() any { return new(Item) }}
		b.ReportAllocs()
		for b.Loop() {
			v := sp.Get().(*Item)
			sp.Put(v)
		}
	}
}
