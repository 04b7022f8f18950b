package nbl

import (
	"fmt"
	"unsafe"
)

// The fields of NetBufferList.holds: one word, so that each hold taken or
// dropped, a reference or a clone, is one atomic operation, and the check
// for a reference to drop reads one word.
const (
	releasedBit = 1       // the owner has released the NBL
	refUnit     = 2       // one reference (FwpsReferenceNetBufferList0)
	childUnit   = 1 << 32 // one clone alive (ChildRefCount)
	refMask     = childUnit - refUnit
)

// Bits of NetBufferList.slow.
const (
	slowShape    = 1 << 0 // not the built-in NetBuffer over the built-in MDL alone, or a clone (but see slowClone)
	slowFinisher = 1 << 1 // a finisher is set
	// slowClone, in place of slowShape, marks a clone that Clone made on
	// its usual path: its built-in NetBuffer over its built-in MDL alone.
	// Whatever changes that shape sets slowShape too, so slowClone alone
	// says that the clone is still plain.
	slowClone = 1 << 2
)

// maxRun bounds the descriptors of one bulk put, so that a long burst goes
// back through the cache (a put larger than the cache goes to the shared
// ring) in pieces it takes.
const maxRun = 64

// Free returns an NBL that the caller allocated (FwpsFreeNetBufferList0,
// NdisFreeNetBufferList) to the pool, together with any extra NetBuffers and
// pool-made MDLs it holds. Memory lent with AllocateAround and MDLs from
// AllocateMdl stay the caller's. An NBL with an Originator is handed to it
// first.
//
// Free refuses (ErrInvalidParameter, and nothing changes) a clone (use
// FreeClone), an NBL with clones or references still alive (a
// use-after-free in waiting: nblpipe_debug panics instead), and a foreign or
// nil NBL.
func (c *Cache) Free(l *NetBufferList) error {
	if err := c.checkFree(l, false); err != nil {
		return err
	}
	c.finish(l)
	return nil
}

// FreeBurst frees every NBL of nbls as Free does and returns the number
// freed. It stops at the first NBL Free would refuse and returns its error;
// the NBLs from that one on are untouched.
func (c *Cache) FreeBurst(nbls []*NetBufferList) (int, error) {
	// Runs of consecutive NBLs on the fast path (this pool's, nothing
	// holding them, no originator, slow 0: not a clone, the built-in
	// NetBuffer and MDL alone) go back in one bulk put each, straight from
	// nbls; the others take the general path one by one.
	p := c.p
	start := 0
	for i, l := range nbls {
		// holds first: once it reads 0, nothing else holds l, and its other
		// fields are the caller's to read.
		if l != nil && l.pool == p && l.holds.Load() == 0 && l.slow == 0 && l.Originator == nil {
			debugLive(l)
			continue
		}
		c.putRun(nbls[start:i])
		start = i + 1
		if err := c.checkFree(l, false); err != nil {
			return i, err
		}
		c.finish(l)
	}
	c.putRun(nbls[start:])
	return len(nbls), nil
}

// putRun scrubs the descriptors of ls, which are on the fast path and
// whose originators were told, and puts them back in bulk.
func (c *Cache) putRun(ls []*NetBufferList) {
	for _, l := range ls {
		l.scrub()
		debugFreed(l)
	}
	for len(ls) > maxRun {
		c.putBulk(ls[:maxRun])
		ls = ls[maxRun:]
	}
	c.putBulk(ls)
}

func (c *Cache) putBulk(ls []*NetBufferList) {
	if len(ls) == 0 {
		return
	}
	if c.c != nil {
		c.c.PutBulk(ls)
	} else {
		c.p.nbls.PutBulk(ls)
	}
}

