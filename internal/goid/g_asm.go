//go:build amd64 || arm64

package goid

// G returns an identity of the calling goroutine that is cheap to get (a
// few instructions): the address of its runtime descriptor. It is unique
// among live goroutines, may be reused after one exits, and is never 0.
// Compare it only with the G of a goroutine known to be alive (a worker
// that recorded its own).
func G() uintptr
