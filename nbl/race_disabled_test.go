//go:build !race

package nbl_test

// raceEnabled reports whether the tests run under the race detector, which
// slows them down several times; long tests shorten themselves.
const raceEnabled = false
