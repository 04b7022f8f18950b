package nbl

import "fmt"

// AllocateNetBufferAndNetBufferList is the model of
// FwpsAllocateNetBufferAndNetBufferList0 (and
// NdisAllocateNetBufferAndNetBufferList): it takes an NBL with one NetBuffer
// over mdlChain, dataOffset bytes of backfill and dataLength bytes of data,
// and a context area of contextSize bytes in use with contextBackFill free
// bytes in front of it.
//
// The parameter rules of the WDK apply (conformance case 50):
// contextSize and contextBackFill must be multiples of
// MEMORY_ALLOCATION_ALIGNMENT (16) and fit the pool's ContextSize; a nil
// mdlChain requires dataOffset and dataLength 0; dataOffset+dataLength must
// not exceed the chain. Breaking one gives ErrInvalidParameter; an empty pool
// gives ErrResources.
//
// The MDLs stay the caller's (from AllocateMdl): Free does not free them.
// To allocate around a fresh frame or plain bytes, use Allocate or
// AllocateAround.
func (c *Cache) AllocateNetBufferAndNetBufferList(contextSize, contextBackFill int, mdlChain *Mdl, dataOffset, dataLength int) (*NetBufferList, error) {
	switch {
	case contextSize < 0 || contextBackFill < 0 ||
		contextSize%MEMORY_ALLOCATION_ALIGNMENT != 0 || contextBackFill%MEMORY_ALLOCATION_ALIGNMENT != 0:
		return nil, fmt.Errorf("%w: contextSize %d and contextBackFill %d must be non-negative multiples of %d",
			ErrInvalidParameter, contextSize, contextBackFill, MEMORY_ALLOCATION_ALIGNMENT)
	case contextSize+contextBackFill > c.p.cfg.ContextSize:
		return nil, fmt.Errorf("%w: contextSize %d + contextBackFill %d exceed the pool's ContextSize %d",
			ErrInvalidParameter, contextSize, contextBackFill, c.p.cfg.ContextSize)
	case dataOffset < 0 || dataLength < 0:
		return nil, fmt.Errorf("%w: negative dataOffset %d or dataLength %d", ErrInvalidParameter, dataOffset, dataLength)
	case mdlChain == nil && (dataOffset != 0 || dataLength != 0):
		return nil, fmt.Errorf("%w: a nil mdlChain needs dataOffset and dataLength 0, got %d and %d", ErrInvalidParameter, dataOffset, dataLength)
	}
	total, ok := chainBytes(mdlChain, 1<<16)
	if !ok {
		return nil, fmt.Errorf("%w: mdlChain is longer than 65536 MDLs or loops", ErrInvalidParameter)
	}
	if uint64(dataOffset)+uint64(dataLength) > total {
		return nil, fmt.Errorf("%w: dataOffset %d + dataLength %d exceed the %d bytes of mdlChain", ErrInvalidParameter, dataOffset, dataLength, total)
	}
	l, ok := c.get()
	if !ok {
		return nil, ErrResources
	}
	l.reset()
	l.ctx.Offset = uint16(c.p.cfg.ContextSize - contextSize)
	clear(l.ctx.data[l.ctx.Offset:])
	l.slow |= slowShape
	nb := &l.nb
	nb.mdlChain = mdlChain
	nb.dataOffset = uint32(dataOffset)
	nb.dataLength = uint32(dataLength)
	nb.AdjustCurrentMdl()
	return l, nil
}

func chainBytes(m *Mdl, limit int) (uint64, bool) {
	var total uint64
	for i := 0; m != nil; m, i = m.next, i+1 {
		if i == limit {
			return 0, false
		}
		total += uint64(len(m.buf))
	}
	return total, true
}

// AllocateMdl makes an MDL that describes buf (the model of IoAllocateMdl or
// NdisAllocateMdl), from the pool's extra MDLs. The memory and the MDL stay
// the caller's: free the MDL with FreeMdl once no NBL uses it. Link MDLs into
// a chain with SetNext.
func (p *Pool) AllocateMdl(buf []byte) (*Mdl, error) {
	if uint64(len(buf)) > maxDataLength {
		return nil, fmt.Errorf("%w: buffer of %d bytes", ErrInvalidParameter, len(buf))
	}
	m, ok := p.getMdl(mdlUser)
	if !ok {
		return nil, ErrResources
	}
	m.buf = buf
	return m, nil
}

