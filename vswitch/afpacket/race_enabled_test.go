//go:build linux && race

package afpacket_test

// raceEnabled reports whether the tests run under the race detector, which
// allocates on its own and so cannot take part in AllocsPerRun tests.
const raceEnabled = true
