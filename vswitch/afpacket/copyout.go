//go:build linux

package afpacket

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Copy-out of frames held for long.
//
// Why the NBL is not repointed. The obvious way, pointing each held NBL's
// MDL at a copy in a pool frame, is unsafe while someone holds the NBL: the
// holder (a callout's goroutine, another worker transmitting it) may read
// the MDL at that moment and see it torn; slices it took earlier with Data
// or a decoder would go on aliasing the ring block, which the kernel then
// overwrites; clones describe the same bytes through MDLs of their own; and
// a sendmmsg in progress reads the ring through its iovecs. The port knows
// none of these holders and cannot stop them.
//
// What is done instead: the memory moves, the addresses stay. NBLs never
// point into the mapping through which the port talks to the kernel (ctl);
// each ring block has a view, a mapping of its pages of its own, and NBLs
// point into that. To copy a block out, the port
//
//  1. takes a hold on the block's record, so that it cannot go back to the
//     kernel meanwhile (the kernel does not write a block user space owns);
//  2. finds the frames not returned yet (a bit per frame, set on return)
//     and the pages they cover (backfill included);
//  3. copies those pages into pages of the copy pool and moves them over the
//     view with mremap(MREMAP_FIXED): each page is replaced in one step, and
//     the bytes are the same before and after, so a reader on any thread
//     sees the frame unchanged throughout;
//  4. gives the ring block a fresh view (a part of another mapping of the
//     ring) for its next walks, and the kernel the block;
//  5. leaves the old record with the copied frames: when the last of them
//     is returned, the pages go back to the pool (moved back, again with
//     mremap) and the old view is unmapped.
//
// Who takes the pages back. The last return of a copied frame may happen on
// any goroutine; it only marks the record done (block.done, copiesDone).
// The pool, the views and the records are the receiving goroutine's, so the
// pages are taken back there: at the start of each Receive (maintain), in
// Reclaim (the same goroutine, which a switch goes on calling when it has
// stopped receiving), and at the latest in Close, which runs after the
// switch's workers stopped. Close then reports, as an error, any copy page
// still in use: a copied frame not returned.
//
// Every range the port unmaps was its own up to that moment: pages moved out
// of the pool or a view leave the range mapped (MREMAP_DONTUNMAP), so no
// other mapping can slip into a hole the port later unmaps.
//
// What this does not cover: a write into a held frame from a goroutine
// other than the port's worker, at the moment its page is copied, may land
// in the replaced page and be lost (see the package documentation).
type copyState struct {
	epoch    time.Time
	lowWater int
	ctlAddr  uintptr

	slab      uintptr // the copy pool: slabPages pages of anonymous memory
	slabPages int
	freePages []int32 // free pages of the pool (a stack)

	copies      []int32       // records holding copied frames
	copiesDone  atomic.Uint64 // copies whose last frame came back
	copiesFreed uint64        // copiesDone when freeCopies last ran
	stalled     bool          // the last copy-out failed: retry after copyRetry, or when a copy or the tail frees
	stalledAt   int64         // when it failed (ns since the port opened)

	spare     uintptr // a mapping of the whole ring whose blocks serve as fresh views
	spareUsed []bool  // blocks of spare given to records

	marks []uint64 // scratch: the pages of a block to copy
}

// initBlocks makes the records, binds one to each block over the views
// mapping at views, and maps the copy pool.
func (p *Port) initBlocks(views uintptr) error {
	cfg := &p.cfg
	p.epoch = time.Now()
	p.lowWater = cfg.LowWater
	if p.lowWater == 0 {
		p.lowWater = max(1, cfg.Blocks/4)
	}
	ppb := cfg.BlockSize / p.page
	n := cfg.Blocks
	if cfg.CopyPages > 0 {
		n += cfg.CopyPages // a copy holds at least one page
	}
	words := (cfg.BlockSize/64 + 63) / 64 // a frame takes at least 64 bytes of a block
	p.blocks = make([]block, n)
	returned := make([]atomic.Uint64, n*words)
	pages := make([]int32, n*ppb)
	for i := range pages {
		pages[i] = -1
	}
	for i := range p.blocks {
		r := &p.blocks[i]
		r.returned = returned[i*words : (i+1)*words : (i+1)*words]
		r.pages = pages[i*ppb : (i+1)*ppb : (i+1)*ppb]
	}
	p.cur = make([]int32, cfg.Blocks)
	for b := range p.cur {
		p.cur[b] = int32(b)
		p.bind(&p.blocks[b], b, views+uintptr(b*cfg.BlockSize))
	}
	p.free = make([]int32, 0, n)
	for i := n - 1; i >= cfg.Blocks; i-- {
		p.free = append(p.free, int32(i))
	}
	p.copies = make([]int32, 0, n)
	p.marks = make([]uint64, (ppb+63)/64)
	p.spareUsed = make([]bool, cfg.Blocks)
	if cfg.CopyPages <= 0 {
		return nil
	}
	slab, err := mmapRaw(0, cfg.CopyPages*p.page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE, -1)
	if err != nil {
		return err
	}
	p.slab, p.slabPages = slab, cfg.CopyPages
	p.freePages = make([]int32, 0, cfg.CopyPages)
	for i := cfg.CopyPages - 1; i >= 0; i-- {
		p.freePages = append(p.freePages, int32(i))
	}
	return nil
}

