//go:build linux && cgo

package main

// builtWithCgo: the runtime cannot run a system call on every thread
// (syscall.AllThreadsSyscall returns ENOTSUP), so capabilities cannot be
// dropped process-wide.
const builtWithCgo = true
