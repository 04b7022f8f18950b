// Package nbl provides preallocated NET_BUFFER_LIST and NET_BUFFER
// descriptors, the packet model of NDIS and WFP, for Go.
//
// # Model
//
// A NetBufferList (NBL) is a list of packets that travel together; each
// packet is a NetBuffer (NB); each NB's bytes lie in a chain of memory
// segments (Mdl). NBLs link into chains through Next. Nearly every NBL holds
// one NB over one segment, and that case is the fast path: the first NB and
// the first MDL are built into the NBL descriptor, so taking an NBL from its
// pool is one pop from a per-worker stack.
//
// An NB's data are the DataLength bytes that start DataOffset bytes into its
// MDL chain. The bytes before them are backfill: room for headers to be
// prepended without copying. A fresh frame starts with the pool's headroom
// as backfill:
//
//	frame (Config.FrameSize bytes, one per descriptor, in the pool's slab)
//	┌──────────────────────┬──────────────────────────────┬──────────┐
//	│ backfill (headroom)  │ data                         │ unused   │
//	└──────────────────────┴──────────────────────────────┴──────────┘
//	|<---- DataOffset ---->|<-------- DataLength -------->|
//	                       ^ CurrentMdl, CurrentMdlOffset
//
//	Retreat(n): DataOffset -= n, DataLength += n  (a header grows in front)
//	Advance(n): DataOffset += n, DataLength -= n  (a header is stripped)
//
// When a Retreat needs more than the backfill holds, a header buffer from
// the pool is prepended as a new MDL, and Advance with freeMdl takes it away
// again; CurrentMdl and CurrentMdlOffset always point at byte DataOffset of
// the chain.
//
// # Pools and caches
//
// NewPool allocates everything once: descriptors, extra NBs and MDLs, the
// frame slab (outside the Go heap) and the context areas. Nothing is
// allocated afterwards. Each worker goroutine takes a Cache from the pool;
// Allocate, AllocateBurst, Clone, Free and Release on a Cache touch shared
// memory only when the cache refills or flushes, in bulk. An exhausted pool
// is ErrResources, returned at once: nbl never blocks and never allocates
// to make up.
//
// # Ownership
//
//   - An NBL belongs to whoever allocated it, or, for a received one, to
//     the path that indicated it. The owner ends its life with Free (for
//     NBLs it allocated; it refuses an NBL that is still held) or Release
//     (for indicated ones; deferred while held).
//   - Clone makes an NBL that shares its parent's memory: writes through one
//     are seen through the other. The parent's ChildRefCount counts live
//     clones, and the parent is not released until every clone is freed
//     with FreeClone.
//   - Reference keeps an NBL from being released after its owner releases
//     it; every Reference needs exactly one Dereference. Dereference
//     without Reference panics: it is a contract violation, as in WFP.
//   - When an NBL leaves (released with nothing holding it), its
//     Originator, if any, is told (a port gives the ring slot back), and
//     the descriptor returns to its pool. Memory lent through
//     AllocateAround and MDLs made by AllocateMdl stay their owner's.
//   - Slices returned by Data, Bytes and the Decoder alias packet memory:
//     valid while the NBL is held.
//
// # Thread safety
//
// A Cache belongs to one goroutine. Pool methods are safe for concurrent
// use. An NBL is used by one goroutine at a time, its holder; Reference,
// Dereference, Release and FreeClone may run on different goroutines, so
// clones of one parent can be freed by different workers.
//
// # Debug builds
//
// With the nblpipe_debug build tag, freed descriptors are poisoned, and a
// double free, a use of a freed descriptor, or a free of an NBL whose clones
// or references are alive panics with the descriptor's index. Without the tag
// these checks cost nothing.
//
// # Names
//
// The idiomatic methods are named for Go; ndis.go holds the NDIS-named forms
// (NdisRetreatNetBufferDataStart, NET_BUFFER_LIST_FIRST_NB, ...) with the
// WDK's parameter order and status codes. The FWPS allocation, clone and
// reference functions are in package inject.
package nbl
