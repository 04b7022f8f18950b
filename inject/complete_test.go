package inject

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
)

// queueEnv is a stack with two L2 handles and a switch that holds what it
// is given, so a test decides when and in which order NBLs complete.
type queueEnv struct {
	s      *Stack
	p      *nbl.Pool
	h1, h2 *Handle
	hold   *holder
	sw     *fakeVSwitch
}

func newQueueEnv(t *testing.T, nbls int) *queueEnv {
	e := &queueEnv{s: newStack(t), hold: &holder{}}
	e.p = newPool(t, nbls)
	e.h1 = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.h2 = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.sw = newVSwitch(t, e.s, e.hold.deliver)
	return e
}

// inject injects one new NBL (or the given chain) through h with done and
// returns its NBLs.
func (e *queueEnv) inject(t *testing.T, h *Handle, done Done, ls ...*nbl.NetBufferList) []*nbl.NetBufferList {
	t.Helper()
	if len(ls) == 0 {
		ls = []*nbl.NetBufferList{alloc(t, e.p)}
	}
	if err := h.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, link(ls...), nil, done); err != nil {
		t.Fatalf("inject: %v", err)
	}
	return ls
}

// eventLog records completion calls in order, as strings like
// "fn:3" or "batch:[1 2]" (NBL numbers from names).
type eventLog struct {
	names map[*nbl.NetBufferList]int
	log   []string
}

func (g *eventLog) name(l *nbl.NetBufferList) int {
	if n, ok := g.names[l]; ok {
		return n
	}
	return -1
}

func (g *eventLog) String() string { return strings.Join(g.log, " ") }

func TestCompletionQueueBatchRuns(t *testing.T) {
	e := newQueueEnv(t, 32)
	g := &eventLog{names: map[*nbl.NetBufferList]int{}}
	var ctxs []any
	B := &nbl.BatchCompletion{Fn: func(ctx any, ls []*nbl.NetBufferList) {
		parts := make([]string, len(ls))
		for i, l := range ls {
			parts[i] = fmt.Sprint(g.name(l))
			if l.Status != STATUS_SUCCESS {
				parts[i] += "!"
			}
			if l.Completion.Owner != nil {
				t.Errorf("NBL %d still marked in flight inside its batch completion", g.name(l))
			}
		}
		g.log = append(g.log, "["+strings.Join(parts, " ")+"]")
		ctxs = append(ctxs, ctx)
		for _, l := range ls {
			freeNBL(t, l)
		}
	}}
	A, C := newCtx("A"), newCtx("C")
	var nbls []*nbl.NetBufferList
	add := func(h *Handle, ctx any, n int) {
		ls := make([]*nbl.NetBufferList, n)
		for i := range ls {
			ls[i] = alloc(t, e.p)
			g.names[ls[i]] = len(nbls)
			nbls = append(nbls, ls[i])
		}
		e.inject(t, h, Done{Batch: B, Context: ctx}, ls...)
	}
	add(e.h1, A, 1) // 0
	add(e.h1, A, 1) // 1
	add(e.h1, A, 1) // 2
	add(e.h1, C, 1) // 3: another context splits the run
	add(e.h2, A, 1) // 4: another handle splits it
	add(e.h2, A, 1) // 5
	add(e.h1, A, 1) // 6
	add(e.h1, A, 3) // 7 8 9: a chain in one injection
	q := newQueue(t, e.s, 32, nil)
	e.hold.mu.Lock()
	held := append([]*nbl.NetBufferList(nil), e.hold.nbls...)
	e.hold.nbls = nil
	e.hold.mu.Unlock()
	for i, l := range held {
		st := STATUS_SUCCESS
		if i == 1 {
			st = STATUS_INVALID_BUFFER_SIZE
		}
		q.Complete(l, st)
	}
	if len(g.log) != 0 {
		t.Fatal("completions ran before Flush")
	}
	q.Flush()
	if want := "[0 1! 2] [3] [4 5] [6 7 8 9]"; g.String() != want {
		t.Fatalf("batch calls %q, want %q", g.String(), want)
	}
	wantCtx := []any{A, C, A, A}
	for i := range wantCtx {
		if ctxs[i] != wantCtx[i] {
			t.Fatalf("batch %d got context %v, want %v", i, ctxs[i], wantCtx[i])
		}
	}
	if st := q.Stats(); st.Delivered != 10 || st.Batches != 1 || st.Panics != 0 {
		t.Fatalf("queue stats %+v", st)
	}
	if s1, s2 := e.h1.Stats(), e.h2.Stats(); s1.Completed != 8 || s1.Pending != 0 || s2.Completed != 2 || s2.Pending != 0 {
		t.Fatalf("handle stats %+v %+v", s1, s2)
	}
	checkFull(t, e.p)
}

