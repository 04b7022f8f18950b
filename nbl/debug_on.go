//go:build nblpipe_debug

package nbl

import "fmt"

// DebugChecks reports whether the package was built with nblpipe_debug: then
// freed descriptors are poisoned, and a double free, a use after free, or a
// free of a parent whose clones are alive panics.
const DebugChecks = true

const (
	stateFree      = 0
	stateAllocated = 1
	// poisonLength is written into a freed descriptor's NetBuffer so that
	// code that keeps using it sees absurd sizes.
	poisonLength = 0xDEADBEEF
)

func debugAllocated(l *NetBufferList) {
	if !l.state.CompareAndSwap(stateFree, stateAllocated) {
		panic(fmt.Sprintf("nbl: descriptor %d handed out while allocated", l.index))
	}
	// Undo the poisoning of debugFreed: a free descriptor has this shape.
	l.restoreShape()
}

func debugFreed(l *NetBufferList) {
	if !l.state.CompareAndSwap(stateAllocated, stateFree) {
		panic(fmt.Sprintf("nbl: double free of descriptor %d", l.index))
	}
	// The fast release paths trust slow: a descriptor they took must have
	// the shape of a free one by now.
	if l.slow != 0 || !l.plain() || l.nb.currentMdl != &l.mdl || l.context != &l.ctx || l.clone || l.releaseParent ||
		l.parent != nil || l.finisher != nil || l.mdl.kind != mdlFrame || l.Originator != nil ||
		len(l.mdl.buf) != len(l.frame) || len(l.frame) > 0 && &l.mdl.buf[0] != &l.frame[0] {
		panic(fmt.Sprintf("nbl: descriptor %d freed in a shape its slow bits (%#x) did not record", l.index, l.slow))
	}
	l.nb.dataLength = poisonLength
	l.nb.dataOffset = poisonLength
	l.nb.currentMdl = nil
	l.nb.mdlChain = nil
	l.firstNB = nil
	l.Next = nil
}

func debugLive(l *NetBufferList) {
	if l != nil && l.state.Load() != stateAllocated {
		panic(fmt.Sprintf("nbl: use of descriptor %d after it was freed", l.index))
	}
}

func debugFreeHeld(l *NetBufferList) {
	panic(fmt.Sprintf("nbl: free of descriptor %d while %d clones and %d references are alive", l.index, l.ChildRefCount(), l.RefCount()))
}