// copyRetry is how long the port waits, after a copy-out failed, before it
// tries again when nothing it can see changed (a frame of the block coming
// back is not seen): a failed try costs a walk of the block's headers, or
// a failed mapping.
const copyRetry = time.Millisecond

// bind makes r the record of ring block b, seen through view.
func (p *Port) bind(r *block, b int, view uintptr) {
	r.ring = int32(b)
	r.view = view
	r.buf = bytesAt(view, p.cfg.BlockSize)
	r.frames = 0
	r.mixed = false
	r.copied.Store(false)
	r.done.Store(false)
	r.holds.Store(0)
}

// maintain runs at the start of each Receive: it takes back the pages of
// copies whose frames all came back, retires the walked blocks that went
// back to the kernel, and copies the oldest held block out when the ring
// runs short or the block has been held too long.
func (p *Port) maintain() {
	p.takeBackCopies()
	p.retire()
	if p.walked == 0 || p.slab == 0 {
		return
	}
	if p.stalled {
		if int64(time.Since(p.epoch))-p.stalledAt < int64(copyRetry) {
			return
		}
		p.stalled = false
	}
	for range 4 { // at most four copy-outs per call
		if p.walked == 0 {
			return
		}
		r := &p.blocks[p.cur[p.tail]]
		// Blocks the kernel cannot fill: the walked ones still held, and
		// the ones it filled that wait for their walk (from bi on).
		busy := p.walked
		for busy < p.cfg.Blocks && atomic.LoadUint32(p.blockStatus((p.bi+busy-p.walked)%p.cfg.Blocks))&unix.TP_STATUS_USER != 0 {
			busy++
		}
		short := p.cfg.Blocks-busy <= p.lowWater
		old := p.cfg.MaxHold > 0 && int64(time.Since(p.epoch))-r.walkedAt >= int64(p.cfg.MaxHold)
		if !short && !old {
			return
		}
		if !p.copyOut(p.tail) {
			p.stalled, p.stalledAt = true, int64(time.Since(p.epoch))
			p.copyFailed.Add(1)
			return
		}
		p.retire()
	}
}

// retire moves the tail past the walked blocks that went back. A new tail
// is a new candidate for copy-out: a stall on the old one ends.
func (p *Port) retire() {
	for p.walked > 0 && p.blocks[p.cur[p.tail]].holds.Load() == 0 {
		p.tail = (p.tail + 1) % p.cfg.Blocks
		p.walked--
		p.stalled = false
	}
}

// takeBackCopies takes back the pages of the copies whose frames all came
// back since it last looked. The receiving goroutine's (or Close's, once
// that goroutine stopped).
func (p *Port) takeBackCopies() {
	if p.copiesDone.Load() != p.copiesFreed {
		p.freeCopies()
	}
}

// closeCopies runs at Close, after the receiving goroutine stopped: it
// takes back the pages of every copy whose frames all came back, and those
// of failed copy-outs whose blocks are no longer held.
func (p *Port) closeCopies() {
	p.takeBackCopies()
	for _, ri := range p.cur {
		if r := &p.blocks[ri]; r.mixed && r.holds.Load() == 0 {
			p.releaseSlots(r) // the view goes with unmapAll
			r.mixed = false
		}
	}
}

// copyOut copies the frames still held in walked ring block b out and gives
// the block back to the kernel. It reports false when it could not (the
// copy pool or the records ran short, or a mapping failed); the block then
// stays held as before.
func (p *Port) copyOut(b int) bool {
	ri := p.cur[b]
	r := &p.blocks[ri]
	for {
		n := r.holds.Load()
		if n == 0 {
			return true // every frame came back meanwhile
		}
		if r.holds.CompareAndSwap(n, n+1) {
			break
		}
	}
	ok := p.copyHeld(b, ri, r)
	p.drop(r) // the copier's hold
	return ok
}

