//go:build linux && nblpipe_debug

package main

// buildTags: the daemon the tests run is built with the debug tag too, so
// that misuse of descriptors under real traffic panics.
var buildTags = []string{"-tags", "nblpipe_debug"}
