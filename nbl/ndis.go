package nbl

// This file holds the NDIS-named forms of the NBL helpers, with the names,
// parameter order and status codes of the WDK (nblapi.h, nblaccessors.h),
// for code ported from a Windows driver. Each is a thin wrapper over the
// idiomatic method it names. The FWPS allocation, clone and reference
// functions are in package inject.

// NET_BUFFER_LIST_FIRST_NB returns the first NetBuffer of l.
func NET_BUFFER_LIST_FIRST_NB(l *NetBufferList) *NetBuffer { return l.firstNB }

// NET_BUFFER_LIST_NEXT_NBL returns the NBL after l in its chain.
func NET_BUFFER_LIST_NEXT_NBL(l *NetBufferList) *NetBufferList { return l.Next }

// NET_BUFFER_LIST_STATUS returns l's status.
func NET_BUFFER_LIST_STATUS(l *NetBufferList) Status { return l.Status }

// NET_BUFFER_LIST_FLAGS returns l's NblFlags.
func NET_BUFFER_LIST_FLAGS(l *NetBufferList) uint32 { return l.NblFlags }

// NET_BUFFER_LIST_CONTEXT_DATA_START returns the context data in use.
func NET_BUFFER_LIST_CONTEXT_DATA_START(l *NetBufferList) []byte {
	if l.context == nil {
		return nil
	}
	return l.context.Data()
}

// NET_BUFFER_LIST_CONTEXT_DATA_SIZE returns the number of context bytes in
// use.
func NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l *NetBufferList) int {
	if l.context == nil {
		return 0
	}
	return int(l.context.Size - l.context.Offset)
}

// NET_BUFFER_NEXT_NB returns the NetBuffer after nb.
func NET_BUFFER_NEXT_NB(nb *NetBuffer) *NetBuffer { return nb.Next }

// NET_BUFFER_FIRST_MDL returns the head of nb's MDL chain.
func NET_BUFFER_FIRST_MDL(nb *NetBuffer) *Mdl { return nb.mdlChain }

// NET_BUFFER_DATA_LENGTH returns nb's DataLength.
func NET_BUFFER_DATA_LENGTH(nb *NetBuffer) uint32 { return nb.dataLength }

// NET_BUFFER_DATA_OFFSET returns nb's DataOffset.
func NET_BUFFER_DATA_OFFSET(nb *NetBuffer) uint32 { return nb.dataOffset }

// NET_BUFFER_CURRENT_MDL returns nb's CurrentMdl.
func NET_BUFFER_CURRENT_MDL(nb *NetBuffer) *Mdl { return nb.currentMdl }

// NET_BUFFER_CURRENT_MDL_OFFSET returns nb's CurrentMdlOffset.
func NET_BUFFER_CURRENT_MDL_OFFSET(nb *NetBuffer) uint32 { return nb.currentMdlOffset }

// NDIS_MDL_LINKAGE returns the MDL after m.
func NDIS_MDL_LINKAGE(m *Mdl) *Mdl { return m.next }

// NdisQueryMdl returns the memory m describes and its length.
func NdisQueryMdl(m *Mdl) (virtualAddress []byte, length uint32) {
	return m.buf, uint32(len(m.buf))
}

// NdisTestNblFlag reports whether any bit of f is set in l's NblFlags.
func NdisTestNblFlag(l *NetBufferList, f uint32) bool { return l.TestFlag(f) }

// NdisTestNblFlags reports whether all bits of f are set in l's NblFlags.
func NdisTestNblFlags(l *NetBufferList, f uint32) bool { return l.TestFlags(f) }

// NdisSetNblFlag sets the bits of f in l's NblFlags.
func NdisSetNblFlag(l *NetBufferList, f uint32) { l.SetFlag(f) }

// NdisClearNblFlag clears the bits of f in l's NblFlags.
func NdisClearNblFlag(l *NetBufferList, f uint32) { l.ClearFlag(f) }

// NdisRetreatNetBufferDataStart retreats nb by dataOffsetDelta with
// dataBackFill bytes of backfill if a new MDL is needed. allocateMdlHandler
// (NET_BUFFER_ALLOCATE_MDL_HANDLER) must be 0: MDLs come from the pool. It
// returns NDIS_STATUS_SUCCESS, NDIS_STATUS_RESOURCES, or
// STATUS_INVALID_PARAMETER for a handler or a size overflow.
func NdisRetreatNetBufferDataStart(netBuffer *NetBuffer, dataOffsetDelta, dataBackFill uint32, allocateMdlHandler uintptr) Status {
	if netBuffer == nil || allocateMdlHandler != 0 {
		return StatusInvalidParameter
	}
	return toStatus(netBuffer.Retreat(int(dataOffsetDelta), int(dataBackFill)))
}

