// Package pool provides fixed-capacity pools of preallocated objects and
// slabs of packet memory, modelled on DPDK's rte_mempool.
//
// A Pool[T] allocates its n objects once, in one slice, and hands them out
// by pointer. Free objects wait in an MPMC ring (package ring), so Get and Put
// are safe from any goroutine; neither blocks nor allocates. An exhausted
// pool answers false: the caller decides whether to drop, count or retry.
//
// A Cache[T] sits in front of a pool for one worker goroutine. It is a plain
// stack: Get and Put touch only the worker's own memory until the stack runs
// empty (refill half its size in one bulk dequeue) or full (flush the older
// half in one bulk enqueue). Bulk requests larger than the cache bypass it.
//
// A Slab is packet memory: one mmap'd region outside the Go heap, cut into
// cache-line-aligned frames with headroom for prepended headers. Frames are
// named by index, so descriptors can refer to them without pointers and
// AF_XDP can share them with the kernel.
//
// Ownership: an object returned by Get belongs to the caller until Put. Put
// it back exactly once, to the pool (or a cache of the pool) it came from.
// Objects are not cleared on Put or Get: reset what your type needs (the nbl
// package resets its descriptors on allocation). Without the nblpipe_debug
// build tag these rules are not checked, and a double Put corrupts the pool;
// with the tag every object carries a free/in-use state and a double Put, or
// a Put of a foreign object, panics with the object's index.
//
// Accounting: Pool.InUse counts every object not in the shared ring,
// including those parked in caches. Flush each cache before checking that a
// pool is full.
package pool
