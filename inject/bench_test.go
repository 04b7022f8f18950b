package inject

// Benchmarks of the injection engine's hot paths, each reporting ns/pkt and
// Mpps beside its baseline. The baseline for completion batching is written
// here: the same completion functions, called per NBL, with one atomic add
// on the handle's counters per NBL instead of one per run.

import (
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

const burst = 32

func reportPerPacket(b *testing.B, pkts int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*pkts)
	b.ReportMetric(ns, "ns/pkt")
	b.ReportMetric(1e3/ns, "Mpps")
}

var benchSink int

func benchFn(_ any, _ *nbl.NetBufferList, _ bool) { benchSink++ }

var benchBatch = &nbl.BatchCompletion{Fn: func(_ any, ls []*nbl.NetBufferList) { benchSink += len(ls) }}

// The parallel benchmark's completions touch nothing shared.
func benchNop(_ any, _ *nbl.NetBufferList, _ bool) {}

var benchNopBatch = &nbl.BatchCompletion{Fn: func(_ any, _ []*nbl.NetBufferList) {}}

// benchEnv is a stack with an L2 handle, a holding switch, a completion
// queue and burst NBLs.
type benchEnv struct {
	s    *Stack
	h    *Handle
	q    *CompletionQueue
	hold *holdingTarget
	id   []byte
	ls   []*nbl.NetBufferList
	ctx  *testCtx
}

