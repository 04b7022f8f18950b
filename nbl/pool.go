package nbl

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/internal/goid"
	"github.com/nblpipe/nblpipe/pool"
)

// MEMORY_ALLOCATION_ALIGNMENT is the alignment WFP requires of context sizes
// and backfills on 64-bit Windows.
const MEMORY_ALLOCATION_ALIGNMENT = 16

// Config sizes a Pool. Everything is allocated by NewPool; nothing grows
// later.
type Config struct {
	// NBLs is the number of NBL descriptors, each with one NetBuffer and
	// one MDL built in. Required.
	NBLs int
	// FrameSize is the packet memory each descriptor owns in the frame
	// slab, headroom included (default 2048; rounded up to 64). Set NoFrames
	// for a pool whose NBLs only describe memory owned elsewhere (a kernel
	// ring) or clones.
	FrameSize int
	NoFrames  bool
	// Headroom is the backfill a fresh frame starts with, for headers
	// prepended later (default 128).
	Headroom int
	// ExtraNetBuffers is the number of additional NetBuffers for NBLs that
	// hold more than one packet (default NBLs/8, at least 16).
	ExtraNetBuffers int
	// ExtraMdls is the number of additional MDLs, for retreats that run out
	// of backfill and for clones of multi-segment data (default NBLs/4, at
	// least 16).
	ExtraMdls int
	// HeaderBufferSize is the size of the buffer behind each extra MDL, the
	// most a retreat can prepend in one new segment: delta + backfill
	// (default 256).
	HeaderBufferSize int
	// ContextSize is the NET_BUFFER_LIST_CONTEXT area of each descriptor, a
	// multiple of 16 (default 64).
	ContextSize int
	// HugePages asks for huge pages for the frame slab (see pool.SlabConfig).
	HugePages bool
}

func (c Config) withDefaults() (Config, error) {
	if c.NBLs < 1 || c.NBLs > pool.MaxObjects {
		return c, fmt.Errorf("%w: NBLs must be between 1 and %d, got %d", ErrInvalidParameter, pool.MaxObjects, c.NBLs)
	}
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.Headroom == 0 {
		c.Headroom = 128
	}
	if c.ExtraNetBuffers == 0 {
		c.ExtraNetBuffers = max(16, c.NBLs/8)
	}
	if c.ExtraMdls == 0 {
		c.ExtraMdls = max(16, c.NBLs/4)
	}
	if c.HeaderBufferSize == 0 {
		c.HeaderBufferSize = 256
	}
	if c.ContextSize == 0 {
		c.ContextSize = 64
	}
	switch {
	case c.FrameSize < 0 || (!c.NoFrames && c.Headroom >= c.FrameSize):
		return c, fmt.Errorf("%w: need 0 <= Headroom < FrameSize, got Headroom %d, FrameSize %d", ErrInvalidParameter, c.Headroom, c.FrameSize)
	case c.Headroom < 0:
		return c, fmt.Errorf("%w: Headroom must not be negative, got %d", ErrInvalidParameter, c.Headroom)
	case c.ExtraNetBuffers < 0 || c.ExtraMdls < 0 || c.HeaderBufferSize < 0:
		return c, fmt.Errorf("%w: ExtraNetBuffers, ExtraMdls and HeaderBufferSize must not be negative", ErrInvalidParameter)
	case c.ContextSize < 0 || c.ContextSize%MEMORY_ALLOCATION_ALIGNMENT != 0 || c.ContextSize > 0xFFF0:
		return c, fmt.Errorf("%w: ContextSize must be a multiple of %d up to 65520, got %d", ErrInvalidParameter, MEMORY_ALLOCATION_ALIGNMENT, c.ContextSize)
	}
	return c, nil
}

