package nbl

import (
	"fmt"
	"unsafe"
)

const releasedBit = 1 // in holds: the owner has released the NBL
const holdUnit = 2    // in holds: one reference or one clone

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
	// NBLs on the fast path (one NetBuffer, the built-in MDL, no
	// originator, not a clone) gather in c.bulk and go back in one bulk put;
	// the others take the general path one by one.
	bulk := c.bulk[:0]
	for i, l := range nbls {
		if err := c.checkFree(l, false); err != nil {
			c.putBulk(bulk)
			return i, err
		}
		if l.Originator != nil || l.parent != nil || l.firstNB != &l.nb || l.nb.Next != nil || l.nb.mdlChain != &l.mdl || l.mdl.next != nil {
			c.finish(l)
			continue
		}
		l.scrub()
		debugFreed(l)
		bulk = append(bulk, l)
		if len(bulk) == cap(bulk) {
			c.putBulk(bulk)
			bulk = bulk[:0]
		}
	}
	c.putBulk(bulk)
	return len(nbls), nil
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
	clear(ls)
}

// FreeClone frees a clone made by Clone (FwpsFreeCloneNetBufferList0,
// NdisFreeCloneNetBufferList): its MDLs, including any that a retreat on the
// clone prepended, go back to the pool, and the parent's ChildRefCount drops
// by one. When that was the parent's last hold and its owner has released
// it, the parent is released too.
func (c *Cache) FreeClone(clone *NetBufferList) error {
	if err := c.checkFree(clone, true); err != nil {
		return err
	}
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
		return fmt.Errorf("%w: NBL still has %d clones and %d references", ErrInvalidParameter, l.childRefs.Load(), l.RefCount())
	}
	return nil
}

// Release says that the NBL's owner is done with it: the path that indicated
// it has ended, or its holder completed it. With no clones and no
// references it leaves at once (to its Originator, then its pool); otherwise
// it leaves when the last clone is freed or the last reference dropped,
// whichever goroutine does that.
func (c *Cache) Release(l *NetBufferList) {
	debugLive(l)
	if l.pool != c.p {
		l.pool.front().Release(l)
		return
	}
	// Only a holder can add a hold, and the owner is the last holder when
	// this reads 0, so a plain load is enough on the fast path. Pairs with
	// the Add in drop (another goroutine's last dereference).
	if l.holds.Load() == 0 {
		c.finish(l)
		return
	}
	if l.holds.Add(releasedBit) == releasedBit {
		l.clearHolds()
		c.finish(l)
	}
}

// ReleaseTo is Release, except that when the NBL would leave, f takes it
// over instead (f.FinishNetBufferList runs, on the goroutine that dropped
// the last hold) and the NBL stays allocated, f's to finish. With no clones
// and no references, f runs at once.
func (c *Cache) ReleaseTo(l *NetBufferList, f Finisher) {
	l.finisher = f
	c.Release(l)
}

// ReleaseBurst releases every NBL of nbls.
//
// NBLs with nothing holding them, no finisher and no parent go back in one
// bulk put after their originators are told (a BatchOriginator once per run
// of its NBLs); the others take Release's way.
func (c *Cache) ReleaseBurst(nbls []*NetBufferList) {
	bulk := c.bulk[:0]
	for _, l := range nbls {
		debugLive(l)
		if l.pool != c.p || l.holds.Load() != 0 || l.finisher != nil || l.parent != nil || !l.plain() {
			c.Release(l)
			continue
		}
		bulk = append(bulk, l)
		if len(bulk) == cap(bulk) {
			c.returnBulk(bulk)
			bulk = bulk[:0]
		}
	}
	c.returnBulk(bulk)
}

// DereferenceBurst drops one reference from each NBL of nbls, as
// Dereference does one by one; those that leave (their owner released them
// and this was the last hold) go back as ReleaseBurst sends them: their
// originators told once per run, one bulk put. It panics, as Dereference
// does, on an NBL without a reference to drop; the NBLs before it have been
// dereferenced.
func (c *Cache) DereferenceBurst(nbls []*NetBufferList) {
	bulk := c.bulk[:0]
	for _, l := range nbls {
		debugLive(l)
		if l.pool != c.p {
			l.Dereference()
			continue
		}
		if l.holds.Load()/holdUnit <= l.childRefs.Load() {
			c.returnBulk(bulk)
			panic("nbl: Dereference without a matching Reference")
		}
		if l.holds.Add(-holdUnit) != releasedBit {
			continue
		}
		l.clearHolds()
		if l.finisher != nil || l.parent != nil || !l.plain() {
			c.finish(l)
			continue
		}
		bulk = append(bulk, l)
		if len(bulk) == cap(bulk) {
			c.returnBulk(bulk)
			bulk = bulk[:0]
		}
	}
	c.returnBulk(bulk)
}