func TestCompletionQueueMixedFunctions(t *testing.T) {
	e := newQueueEnv(t, 32)
	g := &eventLog{names: map[*nbl.NetBufferList]int{}}
	fn := func(ctx any, l *nbl.NetBufferList, _ bool) {
		g.log = append(g.log, fmt.Sprintf("fn:%d", g.name(l)))
		freeNBL(t, l)
	}
	B := &nbl.BatchCompletion{Fn: func(ctx any, ls []*nbl.NetBufferList) {
		parts := make([]string, len(ls))
		for i, l := range ls {
			parts[i] = fmt.Sprint(g.name(l))
			freeNBL(t, l)
		}
		g.log = append(g.log, "batch:["+strings.Join(parts, " ")+"]")
	}}
	B2 := &nbl.BatchCompletion{Fn: B.Fn} // same function, different *BatchCompletion
	o := originatorFunc(func(l *nbl.NetBufferList) { g.log = append(g.log, fmt.Sprintf("orig:%d", g.name(l))) })
	var ls []*nbl.NetBufferList
	named := func(l *nbl.NetBufferList) *nbl.NetBufferList {
		g.names[l] = len(ls)
		ls = append(ls, l)
		return l
	}
	ctx := newCtx("ctx")
	e.inject(t, e.h1, Done{Fn: fn, Context: ctx}, named(alloc(t, e.p)))   // 0
	e.inject(t, e.h1, Done{Batch: B, Context: ctx}, named(alloc(t, e.p))) // 1
	e.inject(t, e.h1, Done{Batch: B, Context: ctx}, named(alloc(t, e.p))) // 2
	e.inject(t, e.h1, Done{Fn: fn, Context: ctx}, named(alloc(t, e.p)))   // 3
	e.inject(t, e.h1, Done{Batch: B, Context: ctx}, named(alloc(t, e.p))) // 4
	orig := named(allocOriginal(t, e.p, o))                               // 5: original, no completion
	orig.Reference()
	e.p.Release(orig)
	e.inject(t, e.h1, Done{}, orig)
	e.inject(t, e.h1, Done{Batch: B, Context: ctx}, named(alloc(t, e.p)))  // 6
	e.inject(t, e.h1, Done{Batch: B2, Context: ctx}, named(alloc(t, e.p))) // 7
	never := named(alloc(t, e.p))                                          // 8: never injected
	q := newQueue(t, e.s, 32, nil)
	e.hold.mu.Lock()
	held := append([]*nbl.NetBufferList(nil), e.hold.nbls...)
	e.hold.nbls = nil
	e.hold.mu.Unlock()
	for _, l := range held {
		q.Complete(l, STATUS_SUCCESS)
	}
	q.Complete(never, STATUS_SUCCESS)
	q.Flush()
	want := "fn:0 batch:[1 2] fn:3 batch:[4] orig:5 batch:[6] batch:[7]"
	if g.String() != want {
		t.Fatalf("completion calls\n got %q\nwant %q", g.String(), want)
	}
	if st := q.Stats(); st.Delivered != 9 {
		t.Fatalf("queue stats %+v", st)
	}
	if st := e.h1.Stats(); st.Injected != 8 || st.Completed != 8 || st.Pending != 0 {
		t.Fatalf("handle stats %+v", st)
	}
	checkFull(t, e.p)
}

