package ring

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// Benchmarks move *int items, as rings carry descriptor pointers.
//
// Names are key=value so that benchstat can slice them:
//
//	BenchmarkRing/mode=SPSC/op=burst32/placement=2cores
//	BenchmarkBaseline/impl=chan/op=batch32/placement=2cores
//
// Placements: 1goroutine enqueues k items then dequeues them on the
// benchmark goroutine; 2cores runs the producer on the benchmark goroutine
// and the consumer on another, each locked to its thread and the two
// threads pinned to different CPUs where the machine allows. Each reports
// ns/item and Mops (million items moved per second, counting an item once
// when it has been both enqueued and dequeued); ns/op is per loop
// iteration, which moves k items.

const benchCap = 1024

type opKind int

const (
	opSingle opKind = iota
	opBulk
	opBurst
)

var benchOps = []struct {
	name string
	kind opKind
	k    int // items per iteration
}{
	{"single", opSingle, 1},
	{"bulk8", opBulk, 8},
	{"bulk32", opBulk, 32},
	{"burst8", opBurst, 8},
	{"burst32", opBurst, 32},
}

func BenchmarkRing(b *testing.B) {
	for _, mode := range []Mode{SPSC, MPMC} {
		for _, op := range benchOps {
			b.Run(fmt.Sprintf("mode=%v/op=%s/placement=1goroutine", mode, op.name), func(b *testing.B) {
				benchRingLocal(b, mode, op.kind, op.k)
			})
			b.Run(fmt.Sprintf("mode=%v/op=%s/placement=2cores", mode, op.name), func(b *testing.B) {
				benchRingPair(b, mode, op.kind, op.k)
			})
		}
	}
}

func benchItems(k int) []*int {
	in := make([]*int, k)
	for i := range in {
		in[i] = new(int)
	}
	return in
}

// reportItems adds ns/item and Mops for items moved in b.Elapsed().
func reportItems(b *testing.B, items int) {
	ns := float64(b.Elapsed().Nanoseconds())
	if items == 0 || ns == 0 {
		return
	}
	b.ReportMetric(ns/float64(items), "ns/item")
	b.ReportMetric(float64(items)/ns*1e3, "Mops")
}

func benchRingLocal(b *testing.B, mode Mode, kind opKind, k int) {
	r, err := New[*int](benchCap, mode)
	if err != nil {
		b.Fatal(err)
	}
	in := benchItems(k)
	out := make([]*int, k)
	b.ReportAllocs()
	switch kind {
	case opSingle:
		x := in[0]
		for b.Loop() {
			if !r.Enqueue(x) {
				b.Fatal("Enqueue into empty ring failed")
			}
			if _, ok := r.Dequeue(); !ok {
				b.Fatal("Dequeue of one item failed")
			}
		}
	case opBulk:
		for b.Loop() {
			if !r.EnqueueBulk(in) {
				b.Fatal("EnqueueBulk into empty ring failed")
			}
			if !r.DequeueBulk(out) {
				b.Fatal("DequeueBulk failed")
			}
		}
	case opBurst:
		for b.Loop() {
			if r.EnqueueBurst(in) != k {
				b.Fatal("EnqueueBurst into empty ring was short")
			}
			if r.DequeueBurst(out) != k {
				b.Fatal("DequeueBurst was short")
			}
		}
	}
	reportItems(b, b.N*k)
	if r.Len() != 0 {
		b.Fatalf("Len %d at end", r.Len())
	}
}

// backoff is called when a call moved nothing: spin, yielding now and then
// so that an unpinned run on few CPUs still makes progress.
type backoff uint32

func (s *backoff) wait() {
	*s++
	if *s%64 == 0 {
		runtime.Gosched()
	}
}

var pinLog sync.Once

