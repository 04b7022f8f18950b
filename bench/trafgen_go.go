//go:build linux

package main

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// goGenBurst is the number of frames one sendmmsg passes to the kernel.
const goGenBurst = 64

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// goGen is the fallback generator: an AF_PACKET socket opened inside the
// host's namespace on a locked OS thread, sending the same frame in
// sendmmsg bursts from that thread (bypassing the qdisc, as trafgen does).
// Its thread's CPU time is reported so that it can be taken out of the
// process's.
type goGen struct {
	fd      int
	iov     unix.Iovec
	msgs    [goGenBurst]mmsghdr
	frame   []byte
	maxPkts uint64
	limit   time.Duration

	sent atomic.Uint64
	stop atomic.Bool
	tid  atomic.Int64
	done chan error
}

// openPacketSocketIn opens a sending AF_PACKET socket bound to ifname in
// the namespace ns (a name under /run/netns). It must run on a locked OS
// thread: it switches the thread into ns for the socket and back. If it
// cannot switch back it says so with restored false, and the thread must
// stay locked until its goroutine ends (the runtime then ends the thread).
func openPacketSocketIn(ns, ifname string) (fd int, restored bool, err error) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return -1, true, fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	fd, err = packetSocket(ifname)
	if e := unix.Setns(self, unix.CLONE_NEWNET); e != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, false, errors.Join(err, fmt.Errorf("return from namespace %s: %w", ns, e))
	}
	return fd, true, err
}

// packetSocket opens a send-only AF_PACKET socket (protocol 0: it receives
// nothing) bound to ifname in the thread's namespace.
func packetSocket(ifname string) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: int(ifr.Uint32())})
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	}
	if err == nil {
		// A blocked send gives up after 100 ms, so that the time limit
		// holds even when the socket's buffer stays full.
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 100_000})
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	return fd, nil
}

func newGoGen(fd int, frame []byte, maxPkts uint64, limit time.Duration) *goGen {
	g := &goGen{fd: fd, frame: frame, maxPkts: maxPkts, limit: limit, done: make(chan error, 1)}
	g.iov = unix.Iovec{Base: &g.frame[0]}
	g.iov.SetLen(len(g.frame))
	for i := range g.msgs {
		g.msgs[i].hdr = unix.Msghdr{Iov: &g.iov}
		g.msgs[i].hdr.SetIovlen(1)
	}
	return g
}

// startGoGen starts the Go generator in namespace ns on ifname.
func startGoGen(ns, ifname string, frame []byte, maxPkts uint64, limit time.Duration) (*goGen, error) {
	if len(frame) == 0 {
		return nil, errors.New("go generator: empty frame")
	}
	ready := make(chan *goGen, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, restored, err := openPacketSocketIn(ns, ifname)
		if err != nil {
			if restored {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		g := newGoGen(fd, frame, maxPkts, limit)
		g.tid.Store(int64(unix.Gettid()))
		ready <- g
		err = g.run()
		unix.Close(fd)
		runtime.UnlockOSThread()
		g.done <- err
	}()
	select {
	case g := <-ready:
		return g, nil
	case err := <-errc:
		return nil, fmt.Errorf("go generator: %w", err)
	}
}

// burst sends one burst and returns the frames the kernel took. A full
// socket buffer or a send timeout is not an error: the caller retries.
func (g *goGen) burst() (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(g.fd), uintptr(unsafe.Pointer(&g.msgs[0])), goGenBurst, 0, 0, 0)
	switch errno {
	case 0:
		return int(r), nil
	case unix.EAGAIN, unix.ENOBUFS, unix.EINTR:
		return 0, nil
	}
	return 0, errno
}

// run sends until maxPkts, the time limit or stop.
func (g *goGen) run() error {
	end := time.Now().Add(g.limit)
	var sent uint64
	for sent < g.maxPkts && !g.stop.Load() && time.Now().Before(end) {
		n, err := g.burst()
		if err != nil {
			return fmt.Errorf("go generator: sendmmsg: %w", err)
		}
		sent += uint64(n)
		g.sent.Store(sent)
	}
	return nil
}

func (g *goGen) Name() string { return genGo }

// CPU returns the generating thread's CPU time, read from its per-thread
// CPU clock (valid while it runs; the thread is locked to the generator).
func (g *goGen) CPU() time.Duration {
	d, err := threadCPU(int(g.tid.Load()))
	if err != nil {
		return 0
	}
	return d
}

// Sent returns the frames the kernel has taken so far.
func (g *goGen) Sent() uint64 { return g.sent.Load() }

func (g *goGen) Stop() error {
	g.stop.Store(true)
	err := <-g.done
	g.done <- err // Stop may be called again
	return err
}

// threadCPU returns the CPU time of thread tid of this process, from its
// CPU clock (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) in the kernel).
func threadCPU(tid int) (time.Duration, error) {
	if tid <= 0 {
		return 0, fmt.Errorf("threadCPU: bad thread id %d", tid)
	}
	clock := int32(^uint32(tid)<<3 | 4 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