// FreeClone frees a clone made by Clone (FwpsFreeCloneNetBufferList0,
// NdisFreeCloneNetBufferList): its MDLs, including any that a retreat on the
// clone prepended, go back to the pool, and the parent's ChildRefCount drops
// by one. When that was the parent's last hold and its owner has released
// it, the parent is released too.
func (c *Cache) FreeClone(clone *NetBufferList) error {
	// The checks of checkFree, inline while they pass; checkFree tells
	// what failed.
	if clone == nil || clone.pool != c.p || !clone.clone || clone.holds.Load() != 0 {
		return c.checkFree(clone, true)
	}
	debugLive(clone)
	c.finish(clone)
	return nil
}

func (c *Cache) checkFree(l *NetBufferList, wantClone bool) error {
	if l == nil || l.pool != c.p {
		return fmt.Errorf("%w: NBL is nil or from another pool", ErrInvalidParameter)
	}
	debugLive(l)
	if l.clone != wantClone {
		if wantClone {
			return fmt.Errorf("%w: FreeClone of an NBL that is not a clone", ErrInvalidParameter)
		}
		return fmt.Errorf("%w: Free of a clone (use FreeClone)", ErrInvalidParameter)
	}
	if l.holds.Load() != 0 {
		debugFreeHeld(l)
		return fmt.Errorf("%w: NBL still has %d clones and %d references", ErrInvalidParameter, l.ChildRefCount(), l.RefCount())
	}
	return nil
}

// Release says that the NBL's owner is done with it: the path that indicated
// it has ended, or its holder completed it. It panics on an NBL whose release
// was handed to a clone (ReleaseParentWhenFreed). With no clones and no
// references it leaves at once (to its Originator, then its pool); otherwise
// it leaves when the last clone is freed or the last reference dropped,
// whichever goroutine does that.
func (c *Cache) Release(l *NetBufferList) {
	debugLive(l)
	if l.releaseHanded {
		panic("nbl: Release of an NBL whose release was handed to a clone (ReleaseParentWhenFreed)")
	}
	if l.pool != c.p {
		releaseForeign(l)
		return
	}
	// Only a holder can add a hold, and the owner is the last holder when
	// this reads 0, so a plain load is enough on the fast path. Pairs with
	// the Add in drop (another goroutine's last dereference).
	if l.holds.Load() != 0 {
		if l.holds.Add(releasedBit) != releasedBit {
			return
		}
		l.clearHolds()
	}
	c.finish(l)
}

// releaseForeign releases an NBL of another pool through that pool.
func releaseForeign(l *NetBufferList) { l.pool.front().Release(l) }

// ReleaseTo is Release, except that when the NBL would leave, f takes it
// over instead (f.FinishNetBufferList runs, on the goroutine that dropped
// the last hold) and the NBL stays allocated, f's to finish. With no clones
// and no references, f runs at once.
func (c *Cache) ReleaseTo(l *NetBufferList, f Finisher) {
	l.finisher = f
	if f != nil {
		l.slow |= slowFinisher
	}
	c.Release(l)
}

// ReleaseBurst releases every NBL of nbls.
//
// Runs of NBLs with nothing holding them, no finisher and no parent go back
// in one bulk put each after their originators are told (a BatchOriginator
// once per run of its NBLs, with that part of nbls as its slice); the
// others take Release's way.
func (c *Cache) ReleaseBurst(nbls []*NetBufferList) {
	p := c.p
	start := 0
	for i, l := range nbls {
		debugLive(l)
		if l.pool == p {
			// holds first: once it reads 0, slow is the caller's to read.
			if h := l.holds.Load(); h|int64(l.slow) == 0 {
				continue
			}
		}
		c.returnRun(nbls[start:i])
		start = i + 1
		c.Release(l)
	}
	c.returnRun(nbls[start:])
}

// DereferenceBurst drops one reference from each NBL of nbls, as
// Dereference does one by one; those that leave (their owner released them
// and this was the last hold) go back as ReleaseBurst sends them: their
// originators told once per run, one bulk put. It panics, as Dereference
// does, on an NBL without a reference to drop; the NBLs before it have been
// dereferenced.
func (c *Cache) DereferenceBurst(nbls []*NetBufferList) { c.dropBurst(nbls, 0) }