func (p *Port) copyHeld(b int, ri int32, r *block) bool {
	if len(p.free) == 0 {
		return false
	}
	bs, ps := p.cfg.BlockSize, p.page
	clear(p.marks)
	held := 0
	off := p.blockHdr(b).Offset_to_first_pkt
	for i := uint32(0); i < r.frames; i++ {
		f, ok := p.frameIn(b, off)
		if !ok {
			break // Receive stopped at the same header: no frame after it went out
		}
		if int(i>>6) >= len(r.returned) || r.returned[i>>6].Load()&(1<<(i&63)) == 0 {
			held++
			for pg := f.front / ps; pg <= (f.end-1)/ps; pg++ {
				p.marks[pg>>6] |= 1 << (pg & 63)
			}
		}
		next := (*unix.Tpacket3Hdr)(unsafe.Pointer(&p.ctl[b*bs+int(off)])).Next_offset
		if next == 0 {
			break
		}
		off += next
	}
	if held == 0 {
		return true // they came back meanwhile: the block goes back as usual
	}
	if r.mixed {
		// Pages a failed copy-out moved are copies already.
		for pg, s := range r.pages {
			if s >= 0 {
				p.marks[pg>>6] &^= 1 << (pg & 63)
			}
		}
	}
	npages := 0
	for _, w := range p.marks {
		npages += bits.OnesCount64(w)
	}
	if npages > len(p.freePages) {
		return false
	}
	nv, err := p.freshView(b)
	if err != nil {
		return false
	}
	// Copy, and move in runs of pages consecutive both in the view and in
	// the pool (one mremap per run).
	runPg, runSlot, runLen := 0, int32(0), 0
	failed := false
	for pg := 0; pg < bs/ps && !failed; pg++ {
		if p.marks[pg>>6]&(1<<(pg&63)) == 0 {
			continue
		}
		s := p.freePages[len(p.freePages)-1]
		p.freePages = p.freePages[:len(p.freePages)-1]
		p.copyPagesInUse.Add(1)
		copy(bytesAt(p.slab+uintptr(int(s)*ps), ps), r.buf[pg*ps:(pg+1)*ps])
		if runLen > 0 && pg == runPg+runLen && s == runSlot+int32(runLen) {
			runLen++
			continue
		}
		if runLen > 0 && !p.moveRun(r, runPg, runSlot, runLen) {
			p.freePages = append(p.freePages, s)
			p.copyPagesInUse.Add(-1)
			failed = true
			break
		}
		runPg, runSlot, runLen = pg, s, 1
	}
	if !failed && runLen > 0 && !p.moveRun(r, runPg, runSlot, runLen) {
		failed = true
	}
	if failed {
		// Some pages may have moved: the frames read the same, but the
		// view is no longer all ring. The block keeps its record and the
		// record its view, where its frames are: r.pages says which pages
		// are copies already, and a later copy-out of the block moves the
		// rest over the same view. If the frames all come back first, the
		// record gets a view all ring before its next walk (cleanView).
		// The fresh view is not taken.
		for _, s := range r.pages {
			r.mixed = r.mixed || s >= 0
		}
		p.spareUsed[b] = false
		return false
	}
	r.mixed = false
	r.copied.Store(true) // before the copier's hold is dropped
	nri := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.bind(&p.blocks[nri], b, nv)
	p.cur[b] = nri
	p.copies = append(p.copies, ri)
	p.copiedOut.Add(1)
	p.copiedFrames.Add(uint64(held))
	// The held frames are in the pool's pages now: the block is free.
	atomic.StoreUint32(p.blockStatus(b), unix.TP_STATUS_KERNEL)
	return true
}

// remap is moveTo, as copy-outs call it (tests make it fail).
var remap = moveTo

// moveRun moves n pages of the pool, from slot on, over the view of r from
// page pg on. On failure the run's pages go back to the pool.
func (p *Port) moveRun(r *block, pg int, slot int32, n int) bool {
	ps := p.page
	if err := remap(p.slab+uintptr(int(slot)*ps), n*ps, r.view+uintptr(pg*ps)); err != nil {
		for i := range n {
			p.freePages = append(p.freePages, slot+int32(i))
		}
		p.copyPagesInUse.Add(int64(-n))
		return false
	}
	for i := range n {
		r.pages[pg+i] = slot + int32(i)
	}
	return true
}

// freshView returns the address of ring block b in a mapping of the ring
// no record uses that block of: a part of the spare mapping, mapped anew
// when its block b is taken.
func (p *Port) freshView(b int) (uintptr, error) {
	if p.spare == 0 || p.spareUsed[b] {
		p.dropSpare()
		addr, err := mmapRaw(0, p.ringSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE, p.fd)
		if err != nil {
			return 0, err
		}
		p.spare = addr
		clear(p.spareUsed)
	}
	p.spareUsed[b] = true
	return p.spare + uintptr(b*p.cfg.BlockSize), nil
}

