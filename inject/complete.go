package inject

import (
	"fmt"
	"unsafe"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/nbl"
)

// CompletionQueue gathers the NBLs a worker has finished with and delivers
// their completions in batches: at the end of a burst (Flush) or when the
// queue fills. A flush calls each NBL's completion function once (a
// BatchCompletion once per run of NBLs that share it), then updates each
// handle's pending count with one atomic add per run of NBLs of that handle,
// not per NBL. NBLs injected with no completion function (unaltered
// originals), and NBLs that were never injected, are released to their
// originator.
//
// A completion function that panics is recovered and counted (Stats.Panics);
// its NBL counts as completed and the flush goes on. A flush costs one
// deferred recover, not one per NBL.
//
// A CompletionQueue belongs to one goroutine. Make it on the goroutine that
// will flush it: that fixes whether its completions report dispatchLevel.
type CompletionQueue struct {
	// Padded on both sides, as is every array it writes: each worker has
	// one, and those made one after the other would share lines.
	_        cpu.CacheLinePad
	nbls     []*nbl.NetBufferList
	batch    []*nbl.NetBufferList
	caches   []*nbl.Cache
	dispatch bool

	// Flush state, kept in the queue so a recovered panic can resume.
	// Every NBL before pos is delivered; those from runStart on belong to
	// the run of runOwner's NBLs, whose counts endRun updates.
	flushing bool
	pos      int
	runOwner *Handle
	runStart int

	delivered uint64 // before the flush under way, which adds pos
	batches   uint64
	panics    uint64
	_         cpu.CacheLinePad
}

// NewCompletionQueue returns a queue that holds up to size NBLs before it
// flushes by itself. caches are the worker's NBL caches (nil entries are
// skipped): an NBL released by the queue goes to the cache of its pool, or
// through its pool's shared ring when the worker has no cache for it. The
// completions it delivers report dispatchLevel true when the calling
// goroutine is marked with s.EnterDispatch.
func NewCompletionQueue(s *Stack, size int, caches ...*nbl.Cache) (*CompletionQueue, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: completion queue size %d", ErrInvalidParameter, size)
	}
	q := &CompletionQueue{
		nbls:     cpu.Isolated[*nbl.NetBufferList](0, size),
		batch:    cpu.Isolated[*nbl.NetBufferList](0, size),
		dispatch: s.AtDispatch(),
	}
	for _, c := range caches {
		if c != nil {
			q.caches = append(q.caches, c)
		}
	}
	return q, nil
}

// Len returns the number of NBLs waiting for the next flush.
func (q *CompletionQueue) Len() int { return len(q.nbls) }

// Complete records that an NBL's journey ended with status (STATUS_SUCCESS,
// or a failure such as STATUS_INVALID_BUFFER_SIZE for an oversize frame).
// Its completion runs at the next Flush, or now if the queue is full.
//
// A completion function may complete more NBLs into the queue it runs
// from; they are delivered by the same flush (the queue grows if it must,
// rather than flush inside a flush).
func (q *CompletionQueue) Complete(l *nbl.NetBufferList, status Status) {
	l.Status = status
	q.nbls = append(q.nbls, l)
	if len(q.nbls) == cap(q.nbls) {
		q.full()
	}
}

// full flushes the full queue, unless a flush is under way: that one
// delivers what was added, and the queue grows meanwhile. It is apart from
// Complete so that Complete inlines into the worker's loop.
//
//go:noinline
func (q *CompletionQueue) full() {
	if !q.flushing {
		q.Flush()
	}
}

// CompleteChain completes every NBL of a chain with status, unlinking them
// (Next is read before each NBL is queued, since a completion may reuse it).
func (q *CompletionQueue) CompleteChain(l *nbl.NetBufferList, status Status) {
	for l != nil {
		next := l.Next
		l.Next = nil
		q.Complete(l, status)
		l = next
	}
}

// Flush delivers every queued completion now. Called from a completion
// function of the same queue, it does nothing: the flush under way delivers
// what was added.
func (q *CompletionQueue) Flush() {
	if len(q.nbls) == 0 || q.flushing {
		return
	}
	q.flushing = true
	defer func() { q.flushing = false }()
	q.batches++
	for q.pos < len(q.nbls) {
		q.flushFrom()
	}
	q.endRun()
	q.delivered += uint64(q.pos)
	clear(q.nbls)
	q.nbls = q.nbls[:0]
	q.pos, q.runStart = 0, 0
}