// Pool holds every NBL descriptor, NetBuffer, MDL, frame and context area
// an application will use, allocated once by NewPool. Its methods are safe
// for concurrent use; for a worker goroutine's packet path use a Cache.
type Pool struct {
	cfg     Config
	nbls    *pool.Pool[NetBufferList]
	nbs     *pool.Pool[NetBuffer]
	mdls    *pool.Pool[Mdl]
	frames  *pool.Slab // nil with NoFrames
	headers *pool.Slab // behind the extra MDLs
	ctxMem  []byte
	shared  *Cache // the pool's own cache-less front, used by Pool methods

	// A cache lent to the pool's own methods on one goroutine (Lend):
	// lentG is that goroutine (goid.G), 0 when none; lent is written and
	// read by that goroutine only, and is shared while nothing is lent.
	lentG atomic.Uintptr
	lent  *Cache
}

// front is the cache the pool's own methods use: one lent by the calling
// goroutine, else the shared, cache-less front.
func (p *Pool) front() *Cache {
	// Small enough to inline. With nothing lent, lent is shared, so that
	// the one compare does: lentG is then 0, which no goroutine's G is,
	// or G is 0 too where goroutines cannot be told apart (nothing is
	// ever lent there).
	if p.lentG.Load() == goid.G() {
		return p.lent
	}
	return p.shared
}

// Lend makes c the cache that its pool's own methods (Pool.Allocate, Free,
// Release, Clone, FreeClone, NetBufferList.Dereference and the rest) use
// when they are called on the calling goroutine, until Unlend: code that a
// worker runs and that knows only the pool (a callout, a completion
// function) then goes through the worker's cache instead of the pool's
// shared ring. It reports false, and changes nothing, when another
// goroutine has a cache of the pool lent, or where goroutines cannot be
// told apart cheaply (architectures other than amd64 and arm64). The
// goroutine must call Unlend before it exits.
func (c *Cache) Lend() bool {
	g := goid.G()
	if c.c == nil || g == 0 {
		return false
	}
	p := c.p
	if p.lentG.Load() == g {
		return p.lent == c
	}
	if !p.lentG.CompareAndSwap(0, g) {
		return false
	}
	p.lent = c
	return true
}

// Unlend ends a Lend of c made on the calling goroutine; otherwise it does
// nothing.
func (c *Cache) Unlend() {
	p := c.p
	if p.lentG.Load() == goid.G() && p.lent == c {
		p.lent = p.shared
		p.lentG.Store(0)
	}
}

// Lent reports whether c is the cache its pool's own methods use on the
// calling goroutine, lent there with Lend.
func (c *Cache) Lent() bool {
	g := goid.G()
	return g != 0 && c.c != nil && c.p.lentG.Load() == g && c.p.lent == c
}

// ErrClosed is returned by a closed pool's allocation functions.
var ErrClosed = errors.New("nbl: pool closed")

// NewPool allocates a pool as cfg describes.
func NewPool(cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg}
	if !cfg.NoFrames {
		p.frames, err = pool.NewSlab(pool.SlabConfig{Frames: cfg.NBLs, FrameSize: cfg.FrameSize, Headroom: cfg.Headroom, HugePages: cfg.HugePages})
		if err != nil {
			return nil, err
		}
		p.cfg.FrameSize = p.frames.Stride()
	}
	if cfg.ExtraMdls > 0 {
		p.headers, err = pool.NewSlab(pool.SlabConfig{Frames: cfg.ExtraMdls, FrameSize: max(cfg.HeaderBufferSize, 1)})
		if err != nil {
			p.closeSlabs()
			return nil, err
		}
	}
	p.ctxMem = make([]byte, cfg.NBLs*cfg.ContextSize)
	p.nbls, err = pool.New(cfg.NBLs, func(i int, l *NetBufferList) { p.initNBL(i, l) })
	if err == nil && cfg.ExtraNetBuffers > 0 {
		p.nbs, err = pool.New(cfg.ExtraNetBuffers, func(i int, nb *NetBuffer) { nb.extra = true })
	}
	if err == nil && cfg.ExtraMdls > 0 {
		p.mdls, err = pool.New(cfg.ExtraMdls, func(i int, m *Mdl) { m.index = int32(i) })
	}
	if err != nil {
		p.closeSlabs()
		return nil, err
	}
	p.shared = &Cache{p: p, bulk: cpu.Isolated[*NetBufferList](0, maxRun)}
	p.lent = p.shared
	return p, nil
}

