package cpu

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Pin locks the calling goroutine to its OS thread and binds that thread to
// CPU c. The returned function, called on the same goroutine, restores the
// thread's previous affinity and unlocks it. If binding fails (no such
// CPU, or not permitted) the goroutine stays locked to an unbound thread,
// unpin still works, and the error says why.
func Pin(c int) (unpin func(), err error) {
	runtime.LockOSThread()
	var old unix.CPUSet
	haveOld := unix.SchedGetaffinity(0, &old) == nil
	unpin = func() {
		if haveOld {
			_ = unix.SchedSetaffinity(0, &old)
		}
		runtime.UnlockOSThread()
	}
	var set unix.CPUSet
	set.Set(c)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return unpin, fmt.Errorf("cpu: pin thread to CPU %d: %w", c, err)
	}
	return unpin, nil
}