func TestCompletionQueueAutoFlush(t *testing.T) {
	e := newQueueEnv(t, 16)
	rec := newRecorder(t, true)
	for range 6 {
		e.inject(t, e.h1, Done{Fn: rec.fn})
	}
	q := newQueue(t, e.s, 4, nil)
	e.hold.mu.Lock()
	held := append([]*nbl.NetBufferList(nil), e.hold.nbls...)
	e.hold.nbls = nil
	e.hold.mu.Unlock()
	for i := range 3 {
		q.Complete(held[i], STATUS_SUCCESS)
	}
	if q.Len() != 3 || rec.count() != 0 || q.Stats().Batches != 0 {
		t.Fatalf("Len %d, completions %d, batches %d before the queue filled", q.Len(), rec.count(), q.Stats().Batches)
	}
	q.Complete(held[3], STATUS_SUCCESS) // fills the queue: flushes by itself
	if q.Len() != 0 || rec.count() != 4 || q.Stats().Batches != 1 {
		t.Fatalf("after filling: Len %d, completions %d, batches %d", q.Len(), rec.count(), q.Stats().Batches)
	}
	if st := e.h1.Stats(); st.Pending != 2 || st.Completed != 4 {
		t.Fatalf("handle stats after the automatic flush %+v", st)
	}
	q.CompleteChain(link(held[4], held[5]), STATUS_SUCCESS)
	if q.Len() != 2 || rec.count() != 4 {
		t.Fatalf("Len %d, completions %d", q.Len(), rec.count())
	}
	q.Flush()
	q.Flush() // an empty flush is no batch
	if q.Len() != 0 || rec.count() != 6 || q.Stats().Batches != 2 || q.Stats().Delivered != 6 {
		t.Fatalf("Len %d, completions %d, stats %+v", q.Len(), rec.count(), q.Stats())
	}
	if st := e.h1.Stats(); st.Pending != 0 || st.Completed != 6 {
		t.Fatalf("handle stats %+v", st)
	}
	checkFull(t, e.p)
}

func TestCompletionQueuePanicRecovered(t *testing.T) {
	e := newQueueEnv(t, 32)
	panicCtx := newCtx("panic")
	var ran []int
	names := map[*nbl.NetBufferList]int{}
	fn := func(ctx any, l *nbl.NetBufferList, _ bool) {
		ran = append(ran, names[l])
		freeNBL(t, l)
		if ctx == any(panicCtx) {
			panic("completion function fails")
		}
	}
	B := &nbl.BatchCompletion{Fn: func(ctx any, ls []*nbl.NetBufferList) {
		for _, l := range ls {
			ran = append(ran, names[l])
			freeNBL(t, l)
		}
		panic(errors.New("batch completion fails"))
	}}
	o := newOriginator(e.p.Cap())
	add := func(done Done, l *nbl.NetBufferList) {
		names[l] = len(names)
		e.inject(t, e.h1, done, l)
	}
	add(Done{Fn: fn}, alloc(t, e.p))                    // 0
	add(Done{Fn: fn, Context: panicCtx}, alloc(t, e.p)) // 1 panics
	add(Done{Fn: fn}, alloc(t, e.p))                    // 2
	add(Done{Batch: B}, alloc(t, e.p))                  // 3 \ one batch call
	add(Done{Batch: B}, alloc(t, e.p))                  // 4 / that panics
	add(Done{Fn: fn, Context: panicCtx}, alloc(t, e.p)) // 5 panics
	add(Done{Fn: fn}, alloc(t, e.p))                    // 6
	orig := allocOriginal(t, e.p, o)                    // 7 no completion
	orig.Reference()
	e.p.Release(orig)
	add(Done{}, orig)
	if st := e.h1.Stats(); st.Pending != 8 {
		t.Fatalf("stats %+v", st)
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		errc <- e.h1.DestroyContext(ctx)
	}()
	waitFor(t, "Destroy to begin", e.h1.Closing)
	stillBlocked(t, errc, "Destroy with 8 pending")

	q := newQueue(t, e.s, 32, nil)
	e.hold.complete(q, STATUS_SUCCESS, -1)
	if want := []int{0, 1, 2, 3, 4, 5, 6}; fmt.Sprint(ran) != fmt.Sprint(want) {
		t.Fatalf("completion functions ran for %v, want %v", ran, want)
	}
	if st := q.Stats(); st.Panics != 3 || st.Delivered != 8 || st.Batches != 1 {
		t.Fatalf("queue stats %+v, want 3 panics, 8 delivered, 1 batch", st)
	}
	if o.total.Load() != 1 {
		t.Fatalf("originator returns %d", o.total.Load())
	}
	if err := await(t, errc, "Destroy after a flush with panics"); err != nil {
		t.Fatal(err)
	}
	if st := e.h1.Stats(); st.Pending != 0 || st.Completed != 8 {
		t.Fatalf("handle stats %+v", st)
	}
	// The queue still works after recovering.
	rec := newRecorder(t, true)
	e.inject(t, e.h2, Done{Fn: rec.fn})
	e.hold.complete(q, STATUS_SUCCESS, -1)
	if rec.count() != 1 || q.Stats().Panics != 3 || e.h2.Stats().Pending != 0 {
		t.Fatalf("after recovery: %d completions, stats %+v", rec.count(), q.Stats())
	}
	checkFull(t, e.p)
}

