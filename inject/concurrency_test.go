package inject

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
)

// spreadTarget is a switch that hands each injected chain to one of its
// workers, round robin.
type spreadTarget struct {
	id      GUID
	workers []*worker
	n       atomic.Uint32
}

func (s *spreadTarget) VSwitchID() GUID { return s.id }

func (s *spreadTarget) InjectIngress(nbls *nbl.NetBufferList, count int, _ uint32, _ uint16) {
	s.workers[int(s.n.Add(1))%len(s.workers)].in <- nbls
}

// stressLedger counts, per injection (by a sequence number kept in the
// NBL's OriginatorContext) and per descriptor index, how many completions
// arrived, and per handle how many completion functions ran.
type stressLedger struct {
	seqDone      []atomic.Int32
	seqAccepted  []atomic.Bool
	idxInjected  []atomic.Int64
	idxCompleted []atomic.Int64
	handleDone   sync.Map // handle ID -> *atomic.Int64
	errs         atomic.Int64
	firstErr     atomic.Value
}

func (g *stressLedger) fail(format string, args ...any) {
	if g.errs.Add(1) == 1 {
		g.firstErr.Store(fmt.Sprintf(format, args...))
	}
}

func (g *stressLedger) handleCounter(id uint64) *atomic.Int64 {
	v, _ := g.handleDone.LoadOrStore(id, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// done records the completion of one injected NBL.
func (g *stressLedger) done(l *nbl.NetBufferList) {
	seq := l.OriginatorContext
	if n := g.seqDone[seq].Add(1); n != 1 {
		g.fail("injection %d completed %d times", seq, n)
	}
	i := l.Index()
	if c := g.idxCompleted[i].Add(1); c > g.idxInjected[i].Load() {
		g.fail("descriptor %d completed more often than injected", i)
	}
	if l.Tag.Handle == 0 {
		g.fail("completion of an NBL with no injection tag")
	}
	g.handleCounter(l.Tag.Handle).Add(1)
}

// stressOriginator is the port behind the originals: an original that
// comes back after an injection counts as that injection's completion.
type stressOriginator struct {
	g          *stressLedger
	uninjected atomic.Int64 // returned without being injected (refused)
	returns    atomic.Int64
}

func (o *stressOriginator) ReturnNetBufferList(l *nbl.NetBufferList) {
	o.returns.Add(1)
	if l.ChildRefCount() != 0 || l.RefCount() != 0 {
		o.g.fail("original %d returned with holds", l.Index())
	}
	if l.Tag.Handle == 0 {
		o.uninjected.Add(1)
		return
	}
	o.g.done(l)
}

// TestConcurrentInjectCompleteDestroy injects from several goroutines
// through several handles into a switch whose two dispatch-level workers
// complete in bursts, with per-NBL completions, batch completions,
// originals without completion and inspect-style clones mixed. One handle is
// destroyed in the middle of the run: its Destroy returns only after every
// one of its own completions ran, while the others keep injecting. In the
// end every accepted NBL completed exactly once, every refused one never,
// the counters agree and the pool is full.
func TestConcurrentInjectCompleteDestroy(t *testing.T) {
	const handles = 4
	perHandle := 2000
	if raceEnabled {
		perHandle = 300
	}
	if testing.Short() {
		perHandle /= 4
	}
	const maxChain = 4
	maxSeq := handles * perHandle * maxChain * 2 // the victim may run past its share

	s := newStack(t)
	p := newPool(t, 1024)
	g := &stressLedger{
		seqDone: make([]atomic.Int32, maxSeq), seqAccepted: make([]atomic.Bool, maxSeq),
		idxInjected: make([]atomic.Int64, p.Cap()), idxCompleted: make([]atomic.Int64, p.Cap()),
	}
	orig := &stressOriginator{g: g} // originals injected without completion
	var parentsMade, parentsReturned atomic.Int64

	workers := []*worker{
		startWorker(t, s, workerConfig{dispatch: true, pool: p, queueSize: 64, burst: 32}),
		startWorker(t, s, workerConfig{dispatch: true, pool: p, queueSize: 48, burst: 16}),
	}
	tg := &spreadTarget{id: nextGUID(), workers: workers}
	if err := s.RegisterVSwitch(tg); err != nil {
		t.Fatal(err)
	}
	defer s.UnregisterVSwitch(tg.id)
	hs := make([]*Handle, handles)
	for i := range hs {
		hs[i] = newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	}
	victim := hs[0]

	perNBL := func(_ any, l *nbl.NetBufferList, dispatchLevel bool) {
		if !dispatchLevel {
			g.fail("completion on a dispatch worker reported dispatchLevel false")
		}
		g.done(l)
		if err := l.Pool().Free(l); err != nil {
			g.fail("Free in completion: %v", err)
		}
	}
	batch := &nbl.BatchCompletion{Fn: func(_ any, ls []*nbl.NetBufferList) {
		for _, l := range ls {
			g.done(l)
			if err := l.Pool().Free(l); err != nil {
				g.fail("Free in batch completion: %v", err)
			}
		}
	}}
	cloneDone := func(ctx any, l *nbl.NetBufferList, dispatchLevel bool) {
		g.done(l)
		parent := ctx.(*nbl.NetBufferList)
		if err := l.Pool().FreeClone(l); err != nil {
			g.fail("FreeClone in completion: %v", err)
		}
		parent.Dereference()
	}
	parentOriginator := originatorFunc(func(l *nbl.NetBufferList) {
		parentsReturned.Add(1)
		if l.ChildRefCount() != 0 || l.RefCount() != 0 {
			g.fail("parent %d returned with holds", l.Index())
		}
	})

	var seq atomic.Uint64
	deadline := time.Now().Add(testTimeout)
	allocWait := func() (*nbl.NetBufferList, bool) {
		for {
			l, err := p.Allocate(0, 60)
			if err == nil {
				l.OriginatorContext = seq.Add(1) - 1
				if l.OriginatorContext >= uint64(maxSeq) {
					g.fail("sequence overflow")
					_ = p.Free(l)
					return nil, false
				}
				return l, true
			}
			if time.Now().After(deadline) || g.errs.Load() > 0 {
				g.fail("allocation starved: %v", err)
				return nil, false
			}
			runtime.Gosched()
		}
	}

	type injStats struct {
		accepted, refusedClosing int
	}
	// injectOne makes and injects one unit of work (chosen by k) through h;
	// it returns the NBLs accepted, or 0 and the error. On error it gives
	// back what it made, as the caller owns it.
	injectOne := func(h *Handle, k int) (int, error) {
		id := tg.id.Bytes()
		switch k % 4 {
		case 0: // created NBL, per-NBL completion
			l, ok := allocWait()
			if !ok {
				return 0, errStress
			}
			g.idxInjected[l.Index()].Add(1)
			s := l.OriginatorContext // l is not ours to read once injected
			err := h.InjectVSwitchIngress(id, 1, 0, l, nil, Done{Fn: perNBL})
			if err != nil {
				g.idxInjected[l.Index()].Add(-1)
				_ = p.Free(l)
				return 0, err
			}
			g.seqAccepted[s].Store(true)
			return 1, nil
		case 1: // chain of created NBLs, batch completion
			n := 1 + k%maxChain
			ls := make([]*nbl.NetBufferList, 0, n)
			seqs := make([]uint64, 0, n)
			for range n {
				l, ok := allocWait()
				if !ok {
					for _, l := range ls {
						_ = p.Free(l)
					}
					return 0, errStress
				}
				ls = append(ls, l)
				seqs = append(seqs, l.OriginatorContext)
				g.idxInjected[l.Index()].Add(1)
			}
			err := h.InjectVSwitchIngress(id, 1, 0, link(ls...), nil, Done{Batch: batch})
			if err != nil {
				for _, l := range ls {
					g.idxInjected[l.Index()].Add(-1)
					l.Next = nil
					_ = p.Free(l)
				}
				return 0, err
			}
			for _, s := range seqs {
				g.seqAccepted[s].Store(true)
			}
			return n, nil
		case 2: // absorbed original, re-injected without completion
			l, ok := allocWait()
			if !ok {
				return 0, errStress
			}
			l.Originator = orig
			l.Reference()
			p.Release(l) // the switch drops it at the absorb
			g.idxInjected[l.Index()].Add(1)
			s := l.OriginatorContext
			err := h.InjectVSwitchIngress(id, 1, 0, l, nil, Done{})
			if err != nil {
				g.idxInjected[l.Index()].Add(-1)
				l.Dereference() // back to the originator, uninjected
				return 0, err
			}
			g.seqAccepted[s].Store(true)
			return 1, nil
		default: // inspect: reference, release, clone, inject the clone
			parent, ok := allocWait()
			if !ok {
				return 0, errStress
			}
			parentsMade.Add(1)
			parent.Originator = parentOriginator
			parent.Reference()
			p.Release(parent)
			cl, err := p.Clone(parent)
			for err != nil {
				if time.Now().After(deadline) || g.errs.Load() > 0 {
					parent.Dereference()
					g.fail("clone starved: %v", err)
					return 0, errStress
				}
				runtime.Gosched()
				cl, err = p.Clone(parent)
			}
			cl.OriginatorContext = seq.Add(1) - 1
			g.idxInjected[cl.Index()].Add(1)
			s := cl.OriginatorContext
			err = h.InjectVSwitchIngress(id, 1, 0, cl, newCtx("unused"), Done{Fn: cloneDone, Context: parent})
			if err != nil {
				g.idxInjected[cl.Index()].Add(-1)
				_ = p.FreeClone(cl)
				parent.Dereference()
				return 0, err
			}
			g.seqAccepted[s].Store(true)
			return 1, nil
		}
	}

	destroyed := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]injStats, handles)
	victimAfterDestroy := make(chan error, 1)
	// The victim injects until its handle refuses with CLOSING.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := &results[0]
		for k := 0; ; k++ {
			n, err := injectOne(victim, k)
			if errors.Is(err, ErrHandleClosing) {
				r.refusedClosing++
				break
			}
			if err != nil {
				g.fail("victim inject: %v", err)
				return
			}
			r.accepted += n
		}
		<-destroyed
		_, err := injectOne(victim, 0)
		victimAfterDestroy <- err
	}()
	// The others inject half their share, wait until the victim's Destroy
	// has returned, and inject the rest.
	for i := 1; i < handles; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			for k := range perHandle {
				if k == perHandle/2 {
					<-destroyed
				}
				n, err := injectOne(hs[i], k+i)
				if err != nil {
					g.fail("handle %d inject: %v", i, err)
					return
				}
				r.accepted += n
			}
		}()
	}
	type destroyResult struct {
		err       error
		stats     HandleStats
		doneFns   int64
		othersInj uint64
	}
	dres := make(chan destroyResult, 1)
	go func() {
		defer close(destroyed)
		for victim.Stats().Injected < uint64(perHandle/3) {
			if g.errs.Load() > 0 || time.Now().After(deadline) {
				dres <- destroyResult{err: errStress}
				return
			}
			runtime.Gosched()
		}
		err := victim.Destroy()
		r := destroyResult{err: err, stats: victim.Stats(), doneFns: g.handleCounter(victim.ID()).Load()}
		for _, h := range hs[1:] {
			r.othersInj += h.Stats().Injected
		}
		dres <- r
	}()

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(testTimeout + 5*time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("stress run did not finish:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if v := g.firstErr.Load(); v != nil {
		t.Fatalf("%d errors, first: %v", g.errs.Load(), v)
	}
	dr := await(t, dres, "victim Destroy")
	if dr.err != nil {
		t.Fatalf("victim Destroy: %v", dr.err)
	}
	if dr.stats.Pending != 0 || dr.stats.Injected != dr.stats.Completed || int64(dr.stats.Injected) != dr.doneFns {
		t.Fatalf("when the victim's Destroy returned: stats %+v, completion functions run %d", dr.stats, dr.doneFns)
	}
	if dr.stats.Injected != uint64(results[0].accepted) || results[0].refusedClosing != 1 {
		t.Fatalf("victim: stats %+v, injector accepted %d, CLOSING refusals %d", dr.stats, results[0].accepted, results[0].refusedClosing)
	}
	if err := <-victimAfterDestroy; !errors.Is(err, ErrHandleClosing) {
		t.Fatalf("inject after Destroy returned: %v, want CLOSING", err)
	}

	// Let the workers drain, then check everything.
	for _, w := range workers {
		waitFor(t, "workers to drain", func() bool { return len(w.in) == 0 })
	}
	for _, h := range hs[1:] {
		waitFor(t, "pending completions", func() bool { return h.Stats().Pending == 0 })
	}
	var delivered uint64
	for _, w := range workers {
		st := w.stop()
		if st.Panics != 0 {
			t.Fatalf("worker queue recovered %d panics", st.Panics)
		}
		delivered += st.Delivered
	}
	if v := g.firstErr.Load(); v != nil {
		t.Fatalf("%d errors, first: %v", g.errs.Load(), v)
	}
	totalAccepted := 0
	for i, h := range hs {
		st := h.Stats()
		done := g.handleCounter(h.ID()).Load()
		if st.Pending != 0 || st.Injected != st.Completed || st.Injected != uint64(results[i].accepted) || int64(st.Injected) != done {
			t.Fatalf("handle %d: stats %+v, injector accepted %d, completions run %d", i, st, results[i].accepted, done)
		}
		if i > 0 && st.Injected < uint64(perHandle) {
			t.Fatalf("handle %d injected %d NBLs, want at least %d", i, st.Injected, perHandle)
		}
		totalAccepted += results[i].accepted
	}
	if delivered != uint64(totalAccepted) {
		t.Fatalf("queues delivered %d completions for %d accepted NBLs", delivered, totalAccepted)
	}
	n := int(seq.Load())
	for i := range n {
		want := int32(0)
		if g.seqAccepted[i].Load() {
			want = 1
		}
		if got := g.seqDone[i].Load(); got != want {
			t.Fatalf("injection %d completed %d times, want %d", i, got, want)
		}
	}
	for i := range g.idxInjected {
		if a, b := g.idxInjected[i].Load(), g.idxCompleted[i].Load(); a != b {
			t.Fatalf("descriptor %d: injected %d times, completed %d", i, a, b)
		}
	}
	// Only the victim's two refused units can have given back an
	// original that was not injected.
	if orig.uninjected.Load() > 2 {
		t.Fatalf("%d originals returned uninjected", orig.uninjected.Load())
	}
	if parentsReturned.Load() != parentsMade.Load() {
		t.Fatalf("%d of %d clone parents returned to their originator", parentsReturned.Load(), parentsMade.Load())
	}
	if s.Handles() != handles-1 {
		t.Fatalf("stack has %d live handles, want %d", s.Handles(), handles-1)
	}
	t.Logf("%d NBLs completed; victim took %d before Destroy; the others had injected %d when it returned; %d parents returned",
		totalAccepted, dr.stats.Injected, dr.othersInj, parentsReturned.Load())
	checkFull(t, p)
}

var errStress = errors.New("stress test gave up")

// originatorFunc adapts a function to nbl.Originator.
type originatorFunc func(l *nbl.NetBufferList)

func (f originatorFunc) ReturnNetBufferList(l *nbl.NetBufferList) { f(l) }
