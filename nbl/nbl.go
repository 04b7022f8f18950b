package nbl

import (
	"sync/atomic"
)

// NBL flags (NET_BUFFER_LIST.NblFlags, public bits; nbl.h).
const (
	NBL_FLAGS_SEND_READ_ONLY                        uint32 = 0x00000001
	NBL_FLAGS_RECV_READ_ONLY                        uint32 = 0x00000002
	NBL_FLAGS_HD_SPLIT                              uint32 = 0x00000100
	NBL_FLAGS_IS_IPV4                               uint32 = 0x00000200
	NBL_FLAGS_IS_IPV6                               uint32 = 0x00000400
	NBL_FLAGS_IS_TCP                                uint32 = 0x00000800
	NBL_FLAGS_IS_UDP                                uint32 = 0x00001000
	NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER  uint32 = 0x00002000
	NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD uint32 = 0x00004000
	NBL_FLAGS_IS_LOOPBACK_PACKET                    uint32 = 0x00008000
	NBL_FLAGS_CAPTURE_TIMESTAMP_ON_TRANSMIT         uint32 = 0x00010000
)

// CompletionFunc is called once for an injected NBL when the injection is
// done: the model of FWPS_INJECT_COMPLETE0. The inject package sets and calls
// it; nbl only stores it.
type CompletionFunc func(context any, netBufferList *NetBufferList, dispatchLevel bool)

// BatchCompletion is the batched form of CompletionFunc: Fn receives every
// finished NBL of one completion batch that shares this *BatchCompletion,
// the context and the injecting handle. NBLs are grouped by the pointer, so
// make one BatchCompletion and pass it to every injection. The slice is
// valid only during the call.
type BatchCompletion struct {
	Fn func(context any, netBufferLists []*NetBufferList)
}

// Originator is told when an NBL it lent out comes back: its journey ended
// and nothing holds it any more. A port uses it to give a kernel ring slot or
// a UMEM frame back. After the call the descriptor returns to its pool, so
// the originator must not keep the *NetBufferList; OriginatorContext carries
// what it needs. NBLs with no Originator simply return to their pool.
type Originator interface {
	// ReturnNetBufferList runs on a worker's packet path: it must not block.
	ReturnNetBufferList(l *NetBufferList)
}

// BatchOriginator is an Originator that also takes back a run of its NBLs
// in one call: Cache.ReleaseBurst hands it each run of consecutive NBLs it
// originated, instead of one call per NBL. The slice is valid only during
// the call and must not be changed (it may be part of the slice given to
// ReleaseBurst or DereferenceBurst), and the same rules as for
// ReturnNetBufferList apply to each NBL.
// Its dynamic type must be comparable (a pointer, as a port is): runs are
// found by comparing the NBLs' Originator values.
type BatchOriginator interface {
	Originator
	ReturnNetBufferLists(ls []*NetBufferList)
}

// Finisher takes over an NBL whose owner released it with ReleaseTo, at
// the moment nothing holds it any more, instead of the NBL leaving for its
// originator. The switch uses it to run the injection completion of a frame
// a callout absorbed while holding it.
type Finisher interface {
	FinishNetBufferList(l *NetBufferList)
}

// MaxInjectionHistory is the number of earlier injecting handles an NBL
// remembers (for FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF).
const MaxInjectionHistory = 4

// InjectionTag records who injected an NBL. The inject package writes and
// interprets it; it travels into clones.
type InjectionTag struct {
	// Handle is the ID of the injection handle that injected the NBL last;
	// 0 means the NBL was never injected.
	Handle uint64
	// Context is the injectionContext given with that injection.
	Context any
	// History holds the handles (and their contexts) that injected the
	// data earlier, most recent first; HistoryLen of them are valid.
	History        [MaxInjectionHistory]uint64
	HistoryContext [MaxInjectionHistory]any
	HistoryLen     uint8
	// Hops counts the injections this data has been through, clones
	// included, so that loops can be cut off.
	Hops uint16
}

// Completion holds what an injector asked to be called when an injected
// NBL finishes. nbl stores it; inject gives it meaning.
type Completion struct {
	Fn      CompletionFunc
	Batch   *BatchCompletion
	Context any
	// Owner identifies what must be told about the completion (the
	// injection handle); opaque to nbl.
	Owner any
	// OwnerRelease is set by the NBL's owner when it hands its release to
	// the completion: an original injected with no completion function,
	// whose completion drops the injector's reference, then also releases
	// it for the owner, both in one atomic operation
	// (Cache.ReleaseDereferenceBurst) instead of one each. The owner sets
	// it after the injection and before the NBL can complete, in place of
	// its Release.
	OwnerRelease bool
}

