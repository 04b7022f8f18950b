//go:build linux && !race

package afpacket_test

const raceEnabled = false