// returnBulk tells the originators of ls, scrubs the descriptors and puts
// them back in one bulk put.
func (c *Cache) returnBulk(ls []*NetBufferList) {
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
		// A BatchOriginator's type is comparable (see its doc).
		j := i + 1
		for j < len(ls) && ls[j].Originator == o {
			j++
		}
		b.ReturnNetBufferLists(ls[i:j])
		i = j
	}
	for _, l := range ls {
		l.scrub()
		debugFreed(l)
	}
	c.putBulk(ls)
}

// Reference takes a reference that keeps l from being released
// (FwpsReferenceNetBufferList0). Only a goroutine that holds l, as its owner
// or through a reference, may take one.
func (l *NetBufferList) Reference() {
	debugLive(l)
	l.holds.Add(holdUnit)
}

// Dereference drops a reference taken with Reference
// (FwpsDereferenceNetBufferList0). If it was the last hold on an NBL whose
// owner has released it, the NBL is released now, through the pool's shared
// ring (or the cache the calling goroutine lent it). Dereference without a matching Reference breaks the contract and
// panics (conformance case 51).
func (l *NetBufferList) Dereference() {
	debugLive(l)
	l.pool.front().dereference(l)
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

// dereference drops a reference. References are not counted apart from
// clones: holds counts both, so the check for a reference to drop compares
// it with the clones, which is exact when no clone is made or freed at the
// same moment (a misuse check, not a synchronisation).
func (c *Cache) dereference(l *NetBufferList) {
	h := l.holds.Load()
	if h/holdUnit <= l.childRefs.Load() {
		panic("nbl: Dereference without a matching Reference")
	}
	c.drop(l)
}

// drop removes one hold and releases the NBL if that was the last one and its
// owner had released it.
func (c *Cache) drop(l *NetBufferList) {
	// Pairs with the Add in Release: whichever of the two comes last sees
	// releasedBit alone and finishes the NBL.
	if l.holds.Add(-holdUnit) == releasedBit {
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
	*(*int32)(unsafe.Pointer(&l.holds)) = 0
}

// finish sends an NBL on its way out: to its originator, back to the pool,
// and for a clone, the parent's hold is dropped.
func (c *Cache) finish(l *NetBufferList) {
	if f := l.finisher; f != nil {
		l.finisher = nil
		f.FinishNetBufferList(l)
		return
	}
	if l.Originator != nil {
		l.Originator.ReturnNetBufferList(l)
	}
	parent := l.parent
	c.recycle(l)
	if parent != nil {
		parent.childRefs.Add(-1)
		if parent.pool == c.p {
			c.drop(parent)
		} else {
			parent.pool.front().drop(parent)
		}
	}
}

// recycle returns the descriptor and everything the pool lent it.
func (c *Cache) recycle(l *NetBufferList) {
	if !l.plain() {
		c.p.freeExtras(l)
	}
	l.scrub()
	debugFreed(l)
	c.put(l)
}

// scrub clears every field of a descriptor that holds a reference, so that
// a free descriptor keeps nothing alive for the garbage collector; reset,
// at the next allocation, relies on it.
func (l *NetBufferList) scrub() {
	if l.Scratch != nil || l.SourceHandle != nil {
		l.Scratch, l.SourceHandle = nil, nil
	}
	if c := &l.Completion; c.Fn != nil || c.Batch != nil || c.Context != nil || c.Owner != nil {
		*c = Completion{}
	}
	l.Originator = nil
	l.parent = nil
	l.finisher = nil
	l.mdl.buf = nil
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
	cl, ok := c.get()
	if !ok {
		return nil, ErrResources
	}
	cl.reset()
	cl.clone = true
	cl.context = nil
	cl.NblFlags = orig.NblFlags
	cl.Info = orig.Info
	cl.SourceHandle = orig.SourceHandle
	cl.Tag = orig.Tag
	var prev *NetBuffer
	for onb := orig.firstNB; onb != nil; onb = onb.Next {
		var nb *NetBuffer
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
	orig.childRefs.Add(1)
	orig.holds.Add(holdUnit)
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
