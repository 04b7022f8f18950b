package clients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/internal/netns"
)

// Capture is a tcpdump inside a namespace writing a pcap file. It is
// stopped at cleanup if the test did not stop it.
type Capture struct {
	Path string // the pcap file
	cmd  *exec.Cmd
	done chan struct{} // closed when tcpdump has exited
	log  bytes.Buffer  // tcpdump's stderr, to read once done is closed
}

// StartCapture runs tcpdump on ifname inside ns, capturing the frames that
// come in and match filter (a pcap filter expression), and returns once it
// listens (at most 10 s). It runs in immediate mode: without it libpcap
// reads a TPACKET_V3 ring whose blocks reach tcpdump only when full or
// after a one-second timeout, and frames still in a block when tcpdump is
// stopped never reach the file. Its ring is made large (16 MiB, slots of
// 9216 bytes): immediate mode takes fixed slots of the snapshot length, and
// with tcpdump's defaults (-s 0, 2 MiB) that is 8 slots, which a loaded
// machine overruns. Wait fails the test when tcpdump reports frames the
// kernel dropped for it: the capture would be incomplete.
func StartCapture(t testing.TB, ns, ifname, filter string) *Capture {
	t.Helper()
	c := &Capture{Path: filepath.Join(t.TempDir(), "capture.pcap"), done: make(chan struct{})}
	args := append([]string{"netns", "exec", ns, "tcpdump", "--immediate-mode", "-B", "16384", "-i", ifname, "-Q", "in", "-U", "-n", "-s", "9216", "-Z", "root", "-w", c.Path}, strings.Fields(filter)...)
	c.cmd = exec.Command("ip", args...)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for listening := false; sc.Scan(); {
			if !listening && strings.Contains(sc.Text(), "listening on") {
				listening = true
				close(ready)
			}
			c.log.WriteString(sc.Text() + "\n")
		}
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.Stop)
	select {
	case <-ready:
	case <-c.done:
		t.Fatalf("tcpdump ended before listening:\n%s", c.log.String())
	case <-time.After(10 * time.Second):
		c.Stop()
		t.Fatalf("tcpdump not listening after 10 s:\n%s", c.log.String())
	}
	return c
}

// Stop ends tcpdump with SIGINT, which makes it flush, or after 5 s with
// SIGKILL, and waits for it. It may be called more than once.
func (c *Capture) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// Wait waits until the capture holds at least n frames, or at least one
// when n is 0 (something that should not come came), or until timeout;
// then it gives late frames (duplicates) 300 ms more, stops tcpdump and
// returns what it captured.
func (c *Capture) Wait(t testing.TB, n int, timeout time.Duration) [][]byte {
	t.Helper()
	for deadline := time.Now().Add(timeout); CountPcap(c.Path) < max(n, 1) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	c.Stop()
	if n := c.KernelDrops(); n > 0 {
		t.Errorf("tcpdump: %d frames dropped by the kernel before tcpdump read them: the capture is incomplete\n%s", n, c.log.String())
	}
	return ReadPcap(t, c.Path)
}

// KernelDrops returns what tcpdump reported at exit as "packets dropped by
// kernel" (its capture ring overflowed), or 0 before it exited.
func (c *Capture) KernelDrops() int {
	select {
	case <-c.done:
	default:
		return 0
	}
	for _, l := range strings.Split(c.log.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && strings.HasSuffix(l, "packets dropped by kernel") {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 0
}

// Replay sends a pcap file into ifname inside ns with tcpreplay at pps
// frames per second (for at most a minute) and returns its summary line.
func Replay(t testing.TB, ns, ifname, path string, pps int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpreplay", "-i", ifname, "--pps="+strconv.Itoa(pps), path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpreplay: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Actual:") {
			return strings.TrimSpace(l)
		}
	}
	return LastLine(string(out))
}

// ReplayCapture replays frames into from's interface with tcpreplay (2000
// frames/s) while tcpdump captures what reaches to's with filter, and
// returns the capture once it holds want frames (at most 15 s), or, when
// want is 0, after 1.5 s unless something came before (see Capture.Wait).
func ReplayCapture(t testing.TB, from, to *netns.Host, frames [][]byte, filter string, want int) [][]byte {
	t.Helper()
	path := WritePcap(t, frames)
	c := StartCapture(t, to.NS, to.If, filter)
	sum := Replay(t, from.NS, from.If, path, 2000)
	timeout := 15 * time.Second
	if want == 0 {
		timeout = 1500 * time.Millisecond
	}
	got := c.Wait(t, want, timeout)
	t.Logf("replayed %d frames (tcpreplay: %s); captured %d", len(frames), sum, len(got))
	return got
}

