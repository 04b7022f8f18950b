package inject

import (
	"fmt"
	"unsafe"

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
	nbls     []*nbl.NetBufferList
	batch    []*nbl.NetBufferList
	caches   []*nbl.Cache
	dispatch bool

	// Flush state, kept in the queue so a recovered panic can resume.
	flushing bool
	pos      int
	runOwner *Handle
	runCount int
	// Originals injected with no completion function, whose reference the
	// flush drops in bursts (derefNow).
	derefs []*nbl.NetBufferList

	delivered uint64
	batches   uint64
	panics    uint64
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
		nbls:     make([]*nbl.NetBufferList, 0, size),
		batch:    make([]*nbl.NetBufferList, 0, size),
		derefs:   make([]*nbl.NetBufferList, 0, max(size, 64)),
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
	q.derefNow()
	q.endRun()
	clear(q.nbls)
	q.nbls = q.nbls[:0]
	q.pos = 0
}

// flushFrom delivers completions from q.pos on. Every counter is updated
// before user code runs, so after a recovered panic Flush simply calls it
// again to go on with the next NBL.
func (q *CompletionQueue) flushFrom() {
	defer func() {
		if r := recover(); r != nil {
			q.panics++
		}
	}()
	for q.pos < len(q.nbls) {
		l := q.nbls[q.pos]
		owner, _ := l.Completion.Owner.(*Handle)
		if owner != q.runOwner {
			q.endRun()
			q.runOwner = owner
		}
		if owner != nil && l.Completion.Fn == nil && l.Completion.Batch == nil {
			q.gatherOriginals(owner)
			continue
		}
		c := l.Completion
		l.Completion = nbl.Completion{}
		if owner == nil {
			q.pos++
			q.runCount++
			q.delivered++
			if len(q.derefs) > 0 {
				q.derefNow()
			}
			q.release(l, false)
			continue
		}
		// Completions keep their order: the gathered originals leave
		// before a completion function runs.
		if len(q.derefs) > 0 {
			q.derefNow()
		}
		if c.Batch == nil {
			q.pos++
			q.runCount++
			q.delivered++
			c.Fn(c.Context, l, q.dispatch)
			continue
		}
		// Gather the following NBLs that share the batch function, its
		// context and the handle into one call.
		q.batch = append(q.batch[:0], l)
		end := q.pos + 1
		for ; end < len(q.nbls); end++ {
			m := q.nbls[end]
			if m.Completion.Batch != c.Batch || m.Completion.Owner != c.Owner || !sameIdentity(m.Completion.Context, c.Context) {
				break
			}
			m.Completion = nbl.Completion{}
			q.batch = append(q.batch, m)
		}
		n := end - q.pos
		q.pos = end
		q.runCount += n
		q.delivered += uint64(n)
		c.Batch.Fn(c.Context, q.batch)
		clear(q.batch)
		q.batch = q.batch[:0]
	}
}

// gatherOriginals takes the run of NBLs from q.pos on that owner injected
// with no completion function (unaltered originals, the inspect pattern's
// reinjections) into q.derefs, whose references derefNow drops. It stops
// at the first other NBL, or when q.derefs is full, and flushes q.derefs
// then. No user code runs in the loop, so the counters are updated once
// for the run rather than per NBL, and each NBL is read once.
func (q *CompletionQueue) gatherOriginals(owner *Handle) {
	ls, ds := q.nbls, q.derefs
	i := q.pos
	for i < len(ls) {
		l := ls[i]
		c := &l.Completion
		if o, _ := c.Owner.(*Handle); o != owner || c.Fn != nil || c.Batch != nil {
			break
		}
		*c = nbl.Completion{}
		ds = append(ds, l)
		i++
		if len(ds) == cap(ds) {
			break
		}
	}
	n := i - q.pos
	q.derefs = ds
	q.pos = i
	q.runCount += n
	q.delivered += uint64(n)
	if len(ds) == cap(ds) {
		q.derefNow()
	}
}

// endRun accounts the completions delivered for the current handle: one
// atomic add to its completed count and one to its pending count.
func (q *CompletionQueue) endRun() {
	if q.runOwner != nil && q.runCount > 0 {
		q.runOwner.completed.Add(uint64(q.runCount))
		q.runOwner.end(q.runCount)
	}
	q.runOwner, q.runCount = nil, 0
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

// derefNow drops the injectors' references on the gathered originals, a
// run of one pool at a time through the worker's cache for it.
func (q *CompletionQueue) derefNow() {
	ls := q.derefs
	// Taken off the queue first: should a Dereference panic (an NBL
	// dereferenced behind the injection's back), no other is dropped twice.
	q.derefs = ls[len(ls):]
	for i := 0; i < len(ls); {
		p := ls[i].Pool()
		j := i + 1
		for j < len(ls) && ls[j].Pool() == p {
			j++
		}
		var cache *nbl.Cache
		for _, c := range q.caches {
			if c.Pool() == p {
				cache = c
				break
			}
		}
		if cache != nil {
			cache.DereferenceBurst(ls[i:j])
		} else {
			for _, l := range ls[i:j] {
				l.Dereference()
			}
		}
		i = j
	}
	clear(ls)
	q.derefs = ls[:0]
}

// QueueStats are a completion queue's counters.
type QueueStats struct {
	Delivered uint64 // completions delivered (NBLs)
	Batches   uint64 // flushes that delivered something
	Panics    uint64 // completion functions that panicked (recovered)
}

// Stats returns the queue's counters. Call it on the queue's goroutine.
func (q *CompletionQueue) Stats() QueueStats {
	return QueueStats{Delivered: q.delivered, Batches: q.batches, Panics: q.panics}
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