// ReleaseDereferenceBurst is, for each NBL of nbls, Release and Dereference
// together, in one atomic operation where the two take one each: the
// caller is the NBL's owner, or acts for it, and holds one of its
// references. The NBLs that leave go back as DereferenceBurst sends them.
// It panics, as Dereference does, on an NBL without a reference to drop,
// and on one already released; the NBLs before it are done.
func (c *Cache) ReleaseDereferenceBurst(nbls []*NetBufferList) { c.dropBurst(nbls, releasedBit) }

// dropBurst is DereferenceBurst with rel 0 and ReleaseDereferenceBurst with
// rel releasedBit.
func (c *Cache) dropBurst(nbls []*NetBufferList, rel int64) {
	p := c.p
	// The staging slice is taken from c while in use, so that a finisher
	// that dereferences a burst through c has its own.
	r := leavers{c: c, nbls: nbls, bulk: c.bulk[:0]}
	c.bulk = nil
	// end is r.end, kept in a register while the run grows and stored
	// into r before r is used.
	end := 0
	for i, l := range nbls {
		debugLive(l)
		if l.pool != p {
			l.pool.front().releaseDereference(l, rel)
			continue
		}
		if h := l.holds.Load(); h&refMask == 0 || h&rel != 0 || rel != 0 && l.releaseHanded {
			r.end = end
			r.flush()
			badDrop(rel)
		}
		if l.holds.Add(rel-refUnit) != releasedBit {
			continue
		}
		l.clearHolds()
		if l.slow == 0 && end == i {
			end = i + 1 // the usual case: the run in place grows
			continue
		}
		r.end = end
		r.add(i, l)
		end = r.end
	}
	r.end = end
	r.flush()
}

// releaseDereference is dropBurst for one NBL, leaving through c.
func (c *Cache) releaseDereference(l *NetBufferList, rel int64) {
	if h := l.holds.Load(); h&refMask == 0 || h&rel != 0 || rel != 0 && l.releaseHanded {
		badDrop(rel)
	}
	if l.holds.Add(rel-refUnit) == releasedBit {
		l.clearHolds()
		c.finish(l)
	}
}

func badDrop(rel int64) {
	if rel != 0 {
		panic("nbl: ReleaseDereference of a released NBL or without a matching Reference")
	}
	panic("nbl: Dereference without a matching Reference")
}

// leavers gathers the NBLs of a DereferenceBurst that leave, to go back
// together: while those on the fast path are consecutive in nbls, as
// nbls[start:end]; after a gap, in bulk. One of the two is empty.
type leavers struct {
	c          *Cache
	nbls       []*NetBufferList
	start, end int
	bulk       []*NetBufferList // the cache's staging slice, cap maxRun
}

// add takes nbls[i], which left, unless it extends nbls[start:end].
func (r *leavers) add(i int, l *NetBufferList) {
	c := r.c
	switch {
	case l.slow != 0:
		c.finish(l)
	case r.start == r.end && len(r.bulk) == 0:
		r.start, r.end = i, i+1
	default:
		bulk := r.bulk
		if r.start != r.end {
			if run := r.nbls[r.start:r.end]; len(run) >= maxRun {
				c.returnRun(run)
			} else {
				bulk = append(bulk, run...)
			}
			r.start, r.end = 0, 0
		}
		bulk = append(bulk, l)
		if len(bulk) >= maxRun {
			c.returnBulk(bulk)
			bulk = bulk[:0]
		}
		r.bulk = bulk
	}
}

// flush sends back what add gathered and gives the staging slice back to
// the cache.
func (r *leavers) flush() {
	r.c.returnRun(r.nbls[r.start:r.end])
	r.c.returnBulk(r.bulk)
	r.start, r.end = 0, 0
	r.c.bulk = r.bulk[:0]
}

// returnBulk is returnRun for NBLs gathered in c.bulk, which it clears.
func (c *Cache) returnBulk(ls []*NetBufferList) {
	c.returnRun(ls)
	clear(ls)
}