func (p *Pool) initNBL(i int, l *NetBufferList) {
	l.pool = p
	l.index = int32(i)
	l.mdl.index = -1
	l.nb.nbl = l
	cs := p.cfg.ContextSize
	l.ctx.data = p.ctxMem[i*cs : (i+1)*cs : (i+1)*cs]
	if p.frames != nil {
		l.frame = p.frames.Frame(i)
	}
	l.ctx.Size = uint16(cs)
	l.mdl.buf, l.mdl.kind = l.frame, mdlFrame
	l.restoreShape()
}

func (p *Pool) closeSlabs() {
	if p.frames != nil {
		_ = p.frames.Close()
	}
	if p.headers != nil {
		_ = p.headers.Close()
	}
}

// Config returns the pool's configuration with defaults filled in.
func (p *Pool) Config() Config { return p.cfg }

// Cap returns the number of NBL descriptors.
func (p *Pool) Cap() int { return p.nbls.Cap() }

// InUse returns the number of descriptors not in the pool's shared free
// ring (allocated, or parked in a Cache).
func (p *Pool) InUse() int { return p.nbls.InUse() }

// ExtraInUse returns the numbers of extra NetBuffers and MDLs in use.
func (p *Pool) ExtraInUse() (netBuffers, mdls int) {
	if p.nbs != nil {
		netBuffers = p.nbs.InUse()
	}
	if p.mdls != nil {
		mdls = p.mdls.InUse()
	}
	return netBuffers, mdls
}

// Full reports whether every descriptor, NetBuffer and MDL is back in the
// pool (flush the caches first).
func (p *Pool) Full() bool {
	nbs, mdls := p.ExtraInUse()
	return p.InUse() == 0 && nbs == 0 && mdls == 0
}

// Frames returns the frame slab, or nil for a pool made with NoFrames.
func (p *Pool) Frames() *pool.Slab { return p.frames }

// Owns reports whether l is one of this pool's descriptors.
func (p *Pool) Owns(l *NetBufferList) bool { return p.nbls.Owns(l) }

// At returns descriptor i.
func (p *Pool) At(i int) *NetBufferList { return p.nbls.At(i) }

// Close releases the frame memory. Every NBL must be back in the pool and
// out of use: NBL data slices become invalid. Close is idempotent.
func (p *Pool) Close() error {
	p.closeSlabs()
	return nil
}

// NewCache returns a per-worker cache of size descriptors in front of the
// pool. A Cache is not safe for concurrent use.
func (p *Pool) NewCache(size int) (*Cache, error) {
	c, err := p.nbls.NewCache(size)
	if err != nil {
		return nil, err
	}
	return &Cache{p: p, c: c, bulk: cpu.Isolated[*NetBufferList](0, maxRun)}, nil
}

// The Pool methods below are the Cache methods through the shared ring (or
// through the cache the calling goroutine lent the pool, see Lend); they
// are safe for concurrent use.

// Allocate takes an NBL around a fresh frame; see Cache.Allocate.
func (p *Pool) Allocate(dataOffset, dataLength int) (*NetBufferList, error) {
	return p.front().Allocate(dataOffset, dataLength)
}

// AllocateAround takes an NBL around caller-owned memory; see
// Cache.AllocateAround.
func (p *Pool) AllocateAround(buf []byte, dataOffset, dataLength int) (*NetBufferList, error) {
	return p.front().AllocateAround(buf, dataOffset, dataLength)
}

// Free returns an NBL to the pool; see Cache.Free.
func (p *Pool) Free(l *NetBufferList) error { return p.front().Free(l) }

