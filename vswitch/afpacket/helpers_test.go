//go:build linux

package afpacket_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/inject"
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

// ---- switches between namespace hosts ----

type bridgeOpts struct {
	ports     [2]vswitch.PortConfig
	switchCfg func(*vswitch.Config)
	setup     func(t *testing.T, sw *vswitch.Switch, st *inject.Stack)
	portCfg   afpacket.Config
}

// bridgeWith makes two hosts and a switch whose two AF_PACKET ports own
// the hosts' veth peers, configured by o.
func bridgeWith(t *testing.T, o bridgeOpts) (h1, h2 *netns.Host, sw *vswitch.Switch, ports [2]*afpacket.Port) {
	t.Helper()
	netns.Require(t, "ping", "sysctl")
	h1 = netns.NewHost(t, "10.78.0.1/24")
	h2 = netns.NewHost(t, "10.78.0.2/24")
	quiet(t, h1)
	quiet(t, h2)
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("0a0a0a0a-1111-2222-3333-444444444445")
	cfg := vswitch.Config{ID: id, Stack: st, Workers: 1}
	if o.switchCfg != nil {
		o.switchCfg(&cfg)
	}
	var err error
	sw, err = vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []*netns.Host{h1, h2} {
		pc := o.portCfg
		pc.Interface = h.Peer
		p, err := afpacket.New(pc)
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
		c := o.ports[i]
		c.ID, c.Name = uint32(i+1), h.Peer
		if err := sw.AddPort(p, c); err != nil {
			t.Fatal(err)
		}
	}
	if o.setup != nil {
		o.setup(t, sw, st)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.CloseContext(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h1, h2, sw, ports
}

// ---- pcap files, tcpreplay and tcpdump ----

// udpFrames builds n Ethernet/IPv4/UDP frames from src to dst, each with a
// distinct payload that starts with its index; srcMAC, if not nil, gives
// each frame's source MAC instead.
func udpFrames(t *testing.T, n int, srcMAC, dstMAC net.HardwareAddr, srcIP, dstIP string, port uint16, macOf func(i int) net.HardwareAddr) [][]byte {
	t.Helper()
	frames := make([][]byte, n)
	for i := range frames {
		smac := srcMAC
		if macOf != nil {
			smac = macOf(i)
		}
		eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: uint16(i), Protocol: layers.IPProtocolUDP,
			SrcIP: net.ParseIP(srcIP).To4(), DstIP: net.ParseIP(dstIP).To4()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 32+i%200)
		binary.BigEndian.PutUint32(payload, uint32(i))
		for j := 4; j < len(payload); j++ {
			payload[j] = byte(i*31 + j)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		frames[i] = append([]byte(nil), buf.Bytes()...)
	}
	return frames
}

// writePcap writes frames to a pcap file in dir and returns its path.
func writePcap(t *testing.T, dir, name string, frames [][]byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	for i, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// readPcap returns the frames of a pcap file.
func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			// tcpdump stopped by a signal may leave a last record cut short.
			t.Logf("%s: %v after %d frames", path, err, len(out))
			return out
		}
		out = append(out, append([]byte(nil), d...))
	}
}

// replay sends a pcap file into ifname inside ns with tcpreplay at pps
// frames per second, and returns tcpreplay's output.
func replay(t *testing.T, ns, ifname, path string, pps int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpreplay", "-i", ifname, "--pps="+strconv.Itoa(pps), path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpreplay: %v\n%s", err, out)
	}
	return string(out)
}

// capture is a running tcpdump inside a namespace, writing to a pcap file.
type capture struct {
	cmd  *exec.Cmd
	path string
	done chan error
}

// startCapture runs tcpdump on ifname inside ns with a capture filter and
// returns once it listens. The capture is stopped at cleanup if the test
// did not stop it.
func startCapture(t *testing.T, ns, ifname, filter string) *capture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture.pcap")
	args := []string{"netns", "exec", ns, "tcpdump", "--immediate-mode", "-i", ifname, "-Q", "in", "-U", "-n", "-s", "0", "-Z", "root", "-w", path}
	args = append(args, strings.Fields(filter)...)
	cmd := exec.Command("ip", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &capture{cmd: cmd, path: path, done: make(chan error, 1)}
	ready := make(chan struct{})
	var log bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(ready)
			}
		}
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() { c.stop() })
	select {
	case <-ready:
	case err := <-c.done:
		c.done <- err
		t.Fatalf("tcpdump ended before listening: %v\n%s", err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump not listening after 10 s\n%s", log.String())
	}
	return c
}

// stop ends tcpdump (SIGINT, which makes it flush) and waits for it, for
// at most 5 s before it is killed.
func (c *capture) stop() {
	if c.cmd.ProcessState != nil || c.done == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-c.done:
		c.done = nil
		_ = err
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		c.done = nil
	}
}

// waitFrames stops the capture once it holds at least n frames (or after
// timeout), after a short grace for late duplicates, and returns them.
func (c *capture) waitFrames(t *testing.T, n int, timeout time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(c.path); err == nil && st.Size() > 24 && countPcap(c.path) >= n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	c.stop()
	return readPcap(t, c.path)
}

// countPcap counts the complete records of a pcap file being written.
func countPcap(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return 0
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n
		}
		n++
	}
}

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