// returnRun tells the originators of ls, NBLs on the fast path that
// nothing holds any more, then scrubs them and puts them back in bulk.
func (c *Cache) returnRun(ls []*NetBufferList) {
	if len(ls) == 0 {
		return
	}
	for i := 0; i < len(ls); {
		o := ls[i].Originator
		b, ok := o.(BatchOriginator)
		if !ok {
			if o != nil {
				o.ReturnNetBufferList(ls[i])
			}
			i++
			continue
		}
		i += batchRun(b, o, ls[i:])
	}
	c.putRun(ls)
}

// batchRun tells b, the originator o of ls[0], of the run of NBLs at the
// start of ls that it originated, and returns their number.
func batchRun(b BatchOriginator, o Originator, ls []*NetBufferList) int {
	// A BatchOriginator's type is comparable (see its doc). The same two
	// words are the same value, without a call; other values of the same
	// type are compared as interfaces.
	w := originatorWords(&ls[0].Originator)
	n := 1 + sameWords(ls[1:], w)
	for n < len(ls) && originatorWords(&ls[n].Originator).tab == w.tab && ls[n].Originator == o {
		n++
		n += sameWords(ls[n:], w)
	}
	b.ReturnNetBufferLists(ls[:n])
	return n
}

// ifaceWords is the layout of an interface value: its type word and its
// data word.
type ifaceWords struct{ tab, data unsafe.Pointer }

func originatorWords(o *Originator) ifaceWords { return *(*ifaceWords)(unsafe.Pointer(o)) }

// sameWords returns the number of NBLs at the start of ls whose Originator
// has the words w.
func sameWords(ls []*NetBufferList, w ifaceWords) int {
	for i, l := range ls {
		if originatorWords(&l.Originator) != w {
			return i
		}
	}
	return len(ls)
}

// Reference takes a reference that keeps l from being released
// (FwpsReferenceNetBufferList0). Only a goroutine that holds l, as its owner
// or through a reference, may take one.
func (l *NetBufferList) Reference() {
	debugLive(l)
	l.holds.Add(refUnit)
}

// Dereference drops a reference taken with Reference
// (FwpsDereferenceNetBufferList0). If it was the last hold on an NBL whose
// owner has released it, the NBL is released now, through the pool's shared
// ring (or the cache the calling goroutine lent it). Dereference without a matching Reference breaks the contract and
// panics (conformance case 51).
func (l *NetBufferList) Dereference() {
	debugLive(l)
	// dereference, written out: the pool's front is looked up only when
	// the NBL leaves.
	if l.holds.Load()&refMask == 0 {
		panic("nbl: Dereference without a matching Reference")
	}
	if l.holds.Add(-refUnit) == releasedBit {
		l.clearHolds()
		l.pool.front().finish(l)
	}
}

// Dereference is NetBufferList.Dereference through the cache: when it drops
// the last hold, the NBL goes back through this cache rather than the
// pool's shared ring. l must belong to the cache's pool.
func (c *Cache) Dereference(l *NetBufferList) {
	debugLive(l)
	if l.pool != c.p {
		l.Dereference()
		return
	}
	c.dereference(l)
}

// dereference drops a reference.
func (c *Cache) dereference(l *NetBufferList) {
	if l.holds.Load()&refMask == 0 {
		panic("nbl: Dereference without a matching Reference")
	}
	c.drop(l, refUnit)
}

// drop removes one hold, unit refUnit or childUnit, and releases the NBL if
// that was the last one and its owner had released it.
func (c *Cache) drop(l *NetBufferList, unit int64) {
	// Pairs with the Add in Release: whichever of the two comes last sees
	// releasedBit alone and finishes the NBL.
	if l.holds.Add(-unit) == releasedBit {
		l.clearHolds()
		c.finish(l)
	}
}