func newBenchEnv(b *testing.B) *benchEnv {
	e := &benchEnv{s: newStack(b), ctx: newCtx("bench")}
	p := newPool(b, 2*burst)
	e.h = newHandle(b, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.q = newQueue(b, e.s, 2*burst, nil)
	e.hold = &holdingTarget{id: nextGUID()}
	if err := e.s.RegisterVSwitch(e.hold); err != nil {
		b.Fatal(err)
	}
	e.id = e.hold.id.Bytes()
	for range burst {
		e.ls = append(e.ls, alloc(b, p))
	}
	b.Cleanup(func() {
		for _, l := range e.ls {
			freeNBL(b, l)
		}
		checkFull(b, p)
	})
	return e
}

func BenchmarkQueryState(b *testing.B) {
	e := newBenchEnv(b)
	others := make([]*Handle, nbl.MaxInjectionHistory)
	for i := range others {
		others[i] = newHandle(b, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	}
	inject := func(h *Handle, l *nbl.NetBufferList) {
		if err := h.InjectVSwitchIngress(e.id, 0, 0, l, e.ctx, Done{Fn: benchFn}); err != nil {
			b.Fatal(err)
		}
		e.hold.completeHeld(e.q)
	}
	self, other, prev, fresh := e.ls[0], e.ls[1], e.ls[2], e.ls[3]
	inject(e.h, self)
	inject(others[0], other)
	// prev was injected by e.h, then by every other handle: the query
	// walks the whole history.
	inject(e.h, prev)
	for _, h := range others[:nbl.MaxInjectionHistory-1] {
		inject(h, prev)
	}
	for _, c := range []struct {
		name string
		l    *nbl.NetBufferList
		want FWPS_PACKET_INJECTION_STATE
	}{
		{"NOT_INJECTED", fresh, FWPS_PACKET_NOT_INJECTED},
		{"INJECTED_BY_SELF", self, FWPS_PACKET_INJECTED_BY_SELF},
		{"INJECTED_BY_OTHER", other, FWPS_PACKET_INJECTED_BY_OTHER},
		{"PREVIOUSLY_INJECTED_BY_SELF", prev, FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF},
	} {
		b.Run(c.name, func(b *testing.B) {
			if st, _ := e.h.QueryState(c.l); st != c.want {
				b.Fatalf("state %v, want %v", st, c.want)
			}
			b.ReportAllocs()
			var st FWPS_PACKET_INJECTION_STATE
			for b.Loop() {
				st, _ = e.h.QueryState(c.l)
			}
			benchSink += int(st)
			reportPerPacket(b, 1)
		})
	}
}

// completeBaseline completes n held NBLs the unbatched way: call each
// completion function, then one atomic add per NBL on the handle's
// completed and pending counts.
func completeBaseline(h *Handle, ls []*nbl.NetBufferList, dispatch bool) {
	for _, l := range ls {
		c := l.Completion
		l.Completion = nbl.Completion{}
		l.Status = STATUS_SUCCESS
		c.Fn(c.Context, l, dispatch)
		h.completed.Add(1)
		h.end(1)
	}
}

// BenchmarkInjectComplete32 injects a burst of 32 NBLs, as one chain or
// as 32 single injections, and completes them: through the CompletionQueue
// with a per-NBL function or a BatchCompletion, or by the unbatched
// baseline.
func BenchmarkInjectComplete32(b *testing.B) {
	for _, shape := range []string{"chain", "single"} {
		for _, mode := range []string{"queue-per-NBL", "queue-batch", "baseline-per-NBL-atomic"} {
			b.Run(shape+"/"+mode, func(b *testing.B) {
				e := newBenchEnv(b)
				done := Done{Fn: benchFn, Context: e.ctx}
				if mode == "queue-batch" {
					done = Done{Batch: benchBatch, Context: e.ctx}
				}
				inject := func() {
					if shape == "chain" {
						if err := e.h.InjectVSwitchIngress(e.id, 1, 0, link(e.ls...), e.ctx, done); err != nil {
							b.Fatal(err)
						}
						return
					}
					for _, l := range e.ls {
						if err := e.h.InjectVSwitchIngress(e.id, 1, 0, l, e.ctx, done); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					inject()
					if mode == "baseline-per-NBL-atomic" {
						completeBaseline(e.h, e.hold.nbls[:e.hold.n], false)
						clear(e.hold.nbls[:e.hold.n])
						e.hold.n = 0
					} else {
						e.hold.completeHeld(e.q)
					}
				}
				reportPerPacket(b, burst)
				if st := e.h.Stats(); st.Pending != 0 || st.Completed != st.Injected {
					b.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

// BenchmarkComplete32 isolates the completion step: 32 NBLs already in
// flight on one handle are completed through the queue (per-NBL function or
// batch) or by the baseline.
func BenchmarkComplete32(b *testing.B) {
	for _, mode := range []string{"queue-per-NBL", "queue-batch", "baseline-per-NBL-atomic"} {
		b.Run(mode, func(b *testing.B) {
			e := newBenchEnv(b)
			c := nbl.Completion{Fn: benchFn, Context: e.ctx, Owner: e.h}
			if mode == "queue-batch" {
				c = nbl.Completion{Batch: benchBatch, Context: e.ctx, Owner: e.h}
			}
			b.ReportAllocs()
			for b.Loop() {
				// What an injection leaves behind: one pending add per call.
				e.h.pending.Add(burst)
				for _, l := range e.ls {
					l.Completion = c
				}
				if mode == "baseline-per-NBL-atomic" {
					completeBaseline(e.h, e.ls, false)
					continue
				}
				for _, l := range e.ls {
					e.q.Complete(l, STATUS_SUCCESS)
				}
				e.q.Flush()
			}
			reportPerPacket(b, burst)
			if st := e.h.Stats(); st.Pending != 0 {
				b.Fatalf("stats %+v", st)
			}
		})
	}
}

// BenchmarkInjectComplete32Parallel runs the chain case on every core
// against one shared handle, where the handle's counters are contended:
// the case batching is for.
func BenchmarkInjectComplete32Parallel(b *testing.B) {
	for _, mode := range []string{"queue-per-NBL", "queue-batch", "baseline-per-NBL-atomic"} {
		b.Run(mode, func(b *testing.B) {
			s := newStack(b)
			h := newHandle(b, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			p := newPool(b, 64*burst)
			ctx := newCtx("bench")
			var total atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				hold := &holdingTarget{id: nextGUID()}
				if err := s.RegisterVSwitch(hold); err != nil {
					b.Error(err)
					return
				}
				id := hold.id.Bytes()
				q, _ := NewCompletionQueue(s, 2*burst)
				ls := make([]*nbl.NetBufferList, burst)
				for i := range ls {
					l, err := p.Allocate(0, 64)
					if err != nil {
						b.Error(err)
						return
					}
					ls[i] = l
				}
				done := Done{Fn: benchNop, Context: ctx}
				if mode == "queue-batch" {
					done = Done{Batch: benchNopBatch, Context: ctx}
				}
				n := int64(0)
				for pb.Next() {
					if err := h.InjectVSwitchIngress(id, 1, 0, link(ls...), ctx, done); err != nil {
						b.Error(err)
						return
					}
					if mode == "baseline-per-NBL-atomic" {
						completeBaseline(h, hold.nbls[:hold.n], true)
						hold.n = 0
					} else {
						hold.completeHeld(q)
					}
					n++
				}
				total.Add(n)
				for _, l := range ls {
					_ = p.Free(l)
				}
			})
			ns := float64(b.Elapsed().Nanoseconds()) / float64(total.Load()*burst)
			b.ReportMetric(ns, "ns/pkt")
			b.ReportMetric(1e3/ns, "Mpps")
		})
	}
}

// BenchmarkReinjectOriginal32 is the inspect callout's pattern on a switch
// worker, per frame of a burst of 32: reference the original, inject it
// alone with no completion function (the injection takes the reference
// over), then complete it into the worker's queue; one flush per burst
// drops the references through the worker's cache. It goes through the
// WFP-named functions, as ported callouts do.
func BenchmarkReinjectOriginal32(b *testing.B) {
	s := newStack(b)
	h := newHandle(b, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(b, 2*burst)
	cache, err := p.NewCache(2 * burst)
	if err != nil {
		b.Fatal(err)
	}
	q := newQueue(b, s, 2*burst, cache)
	hold := &holdingTarget{id: nextGUID()}
	if err := s.RegisterVSwitch(hold); err != nil {
		b.Fatal(err)
	}
	id := hold.id.Bytes()
	o := newOriginator(2 * burst)
	ls := make([]*nbl.NetBufferList, burst)
	for i := range ls {
		ls[i] = allocOriginal(b, p, o)
	}
	b.Cleanup(func() {
		for _, l := range ls {
			freeNBL(b, l)
		}
		checkFull(b, p, cache)
	})
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range ls {
			FwpsReferenceNetBufferList0(l, false)
			if st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, id, 1, 0, l, nil, nil); st != STATUS_SUCCESS {
				b.Fatalf("inject: %v", st)
			}
		}
		for i := range hold.n {
			q.Complete(hold.nbls[i], STATUS_SUCCESS)
			hold.nbls[i] = nil
		}
		hold.n = 0
		q.Flush()
	}
	reportPerPacket(b, burst)
	if st := h.Stats(); st.Pending != 0 || st.Completed != st.Injected {
		b.Fatalf("stats %+v", st)
	}
	for _, l := range ls {
		if r := l.RefCount(); r != 0 {
			b.Fatalf("NBL %d holds %d references after its completion, want 0", l.Index(), r)
		}
	}
}
