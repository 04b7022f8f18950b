package nbl

import "fmt"

const maxDataLength = 0xFFFFFFFF

// Retreat grows the data of nb at the front by delta bytes, for a header to
// be written there (NdisRetreatNetBufferDataStart). DataLength grows by
// delta. When the backfill holds delta bytes, DataOffset shrinks by delta and
// the MDL chain is unchanged. Otherwise a header buffer from the pool, of
// delta+backfill bytes, is prepended as a new MDL: the data then starts
// backfill bytes plus the old DataOffset into it (the old backfill is used
// up first), so the new MDL leaves backfill bytes free for later retreats.
// Advance with freeMdl undoes this exactly.
//
// It returns ErrResources, with nb unchanged, when the pool has no MDL left
// or delta+backfill exceeds Config.HeaderBufferSize.
func (nb *NetBuffer) Retreat(delta, backfill int) error {
	debugLive(nb.nbl)
	if delta < 0 || backfill < 0 || uint64(nb.dataLength)+uint64(delta) > maxDataLength {
		return fmt.Errorf("%w: Retreat by %d with backfill %d", ErrInvalidParameter, delta, backfill)
	}
	d := uint32(delta)
	if d <= nb.dataOffset {
		nb.dataOffset -= d
		nb.dataLength += d
		if d <= nb.currentMdlOffset {
			nb.currentMdlOffset -= d
		} else {
			nb.AdjustCurrentMdl()
		}
		return nil
	}
	p := nb.nbl.pool
	if !fits(delta, backfill, p.cfg.HeaderBufferSize) {
		return ErrResources
	}
	size := delta + backfill
	m, ok := p.getMdl(mdlHeader)
	if !ok {
		return ErrResources
	}
	m.buf = p.headers.Frame(int(m.index))[:size:size]
	nb.nbl.slow |= slowShape
	m.next = nb.mdlChain
	nb.mdlChain = m
	nb.dataOffset = uint32(size) + nb.dataOffset - d
	nb.dataLength += d
	nb.AdjustCurrentMdl()
	return nil
}

// Advance drops delta bytes from the front of the data
// (NdisAdvanceNetBufferDataStart): DataOffset grows and DataLength shrinks
// by delta. With freeMdl, MDLs that a Retreat prepended and that now lie
// wholly in the backfill go back to the pool, so Retreat(d) then
// Advance(d, true) restores DataOffset, DataLength, the MDL chain, CurrentMdl
// and CurrentMdlOffset exactly. While the NBL has clones, which may share
// those buffers, they stay in the chain until the NBL is freed. On a receive
// path pass freeMdl false.
//
// delta larger than DataLength is refused with ErrInvalidParameter.
func (nb *NetBuffer) Advance(delta int, freeMdl bool) error {
	debugLive(nb.nbl)
	if delta < 0 || uint64(delta) > uint64(nb.dataLength) {
		return fmt.Errorf("%w: Advance by %d with DataLength %d", ErrInvalidParameter, delta, nb.dataLength)
	}
	d := uint32(delta)
	nb.dataOffset += d
	nb.dataLength -= d
	freed := false
	// A clone may describe a prepended header buffer: keep it until the
	// NBL is recycled (then no clone is left) rather than free it under
	// the clone.
	if freeMdl && nb.nbl.holds.Load() < childUnit {
		p := nb.nbl.pool
		for m := nb.mdlChain; m != nil && m.kind == mdlHeader && uint32(len(m.buf)) <= nb.dataOffset; m = nb.mdlChain {
			nb.dataOffset -= uint32(len(m.buf))
			nb.mdlChain = m.next
			m.next, m.buf = nil, nil
			p.mdls.Put(m)
			freed = true
		}
	}
	if m := nb.currentMdl; !freed && m != nil && uint64(nb.currentMdlOffset)+uint64(d) < uint64(len(m.buf)) {
		nb.currentMdlOffset += d
	} else {
		nb.AdjustCurrentMdl()
	}
	return nil
}

// AdjustCurrentMdl sets CurrentMdl and CurrentMdlOffset from DataOffset
// (NdisAdjustNetBufferCurrentMdl): CurrentMdl is the MDL holding byte
// DataOffset of the chain. When DataOffset is the end of an MDL and another
// follows, the next one is current.
func (nb *NetBuffer) AdjustCurrentMdl() {
	off := nb.dataOffset
	m := nb.mdlChain
	for m != nil && off >= uint32(len(m.buf)) && m.next != nil {
		off -= uint32(len(m.buf))
		m = m.next
	}
	nb.currentMdl = m
	nb.currentMdlOffset = off
}