// plain reports whether l has the shape of the fast paths: its one
// built-in NetBuffer with its one built-in MDL, nothing extra to free.
func (l *NetBufferList) plain() bool {
	return l.firstNB == &l.nb && l.nb.Next == nil && l.nb.mdlChain == &l.mdl && l.mdl.next == nil
}

// clearHolds resets holds after the Add that left releasedBit alone: no
// other goroutine holds l or may take a hold any more (only holders can),
// and l reaches its next user through the pool, which orders this write
// before that user's accesses. So a plain store does, where an atomic
// Store would be a locked exchange (a full barrier) on every release of a
// referenced or cloned NBL.
func (l *NetBufferList) clearHolds() {
	*(*int64)(unsafe.Pointer(&l.holds)) = 0
}

// finish sends an NBL on its way out: to its originator, back to the pool,
// and for a clone, the parent's hold is dropped.
func (c *Cache) finish(l *NetBufferList) {
	if f := l.finisher; f != nil {
		l.finisher = nil
		l.slow &^= slowFinisher
		f.FinishNetBufferList(l)
		return
	}
	if l.Originator != nil {
		l.Originator.ReturnNetBufferList(l)
	}
	parent, unit := l.parent, int64(childUnit)
	// recycle, written out: the usual clone (one NetBuffer over the
	// built-in MDL) regains its shape with a few stores.
	if l.slow != 0 {
		// Every clone has slow set.
		if l.releaseParent {
			l.releaseParent = false
			unit = childUnit - releasedBit
		}
		if l.slow == slowClone || l.slow == slowShape && l.plain() {
			l.restorePlain()
		} else {
			c.p.restore(l)
		}
	}
	l.scrub()
	debugFreed(l)
	// put, written out (no call while the cache has room).
	if cc := c.c; cc != nil {
		if !cc.PutCached(l) {
			cc.Put(l)
		}
	} else {
		c.p.nbls.Put(l)
	}
	if parent != nil {
		if parent.pool == c.p {
			c.drop(parent, unit)
		} else {
			parent.pool.front().drop(parent, unit)
		}
	}
}

// ReleaseParentWhenFreed is Release of cl's parent by the parent's owner,
// handed to cl: when cl is freed (FreeClone), the hold cl has on its parent
// and the owner's release are dropped together, in one atomic operation
// instead of one each. Until then cl's hold keeps the parent, as it would
// after a Release, and the owner must not use the parent any more, as
// after a Release. The goroutine that frees cl must be ordered after this
// call (cl reached it through a ring, a queue or a completion after it).
// It panics on an NBL that is not a clone and on a parent already released
// or handed over (to this clone or another); Release, and
// ReleaseDereferenceBurst, of a parent handed over panic too.
func (cl *NetBufferList) ReleaseParentWhenFreed() {
	debugLive(cl)
	p := cl.parent
	switch {
	case !cl.clone || p == nil:
		panic("nbl: ReleaseParentWhenFreed of an NBL that is not a clone")
	case p.releaseHanded || p.holds.Load()&releasedBit != 0:
		panic("nbl: ReleaseParentWhenFreed of a released parent")
	}
	p.releaseHanded = true
	cl.releaseParent = true
}

// recycle returns the descriptor and everything the pool lent it.
func (c *Cache) recycle(l *NetBufferList) {
	if l.slow != 0 {
		c.p.restore(l)
	}
	l.scrub()
	debugFreed(l)
	c.put(l)
}

// restore gives back what the pool lent l beyond its built-in NetBuffer
// and MDL and gives l the shape of a free descriptor.
func (p *Pool) restore(l *NetBufferList) {
	if !l.plain() {
		p.freeExtras(l)
	}
	l.parent = nil
	l.finisher = nil
	l.restoreShape()
}

// restorePlain is restore for a descriptor whose slow is slowClone alone,
// or slowShape alone with its NetBuffer and MDL the built-in ones alone
// (plain); either way it has no finisher: of restoreShape, only what a
// clone changes is left to write; the built-in MDL's memory is left to
// scrub.
func (l *NetBufferList) restorePlain() {
	l.parent = nil
	l.context = &l.ctx
	l.clone = false
	l.slow = 0
	l.nb.currentMdl = &l.mdl
}

