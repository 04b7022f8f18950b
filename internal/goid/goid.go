// Package goid returns the calling goroutine's ID, for checks that run off
// the packet path (a worker marks itself once; handle creation asks).
package goid

import (
	"runtime"
	"strconv"
)

// Get returns the ID of the calling goroutine, parsed from the header line
// of runtime.Stack ("goroutine 18 [running]:"). It costs about a
// microsecond: call it at set-up, never per packet.
func Get() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	const prefix = "goroutine "
	if len(b) < len(prefix) {
		return 0
	}
	b = b[len(prefix):]
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	id, err := strconv.ParseUint(string(b[:i]), 10, 64)
	if err != nil {
		return 0
	}
	return id
}
