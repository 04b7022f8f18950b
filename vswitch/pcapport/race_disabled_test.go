//go:build !race

package pcapport_test

const raceEnabled = false