// Ieee8021QInfo is the 802.1Q tag of a frame whose tag travels out of band
// (the kernel strips it on AF_PACKET receive): the model of
// NDIS_NET_BUFFER_LIST_8021Q_INFO.
type Ieee8021QInfo struct {
	VlanID   uint16 // 12 bits
	Priority uint8  // 3 bits (PCP)
	CFI      bool   // drop eligible (DEI)
	Present  bool   // whether a tag is carried here
	TPID     uint16 // 0x8100 when zero
}

// TCI returns the tag control information as it appears on the wire.
func (q Ieee8021QInfo) TCI() uint16 {
	t := q.VlanID&0x0FFF | uint16(q.Priority&7)<<13
	if q.CFI {
		t |= 1 << 12
	}
	return t
}

// Checksum state bits (Info.Checksum), after NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO
// and Linux's skb ip_summed.
const (
	ChecksumIPv4Good    uint32 = 1 << 0 // receive: IPv4 header checksum verified
	ChecksumTCPGood     uint32 = 1 << 1 // receive: TCP checksum verified
	ChecksumUDPGood     uint32 = 1 << 2 // receive: UDP checksum verified
	ChecksumIPv4Bad     uint32 = 1 << 3
	ChecksumTCPBad      uint32 = 1 << 4
	ChecksumUDPBad      uint32 = 1 << 5
	ChecksumPartial     uint32 = 1 << 6 // transmit: L4 checksum still to be completed (CHECKSUM_PARTIAL)
	ChecksumUnnecessary uint32 = 1 << 7 // receive: the whole packet was verified (CHECKSUM_UNNECESSARY)
)

// Info is the out-of-band data of an NBL: the NetBufferListInfo slots of
// NDIS, as typed fields.
type Info struct {
	Ieee8021Q Ieee8021QInfo // Ieee8021QNetBufferListInfo
	Checksum  uint32        // TcpIpChecksumNetBufferListInfo: Checksum* bits
	// CsumStart and CsumOffset locate a partial checksum (ChecksumPartial):
	// the checksum covers from CsumStart to the end and is stored at
	// CsumStart+CsumOffset, as in virtio_net_hdr.
	CsumStart, CsumOffset uint16
	// GSOSize is the segment size of a large (GSO/GRO) frame, 0 if none;
	// GSOType says which protocol (virtio_net_hdr gso_type).
	GSOSize uint16
	GSOType uint8
	// Timestamp is the receive time in nanoseconds since the Unix epoch,
	// 0 if not taken.
	Timestamp int64
	// Hash is the receive hash (RSS or software flow hash) and HashType
	// says what it covers; 0 if none.
	Hash     uint32
	HashType uint8
	// Switch is the virtual-switch forwarding detail
	// (NDIS_SWITCH_FORWARDING_DETAIL_NET_BUFFER_LIST_INFO).
	Switch SwitchForwardingDetail
}

// SwitchForwardingDetail is where a frame entered a virtual switch, the
// model of NDIS_SWITCH_FORWARDING_DETAIL_NET_BUFFER_LIST_INFO.
type SwitchForwardingDetail struct {
	SourcePortID   uint32 // NDIS_SWITCH_PORT_ID
	SourceNicIndex uint16 // NDIS_SWITCH_NIC_INDEX
	// IsPacketDataSafe says the data may be read without copying it first
	// (the switch's frames are always in its own memory).
	IsPacketDataSafe bool
}

