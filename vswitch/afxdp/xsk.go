//go:build linux

package afxdp

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xring is the shared part of one of the four rings of an AF_XDP socket
// (struct xdp_ring in the kernel): a producer and a consumer index that run
// free as 32-bit counters, a flags word, and a power-of-two array of
// entries, all in memory mapped from the socket.
//
// Each ring has one user-space side: fill and TX are produced here and
// consumed by the kernel; RX and completion the other way round. The index
// of our own side is kept in local and published with one atomic store per
// burst; the kernel's index is read with an atomic load, which pairs with
// the kernel's smp_store_release of it (the atomic store of ours pairs with
// its smp_load_acquire).
type xring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
	local    uint32 // our side's index (producer or consumer)
	peer     uint32 // the kernel's index as last read
	mem      []byte // the mapping, for munmap
}

// addrRing is a fill or completion ring: entries are UMEM addresses.
type addrRing struct {
	xring
	addrs []uint64
}

// descRing is an RX or TX ring: entries are xdp_desc.
type descRing struct {
	xring
	descs []unix.XDPDesc
}

// needWakeup reports whether the kernel asked to be woken for this ring
// (XDP_RING_NEED_WAKEUP).
func (r *xring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// free returns the entries a producer may write. It reads the kernel's
// consumer index only when the copy it has says the ring is full.
func (r *xring) free() uint32 {
	if n := r.size - (r.local - r.peer); n > 0 {
		return n
	}
	r.peer = atomic.LoadUint32(r.consumer)
	return r.size - (r.local - r.peer)
}

// ready returns the entries a consumer may read. It reads the kernel's
// producer index only when the copy it has says the ring is empty.
func (r *xring) ready() uint32 {
	if n := r.peer - r.local; n > 0 {
		return n
	}
	r.peer = atomic.LoadUint32(r.producer)
	return r.peer - r.local
}

// publishProducer makes the entries written so far visible to the kernel.
func (r *xring) publishProducer() { atomic.StoreUint32(r.producer, r.local) }

// publishConsumer gives the entries read so far back to the kernel.
func (r *xring) publishConsumer() { atomic.StoreUint32(r.consumer, r.local) }

// pending returns the entries produced and not yet consumed by the kernel.
func (r *xring) pending() uint32 { return r.local - atomic.LoadUint32(r.consumer) }

func mapRing(fd int, off unix.XDPRingOffset, pgoff int64, n uint32, entry uintptr) (xring, unsafe.Pointer, error) {
	size := int(off.Desc) + int(n)*int(entry)
	mem, err := unix.Mmap(fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return xring{}, nil, err
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r := xring{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		mask:     n - 1,
		size:     n,
		mem:      mem,
	}
	return r, unsafe.Add(base, off.Desc), nil
}

func (r *xring) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}

// xsk is one bound AF_XDP socket with its UMEM registered and its four
// rings mapped.
type xsk struct {
	fd       int
	fill     addrRing
	comp     addrRing
	rx       descRing
	tx       descRing
	zerocopy bool
}

// xskConfig says how to open an xsk.
type xskConfig struct {
	umem      []byte
	frameSize uint32
	fillSize  uint32
	compSize  uint32
	rxSize    uint32
	txSize    uint32
	ifindex   int
	queue     uint32
	zerocopy  bool // XDP_ZEROCOPY, else XDP_COPY
	noWakeup  bool // leave XDP_USE_NEED_WAKEUP off
}

func setsockoptPtr(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptPtr(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// stepError names the setup step that failed and keeps the errno for
// errors.Is.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// openXSK creates the socket, registers the UMEM, sizes and maps the rings
// and binds to the interface's queue. On failure everything it made is
// undone.
func openXSK(c xskConfig) (*xsk, error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &stepError{"socket(AF_XDP)", err}
	}
	x := &xsk{fd: fd}
	fail := func(step string, err error) (*xsk, error) {
		x.close()
		return nil, &stepError{step, err}
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(c.umem)))),
		Len:  uint64(len(c.umem)),
		Size: c.frameSize,
	}
	if err := setsockoptPtr(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fail("XDP_UMEM_REG", err)
	}
	for _, s := range []struct {
		opt  int
		n    uint32
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, c.fillSize, "XDP_UMEM_FILL_RING"},
		{unix.XDP_UMEM_COMPLETION_RING, c.compSize, "XDP_UMEM_COMPLETION_RING"},
		{unix.XDP_RX_RING, c.rxSize, "XDP_RX_RING"},
		{unix.XDP_TX_RING, c.txSize, "XDP_TX_RING"},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, s.opt, int(s.n)); err != nil {
			return fail(s.name, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fail("XDP_MMAP_OFFSETS", err)
	}
	var p unsafe.Pointer
	if x.fill.xring, p, err = mapRing(fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, c.fillSize, 8); err != nil {
		return fail("mmap fill ring", err)
	}
	x.fill.addrs = unsafe.Slice((*uint64)(p), c.fillSize)
	if x.comp.xring, p, err = mapRing(fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, c.compSize, 8); err != nil {
		return fail("mmap completion ring", err)
	}
	x.comp.addrs = unsafe.Slice((*uint64)(p), c.compSize)
	if x.rx.xring, p, err = mapRing(fd, off.Rx, unix.XDP_PGOFF_RX_RING, c.rxSize, unsafe.Sizeof(unix.XDPDesc{})); err != nil {
		return fail("mmap RX ring", err)
	}
	x.rx.descs = unsafe.Slice((*unix.XDPDesc)(p), c.rxSize)
	if x.tx.xring, p, err = mapRing(fd, off.Tx, unix.XDP_PGOFF_TX_RING, c.txSize, unsafe.Sizeof(unix.XDPDesc{})); err != nil {
		return fail("mmap TX ring", err)
	}
	x.tx.descs = unsafe.Slice((*unix.XDPDesc)(p), c.txSize)
	// The kernel starts every index at 0; read them anyway.
	x.fill.local, x.fill.peer = atomic.LoadUint32(x.fill.producer), atomic.LoadUint32(x.fill.consumer)
	x.tx.local, x.tx.peer = atomic.LoadUint32(x.tx.producer), atomic.LoadUint32(x.tx.consumer)
	x.rx.local, x.rx.peer = atomic.LoadUint32(x.rx.consumer), atomic.LoadUint32(x.rx.producer)
	x.comp.local, x.comp.peer = atomic.LoadUint32(x.comp.consumer), atomic.LoadUint32(x.comp.producer)

	var flags uint16 = unix.XDP_COPY
	if c.zerocopy {
		flags = unix.XDP_ZEROCOPY
	}
	if !c.noWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(c.ifindex), QueueID: c.queue}); err != nil {
		return fail("bind", err)
	}
	var opts struct{ flags uint32 }
	if err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err == nil {
		x.zerocopy = opts.flags&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	return x, nil
}

