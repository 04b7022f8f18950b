//go:build !nblpipe_debug

package nbl

// Without the nblpipe_debug build tag the checks below compile to nothing.

// DebugChecks reports whether the package was built with nblpipe_debug.
const DebugChecks = false

func debugAllocated(*NetBufferList) {}
func debugFreed(*NetBufferList)     {}
func debugLive(*NetBufferList)      {}
func debugFreeHeld(*NetBufferList)  {}
