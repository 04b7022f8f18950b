//go:build linux

package afpacket_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if left := netns.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "afpacket tests left namespaces behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// inNS runs f on an OS thread that is in network namespace ns, then puts
// the thread back. Sockets made in f stay in ns. If the thread cannot be
// put back it is not unlocked, so it ends with its goroutine.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err) // the thread stays locked and dies with us
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// openPort opens a port on ifname, inside ns when ns is not empty, and
// closes it at cleanup.
func openPort(t *testing.T, ns, ifname string, cfg afpacket.Config) *afpacket.Port {
	t.Helper()
	cfg.Interface = ifname
	var p *afpacket.Port
	open := func() (err error) { p, err = afpacket.New(cfg); return err }
	var err error
	if ns == "" {
		err = open()
	} else {
		err = inNS(ns, open)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close %s: %v", ifname, err)
		}
	})
	return p
}

// quiet turns IPv6 off on both ends of a host's veth, so that the kernel
// sends no router solicitations or MLD reports into the tests' traffic.
func quiet(t *testing.T, h *netns.Host) {
	t.Helper()
	if out, err := exec.Command("sysctl", "-qw", "net.ipv6.conf."+h.Peer+".disable_ipv6=1").CombinedOutput(); err != nil {
		t.Logf("sysctl on %s: %v %s", h.Peer, err, out)
	}
	if _, err := netns.Exec(h.NS, "sysctl", "-qw", "net.ipv6.conf."+h.If+".disable_ipv6=1"); err != nil {
		t.Logf("sysctl in %s: %v", h.NS, err)
	}
}

// pair makes a host and two ports on its veth: a on the peer, in this
// namespace, and b on the host's interface, inside the host's namespace.
// What a sends, b receives.
func pair(t *testing.T, acfg, bcfg afpacket.Config) (a, b *afpacket.Port, h *netns.Host) {
	t.Helper()
	netns.Require(t, "sysctl")
	h = netns.NewHost(t, "")
	quiet(t, h)
	a = openPort(t, "", h.Peer, acfg)
	b = openPort(t, h.NS, h.If, bcfg)
	return a, b, h
}

// testEtherType marks the tests' own frames (IEEE local experimental).
const testEtherType = 0x88B5

// testFrame fills f with a test frame of sequence number seq: Ethernet
// header, EtherType 0x88B5, then seq and a pattern made from it.
func testFrame(f []byte, dst, src net.HardwareAddr, seq uint32) {
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], testEtherType)
	binary.BigEndian.PutUint32(f[14:18], seq)
	for i := 18; i < len(f); i++ {
		f[i] = byte(seq*7 + uint32(i)*13)
	}
}

// frameSeq returns the sequence number of a test frame.
func frameSeq(d []byte) (uint32, bool) {
	if len(d) < 18 || binary.BigEndian.Uint16(d[12:14]) != testEtherType {
		return 0, false
	}
	return binary.BigEndian.Uint32(d[14:18]), true
}

// sender builds bursts of test frames in NBLs of its own pool, and sends
// them on a port, reclaiming them after each burst.
type sender struct {
	pool     *nbl.Pool
	cache    *nbl.Cache
	burst    []*nbl.NetBufferList
	back     []*nbl.NetBufferList
	dst, src net.HardwareAddr
	size     int
	seq      uint32
}

func newSender(t *testing.T, burst, size int, dst, src net.HardwareAddr) *sender {
	t.Helper()
	pool, err := nbl.NewPool(nbl.Config{NBLs: 4 * burst})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pool.NewCache(burst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Flush(); _ = pool.Close() })
	return &sender{pool: pool, cache: c, burst: make([]*nbl.NetBufferList, burst), back: make([]*nbl.NetBufferList, 4*burst), dst: dst, src: src, size: size}
}

// send sends one burst of n frames on p and returns how many went.
func (s *sender) send(p *afpacket.Port, n int) (int, error) {
	got := s.cache.AllocateBurst(s.burst[:n], s.size)
	for i, l := range s.burst[:got] {
		d, _ := l.FirstNetBuffer().Data()
		testFrame(d, s.dst, s.src, s.seq+uint32(i))
	}
	sent, err := p.Send(s.burst[:got])
	s.seq += uint32(sent)
	_, _ = s.cache.FreeBurst(s.burst[sent:got])
	for {
		k := p.Reclaim(s.back)
		if k == 0 {
			break
		}
		_, _ = s.cache.FreeBurst(s.back[:k])
	}
	clear(s.burst)
	return sent, err
}

// ---- a switch between namespace hosts ----

// bridge makes two hosts (10.78.0.1 and .2, IPv6 off) and a switch whose
// two AF_PACKET ports, configured by port, own the hosts' veth peers; o
// configures the switch.
func bridge(t *testing.T, port afpacket.Config, o clients.Options) (h1, h2 *netns.Host, sw *vswitch.Switch, ports [2]*afpacket.Port) {
	t.Helper()
	netns.Require(t, "ping", "sysctl")
	h1 = netns.NewHost(t, "10.78.0.1/24")
	h2 = netns.NewHost(t, "10.78.0.2/24")
	quiet(t, h1)
	quiet(t, h2)
	sw, ps := clients.Switch(t, o, func(h *netns.Host) (*afpacket.Port, error) {
		c := port
		c.Interface = h.Peer
		return afpacket.New(c)
	}, h1, h2)
	return h1, h2, sw, [2]*afpacket.Port(ps)
}

// ---- ping ----

var rttRe = regexp.MustCompile(`rtt min/avg/max/mdev = ([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms`)

// pingRTT pings dst from ns count times and returns the ping summary line
// and the average RTT in ms; loss is the percentage lost.
func pingRTT(t *testing.T, ns, dst string, count int, interval string) (summary string, avg float64, loss string) {
	t.Helper()
	out, err := netns.Exec(ns, "ping", "-c", strconv.Itoa(count), "-i", interval, "-W", "2", "-q", dst)
	if err != nil {
		t.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
	if m := regexp.MustCompile(`([0-9.]+)% packet loss`).FindStringSubmatch(out); m != nil {
		loss = m[1]
	}
	m := rttRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rtt line in ping output:\n%s", out)
	}
	avg, _ = strconv.ParseFloat(m[2], 64)
	return strings.TrimSpace(m[0]), avg, loss
}