// benchCPUs returns two CPUs this process may run on, or ok false if it
// has fewer than two.
func benchCPUs() (c0, c1 int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() < 2 {
		return 0, 0, false
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus[0], cpus[1], len(cpus) == 2
}

// pinTo locks the calling goroutine to its thread and, if c >= 0, binds
// the thread to CPU c. A failure to bind is logged once and otherwise
// ignored. The returned function undoes both and must run on the same
// goroutine.
func pinTo(b *testing.B, c int) (unpin func()) {
	if c < 0 {
		runtime.LockOSThread()
		return runtime.UnlockOSThread
	}
	unpin, err := cpu.Pin(c)
	if err != nil {
		pinLog.Do(func() { b.Logf("not pinning benchmark threads: %v", err) })
	}
	return unpin
}

// runPair runs the 2cores placement: consume runs on a new goroutine pinned
// to one CPU until it has taken the number of items its argument returns
// (math.MaxInt64 until the producer knows the total), produce runs the
// timed loop on the benchmark goroutine pinned to another and returns the
// number of items it sent. The consumer's drain of the last items is
// timed too; runPair returns when the consumer goroutine has ended.
func runPair(b *testing.B, consume func(target *atomic.Int64) int64, produce func() int64) {
	c0, c1, ok := benchCPUs()
	if !ok {
		c0, c1 = -1, -1
	}
	var target atomic.Int64
	target.Store(math.MaxInt64)
	ready := make(chan struct{})
	done := make(chan int64, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		unpin := pinTo(b, c1)
		close(ready)
		done <- consume(&target)
		unpin()
	}()
	unpin := pinTo(b, c0)
	defer unpin()
	<-ready
	b.ReportAllocs()

	sent := produce() // returns with the timer stopped, after b.Loop
	b.StartTimer()
	target.Store(sent)
	got := <-done
	b.StopTimer()
	<-exited
	if got != sent {
		b.Fatalf("consumer took %d items, producer sent %d", got, sent)
	}
	reportItems(b, int(sent))
}

func benchRingPair(b *testing.B, mode Mode, kind opKind, k int) {
	r, err := New[*int](benchCap, mode)
	if err != nil {
		b.Fatal(err)
	}
	in := benchItems(k)

	consume := func(target *atomic.Int64) int64 {
		out := make([]*int, k)
		var got int64
		var bo backoff
		for {
			var n int
			switch kind {
			case opSingle:
				if _, ok := r.Dequeue(); ok {
					n = 1
				}
			case opBulk:
				if r.DequeueBulk(out) {
					n = k
				}
			case opBurst:
				n = r.DequeueBurst(out)
			}
			if n == 0 {
				if got >= target.Load() {
					return got
				}
				bo.wait()
				continue
			}
			got += int64(n)
		}
	}

	produce := func() int64 {
		var bo backoff
		switch kind {
		case opSingle:
			x := in[0]
			for b.Loop() {
				for !r.Enqueue(x) {
					bo.wait()
				}
			}
		case opBulk:
			for b.Loop() {
				for !r.EnqueueBulk(in) {
					bo.wait()
				}
			}
		case opBurst:
			for b.Loop() {
				for sent := 0; sent < k; {
					n := r.EnqueueBurst(in[sent:])
					if n == 0 {
						bo.wait()
					}
					sent += n
				}
			}
		}
		return int64(b.N) * int64(k)
	}

	runPair(b, consume, produce)
	if r.Len() != 0 {
		b.Fatalf("Len %d at end", r.Len())
	}
}

// BenchmarkBaseline measures Go channels doing the same jobs: a channel of
// benchCap items, one item per send, and a channel of 32-item batches sent
// by value holding benchCap items in all.
func BenchmarkBaseline(b *testing.B) {
	b.Run("impl=chan/op=single/placement=1goroutine", func(b *testing.B) {
		ch := make(chan *int, benchCap)
		x := new(int)
		b.ReportAllocs()
		for b.Loop() {
			ch <- x
			<-ch
		}
		reportItems(b, b.N)
	})
	b.Run("impl=chan/op=single/placement=2cores", func(b *testing.B) {
		ch := make(chan *int, benchCap)
		x := new(int)
		runPair(b,
			func(*atomic.Int64) int64 {
				var got int64
				for range ch {
					got++
				}
				return got
			},
			func() int64 {
				for b.Loop() {
					ch <- x
				}
				close(ch) // the consumer stops after the items in flight
				return int64(b.N)
			})
	})
	const batch = 32
	b.Run(fmt.Sprintf("impl=chan/op=batch%d/placement=1goroutine", batch), func(b *testing.B) {
		ch := make(chan [batch]*int, benchCap/batch)
		var v [batch]*int
		copy(v[:], benchItems(batch))
		b.ReportAllocs()
		for b.Loop() {
			ch <- v
			<-ch
		}
		reportItems(b, b.N*batch)
	})
	b.Run(fmt.Sprintf("impl=chan/op=batch%d/placement=2cores", batch), func(b *testing.B) {
		ch := make(chan [batch]*int, benchCap/batch)
		var v [batch]*int
		copy(v[:], benchItems(batch))
		runPair(b,
			func(*atomic.Int64) int64 {
				var got int64
				for range ch {
					got += batch
				}
				return got
			},
			func() int64 {
				for b.Loop() {
					ch <- v
				}
				close(ch)
				return int64(b.N) * batch
			})
	})
}