// Ping pings to's address from from, count times every 0.2 s, and fails
// the test unless every ping was answered; it returns ping's last line.
func Ping(t testing.TB, from, to *netns.Host, count int) string {
	t.Helper()
	out, err := netns.Exec(from.NS, "ping", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", HostIP(t, to).String())
	if err != nil {
		t.Fatalf("ping failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping lost packets:\n%s", out)
	}
	return LastLine(out)
}

// Iperf3 runs an iperf3 TCP test of secs seconds from client to a
// one-off iperf3 server on server's address, and returns iperf3's
// receiver summary line. It fails the test if iperf3 fails or prints no
// summary; the server is killed at cleanup.
func Iperf3(t testing.TB, client, server *netns.Host, secs int) string {
	t.Helper()
	ip := HostIP(t, server).String()
	srv := exec.Command("ip", "netns", "exec", server.NS, "iperf3", "-s", "-1", "-B", ip)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	out, err := netns.Exec(client.NS, "iperf3", "-c", ip, "-t", strconv.Itoa(secs), "-f", "g", "--connect-timeout", "3000")
	if err != nil {
		t.Fatalf("iperf3 failed: %v\n%s", err, out)
	}
	var summary string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "receiver") {
			summary = strings.TrimSpace(l)
		}
	}
	if summary == "" {
		t.Fatalf("no iperf3 receiver summary:\n%s", out)
	}
	return summary
}

// CheckVLANPing gives h1 and h2 an 802.1Q subinterface each on VLAN
// carried (10.81.1.1 and .2/24) and on VLAN blocked (10.81.2.1 and .2/24),
// removed at cleanup, and checks that h1 pings h2 over carried and not
// over blocked: for a switch between them that carries the one VLAN and
// not the other. It skips the test when the kernel has no 802.1Q
// interfaces.
func CheckVLANPing(t testing.TB, h1, h2 *netns.Host, carried, blocked uint16) {
	t.Helper()
	probe := fmt.Sprintf("%s.%d", h1.If, carried)
	if _, err := netns.Run("-n", h1.NS, "link", "add", "link", h1.If, "name", probe, "type", "vlan", "id", strconv.Itoa(int(carried))); err != nil {
		t.Skipf("this kernel has no 802.1Q interfaces, so the hosts cannot ping over a VLAN: %v", err)
	}
	_, _ = netns.Run("-n", h1.NS, "link", "del", probe)
	for i, h := range []*netns.Host{h1, h2} {
		for k, vid := range []uint16{carried, blocked} {
			sub := fmt.Sprintf("%s.%d", h.If, vid)
			ns := h.NS
			t.Cleanup(func() { _, _ = netns.Run("-n", ns, "link", "del", sub) })
			for _, s := range [][]string{
				{"-n", ns, "link", "add", "link", h.If, "name", sub, "type", "vlan", "id", strconv.Itoa(int(vid))},
				{"-n", ns, "addr", "add", fmt.Sprintf("10.81.%d.%d/24", k+1, i+1), "dev", sub},
				{"-n", ns, "link", "set", sub, "up"},
			} {
				if _, err := netns.Run(s...); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	out, err := netns.Exec(h1.NS, "ping", "-c", "5", "-i", "0.1", "-W", "2", "10.81.1.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping over VLAN %d failed: %v\n%s", carried, err, out)
	}
	out, err = netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.81.2.2")
	if err == nil || !strings.Contains(out, "100% packet loss") {
		t.Errorf("ping over VLAN %d, which the switch does not carry, got through: %v\n%s", blocked, err, out)
	}
}

// DirectPair makes two namespaces joined by a veth pair, with 10.80.0.1/24
// and 10.80.0.2/24 (no switch between them), and returns them as hosts
// without Peer (the other end of each veth is the other host's If); both
// go at cleanup.
func DirectPair(t testing.TB) (a, b *netns.Host) {
	t.Helper()
	a = &netns.Host{NS: netns.Unique("nbl"), If: netns.Unique("nblv"), Addr: "10.80.0.1/24"}
	b = &netns.Host{NS: netns.Unique("nbl"), If: netns.Unique("nblv"), Addr: "10.80.0.2/24"}
	for _, h := range []*netns.Host{a, b} {
		if _, err := netns.Run("netns", "add", h.NS); err != nil {
			t.Fatal(err)
		}
		ns := h.NS
		t.Cleanup(func() { _, _ = netns.Run("netns", "del", ns) })
	}
	steps := [][]string{
		{"-n", a.NS, "link", "add", a.If, "type", "veth", "peer", "name", b.If, "netns", b.NS},
		{"-n", a.NS, "addr", "add", a.Addr, "dev", a.If},
		{"-n", b.NS, "addr", "add", b.Addr, "dev", b.If},
		{"-n", a.NS, "link", "set", a.If, "up"},
		{"-n", b.NS, "link", "set", b.If, "up"},
	}
	for _, s := range steps {
		if _, err := netns.Run(s...); err != nil {
			t.Fatal(err)
		}
	}
	a.MAC, b.MAC = LinkMAC(t, a.NS, a.If), LinkMAC(t, b.NS, b.If)
	return a, b
}

// LinkMAC returns the MAC address of interface ifname in namespace ns.
func LinkMAC(t testing.TB, ns, ifname string) string {
	t.Helper()
	out, err := netns.Run("-n", ns, "-o", "link", "show", ifname)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	t.Fatalf("no MAC address in: %s", out)
	return ""
}

// LastLine returns the last non-empty line of s.
func LastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}