// CopyOut copies packet data, starting offset bytes into the data, into dst
// and returns the number of bytes copied: the smaller of len(dst) and the
// data left after offset.
func (nb *NetBuffer) CopyOut(dst []byte, offset int) int {
	if offset < 0 || uint64(offset) >= uint64(nb.dataLength) {
		return 0
	}
	left := int(nb.dataLength) - offset
	if len(dst) > left {
		dst = dst[:left]
	}
	n := 0
	skip := offset + int(nb.currentMdlOffset)
	for m := nb.currentMdl; m != nil && n < len(dst); m = m.next {
		if skip >= len(m.buf) {
			skip -= len(m.buf)
			continue
		}
		n += copy(dst[n:], m.buf[skip:])
		skip = 0
	}
	return n
}

// CopyIn writes src into the packet data, starting offset bytes into it,
// and returns the number of bytes written: the smaller of len(src) and the
// data left after offset. It does not change DataLength.
func (nb *NetBuffer) CopyIn(offset int, src []byte) int {
	if offset < 0 || uint64(offset) >= uint64(nb.dataLength) {
		return 0
	}
	left := int(nb.dataLength) - offset
	if len(src) > left {
		src = src[:left]
	}
	n := 0
	skip := offset + int(nb.currentMdlOffset)
	for m := nb.currentMdl; m != nil && n < len(src); m = m.next {
		if skip >= len(m.buf) {
			skip -= len(m.buf)
			continue
		}
		n += copy(m.buf[skip:], src[n:])
		skip = 0
	}
	return n
}

// ChainLength returns the number of bytes the MDL chain describes. For a
// consistent NetBuffer it is at least DataOffset+DataLength.
func (nb *NetBuffer) ChainLength() int {
	n := 0
	for m := nb.mdlChain; m != nil; m = m.next {
		n += len(m.buf)
	}
	return n
}

// Bytes returns the packet data: the contiguous slice when Data can give
// one, or else a copy in scratch (grown if too small; pass a reused buffer
// to avoid allocating).
func (nb *NetBuffer) Bytes(scratch []byte) []byte {
	if d, ok := nb.Data(); ok {
		return d
	}
	if cap(scratch) < int(nb.dataLength) {
		scratch = make([]byte, nb.dataLength)
	}
	scratch = scratch[:nb.dataLength]
	nb.CopyOut(scratch, 0)
	return scratch
}

// RetreatDataStart retreats every NetBuffer of l
// (NdisRetreatNetBufferListDataStart). If one fails, those already retreated
// are advanced back and the error is returned.
func (l *NetBufferList) RetreatDataStart(delta, backfill int) error {
	for nb := l.firstNB; nb != nil; nb = nb.Next {
		if err := nb.Retreat(delta, backfill); err != nil {
			for u := l.firstNB; u != nb; u = u.Next {
				_ = u.Advance(delta, true)
			}
			return err
		}
	}
	return nil
}

// AdvanceDataStart advances every NetBuffer of l
// (NdisAdvanceNetBufferListDataStart). It checks every NetBuffer first and
// changes none when delta exceeds one's DataLength.
func (l *NetBufferList) AdvanceDataStart(delta int, freeMdl bool) error {
	for nb := l.firstNB; nb != nil; nb = nb.Next {
		if delta < 0 || uint64(delta) > uint64(nb.dataLength) {
			return fmt.Errorf("%w: Advance by %d with DataLength %d", ErrInvalidParameter, delta, nb.dataLength)
		}
	}
	for nb := l.firstNB; nb != nil; nb = nb.Next {
		_ = nb.Advance(delta, freeMdl)
	}
	return nil
}

// SetDataLength sets the number of data bytes (assigning
// NET_BUFFER_DATA_LENGTH, as a miniport does when a frame arrives): the data
// still starts at DataOffset and must fit the MDL chain.
func (nb *NetBuffer) SetDataLength(n int) error {
	if n < 0 || uint64(nb.dataOffset)+uint64(n) > uint64(nb.ChainLength()) {
		return fmt.Errorf("%w: DataLength %d does not fit a chain of %d bytes at offset %d", ErrInvalidParameter, n, nb.ChainLength(), nb.dataOffset)
	}
	nb.dataLength = uint32(n)
	return nil
}