func TestCompletionQueueReleasesToCaches(t *testing.T) {
	s := newStack(t)
	p1, p2, p3 := newPool(t, 64), newPool(t, 8), newPool(t, 8)
	c1, err := p1.NewCache(16)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := p2.NewCache(16)
	if err != nil {
		t.Fatal(err)
	}
	// nil caches are skipped; p3 has none and goes through its ring.
	q := newQueue(t, s, 8, c1)
	q2, err := NewCompletionQueue(s, 8, nil, c1, nil, c2)
	if err != nil {
		t.Fatal(err)
	}
	o := newOriginator(64)
	// Never-injected NBLs are released: originals to their originator.
	l1, l3 := alloc(t, p1), alloc(t, p3)
	orig := allocOriginal(t, p1, o)
	inUse := p1.InUse()
	q.Complete(l1, STATUS_SUCCESS)
	q.Complete(l3, STATUS_SUCCESS)
	q.Complete(orig, STATUS_SUCCESS)
	q.Flush()
	if o.total.Load() != 1 {
		t.Fatalf("originator returns %d", o.total.Load())
	}
	if !p3.Full() {
		t.Fatal("an NBL of a pool without a cache was not released through its pool")
	}
	if p1.InUse() != inUse {
		t.Fatalf("p1 InUse %d -> %d: NBLs of the cache's pool should park in the cache", inUse, p1.InUse())
	}
	c1.Flush()
	if !p1.Full() {
		t.Fatal("p1 not full after flushing its cache")
	}
	// With several caches, each NBL goes to its own pool's cache.
	a, b := alloc(t, p1), alloc(t, p2)
	q2.Complete(a, STATUS_SUCCESS)
	q2.Complete(b, STATUS_SUCCESS)
	q2.Flush()
	if p2.Full() {
		t.Fatal("p2's NBL did not park in p2's cache")
	}
	checkFull(t, p1, c1)
	checkFull(t, p2, c2)
	checkFull(t, p3)
}

