//go:build linux

package afxdp_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
)

// etherType is the IEEE local experimental EtherType the raw test frames
// carry, so that nothing else on the hosts mistakes them for its own.
const etherType = 0x88B5

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inNS runs fn on an OS thread that has entered the named network
// namespace; sockets fn opens stay in that namespace for their life.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- fmt.Errorf("back to the original namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// rawSocket is an AF_PACKET socket for etherType frames on a host's
// interface, opened inside the host's namespace.
type rawSocket struct {
	fd  int
	sa  unix.SockaddrLinklayer
	src net.HardwareAddr
}

func openRaw(t *testing.T, ns, ifname string) *rawSocket {
	t.Helper()
	r := &rawSocket{fd: -1}
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherType)))
		if err != nil {
			return err
		}
		r.fd, r.src = fd, ifi.HardwareAddr
		r.sa = unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.Index}
		if err := unix.Bind(fd, &r.sa); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		t.Fatalf("raw socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// frame writes a test frame from the socket's interface to dst carrying
// seq into b and returns it.
func (r *rawSocket) frame(b []byte, dst net.HardwareAddr, seq uint32, size int) []byte {
	b = b[:size]
	copy(b[0:6], dst)
	copy(b[6:12], r.src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	binary.BigEndian.PutUint32(b[14:18], seq)
	for i := 18; i < size; i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

// send writes one frame; it does not allocate.
func (r *rawSocket) send(b []byte) error {
	_, err := unix.Write(r.fd, b)
	return err
}

// recv reads one frame into b, waiting up to the socket's timeout; n is 0
// when none came.
func (r *rawSocket) recv(b []byte) (int, error) {
	n, err := unix.Read(r.fd, b)
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// checkFrame reports whether b is an intact test frame and returns its
// sequence number.
func checkFrame(b []byte) (uint32, bool) {
	if len(b) < 18 || binary.BigEndian.Uint16(b[12:14]) != etherType {
		return 0, false
	}
	seq := binary.BigEndian.Uint32(b[14:18])
	for i := 18; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i) {
			return seq, false
		}
	}
	return seq, true
}

// multiQueueHost is netns.NewHost with queues transmit and receive queues
// on both ends of the veth pair.
func multiQueueHost(t *testing.T, addr string, queues int) *netns.Host {
	t.Helper()
	h := &netns.Host{NS: netns.Unique("nbl"), If: "eth0", Peer: netns.Unique("nblv"), Addr: addr}
	tmp := netns.Unique("nblt")
	q := strconv.Itoa(queues)
	if _, err := netns.Run("netns", "add", h.NS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = netns.Run("netns", "del", h.NS) })
	if _, err := netns.Run("link", "add", h.Peer, "numtxqueues", q, "numrxqueues", q, "type", "veth",
		"peer", "name", tmp, "numtxqueues", q, "numrxqueues", q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = netns.Run("link", "del", h.Peer) })
	for _, s := range [][]string{
		{"link", "set", tmp, "netns", h.NS},
		{"-n", h.NS, "link", "set", tmp, "name", h.If},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "set", h.If, "up"},
		{"link", "set", h.Peer, "up"},
		{"-n", h.NS, "addr", "add", addr, "dev", h.If},
	} {
		if _, err := netns.Run(s...); err != nil {
			t.Fatal(err)
		}
	}
	h.MAC = clients.LinkMAC(t, h.NS, h.If)
	return h
}

// pinnedSender sends count frames numbered from first to dst through a
// raw socket that bypasses the qdisc, from a thread pinned to cpu: the
// kernel then picks the transmit queue cpu modulo the queues, and veth
// delivers on the peer's receive queue of that number.
func pinnedSender(t *testing.T, r *rawSocket, cpu int, dst []byte, first uint32, count, size int) <-chan error {
	t.Helper()
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		// The thread stays pinned: it ends with the goroutine, locked.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		b := make([]byte, size)
		for i := range count {
			for {
				err := r.send(r.frame(b, dst, first+uint32(i), size))
				if err == nil {
					break
				}
				if err != unix.ENOBUFS && err != unix.EAGAIN {
					done <- err
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
			if i%64 == 63 {
				time.Sleep(200 * time.Microsecond)
			}
		}
		done <- nil
	}()
	return done
}
