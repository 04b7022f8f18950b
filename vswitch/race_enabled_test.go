//go:build race

package vswitch_test

// raceEnabled reports whether the tests run under the race detector, which
// slows the switch down several times: the long scenarios scale down with
// it, and allocation counts are not checked (the detector allocates).
const raceEnabled = true