func TestNewCompletionQueueSize(t *testing.T) {
	s := newStack(t)
	for _, n := range []int{0, -1} {
		if q, err := NewCompletionQueue(s, n); q != nil || !errors.Is(err, ErrInvalidParameter) {
			t.Fatalf("NewCompletionQueue(%d) = %v, %v", n, q, err)
		}
	}
	q := newQueue(t, s, 1, nil)
	q.Flush() // empty: nothing happens
	if st := q.Stats(); st != (QueueStats{}) || q.Len() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCompletionQueueBatchContextIdentity(t *testing.T) {
	e := newQueueEnv(t, 32)
	var sizes []int
	B := &nbl.BatchCompletion{Fn: func(ctx any, ls []*nbl.NetBufferList) {
		sizes = append(sizes, len(ls))
		for _, l := range ls {
			freeNBL(t, l)
		}
	}}
	same := newCtx("x")
	var slice any = []int{1, 2} // uncomparable: == on it would panic
	var m any = map[string]int{"a": 1}
	for _, c := range []any{
		same, same, // one run
		newCtx("x"), newCtx("x"), // equal values, different pointers: two runs
		slice, slice, // the same interface value: one run, no panic
		[]int{1, 2},    // boxed separately: its own run
		m, m, nil, nil, // one run each
	} {
		e.inject(t, e.h1, Done{Batch: B, Context: c})
	}
	q := newQueue(t, e.s, 32, nil)
	e.hold.complete(q, STATUS_SUCCESS, -1)
	if want := "[2 1 1 2 1 2 2]"; fmt.Sprint(sizes) != want {
		t.Fatalf("batch sizes %v, want %s", sizes, want)
	}
	if q.Stats().Panics != 0 {
		t.Fatal("comparing contexts panicked")
	}
	checkFull(t, e.p)
}

// TestCompletionQueueHandleRuns: the pending counts of interleaved handles
// come out right, and a handle's Destroy returns only once its own NBLs in
// the queue have been flushed, whatever the other handle's state.
func TestCompletionQueueHandleRuns(t *testing.T) {
	e := newQueueEnv(t, 32)
	rec := newRecorder(t, true)
	order := []*Handle{e.h1, e.h2, e.h1, e.h1, e.h2, e.h1, e.h2}
	for _, h := range order {
		e.inject(t, h, Done{Fn: rec.fn})
	}
	// h2 keeps one more in flight, never completed in this flush.
	extra := e.inject(t, e.h2, Done{Fn: rec.fn})
	e.hold.mu.Lock()
	held := append([]*nbl.NetBufferList(nil), e.hold.nbls[:len(order)]...)
	e.hold.nbls = e.hold.nbls[len(order):]
	e.hold.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- e.h1.Destroy() }()
	waitFor(t, "Destroy to begin", e.h1.Closing)
	q := newQueue(t, e.s, 32, nil)
	for _, l := range held {
		q.Complete(l, STATUS_SUCCESS)
	}
	stillBlocked(t, errc, "h1's Destroy before the flush")
	q.Flush()
	if err := await(t, errc, "h1's Destroy"); err != nil {
		t.Fatal(err)
	}
	if s1, s2 := e.h1.Stats(), e.h2.Stats(); s1.Pending != 0 || s1.Completed != 4 || s2.Pending != 1 || s2.Completed != 3 {
		t.Fatalf("stats h1 %+v h2 %+v", s1, s2)
	}
	if rec.count() != 7 || rec.countFor(extra[0]) != 0 {
		t.Fatalf("%d completions", rec.count())
	}
	e.hold.complete(q, STATUS_SUCCESS, -1)
	if s2 := e.h2.Stats(); s2.Pending != 0 || s2.Completed != 4 {
		t.Fatalf("h2 %+v", s2)
	}
	checkFull(t, e.p)
}

// TestDestroyContextBound: DestroyContext gives up with the context's error
// while completions are pending, leaves the handle closing, and a later
// call returns once they have run.
func TestDestroyContextBound(t *testing.T) {
	e := newQueueEnv(t, 8)
	rec := newRecorder(t, true)
	e.inject(t, e.h1, Done{Fn: rec.fn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := e.h1.DestroyContext(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DestroyContext with a completion pending: %v, want DeadlineExceeded", err)
	}
	if !e.h1.Closing() || e.s.Handles() != 1 {
		t.Fatalf("Closing %v, Handles %d", e.h1.Closing(), e.s.Handles())
	}
	refused := alloc(t, e.p)
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, refused, nil, Done{Fn: rec.fn}); !errors.Is(err, ErrHandleClosing) {
		t.Fatalf("inject after a timed-out destroy: %v", err)
	}
	e.hold.complete(newQueue(t, e.s, 4, nil), STATUS_SUCCESS, -1)
	errc := make(chan error, 1)
	go func() { errc <- e.h1.Destroy() }()
	if err := await(t, errc, "Destroy"); err != nil {
		t.Fatal(err)
	}
	if e.s.Handles() != 1 { // h2 is still alive; h1 counted down once
		t.Fatalf("Handles %d", e.s.Handles())
	}
	// The refused NBL is the caller's: the pool is missing exactly one.
	if e.p.InUse() != 1 || rec.count() != 1 {
		t.Fatalf("InUse %d, completions %d; want the one refused NBL, one completion", e.p.InUse(), rec.count())
	}
	freeNBL(t, refused)
	checkFull(t, e.p)
}