// FreeMdl returns an MDL made by AllocateMdl.
func (p *Pool) FreeMdl(m *Mdl) error {
	if m == nil || m.kind != mdlUser || p.mdls == nil || !p.mdls.Owns(m) {
		return fmt.Errorf("%w: FreeMdl of an MDL not made by AllocateMdl of this pool", ErrInvalidParameter)
	}
	m.next, m.buf, m.kind = nil, nil, mdlMirror
	p.mdls.Put(m)
	return nil
}

// SetNext links next after m in a chain of MDLs made by AllocateMdl
// (NDIS_MDL_LINKAGE(m) = next). It refuses MDLs the pool made for an NBL.
func (m *Mdl) SetNext(next *Mdl) error {
	if m.kind != mdlUser {
		return fmt.Errorf("%w: SetNext on an MDL that belongs to an NBL", ErrInvalidParameter)
	}
	m.next = next
	return nil
}

// AppendNetBuffer adds a NetBuffer over buf, with dataOffset bytes of
// backfill and dataLength bytes of data, at the end of l's NetBuffer list
// (NdisAllocateNetBuffer and linking it). The memory stays the caller's.
// It fails with ErrResources when the pool has no extra NetBuffer or MDL.
func (c *Cache) AppendNetBuffer(l *NetBufferList, buf []byte, dataOffset, dataLength int) (*NetBuffer, error) {
	if l == nil || l.pool != c.p || l.clone || dataOffset < 0 || dataLength < 0 || !fits(dataOffset, dataLength, len(buf)) || uint64(len(buf)) > maxDataLength {
		return nil, fmt.Errorf("%w: AppendNetBuffer needs an NBL of this pool that is not a clone, and data inside buf", ErrInvalidParameter)
	}
	debugLive(l)
	nb, ok := c.p.getNB()
	if !ok {
		return nil, ErrResources
	}
	m, ok := c.p.getMdl(mdlExternal)
	if !ok {
		c.p.nbs.Put(nb)
		return nil, ErrResources
	}
	m.buf = buf
	nb.nbl = l
	nb.ChecksumBias = 0
	nb.mdlChain, nb.currentMdl = m, m
	nb.dataOffset, nb.dataLength, nb.currentMdlOffset = uint32(dataOffset), uint32(dataLength), uint32(dataOffset)
	last := l.firstNB
	for last.Next != nil {
		last = last.Next
	}
	l.slow |= slowShape
	last.Next = nb
	return nb, nil
}

// NetBufferCount returns the number of NetBuffers of l.
func (l *NetBufferList) NetBufferCount() int {
	n := 0
	for nb := l.firstNB; nb != nil; nb = nb.Next {
		n++
	}
	return n
}

// AllocateContext takes size more bytes of context in front of the data in
// use (NdisAllocateNetBufferListContext); backfill is the free space the
// caller wants left before it, as in NDIS. size and backfill must be
// multiples of 16. It fails with ErrResources when the area has no room and
// ErrInvalidParameter for a clone, which has no context.
func (l *NetBufferList) AllocateContext(size, backfill int) error {
	if l.context == nil || size < 0 || backfill < 0 || size%MEMORY_ALLOCATION_ALIGNMENT != 0 || backfill%MEMORY_ALLOCATION_ALIGNMENT != 0 {
		return fmt.Errorf("%w: AllocateContext(%d, %d)", ErrInvalidParameter, size, backfill)
	}
	if int(l.ctx.Offset) < size+backfill {
		return ErrResources
	}
	l.ctx.Offset -= uint16(size)
	clear(l.ctx.data[l.ctx.Offset : int(l.ctx.Offset)+size])
	return nil
}

// FreeContext gives back the size bytes at the front of the context in use
// (NdisFreeNetBufferListContext).
func (l *NetBufferList) FreeContext(size int) error {
	if l.context == nil || size < 0 || int(l.ctx.Offset)+size > int(l.ctx.Size) {
		return fmt.Errorf("%w: FreeContext(%d) with %d bytes in use", ErrInvalidParameter, size, int(l.ctx.Size)-int(l.ctx.Offset))
	}
	l.ctx.Offset += uint16(size)
	return nil
}
