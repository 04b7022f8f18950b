package inject

// Test infrastructure shared by the internal tests: fresh stacks and
// handles, pools with leak checks, an originator that counts returns, a
// completion recorder, a fake vSwitch target and a fake IP/stream/MAC data
// path, and worker goroutines that own a CompletionQueue.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/internal/ledger/goroutines"
	"github.com/nblpipe/nblpipe/nbl"
)

// testTimeout bounds every wait that must succeed; reaching it fails the
// test instead of hanging it. It is never a performance assertion.
const testTimeout = 30 * time.Second

// TestMain starts the Default stack (used by the WFP-named functions) and,
// after the tests, fails the run if a handle of Default was left alive or a
// goroutine started by the tests is still running after a bounded wait
// (package internal/ledger/goroutines: ledger itself imports inject).
func TestMain(m *testing.M) {
	Default.Start()
	before := goroutines.Take()
	code := m.Run()
	if code == 0 {
		if n := Default.Handles(); n != 0 {
			fmt.Fprintf(os.Stderr, "leak check: %d handles of the Default stack were not destroyed\n", n)
			code = 1
		}
		if leaked := before.Leaked(goroutines.DefaultWait); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leak check: %d goroutines of the tests are still running:\n%s\n", len(leaked), goroutines.Format(leaked))
			code = 1
		}
	}
	os.Exit(code)
}

// testCtx is a context value; pointers to it are compared by identity.
// (Not zero-sized: distinct zero-sized objects may share an address.)
type testCtx struct{ name string }

func newCtx(name string) *testCtx { return &testCtx{name: name} }

// ---- stacks and handles ----

// newStack returns a fresh, started stack.
func newStack(tb testing.TB) *Stack {
	tb.Helper()
	s := NewStack()
	s.Start()
	return s
}

// newHandle creates a handle on s and destroys it (bounded) when the test
// ends.
func newHandle(tb testing.TB, s *Stack, af ADDRESS_FAMILY, types uint32) *Handle {
	tb.Helper()
	h, err := s.CreateHandle(af, types)
	if err != nil {
		tb.Fatalf("CreateHandle(%d, 0x%x): %v", af, types, err)
	}
	if h == nil {
		tb.Fatalf("CreateHandle(%d, 0x%x) returned a nil handle and no error", af, types)
	}
	tb.Cleanup(func() { destroyBounded(tb, h) })
	return h
}

// fwpsHandle creates a handle on the Default stack with
// FwpsInjectionHandleCreate0 and destroys it when the test ends.
func fwpsHandle(tb testing.TB, af ADDRESS_FAMILY, flags uint32) *Handle {
	tb.Helper()
	var h *Handle
	if st := FwpsInjectionHandleCreate0(af, flags, &h); st != STATUS_SUCCESS {
		tb.Fatalf("FwpsInjectionHandleCreate0(%d, 0x%x) = %v", af, flags, st)
	}
	if h == nil {
		tb.Fatalf("FwpsInjectionHandleCreate0(%d, 0x%x) succeeded with a nil handle", af, flags)
	}
	tb.Cleanup(func() { destroyBounded(tb, h) })
	return h
}

// destroyBounded destroys h, failing the test if its completions do not
// all arrive within testTimeout.
func destroyBounded(tb testing.TB, h *Handle) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.DestroyContext(ctx); err != nil {
		tb.Errorf("destroy handle %d: %v", h.ID(), err)
	}
}

// ---- pools and NBLs ----

