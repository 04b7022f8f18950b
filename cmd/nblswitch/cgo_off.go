//go:build linux && !cgo

package main

// builtWithCgo: see cgo_on.go.
const builtWithCgo = false