// scrub clears every field of a descriptor that holds a reference, so that
// a free descriptor keeps nothing alive for the garbage collector, and
// points the built-in MDL back at the descriptor's frame; reset, at the
// next allocation, relies on it. The parent and the finisher are nil
// already: slow is 0 (recycle clears them otherwise).
func (l *NetBufferList) scrub() {
	// Cleared whatever they hold: the stores take fewer instructions than
	// testing the words first, and the descriptor's first cache lines,
	// where they lie, are written on every release anyway.
	l.Originator = nil
	l.Completion = Completion{}
	l.Scratch, l.SourceHandle = nil, nil
	l.releaseHanded = false
	if l.mdl.kind != mdlFrame {
		l.mdl.buf, l.mdl.kind = l.frame, mdlFrame
	}
	// Every tag the inject package writes has a handle: test that word
	// alone, to leave the tag's cache lines alone on the untagged path.
	if l.Tag.Handle != 0 {
		l.Tag = InjectionTag{}
	}
}

// freeExtras returns the extra NetBuffers and pool-made MDLs of l.
func (p *Pool) freeExtras(l *NetBufferList) {
	for nb := l.firstNB; nb != nil; {
		next := nb.Next
		p.freeMdls(nb.mdlChain)
		nb.mdlChain, nb.currentMdl, nb.Next = nil, nil, nil
		if nb.extra {
			p.nbs.Put(nb)
		}
		nb = next
	}
	l.mdl.next = nil
}

// freeMdls returns the pool-made MDLs of a chain. The built-in MDL and the
// caller's MDLs stay.
func (p *Pool) freeMdls(m *Mdl) {
	for m != nil {
		next := m.next
		if m.index >= 0 && m.kind != mdlUser {
			m.next, m.buf = nil, nil
			p.mdls.Put(m)
		}
		m = next
	}
}

// Clone makes an NBL that shares orig's packet memory
// (FwpsAllocateCloneNetBufferList0, NdisAllocateCloneNetBufferList). For
// each NetBuffer of orig the clone has one that covers the same DataLength
// bytes, starting at orig's current DataOffset, with no backfill. The clone
// has no context, its Parent is orig, and orig's ChildRefCount goes up by
// one until FreeClone. It copies NblFlags, Info, SourceHandle and the
// injection Tag. Writes through either NBL are visible in both.
//
// The caller must hold orig. Clone fails with ErrResources when the pool
// (descriptors, extra NetBuffers or MDLs) is exhausted; orig is unchanged.
func (c *Cache) Clone(orig *NetBufferList) (*NetBufferList, error) {
	if orig == nil {
		return nil, fmt.Errorf("%w: Clone of nil", ErrInvalidParameter)
	}
	debugLive(orig)
	// get, written out (no call while the cache has descriptors).
	var cl *NetBufferList
	var ok bool
	if cc := c.c; cc != nil {
		if cl, ok = cc.GetCached(); !ok {
			cl, ok = cc.Get()
		}
	} else {
		cl, ok = c.p.nbls.Get()
	}
	if !ok {
		return nil, ErrResources
	}
	cl.resetClone(orig)
	// The usual orig: one NetBuffer whose data lies in its current MDL.
	// The clone's NetBuffer and MDL are then its built-in ones, already
	// linked as a free descriptor has them; the MDL describes the data.
	if onb := orig.firstNB; onb != nil && onb.Next == nil && onb.currentMdl != nil {
		buf := onb.currentMdl.buf
		off := uint64(onb.currentMdlOffset)
		if end := off + uint64(onb.dataLength); end <= uint64(len(buf)) {
			cl.mdl.buf = buf[off:end:end]
			cl.parent = orig
			nb := &cl.nb
			nb.ChecksumBias = onb.ChecksumBias
			nb.dataOffset, nb.dataLength, nb.currentMdlOffset = 0, onb.dataLength, 0
			cl.mdl.kind = mdlMirror
			cl.slow = slowClone
			orig.holds.Add(childUnit)
			return cl, nil
		}
	}
	return c.cloneChain(cl, orig)
}

