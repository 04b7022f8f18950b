//go:build linux

package afpacket

import "golang.org/x/sys/unix"

// CopyPool returns how many pages of p's copy pool are free and how many it
// has. Call it only while no goroutine receives on p (or after Close).
func CopyPool(p *Port) (free, size int) { return len(p.freePages), p.slabPages }

// FailMovesAfter makes copy-outs' moves of pool pages over views fail
// (ENOMEM, as when the process runs out of mappings) after ok more of them
// succeed, until restore is called.
func FailMovesAfter(ok int) (restore func()) {
	left := ok
	remap = func(from uintptr, length int, to uintptr) error {
		if left == 0 {
			return unix.ENOMEM
		}
		left--
		return moveTo(from, length, to)
	}
	return func() { remap = moveTo }
}