// NdisAdvanceNetBufferDataStart advances nb by dataOffsetDelta, freeing the
// MDLs a retreat allocated when freeMdl is true. freeMdlHandler must be 0.
// NDIS returns nothing; this returns STATUS_INVALID_PARAMETER for a delta
// beyond DataLength (and changes nothing) instead of corrupting the buffer.
func NdisAdvanceNetBufferDataStart(netBuffer *NetBuffer, dataOffsetDelta uint32, freeMdl bool, freeMdlHandler uintptr) Status {
	if netBuffer == nil || freeMdlHandler != 0 {
		return StatusInvalidParameter
	}
	return toStatus(netBuffer.Advance(int(dataOffsetDelta), freeMdl))
}

// NdisRetreatNetBufferListDataStart retreats every NetBuffer of l.
func NdisRetreatNetBufferListDataStart(netBufferList *NetBufferList, dataOffsetDelta, dataBackFill uint32, allocateMdlHandler, freeMdlHandler uintptr) Status {
	if netBufferList == nil || allocateMdlHandler != 0 || freeMdlHandler != 0 {
		return StatusInvalidParameter
	}
	return toStatus(netBufferList.RetreatDataStart(int(dataOffsetDelta), int(dataBackFill)))
}

// NdisAdvanceNetBufferListDataStart advances every NetBuffer of l.
func NdisAdvanceNetBufferListDataStart(netBufferList *NetBufferList, dataOffsetDelta uint32, freeMdl bool, freeMdlHandler uintptr) Status {
	if netBufferList == nil || freeMdlHandler != 0 {
		return StatusInvalidParameter
	}
	return toStatus(netBufferList.AdvanceDataStart(int(dataOffsetDelta), freeMdl))
}

// NdisAdjustNetBufferCurrentMdl recomputes CurrentMdl and CurrentMdlOffset
// from DataOffset.
func NdisAdjustNetBufferCurrentMdl(netBuffer *NetBuffer) Status {
	if netBuffer == nil {
		return StatusInvalidParameter
	}
	netBuffer.AdjustCurrentMdl()
	return StatusSuccess
}

// NdisGetDataBuffer returns bytesNeeded bytes from the start of nb's data:
// the packet memory itself when they are contiguous, or else a copy in
// storage (nil storage then gives nil, as in NDIS). alignMultiple and
// alignOffset are accepted for the signature; Go slices need no alignment.
func NdisGetDataBuffer(netBuffer *NetBuffer, bytesNeeded uint32, storage []byte, alignMultiple, alignOffset uint32) []byte {
	if netBuffer == nil || bytesNeeded > netBuffer.dataLength {
		return nil
	}
	if m := netBuffer.currentMdl; m != nil && uint64(netBuffer.currentMdlOffset)+uint64(bytesNeeded) <= uint64(len(m.buf)) {
		end := netBuffer.currentMdlOffset + bytesNeeded
		return m.buf[netBuffer.currentMdlOffset:end:end]
	}
	if uint32(len(storage)) < bytesNeeded {
		return nil
	}
	n := netBuffer.CopyOut(storage[:bytesNeeded], 0)
	return storage[:n]
}

// NdisAllocateNetBufferListContext is AllocateContext.
func NdisAllocateNetBufferListContext(netBufferList *NetBufferList, contextSize, contextBackFill uint16, poolTag uint32) Status {
	if netBufferList == nil {
		return StatusInvalidParameter
	}
	return toStatus(netBufferList.AllocateContext(int(contextSize), int(contextBackFill)))
}

// NdisFreeNetBufferListContext is FreeContext.
func NdisFreeNetBufferListContext(netBufferList *NetBufferList, contextSize uint16) Status {
	if netBufferList == nil {
		return StatusInvalidParameter
	}
	return toStatus(netBufferList.FreeContext(int(contextSize)))
}

// toStatus maps the idiomatic errors to their status codes.
func toStatus(err error) Status {
	if err == nil {
		return StatusSuccess
	}
	if s, ok := err.(Status); ok {
		return s // the preallocated errors: no allocation
	}
	var s Status
	if asStatus(err, &s) {
		return s
	}
	return StatusFailure
}