// statistics reads XDP_STATISTICS; the kernel's figures are cumulative over
// the socket's life.
func (x *xsk) statistics() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	err := getsockoptPtr(x.fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st))
	return st, err
}

// kick wakes the kernel to process the TX ring (sendto with no data), as
// XDP_USE_NEED_WAKEUP asks when it sets the flag. EAGAIN, EBUSY and
// ENOBUFS mean the kernel took what it could and wants another kick later;
// they are not errors.
func (x *xsk) kick() error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return e
}

// wakeRX wakes the kernel to refill from the fill ring (recvfrom with no
// buffer), for drivers that set XDP_RING_NEED_WAKEUP on it.
func (x *xsk) wakeRX() {
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// close unmaps the rings and closes the socket; the kernel keeps the UMEM
// pages pinned until it has let go of them.
func (x *xsk) close() error {
	var errs []error
	for _, r := range []*xring{&x.fill.xring, &x.comp.xring, &x.rx.xring, &x.tx.xring} {
		if err := r.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("munmap ring: %w", err))
		}
	}
	x.fill.addrs, x.comp.addrs, x.rx.descs, x.tx.descs = nil, nil, nil, nil
	if x.fd >= 0 {
		if err := unix.Close(x.fd); err != nil {
			errs = append(errs, err)
		}
		x.fd = -1
	}
	return errors.Join(errs...)
}
