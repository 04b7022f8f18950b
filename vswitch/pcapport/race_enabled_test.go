//go:build race

package pcapport_test

// raceEnabled reports whether the tests run under the race detector, which
// allocates: allocation counts are not checked then.
const raceEnabled = true