// NetBufferList is a list of packets that travel together, the model of
// NDIS's NET_BUFFER_LIST. Each of its NetBuffers is one packet; most NBLs
// hold exactly one. NBLs link into chains through Next.
//
// NBLs come only from a Pool; the zero value is not usable. Fields users may
// set directly are exported; fields whose consistency the package keeps are
// reached through methods.
type NetBufferList struct {
	_ noCopy

	// The fields are ordered by use: those every packet touches first, in
	// the descriptor's first cache lines; the injection tag, the context and
	// the owner's scratch, which only some packets use, last.

	// Next links NBLs into a NULL-terminated chain
	// (NET_BUFFER_LIST_NEXT_NBL).
	Next *NetBufferList
	// Status is the NDIS_STATUS of the NBL: set on completion.
	Status Status
	// NblFlags holds the NBL_FLAGS_* bits; see TestFlag and TestFlags.
	NblFlags uint32

	firstNB *NetBuffer
	pool    *Pool
	// holds is refUnit*refs + childUnit*clones, plus releasedBit once the
	// owner has released the NBL; the NBL leaves when it drops to
	// releasedBit.
	holds atomic.Int64
	index int32
	clone bool
	// releaseParent: a clone whose parent's owner handed its release to
	// it (ReleaseParentWhenFreed); releaseHanded: the parent, whose owner
	// did (written by the owner, so that a second release panics).
	releaseParent bool
	releaseHanded bool
	// slow is nonzero when the NBL must take the general release path:
	// slowShape once anything but Allocate's single NetBuffer over the
	// built-in MDL was made (a clone, a prepended MDL, an extra
	// NetBuffer, a caller's chain), slowFinisher while a finisher waits;
	// slowClone instead of slowShape for a clone of the usual shape.
	// The writers set it; only recycle clears slowShape and slowClone.
	slow uint8

	// Originator receives the NBL when it is released; nil means its pool.
	Originator Originator
	// OriginatorContext is the originator's own note (a ring slot, a block
	// number); opaque to nbl.
	OriginatorContext uint64

	// Completion is written by the inject package.
	Completion Completion

	// Scratch belongs to the current owner and is nil at allocation.
	Scratch any
	// SourceHandle identifies the component that indicated or sent it.
	SourceHandle any

	frame []byte    // the descriptor's own frame in the slab, nil without one
	nb    NetBuffer // the first NetBuffer, embedded
	mdl   Mdl       // the first MDL, embedded

	// Info holds the out-of-band information (VLAN, checksum, timestamp,
	// hash, switch port).
	Info Info

	parent   *NetBufferList
	context  *Context
	state    atomic.Uint32 // debug builds: free or allocated
	finisher Finisher

	// Tag is written by the inject package.
	Tag InjectionTag

	ctx Context // the context header, embedded

	// To 576 bytes, nine cache lines (TestDescriptorLayout): in a pool's
	// array, page-aligned once it is large, no line holds parts of two
	// descriptors, which two workers may be writing at once (with
	// 536 bytes, forwarding between two workers through the ring
	// hand-off ran about 10% slower).
	_ [40]byte
}

// FirstNetBuffer returns the first NetBuffer of the NBL
// (NET_BUFFER_LIST_FIRST_NB).
func (l *NetBufferList) FirstNetBuffer() *NetBuffer { return l.firstNB }

// Parent returns the NBL this one was cloned from, or nil
// (NET_BUFFER_LIST.ParentNetBufferList).
func (l *NetBufferList) Parent() *NetBufferList { return l.parent }

// ChildRefCount returns the number of clones of this NBL still alive.
func (l *NetBufferList) ChildRefCount() int32 { return int32(l.holds.Load() / childUnit) }

// RefCount returns the number of references taken with Reference and not yet
// dropped.
func (l *NetBufferList) RefCount() int32 { return int32((l.holds.Load() & refMask) / refUnit) }

// IsClone reports whether the NBL was made by Clone.
func (l *NetBufferList) IsClone() bool { return l.clone }

// Context returns the NBL's context header (NET_BUFFER_LIST_CONTEXT), or nil
// for a clone, which has none.
func (l *NetBufferList) Context() *Context { return l.context }

// Pool returns the pool the descriptor belongs to.
func (l *NetBufferList) Pool() *Pool { return l.pool }

// Index returns the descriptor's fixed position in its pool.
func (l *NetBufferList) Index() int { return int(l.index) }

// TestFlag reports whether any of the bits of mask is set in NblFlags
// (NdisTestNblFlag).
func (l *NetBufferList) TestFlag(mask uint32) bool { return l.NblFlags&mask != 0 }

// TestFlags reports whether all of the bits of mask are set in NblFlags
// (NdisTestNblFlags).
func (l *NetBufferList) TestFlags(mask uint32) bool { return l.NblFlags&mask == mask }

// SetFlag sets the bits of mask (NdisSetNblFlag).
func (l *NetBufferList) SetFlag(mask uint32) { l.NblFlags |= mask }

// ClearFlag clears the bits of mask (NdisClearNblFlag).
func (l *NetBufferList) ClearFlag(mask uint32) { l.NblFlags &^= mask }

// Len returns the number of NBLs in the chain that starts at l, following
// Next. It stops counting at limit, so a chain with a cycle cannot hang it;
// the second result is false when the chain is longer than limit or loops.
func (l *NetBufferList) Len(limit int) (int, bool) {
	n := 0
	for ; l != nil; l = l.Next {
		if n == limit {
			return n, false
		}
		n++
	}
	return n, true
}

