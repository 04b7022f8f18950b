//go:build nblpipe_debug

package pool

import (
	"fmt"
	"sync/atomic"
)

// debugEnabled is true with the nblpipe_debug build tag: every object carries
// a state word, and a Put of a free object or a foreign one panics, like
// DPDK's mempool cookies.
const debugEnabled = true

const (
	stateFree  = 0
	stateInUse = 1
)

type debugState struct{ state []atomic.Uint32 }

func newDebugState(n int) *debugState { return &debugState{state: make([]atomic.Uint32, n)} }

func (d *debugState) get(i int) {
	if !d.state[i].CompareAndSwap(stateFree, stateInUse) {
		panic(fmt.Sprintf("pool: object %d handed out while already in use", i))
	}
}

func (d *debugState) put(i int) {
	if !d.state[i].CompareAndSwap(stateInUse, stateFree) {
		panic(fmt.Sprintf("pool: double Put of object %d", i))
	}
}
