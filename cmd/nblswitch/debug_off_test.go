//go:build linux && !nblpipe_debug

package main

var buildTags []string
