// Package ring provides bounded lock-free FIFO rings of any element type,
// modelled on DPDK's rte_ring.
//
// A ring is made for one of four modes, fixed at construction: SPSC, MPSC,
// SPMC or MPMC. "Single" means one goroutine at a time on that side: the
// program promises it, and the ring does not check. A single side needs no
// compare-and-swap and keeps a private copy of the other side's index,
// reading shared memory only when that copy says the ring is full (producer)
// or empty (consumer). A multi side reserves slots with a compare-and-swap,
// copies, and then publishes in reservation order.
//
// Operations come in three shapes:
//
//	Enqueue(v) / Dequeue()              one item
//	EnqueueBulk(vs) / DequeueBulk(out)  all of the slice or nothing
//	EnqueueBurst(vs) / DequeueBurst(out) as many as fit; returns the count
//
// The burst and bulk forms are the ones to use on a packet path: the
// atomic store that publishes an index costs the same for one item as for
// thirty-two. None of them blocks and none allocates; a full or empty ring
// is a return value, never a wait.
//
// Ownership: an item given to Enqueue belongs to the ring until a Dequeue
// returns it. The ring clears each slot when it is dequeued, so it keeps no
// reference the garbage collector has to follow.
//
// Memory layout: the read-only fields, the producer indexes and the
// consumer indexes are each separated by internal/cpu.CacheLinePadSize
// (128) bytes, so that producers and consumers on different cores do not
// share a cache line, and the adjacent-line prefetcher does not pull one
// side's line in with the other's.
package ring