// Release releases an NBL through the shared ring; see Cache.Release.
func (p *Pool) Release(l *NetBufferList) { p.front().Release(l) }

// ReleaseTo releases an NBL through the shared ring; see Cache.ReleaseTo.
func (p *Pool) ReleaseTo(l *NetBufferList, f Finisher) { p.front().ReleaseTo(l, f) }

// Clone makes a clone of orig; see Cache.Clone.
func (p *Pool) Clone(orig *NetBufferList) (*NetBufferList, error) { return p.front().Clone(orig) }

// FreeClone frees a clone; see Cache.FreeClone.
func (p *Pool) FreeClone(clone *NetBufferList) error {
	// Cache.FreeClone, written out: a completion function frees its clone
	// this way on a worker's packet path.
	c := p.front()
	if clone == nil || clone.pool != p || !clone.clone || clone.holds.Load() != 0 {
		return c.checkFree(clone, true)
	}
	debugLive(clone)
	c.finish(clone)
	return nil
}

// Cache is a worker's front to a Pool: allocation and free go through a
// per-worker stack of descriptors and touch shared memory only in bulk. Not
// safe for concurrent use.
type Cache struct {
	_    cpu.CacheLinePad // see pool.Cache: one worker's, beside another's
	p    *Pool
	c    *pool.Cache[NetBufferList] // nil for the pool's shared front
	bulk []*NetBufferList           // DereferenceBurst's leavers after a gap
	_    cpu.CacheLinePad
}

// Pool returns the cache's pool.
func (c *Cache) Pool() *Pool { return c.p }

// Flush returns every descriptor held in the cache to the pool.
func (c *Cache) Flush() {
	if c.c != nil {
		c.c.Flush()
	}
}

func (c *Cache) get() (*NetBufferList, bool) {
	if cc := c.c; cc != nil {
		if l, ok := cc.GetCached(); ok {
			return l, ok
		}
		return cc.Get()
	}
	return c.p.nbls.Get()
}

func (c *Cache) put(l *NetBufferList) {
	if cc := c.c; cc != nil {
		if !cc.PutCached(l) {
			cc.Put(l)
		}
		return
	}
	c.p.nbls.Put(l)
}

// reset prepares a descriptor taken from the free stack. A free
// descriptor has the shape restoreShape gives it (its one NetBuffer over
// its built-in MDL, which describes its own frame, its context, slow 0) and
// holds no reference (Scratch, SourceHandle, Completion, Originator, the
// parent, the finisher and the tag's contexts were cleared when it was
// recycled, so that it keeps nothing alive); reset sets the rest, the
// fields its users write directly.
func (l *NetBufferList) reset() {
	debugAllocated(l)
	// The two pointers first, together: one write-barrier test for both.
	l.Next = nil
	// NetBuffer.Next is exported: a caller may have linked a NetBuffer
	// the shape bits do not know of. The descriptor leaves with its own
	// alone.
	l.nb.Next = nil
	l.Status = StatusSuccess
	l.NblFlags = 0
	l.Info = Info{}
	l.OriginatorContext = 0
	l.ctx.Offset = l.ctx.Size
	l.nb.ChecksumBias = 0
}

// restoreShape gives a descriptor the shape every free descriptor has:
// the built-in NetBuffer alone, over the built-in MDL alone, and its
// context. The built-in MDL's memory is left to scrub.
func (l *NetBufferList) restoreShape() {
	l.firstNB = &l.nb
	l.context = &l.ctx
	l.clone = false
	l.slow = 0
	nb := &l.nb
	nb.Next = nil
	nb.mdlChain = &l.mdl
	nb.currentMdl = &l.mdl
	l.mdl.next = nil
}