func newPool(tb testing.TB, n int) *nbl.Pool {
	tb.Helper()
	p, err := nbl.NewPool(nbl.Config{NBLs: n})
	if err != nil {
		tb.Fatalf("NewPool(%d): %v", n, err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// checkFull flushes the caches and fails the test unless every descriptor,
// extra NetBuffer and extra MDL is back in p.
func checkFull(tb testing.TB, p *nbl.Pool, caches ...*nbl.Cache) {
	tb.Helper()
	for _, c := range caches {
		c.Flush()
	}
	if !p.Full() {
		nbs, mdls := p.ExtraInUse()
		tb.Fatalf("pool not full: %d descriptors, %d extra NetBuffers and %d extra MDLs in use", p.InUse(), nbs, mdls)
	}
}

// alloc takes a "created" NBL: allocated by the caller, no Originator.
func alloc(tb testing.TB, p *nbl.Pool) *nbl.NetBufferList {
	tb.Helper()
	l, err := p.Allocate(0, 64)
	if err != nil {
		tb.Fatalf("Allocate: %v", err)
	}
	return l
}

// allocOriginal takes an "original" NBL, lent by a port: it has an
// Originator that is told when it leaves.
func allocOriginal(tb testing.TB, p *nbl.Pool, o nbl.Originator) *nbl.NetBufferList {
	tb.Helper()
	l := alloc(tb, p)
	l.Originator = o
	return l
}

func mustClone(tb testing.TB, p *nbl.Pool, l *nbl.NetBufferList) *nbl.NetBufferList {
	tb.Helper()
	cl, err := p.Clone(l)
	if err != nil {
		tb.Fatalf("Clone: %v", err)
	}
	return cl
}

// link chains ls through Next and returns the head.
func link(ls ...*nbl.NetBufferList) *nbl.NetBufferList {
	for i, l := range ls {
		if i+1 < len(ls) {
			l.Next = ls[i+1]
		} else {
			l.Next = nil
		}
	}
	if len(ls) == 0 {
		return nil
	}
	return ls[0]
}

// chainNBLs lists the NBLs of a chain (at most 1<<17, so a loop cannot hang
// it).
func chainNBLs(head *nbl.NetBufferList) []*nbl.NetBufferList {
	var out []*nbl.NetBufferList
	for l := head; l != nil && len(out) < 1<<17; l = l.Next {
		out = append(out, l)
	}
	return out
}

// freeNBL ends the caller's ownership of l the way its kind requires: a
// clone is freed with FreeClone, an original released (to its originator),
// a created NBL freed. Safe on any goroutine (reports with Errorf).
func freeNBL(tb testing.TB, l *nbl.NetBufferList) {
	switch {
	case l.IsClone():
		if err := l.Pool().FreeClone(l); err != nil {
			tb.Errorf("FreeClone: %v", err)
		}
	case l.Originator != nil:
		l.Pool().Release(l)
	default:
		if err := l.Pool().Free(l); err != nil {
			tb.Errorf("Free: %v", err)
		}
	}
}

// nblSnap is everything an injection could change on an NBL, for checking
// that a refused injection changed nothing.
type nblSnap struct {
	next       *nbl.NetBufferList
	status     Status
	flags      uint32
	tag        nbl.InjectionTag
	fnSet      bool
	batch      *nbl.BatchCompletion
	ctx, owner any
	originator nbl.Originator
	parent     *nbl.NetBufferList
	childRefs  int32
	refs       int32
	dataLen    int
}

func snap(l *nbl.NetBufferList) nblSnap {
	s := nblSnap{
		next: l.Next, status: l.Status, flags: l.NblFlags, tag: l.Tag,
		fnSet: l.Completion.Fn != nil, batch: l.Completion.Batch, ctx: l.Completion.Context, owner: l.Completion.Owner,
		originator: l.Originator, parent: l.Parent(), childRefs: l.ChildRefCount(), refs: l.RefCount(), dataLen: -1,
	}
	if nb := l.FirstNetBuffer(); nb != nil {
		s.dataLen = nb.DataLength()
	}
	return s
}

// ---- originators ----

// countingOriginator counts the NBLs given back to it, in total and per
// descriptor index, and counts those returned while clones or references
// were still alive (which must never happen). It never allocates.
type countingOriginator struct {
	total    atomic.Int64
	perIndex []atomic.Int32
	badHolds atomic.Int64
}

func newOriginator(n int) *countingOriginator {
	return &countingOriginator{perIndex: make([]atomic.Int32, n)}
}

func (o *countingOriginator) ReturnNetBufferList(l *nbl.NetBufferList) {
	o.total.Add(1)
	if i := l.Index(); i < len(o.perIndex) {
		o.perIndex[i].Add(1)
	}
	if l.ChildRefCount() != 0 || l.RefCount() != 0 {
		o.badHolds.Add(1)
	}
}

// ---- completion recorder ----

type completion struct {
	ctx      any
	l        *nbl.NetBufferList
	status   Status
	dispatch bool
	tag      nbl.InjectionTag
}

// recorder records per-NBL completions (FWPS_INJECT_COMPLETE0) and, if
// free is set, ends the NBL's life afterwards (freeNBL). hook, if set, runs
// before the NBL is freed.
type recorder struct {
	tb     testing.TB
	free   bool
	hook   func(c completion)
	mu     sync.Mutex
	events []completion
}

func newRecorder(tb testing.TB, free bool) *recorder { return &recorder{tb: tb, free: free} }

func (r *recorder) fn(ctx any, l *nbl.NetBufferList, dispatchLevel bool) {
	c := completion{ctx: ctx, l: l, status: l.Status, dispatch: dispatchLevel, tag: l.Tag}
	r.mu.Lock()
	r.events = append(r.events, c)
	r.mu.Unlock()
	if r.hook != nil {
		r.hook(c)
	}
	if r.free {
		freeNBL(r.tb, l)
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) all() []completion {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]completion(nil), r.events...)
}

// countFor returns how many completions l got.
func (r *recorder) countFor(l *nbl.NetBufferList) int {
	n := 0
	for _, c := range r.all() {
		if c.l == l {
			n++
		}
	}
	return n
}

// ---- fake vSwitch target ----

type ingressCall struct {
	nbls  []*nbl.NetBufferList
	count int
	port  uint32
	nic   uint16
}

// fakeVSwitch is a VSwitchTarget that records what it receives and hands
// the chain to deliver, which decides when and how it completes.
type fakeVSwitch struct {
	id      GUID
	deliver func(head *nbl.NetBufferList, count int)
	mu      sync.Mutex
	calls   []ingressCall
}

var guidSeq atomic.Uint32

// nextGUID returns a GUID no other test uses.
func nextGUID() GUID {
	n := guidSeq.Add(1)
	return GUID{0x6b, 0x29, 0xfc, 0x40, 0xca, 0x47, 0x10, 0x67, 0xb3, 0x1d, 0, 0xc0, 0x4f, byte(n >> 16), byte(n >> 8), byte(n)}
}

func (f *fakeVSwitch) VSwitchID() GUID { return f.id }

func (f *fakeVSwitch) InjectIngress(nbls *nbl.NetBufferList, count int, sourcePortID uint32, sourceNicIndex uint16) {
	c := ingressCall{nbls: chainNBLs(nbls), count: count, port: sourcePortID, nic: sourceNicIndex}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if f.deliver != nil {
		f.deliver(nbls, count)
	}
}

func (f *fakeVSwitch) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeVSwitch) call(i int) ingressCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[i]
}

