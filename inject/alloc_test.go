package inject

// The hot paths allocate nothing: state queries, tagging and injecting a
// single NBL or a chain into a target that completes into a CompletionQueue,
// Complete+Flush with per-NBL and batch completions, and the WFP-named query
// and vSwitch injection. The fake targets here preallocate everything.

import (
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// allocCompleted counts completions in the functions below; they are
// declared once, outside every measured closure.
var allocCompleted int

func allocFn(_ any, _ *nbl.NetBufferList, _ bool) { allocCompleted++ }

var allocBatch = &nbl.BatchCompletion{Fn: func(_ any, ls []*nbl.NetBufferList) { allocCompleted += len(ls) }}

// completingTarget completes each chain into its queue at once (the worker
// flushes at the end of the burst). It allocates nothing.
type completingTarget struct {
	id    GUID
	q     *CompletionQueue
	calls int
}

func (c *completingTarget) VSwitchID() GUID { return c.id }

func (c *completingTarget) InjectIngress(nbls *nbl.NetBufferList, _ int, _ uint32, _ uint16) {
	c.calls++
	c.q.CompleteChain(nbls, STATUS_SUCCESS)
}

func (c *completingTarget) Inject(r Request) {
	c.calls++
	c.q.CompleteChain(r.NBLs, STATUS_SUCCESS)
}

// holdingTarget keeps up to 64 NBLs in a fixed array, for tests that
// complete them separately.
type holdingTarget struct {
	id   GUID
	nbls [64]*nbl.NetBufferList
	n    int
}

func (h *holdingTarget) VSwitchID() GUID { return h.id }

func (h *holdingTarget) InjectIngress(nbls *nbl.NetBufferList, _ int, _ uint32, _ uint16) {
	for l := nbls; l != nil; {
		next := l.Next
		l.Next = nil
		h.nbls[h.n] = l
		h.n++
		l = next
	}
}

// holdingRig is a stack with an L2 handle, a pool of n NBLs with a cache, a
// completion queue over that cache, and a registered holdingTarget.
type holdingRig struct {
	s     *Stack
	h     *Handle
	p     *nbl.Pool
	cache *nbl.Cache
	q     *CompletionQueue
	hold  *holdingTarget
	id    []byte // the target's switch ID
}

func newHoldingRig(t *testing.T, n int) *holdingRig {
	t.Helper()
	r := &holdingRig{s: newStack(t)}
	r.h = newHandle(t, r.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	r.p = newPool(t, n)
	var err error
	if r.cache, err = r.p.NewCache(min(n, 64)); err != nil {
		t.Fatal(err)
	}
	r.q = newQueue(t, r.s, 64, r.cache)
	r.hold = &holdingTarget{id: nextGUID()}
	if err := r.s.RegisterVSwitch(r.hold); err != nil {
		t.Fatal(err)
	}
	r.id = r.hold.id.Bytes()
	return r
}

// completeHeld completes every held NBL into q and flushes it.
func (h *holdingTarget) completeHeld(q *CompletionQueue) {
	for i := range h.n {
		q.Complete(h.nbls[i], STATUS_SUCCESS)
		h.nbls[i] = nil
	}
	h.n = 0
	q.Flush()
}

func wantNoAllocs(t *testing.T, what string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Fatalf("%s: %.1f allocations per run, want 0", what, n)
	}
}

// allocEnv is a stack with a completing switch, an L2 handle and a pool.
type allocEnv struct {
	s   *Stack
	h   *Handle
	p   *nbl.Pool
	q   *CompletionQueue
	tg  *completingTarget
	id  []byte
	ls  []*nbl.NetBufferList
	ctx *testCtx
}

func newAllocEnv(t *testing.T, n int) *allocEnv {
	e := &allocEnv{s: newStack(t), p: newPool(t, n+8), ctx: newCtx("c")}
	e.h = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.q = newQueue(t, e.s, 64, nil)
	e.tg = &completingTarget{id: nextGUID(), q: e.q}
	if err := e.s.RegisterVSwitch(e.tg); err != nil {
		t.Fatal(err)
	}
	e.id = e.tg.id.Bytes()
	for range n {
		e.ls = append(e.ls, alloc(t, e.p))
	}
	t.Cleanup(func() {
		for _, l := range e.ls {
			freeNBL(t, l)
		}
		checkFull(t, e.p)
	})
	return e
}

func TestAllocsQueryState(t *testing.T) {
	e := newAllocEnv(t, 2)
	h2 := newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	self, prev := e.ls[0], e.ls[1]
	if err := e.h.InjectVSwitchIngress(e.id, 0, 0, self, e.ctx, Done{Fn: allocFn}); err != nil {
		t.Fatal(err)
	}
	if err := e.h.InjectVSwitchIngress(e.id, 0, 0, prev, e.ctx, Done{Fn: allocFn}); err != nil {
		t.Fatal(err)
	}
	e.q.Flush()
	if err := h2.InjectVSwitchIngress(e.id, 0, 0, prev, e.ctx, Done{Fn: allocFn}); err != nil {
		t.Fatal(err)
	}
	e.q.Flush()
	var st FWPS_PACKET_INJECTION_STATE
	var ctx any
	wantNoAllocs(t, "QueryState", func() {
		st, ctx = e.h.QueryState(self)
		st, ctx = e.h.QueryState(prev)
	})
	if st != FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF || ctx != any(e.ctx) {
		t.Fatalf("QueryState = %v, %v", st, ctx)
	}
	wantNoAllocs(t, "FwpsQueryPacketInjectionState0", func() {
		st = FwpsQueryPacketInjectionState0(e.h, self, &ctx)
		st = FwpsQueryPacketInjectionState0(h2, self, nil)
	})
	if st != FWPS_PACKET_INJECTED_BY_OTHER {
		t.Fatalf("state %v", st)
	}
}

func TestAllocsInjectSingle(t *testing.T) {
	e := newAllocEnv(t, 1)
	l := e.ls[0]
	allocCompleted = 0
	wantNoAllocs(t, "tag+inject+complete one NBL", func() {
		if err := e.h.InjectVSwitchIngress(e.id, 1, 2, l, e.ctx, Done{Fn: allocFn, Context: e.ctx}); err != nil {
			panic(err)
		}
		e.q.Flush()
	})
	if allocCompleted != 201 || e.h.Stats().Pending != 0 { // AllocsPerRun runs once more to warm up
		t.Fatalf("%d completions, stats %+v", allocCompleted, e.h.Stats())
	}
}

func TestAllocsInjectChain32(t *testing.T) {
	for _, mode := range []string{"per-NBL", "batch"} {
		t.Run(mode, func(t *testing.T) {
			e := newAllocEnv(t, 32)
			done := Done{Fn: allocFn, Context: e.ctx}
			if mode == "batch" {
				done = Done{Batch: allocBatch, Context: e.ctx}
			}
			allocCompleted = 0
			wantNoAllocs(t, "tag+inject+complete a chain of 32", func() {
				if err := e.h.InjectVSwitchIngress(e.id, 1, 2, link(e.ls...), e.ctx, done); err != nil {
					panic(err)
				}
				e.q.Flush()
			})
			if allocCompleted != 201*32 || e.h.Stats().Pending != 0 {
				t.Fatalf("%d completions, stats %+v", allocCompleted, e.h.Stats())
			}
		})
	}
}

func TestAllocsCompleteFlush(t *testing.T) {
	for _, mode := range []string{"per-NBL", "batch", "original-without-completion"} {
		t.Run(mode, func(t *testing.T) {
			e := newAllocEnv(t, 32)
			hold := &holdingTarget{id: nextGUID()}
			if err := e.s.RegisterVSwitch(hold); err != nil {
				t.Fatal(err)
			}
			id := hold.id.Bytes()
			done := Done{Fn: allocFn, Context: e.ctx}
			switch mode {
			case "batch":
				done = Done{Batch: allocBatch, Context: e.ctx}
			case "original-without-completion":
				o := newOriginator(e.p.Cap())
				for _, l := range e.ls {
					l.Originator = o
				}
				done = Done{}
			}
			allocCompleted = 0
			wantNoAllocs(t, "Complete+Flush of 32", func() {
				for _, l := range e.ls {
					if done.empty() {
						l.Reference() // the reference the injection takes over
					}
					if err := e.h.InjectVSwitchIngress(id, 0, 0, l, e.ctx, done); err != nil {
						panic(err)
					}
				}
				hold.completeHeld(e.q)
			})
			if want := 201 * 32; mode != "original-without-completion" && allocCompleted != want {
				t.Fatalf("%d completions, want %d", allocCompleted, want)
			}
			if st := e.h.Stats(); st.Pending != 0 || st.Completed != 201*32 {
				t.Fatalf("stats %+v", st)
			}
			for _, l := range e.ls {
				if l.RefCount() != 0 {
					t.Fatalf("RefCount %d after completion", l.RefCount())
				}
			}
		})
	}
}

func TestAllocsInjectDataPath(t *testing.T) {
	e := newAllocEnv(t, 1)
	h := newHandle(t, e.s, AF_INET, FWPS_INJECTION_TYPE_NETWORK|FWPS_INJECTION_TYPE_L2)
	dp := &completingTarget{q: e.q}
	for _, p := range []Path{PathIP, PathMAC} {
		if err := e.s.RegisterDataPath(p, dp); err != nil {
			t.Fatal(err)
		}
	}
	l := e.ls[0]
	wantNoAllocs(t, "network send + MAC send", func() {
		if err := h.InjectNetworkSend(0, 0, l, e.ctx, Done{Fn: allocFn}); err != nil {
			panic(err)
		}
		e.q.Flush()
		if err := h.InjectMacSend(0, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, 1, 0, l, e.ctx, Done{Fn: allocFn}); err != nil {
			panic(err)
		}
		e.q.Flush()
	})
	if dp.calls != 402 {
		t.Fatalf("%d data-path calls", dp.calls)
	}
}

func TestAllocsFwpsInjectvSwitch(t *testing.T) {
	h := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	q := newQueue(t, Default, 64, nil)
	tg := &completingTarget{id: nextGUID(), q: q}
	if err := Default.RegisterVSwitch(tg); err != nil {
		t.Fatal(err)
	}
	defer Default.UnregisterVSwitch(tg.id)
	id := tg.id.Bytes()
	l := alloc(t, p)
	ictx, cctx := newCtx("i"), newCtx("c")
	var st Status
	allocCompleted = 0
	wantNoAllocs(t, "FwpsInjectvSwitchEthernetIngressAsync0", func() {
		st = FwpsInjectvSwitchEthernetIngressAsync0(h, ictx, 0, 0, id, 3, 1, l, allocFn, cctx)
		q.Flush()
	})
	if st != STATUS_SUCCESS || allocCompleted != 201 || tg.calls != 201 {
		t.Fatalf("status %v, %d completions, %d calls", st, allocCompleted, tg.calls)
	}
	freeNBL(t, l)
	checkFull(t, p)
}

// TestAllocsFwpsRefusal: doc.go says returning a Status never allocates.
// A refused WFP-named injection returns nbl.StatusOf(err); before commit
// 9908e60 its errors.As made the status escape, so every refusal (a callout
// injecting into a closing handle or an unplugged switch at packet rate)
// allocated once. Regression test.
func TestAllocsFwpsRefusal(t *testing.T) {
	h := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	stale := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	p := newPool(t, 4)
	q := newQueue(t, Default, 4, nil)
	sw := newVSwitch(t, Default, completeNow(q, STATUS_SUCCESS))
	l := alloc(t, p)
	unknown := GUID{0xde, 0xad}
	id, unknownID := sw.id.Bytes(), unknown.Bytes()
	var st Status
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"STALE", func() { st = FwpsInjectvSwitchEthernetIngressAsync0(stale, nil, 0, 0, id, 0, 0, l, allocFn, nil) }},
		{"NOT_FOUND", func() { st = FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, unknownID, 0, 0, l, allocFn, nil) }},
		{"CLOSING", func() { st = FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, id, 0, 0, l, allocFn, nil) }},
	} {
		if c.name == "CLOSING" {
			destroyBounded(t, h)
		}
		c.f()
		if st == STATUS_SUCCESS {
			t.Fatalf("%s: succeeded", c.name)
		}
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("refused FwpsInjectvSwitchEthernetIngressAsync0 (%s): %.0f allocations per call, want 0", c.name, n)
		}
	}
	freeNBL(t, l)
	checkFull(t, p)
}