// resetClone is reset for a descriptor that becomes a clone of orig: it
// writes what reset writes, with orig's values where Clone copies them.
func (cl *NetBufferList) resetClone(orig *NetBufferList) {
	debugAllocated(cl)
	// The pointers first, together: one write-barrier test for them.
	cl.Next = nil
	// A clone has no context: ctx is left alone (reset, at the
	// descriptor's next allocation, sets its offset).
	cl.context = nil
	cl.nb.Next = nil
	cl.SourceHandle = orig.SourceHandle
	cl.Tag = orig.Tag
	cl.Status = StatusSuccess
	cl.NblFlags = orig.NblFlags
	cl.Info = orig.Info
	cl.OriginatorContext = 0
	cl.clone = true
	cl.slow = slowShape
}

// cloneChain is Clone for any other orig: several NetBuffers, or data
// over several MDLs.
func (c *Cache) cloneChain(cl, orig *NetBufferList) (*NetBufferList, error) {
	var prev *NetBuffer
	for onb := orig.firstNB; onb != nil; onb = onb.Next {
		var nb *NetBuffer
		var ok bool
		if prev == nil {
			nb = &cl.nb
		} else {
			nb, ok = c.p.getNB()
			if !ok {
				c.recycle(cl)
				return nil, ErrResources
			}
			prev.Next = nb
		}
		nb.nbl = cl
		nb.ChecksumBias = onb.ChecksumBias
		if !c.p.mirror(nb, onb, prev == nil) {
			c.recycle(cl)
			return nil, ErrResources
		}
		prev = nb
	}
	cl.parent = orig
	orig.holds.Add(childUnit)
	return cl, nil
}

func (p *Pool) getNB() (*NetBuffer, bool) {
	if p.nbs == nil {
		return nil, false
	}
	nb, ok := p.nbs.Get()
	if ok {
		nb.Next, nb.mdlChain, nb.currentMdl = nil, nil, nil
		nb.dataOffset, nb.dataLength, nb.currentMdlOffset = 0, 0, 0
	}
	return nb, ok
}

func (p *Pool) getMdl(kind uint8) (*Mdl, bool) {
	if p.mdls == nil {
		return nil, false
	}
	m, ok := p.mdls.Get()
	if ok {
		m.next, m.buf, m.kind = nil, nil, kind
	}
	return m, ok
}

// mirror points nb at the data of src: MDLs that describe src's DataLength
// bytes from its current position. The first MDL of the first NetBuffer is
// the clone's built-in one.
func (p *Pool) mirror(nb, src *NetBuffer, first bool) bool {
	nb.dataOffset, nb.dataLength, nb.currentMdlOffset = 0, src.dataLength, 0
	nb.mdlChain, nb.currentMdl = nil, nil
	left := src.dataLength
	sm, off := src.currentMdl, src.currentMdlOffset
	var tail *Mdl
	for sm != nil && (left > 0 || tail == nil) {
		seg := sm.buf[off:]
		if uint32(len(seg)) > left {
			seg = seg[:left]
		}
		if len(seg) > 0 || tail == nil {
			var m *Mdl
			if first && tail == nil {
				m = &nb.nbl.mdl
				m.next = nil
			} else {
				var ok bool
				if m, ok = p.getMdl(mdlMirror); !ok {
					return false
				}
			}
			m.buf = seg[:len(seg):len(seg)]
			m.kind = mdlMirror
			if tail == nil {
				nb.mdlChain = m
			} else {
				tail.next = m
			}
			tail = m
			left -= uint32(len(seg))
		}
		sm, off = sm.next, 0
	}
	nb.currentMdl = nb.mdlChain
	return left == 0
}