// NetBuffer is one packet: the model of NDIS's NET_BUFFER. Its data is the
// DataLength bytes that start DataOffset bytes into its chain of memory
// segments (MDLs); the DataOffset bytes before them are backfill, free space
// for headers to be prepended.
//
//	MdlChain ─► [ MDL 0 ........ ] ─► [ MDL 1 ..... ] ─► nil
//	            |<- DataOffset ->|<------ DataLength ------>|
//	            backfill (unused) ^ CurrentMdl/CurrentMdlOffset point here
type NetBuffer struct {
	// Next links the NetBuffers of one NBL (NET_BUFFER_NEXT_NB). Only the
	// NBL's creator may change the list.
	Next *NetBuffer
	// ChecksumBias is the number of bytes at the start of the data a
	// checksum offload must skip.
	ChecksumBias uint16

	currentMdl       *Mdl
	currentMdlOffset uint32
	dataLength       uint32
	mdlChain         *Mdl
	dataOffset       uint32
	nbl              *NetBufferList
	extra            bool // taken from the pool's extra NetBuffers
}

// DataOffset returns the number of bytes in front of the data: the unused
// backfill (NET_BUFFER_DATA_OFFSET).
func (nb *NetBuffer) DataOffset() int { return int(nb.dataOffset) }

// DataLength returns the number of bytes of packet data
// (NET_BUFFER_DATA_LENGTH).
func (nb *NetBuffer) DataLength() int { return int(nb.dataLength) }

// MdlChain returns the first memory segment (NET_BUFFER_FIRST_MDL).
func (nb *NetBuffer) MdlChain() *Mdl { return nb.mdlChain }

// CurrentMdl returns the segment that holds the first byte of data
// (NET_BUFFER_CURRENT_MDL).
func (nb *NetBuffer) CurrentMdl() *Mdl { return nb.currentMdl }

// CurrentMdlOffset returns the offset of the first byte of data inside
// CurrentMdl (NET_BUFFER_CURRENT_MDL_OFFSET).
func (nb *NetBuffer) CurrentMdlOffset() int { return int(nb.currentMdlOffset) }

// NetBufferList returns the NBL that holds nb.
func (nb *NetBuffer) NetBufferList() *NetBufferList { return nb.nbl }

// Data returns the packet data when it lies in one segment, which is the
// usual case, and ok = false when it spans several (use CopyOut). The slice
// aliases the packet memory: valid while the NBL is held.
func (nb *NetBuffer) Data() (data []byte, ok bool) {
	m := nb.currentMdl
	if m == nil {
		return nil, nb.dataLength == 0
	}
	end := uint64(nb.currentMdlOffset) + uint64(nb.dataLength)
	if end > uint64(len(m.buf)) {
		return nil, false
	}
	return m.buf[nb.currentMdlOffset:end:end], true
}

// MDL kinds: who owns the memory an Mdl describes.
const (
	mdlFrame    uint8 = iota // the NBL's own pool frame
	mdlExternal              // memory the caller lent; the Mdl goes back with the NBL
	mdlHeader                // a header buffer from the pool, prepended by a retreat
	mdlMirror                // a clone's view of its parent's memory
	mdlUser                  // made by Pool.AllocateMdl: the caller frees it
)

// Mdl is one segment of packet memory: the model of the MDL that NDIS chains
// under a NET_BUFFER. It describes ByteCount bytes.
type Mdl struct {
	next  *Mdl
	buf   []byte
	kind  uint8
	index int32 // position in the pool's extra MDLs, -1 for embedded ones
}

// Next returns the following segment (NDIS_MDL_LINKAGE), or nil.
func (m *Mdl) Next() *Mdl { return m.next }

// ByteCount returns the segment's length in bytes.
func (m *Mdl) ByteCount() int { return len(m.buf) }

// Bytes returns the memory the segment describes. It aliases packet memory.
func (m *Mdl) Bytes() []byte { return m.buf }

// Context is the NET_BUFFER_LIST_CONTEXT of an NBL: a per-NBL area where
// the current owner keeps its state. Space is taken from the end towards the
// front: Offset is where the data in use starts; the bytes before it are
// free (context backfill).
type Context struct {
	Size   uint16 // bytes in the area
	Offset uint16 // start of the data in use
	data   []byte
}

// Data returns the context bytes in use (NET_BUFFER_LIST_CONTEXT_DATA_START
// for DATA_SIZE bytes).
func (c *Context) Data() []byte { return c.data[c.Offset:c.Size] }

// noCopy makes go vet's copylocks check flag copies of a descriptor.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