// flushFrom delivers completions from q.pos on. q.pos, from which the
// counters are derived, moves past an NBL before user code runs for it, so
// after a recovered panic Flush simply calls flushFrom again to go on with
// the next NBL. The completion is read field by field, not copied whole.
func (q *CompletionQueue) flushFrom() {
	defer func() {
		if r := recover(); r != nil {
			q.panics++
		}
	}()
	for q.pos < len(q.nbls) {
		l := q.nbls[q.pos]
		c := &l.Completion
		owner, _ := c.Owner.(*Handle)
		if owner != q.runOwner {
			// Out of line, and l read again after it: nothing of the
			// loop need be kept across the call.
			q.newRun(owner)
			continue
		}
		fn, batch := c.Fn, c.Batch
		if owner != nil && fn == nil && batch == nil {
			q.dropOriginals(owner)
			continue
		}
		ctx := c.Context
		// Field by field: the write barrier, when on, then needs no call
		// that would make the loop keep its values on the stack.
		c.Fn, c.Batch, c.Context, c.Owner = nil, nil, nil, nil
		if owner == nil {
			q.pos++
			q.release(l, false)
			continue
		}
		if batch == nil {
			q.pos++
			fn(ctx, l, q.dispatch)
			continue
		}
		// Gather the following NBLs that share the batch function, its
		// context and the handle into one call.
		q.batch = append(q.batch[:0], l)
		end := q.pos + 1
		for ; end < len(q.nbls); end++ {
			m := q.nbls[end]
			if m.Completion.Batch != batch || m.Completion.Owner != any(owner) || !sameIdentity(m.Completion.Context, ctx) {
				break
			}
			m.Completion = nbl.Completion{}
			q.batch = append(q.batch, m)
		}
		q.pos = end
		batch.Fn(ctx, q.batch)
		clear(q.batch)
		q.batch = q.batch[:0]
	}
}

// dropOriginals takes the run of NBLs from q.pos on that owner injected
// with no completion function (unaltered originals, the inspect pattern's
// reinjections) and that come from the pool of the first, and drops the
// reference each injection took over: in one burst through the worker's
// cache for that pool, one by one without one. The run stops at the first
// other NBL. q.pos moves past the run, which counts it as delivered,
// before the references drop: should a Dereference panic (an NBL
// dereferenced behind the injection's back), the flush goes on after the
// run and no reference is dropped twice.
func (q *CompletionQueue) dropOriginals(owner *Handle) {
	run := q.nbls[q.pos:]
	p := run[0].Pool()
	// Originals whose owner handed its release to the completion
	// (nbl.Completion.OwnerRelease) make runs of their own.
	rel := run[0].Completion.OwnerRelease
	n := 0
	for _, l := range run {
		c := &l.Completion
		if o, _ := c.Owner.(*Handle); o != owner || c.Fn != nil || c.Batch != nil || l.Pool() != p || c.OwnerRelease != rel {
			break
		}
		*c = nbl.Completion{}
		n++
	}
	run = run[:n]
	q.pos += n
	for _, c := range q.caches {
		if c.Pool() == p {
			if rel {
				c.ReleaseDereferenceBurst(run)
			} else {
				c.DereferenceBurst(run)
			}
			return
		}
	}
	for _, l := range run {
		if rel {
			p.Release(l) // the owner's, then the injector's reference
		}
		l.Dereference()
	}
}

// newRun ends the current run and starts one of owner's NBLs.
//
//go:noinline
func (q *CompletionQueue) newRun(owner *Handle) {
	q.endRun()
	q.runOwner = owner
}

// endRun accounts the completions delivered for the current handle, those
// from q.runStart to q.pos (Handle.completeRun: as credit of the calling
// goroutine when it has some, else one atomic add to the handle's
// completed count and one to its pending count). The next run starts at
// q.pos.
func (q *CompletionQueue) endRun() {
	if n := q.pos - q.runStart; q.runOwner != nil && n > 0 {
		q.runOwner.completeRun(n)
	}
	q.runOwner, q.runStart = nil, q.pos
}

// release ends the journey of an NBL that has no completion function. An
// original injected with a nil completion function carries its injector's
// reference (a callout references an NBL before absorbing it, so that it
// survives the classify; the injection checks the reference is there); the
// completion drops that reference. An NBL that was not injected is
// released: its holder is done with it.
func (q *CompletionQueue) release(l *nbl.NetBufferList, injected bool) {
	p := l.Pool()
	if injected {
		for _, c := range q.caches {
			if c.Pool() == p {
				c.Dereference(l)
				return
			}
		}
		l.Dereference()
		return
	}
	for _, c := range q.caches {
		if c.Pool() == p {
			c.Release(l)
			return
		}
	}
	p.Release(l)
}

// QueueStats are a completion queue's counters.
type QueueStats struct {
	Delivered uint64 // completions delivered (NBLs)
	Batches   uint64 // flushes that delivered something
	Panics    uint64 // completion functions that panicked (recovered)
}

// Stats returns the queue's counters. Call it on the queue's goroutine.
func (q *CompletionQueue) Stats() QueueStats {
	return QueueStats{Delivered: q.delivered + uint64(q.pos), Batches: q.batches, Panics: q.panics}
}

// sameIdentity reports whether two interface values hold the same dynamic
// type and the same data word: pointer identity for the pointers a context
// normally is. Unlike ==, it cannot panic on uncomparable types; equal values
// that were boxed separately merely count as different, which only splits a
// batch in two.
func sameIdentity(a, b any) bool {
	type eface struct{ typ, data unsafe.Pointer }
	ea := (*eface)(unsafe.Pointer(&a))
	eb := (*eface)(unsafe.Pointer(&b))
	return ea.typ == eb.typ && ea.data == eb.data
}
