//go:build !race

package ring

// raceEnabled reports whether the race detector is on; the stress test
// scales its item count down under it.
const raceEnabled = false