// Allocate takes an NBL whose single NetBuffer describes the descriptor's
// own frame, with dataOffset bytes of backfill in front of dataLength bytes
// of data (the bytes are not cleared). It fails with ErrResources when the
// pool is empty and ErrInvalidParameter when the pool has no frames or the
// sizes do not fit a frame.
func (c *Cache) Allocate(dataOffset, dataLength int) (*NetBufferList, error) {
	if c.p.frames == nil || dataOffset < 0 || dataLength < 0 || !fits(dataOffset, dataLength, c.p.cfg.FrameSize) {
		return nil, ErrInvalidParameter
	}
	l, ok := c.get()
	if !ok {
		return nil, ErrResources
	}
	l.reset()
	l.nb.dataOffset = uint32(dataOffset)
	l.nb.dataLength = uint32(dataLength)
	l.nb.currentMdlOffset = uint32(dataOffset)
	return l, nil
}

// AllocateBurst fills out with NBLs around fresh frames, each with the
// pool's headroom as backfill and dataLength bytes of data, and returns how
// many it allocated: fewer than len(out) when the pool runs dry.
func (c *Cache) AllocateBurst(out []*NetBufferList, dataLength int) int {
	headroom := c.p.cfg.Headroom
	if c.p.frames == nil || dataLength < 0 || !fits(headroom, dataLength, c.p.cfg.FrameSize) {
		return 0
	}
	n := 0
	if c.c != nil {
		if !c.c.GetBulk(out) {
			for n < len(out) {
				l, ok := c.c.Get()
				if !ok {
					break
				}
				out[n] = l
				n++
			}
			out = out[:n]
		}
	} else if !c.p.nbls.GetBulk(out) {
		for n < len(out) {
			l, ok := c.p.nbls.Get()
			if !ok {
				break
			}
			out[n] = l
			n++
		}
		out = out[:n]
	}
	for _, l := range out {
		// The built-in MDL of a free descriptor describes its frame.
		l.reset()
		l.nb.dataOffset = uint32(headroom)
		l.nb.dataLength = uint32(dataLength)
		l.nb.currentMdlOffset = uint32(headroom)
	}
	return len(out)
}

// AllocateAround takes an NBL whose single NetBuffer describes buf: the
// first dataOffset bytes are backfill and the next dataLength bytes are data.
// The memory stays the caller's: nbl never frees it, and the caller must keep
// it valid until the NBL is freed. buf may be nil only with both sizes 0.
func (c *Cache) AllocateAround(buf []byte, dataOffset, dataLength int) (*NetBufferList, error) {
	if dataOffset < 0 || dataLength < 0 || !fits(dataOffset, dataLength, len(buf)) || uint64(len(buf)) > maxDataLength {
		return nil, ErrInvalidParameter
	}
	l, ok := c.get()
	if !ok {
		return nil, ErrResources
	}
	l.reset()
	if buf == nil {
		l.slow |= slowShape
		l.nb.mdlChain = nil
		l.nb.currentMdl = nil
		l.nb.dataOffset, l.nb.dataLength, l.nb.currentMdlOffset = 0, 0, 0
		return l, nil
	}
	l.mdl.buf = buf
	l.mdl.kind = mdlExternal
	l.nb.dataOffset = uint32(dataOffset)
	l.nb.dataLength = uint32(dataLength)
	l.nb.currentMdlOffset = uint32(dataOffset)
	return l, nil
}

// AllocateNetBufferAndNetBufferList is Cache.AllocateNetBufferAndNetBufferList
// through the shared ring.
func (p *Pool) AllocateNetBufferAndNetBufferList(contextSize, contextBackFill int, mdlChain *Mdl, dataOffset, dataLength int) (*NetBufferList, error) {
	return p.front().AllocateNetBufferAndNetBufferList(contextSize, contextBackFill, mdlChain, dataOffset, dataLength)
}

// fits reports whether a+b <= limit for non-negative a and b, without the
// overflow of adding them as ints.
func fits(a, b, limit int) bool { return uint64(a)+uint64(b) <= uint64(limit) }