// newVSwitch registers a fake switch with a fresh GUID on s and removes it
// when the test ends.
func newVSwitch(tb testing.TB, s *Stack, deliver func(*nbl.NetBufferList, int)) *fakeVSwitch {
	tb.Helper()
	f := &fakeVSwitch{id: nextGUID(), deliver: deliver}
	if err := s.RegisterVSwitch(f); err != nil {
		tb.Fatalf("RegisterVSwitch: %v", err)
	}
	tb.Cleanup(func() { s.UnregisterVSwitch(f.id) })
	return f
}

// ---- fake IP / stream / MAC data path ----

// fakePath is a DataPath that records every Request and hands its chain to
// deliver.
type fakePath struct {
	deliver func(head *nbl.NetBufferList, count int)
	mu      sync.Mutex
	reqs    []Request
	chains  [][]*nbl.NetBufferList
}

func (f *fakePath) Inject(r Request) {
	ls := chainNBLs(r.NBLs)
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.chains = append(f.chains, ls)
	f.mu.Unlock()
	if r.NBLs != nil && f.deliver != nil {
		f.deliver(r.NBLs, r.Count)
	}
}

func (f *fakePath) numReqs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakePath) req(i int) Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[i]
}

func newPath(tb testing.TB, s *Stack, p Path, deliver func(*nbl.NetBufferList, int)) *fakePath {
	tb.Helper()
	f := &fakePath{deliver: deliver}
	if err := s.RegisterDataPath(p, f); err != nil {
		tb.Fatalf("RegisterDataPath(%d): %v", p, err)
	}
	tb.Cleanup(func() { s.UnregisterDataPath(p) })
	return f
}

// ---- delivery modes ----

// completeNow returns a deliver function that completes the chain and
// flushes q inside the injection call: the completion runs before the
// injection function returns (allowed by WFP, spec §7). q must belong to
// the goroutine that injects.
func completeNow(q *CompletionQueue, st Status) func(*nbl.NetBufferList, int) {
	return func(head *nbl.NetBufferList, _ int) {
		q.CompleteChain(head, st)
		q.Flush()
	}
}

// holder keeps the NBLs it is given (unlinked, in order) until the test
// completes them: completion after the injection returned.
type holder struct {
	mu   sync.Mutex
	nbls []*nbl.NetBufferList
}

func (h *holder) deliver(head *nbl.NetBufferList, _ int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := head; l != nil; {
		next := l.Next
		l.Next = nil
		h.nbls = append(h.nbls, l)
		l = next
	}
}