// dropSpare unmaps the blocks of the spare mapping no record took.
func (p *Port) dropSpare() error {
	if p.spare == 0 {
		return nil
	}
	var err error
	bs := p.cfg.BlockSize
	for b := 0; b < len(p.spareUsed); {
		if p.spareUsed[b] {
			b++
			continue
		}
		e := b
		for e < len(p.spareUsed) && !p.spareUsed[e] {
			e++
		}
		if e2 := munmapRaw(p.spare+uintptr(b*bs), (e-b)*bs); e2 != nil && err == nil {
			err = e2
		}
		b = e
	}
	p.spare = 0
	return err
}

// cleanView gives record r of ring block b, whose view has pages a failed
// copy-out moved in and none of whose frames is out any more, a view all
// ring again: a fresh one, the old one unmapped with the moved pages, whose
// pool pages are free again (they stayed mapped, empty). Called before the
// block is walked anew; false if no fresh view could be mapped (the walk
// waits).
func (p *Port) cleanView(r *block, b int) bool {
	nv, err := p.freshView(b)
	if err != nil {
		return false
	}
	p.releaseSlots(r)
	_ = munmapRaw(r.view, p.cfg.BlockSize)
	r.view, r.buf = nv, bytesAt(nv, p.cfg.BlockSize)
	r.mixed = false
	return true
}

// releaseSlots puts the pool pages r.pages names back in the pool without
// moving anything: for a record whose view, with the pages moved into it,
// is unmapped or about to be.
func (p *Port) releaseSlots(r *block) {
	for pg, s := range r.pages {
		if s >= 0 {
			p.freePages = append(p.freePages, s)
			p.copyPagesInUse.Add(-1)
			r.pages[pg] = -1
		}
	}
}

// freeCopies takes back the pages of the copies whose frames all came
// back, unmaps their old views and frees their records.
func (p *Port) freeCopies() {
	p.copiesFreed = p.copiesDone.Load()
	keep := p.copies[:0]
	for _, ri := range p.copies {
		r := &p.blocks[ri]
		if !r.done.Load() {
			keep = append(keep, ri)
			continue
		}
		p.returnPages(r)
		_ = munmapRaw(r.view, p.cfg.BlockSize)
		r.view, r.buf = 0, nil
		r.copied.Store(false)
		r.done.Store(false)
		p.free = append(p.free, ri)
		p.stalled = false
	}
	p.copies = keep
}

// returnPages moves a copy's pages back into the pool.
func (p *Port) returnPages(r *block) {
	ps := p.page
	for pg, s := range r.pages {
		if s < 0 {
			continue
		}
		r.pages[pg] = -1
		if err := moveTo(r.view+uintptr(pg*ps), ps, p.slab+uintptr(int(s)*ps)); err != nil {
			// The page stays with the view, unmapped with it; the pool's
			// page is still mapped (empty) and can be used again.
			_ = err
		}
		p.freePages = append(p.freePages, s)
		p.copyPagesInUse.Add(-1)
	}
}

// copyPoolLeak reports copy pages not back in the pool: the pages of copied
// frames still held (or, if the count and the pool disagree, a fault of
// the port's own bookkeeping). Called by Close, after takeBackCopies.
func (p *Port) copyPoolLeak() error {
	if p.slab == 0 {
		return nil
	}
	inUse, free := p.copyPagesInUse.Load(), len(p.freePages)
	if inUse == 0 && free == p.slabPages {
		return nil
	}
	held := len(p.copies)
	for _, ri := range p.cur {
		if r := &p.blocks[ri]; r.mixed && r.holds.Load() != 0 {
			held++
		}
	}
	return fmt.Errorf("afpacket: %s: %d copy pages still in use at close (%d of %d free): %d copied blocks with frames not returned",
		p.cfg.Interface, inUse, free, p.slabPages, held)
}

// unmapAll unmaps every mapping the port made. Called by Close and when
// New fails.
func (p *Port) unmapAll() error {
	var err error
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	for i := range p.blocks {
		r := &p.blocks[i]
		if r.view != 0 {
			keep(munmapRaw(r.view, p.cfg.BlockSize))
			r.view, r.buf = 0, nil
		}
	}
	keep(p.dropSpare())
	if p.slab != 0 {
		keep(munmapRaw(p.slab, p.slabPages*p.page))
		p.slab = 0
	}
	if p.ctl != nil {
		keep(munmapRaw(p.ctlAddr, p.ringSize()))
		p.ctl = nil
	}
	return err
}
