//go:build !race

package vswitch_test

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
