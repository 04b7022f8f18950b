//go:build race

package inject

// raceEnabled is true when the tests run under the race detector, which
// makes every atomic operation and goroutine switch far slower: the stress
// tests scale down with it.
const raceEnabled = true
