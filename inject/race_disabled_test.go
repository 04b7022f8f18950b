//go:build !race

package inject

// raceEnabled is true when the tests run under the race detector.
const raceEnabled = false