func (h *holder) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.nbls)
}

// complete completes the first n held NBLs (all if n < 0) into q with st
// and flushes q; it returns how many it completed.
func (h *holder) complete(q *CompletionQueue, st Status, n int) int {
	h.mu.Lock()
	if n < 0 || n > len(h.nbls) {
		n = len(h.nbls)
	}
	take := append([]*nbl.NetBufferList(nil), h.nbls[:n]...)
	h.nbls = append(h.nbls[:0], h.nbls[n:]...)
	h.mu.Unlock()
	for _, l := range take {
		q.Complete(l, st)
	}
	q.Flush()
	return n
}

// newQueue makes a completion queue on the calling goroutine.
func newQueue(tb testing.TB, s *Stack, size int, cache *nbl.Cache) *CompletionQueue {
	tb.Helper()
	q, err := NewCompletionQueue(s, size, cache)
	if err != nil {
		tb.Fatalf("NewCompletionQueue(%d): %v", size, err)
	}
	return q
}

// ---- worker goroutines ----

type workerConfig struct {
	dispatch  bool                              // mark the worker with EnterDispatch
	queueSize int                               // default 64
	burst     int                               // chains taken per flush, default 32
	pool      *nbl.Pool                         // if set, the worker's queue releases through a cache of it
	status    func(l *nbl.NetBufferList) Status // the completion status, default STATUS_SUCCESS
}

// worker is a packet-path goroutine: it takes injected chains from in,
// completes them into its own CompletionQueue and flushes at the end of
// each burst, like a switch worker.
type worker struct {
	in    chan *nbl.NetBufferList
	done  chan QueueStats
	once  sync.Once
	stats QueueStats
	tb    testing.TB
}

func startWorker(tb testing.TB, s *Stack, cfg workerConfig) *worker {
	tb.Helper()
	if cfg.queueSize == 0 {
		cfg.queueSize = 64
	}
	if cfg.burst == 0 {
		cfg.burst = 32
	}
	w := &worker{in: make(chan *nbl.NetBufferList, 4096), done: make(chan QueueStats, 1), tb: tb}
	ready := make(chan error, 1)
	go func() {
		if cfg.dispatch {
			s.EnterDispatch()
			defer s.LeaveDispatch()
		}
		var cache *nbl.Cache
		if cfg.pool != nil {
			c, err := cfg.pool.NewCache(64)
			if err != nil {
				ready <- err
				return
			}
			cache = c
		}
		q, err := NewCompletionQueue(s, cfg.queueSize, cache)
		ready <- err
		if err != nil {
			return
		}
		defer func() {
			// Flush the cache before reporting, so that a test that
			// stops the worker can then find the pool full.
			st := q.Stats()
			if cache != nil {
				cache.Flush()
			}
			w.done <- st
		}()
		complete := func(head *nbl.NetBufferList) {
			for l := head; l != nil; {
				next := l.Next
				l.Next = nil
				st := STATUS_SUCCESS
				if cfg.status != nil {
					st = cfg.status(l)
				}
				q.Complete(l, st)
				l = next
			}
		}
		for {
			head, ok := <-w.in
			if !ok {
				q.Flush()
				return
			}
			complete(head)
		burst:
			for range cfg.burst - 1 {
				select {
				case head, ok = <-w.in:
					if !ok {
						q.Flush()
						return
					}
					complete(head)
				default:
					break burst
				}
			}
			q.Flush()
		}
	}()
	if err := <-ready; err != nil {
		tb.Fatalf("start worker: %v", err)
	}
	tb.Cleanup(func() { w.stop() })
	return w
}

func (w *worker) deliver(head *nbl.NetBufferList, _ int) { w.in <- head }

// stop ends the worker after it has completed everything delivered so far
// and returns its queue's counters.
func (w *worker) stop() QueueStats {
	w.once.Do(func() {
		close(w.in)
		select {
		case w.stats = <-w.done:
		case <-time.After(testTimeout):
			w.tb.Errorf("worker did not stop within %v", testTimeout)
		}
	})
	return w.stats
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantStatus fails unless got is want.
func wantStatus(tb testing.TB, what string, got, want Status) {
	tb.Helper()
	if got != want {
		tb.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// wantErr fails unless err carries the status want (nil for success).
func wantErr(tb testing.TB, what string, err error, want Status) {
	tb.Helper()
	if got := nbl.StatusOf(err); got != want {
		tb.Fatalf("%s: error %v (status %v), want %v", what, err, got, want)
	}
}
