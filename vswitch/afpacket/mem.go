//go:build linux

package afpacket

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ring's views and the copy pages are managed with raw mmap, mremap and
// munmap: parts of one mapping are unmapped and replaced over the port's
// life, which unix.Mmap's bookkeeping of whole mappings does not allow.

func mmapRaw(addr uintptr, length, prot, flags, fd int) (uintptr, error) {
	r, _, e := unix.Syscall6(unix.SYS_MMAP, addr, uintptr(length), uintptr(prot), uintptr(flags), uintptr(fd), 0)
	if e != 0 {
		return 0, e
	}
	return r, nil
}

func munmapRaw(addr uintptr, length int) error {
	if addr == 0 || length == 0 {
		return nil
	}
	if _, _, e := unix.Syscall(unix.SYS_MUNMAP, addr, uintptr(length), 0); e != 0 {
		return e
	}
	return nil
}

// moveTo moves the pages at [from, from+length) to to, replacing what was
// mapped there, in one step: a thread reading the range at to sees either
// the old pages or the moved ones, never a hole. The range at from must be
// private anonymous memory; it stays mapped, empty (MREMAP_DONTUNMAP,
// Linux 5.7), so that no other mapping can take its place before its owner
// uses or unmaps it.
func moveTo(from uintptr, length int, to uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_MREMAP, from, uintptr(length), uintptr(length), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED|unix.MREMAP_DONTUNMAP, to, 0)
	if e != 0 {
		return e
	}
	return nil
}

// bytesAt returns the n bytes of mapped memory at addr (outside the Go
// heap) as a slice.
func bytesAt(addr uintptr, n int) []byte {
	return unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), n)
}
