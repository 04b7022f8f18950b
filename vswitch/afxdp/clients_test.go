//go:build linux

package afxdp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// Real clients (tcpreplay, tcpdump, ping) on two namespace hosts, switched
// by two AF_XDP ports: the tests of vswitch/afpacket's clients_test.go for
// this back end.

// ---- a switch between two hosts, configured ----

type clientOpts struct {
	port      afxdp.Config
	ports     [2]vswitch.PortConfig
	switchCfg func(*vswitch.Config)
	setup     func(*testing.T, *vswitch.Switch, *inject.Stack)
}

// clientBridge makes two hosts (10.79.0.1 and .2) and a switch whose two
// AF_XDP ports own the hosts' veth peers, configured by o. At cleanup the
// switch closes and every descriptor must be back in its port's pool.
func clientBridge(t *testing.T, o clientOpts) (h1, h2 *netns.Host, sw *vswitch.Switch, ports [2]*afxdp.Port) {
	t.Helper()
	netns.Require(t, "ping")
	h1 = netns.NewHost(t, "10.79.0.1/24")
	h2 = netns.NewHost(t, "10.79.0.2/24")
	requireXDP(t, h1.Peer)
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("0a0a0a0a-1111-2222-3333-555555555556")
	cfg := vswitch.Config{ID: id, Stack: st, Workers: 1}
	if o.switchCfg != nil {
		o.switchCfg(&cfg)
	}
	var err error
	if sw, err = vswitch.New(cfg); err != nil {
		t.Fatal(err)
	}
	for i, h := range []*netns.Host{h1, h2} {
		pc := o.port
		pc.Interface = h.Peer
		p, err := afxdp.New(pc)
		if err != nil {
			sw.Close()
			t.Fatal(err)
		}
		c := o.ports[i]
		c.ID, c.Name = uint32(i+1), h.Peer
		if err := sw.AddPort(p, c); err != nil {
			p.Close()
			sw.Close()
			t.Fatal(err)
		}
		ports[i] = p
	}
	if o.setup != nil {
		o.setup(t, sw, st)
	}
	if err := sw.Start(); err != nil {
		sw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs before the cleanups setup registered
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.CloseContext(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		for i, p := range ports {
			if !p.Pool().Full() {
				t.Errorf("port %d: %d descriptors not back in the pool after close", i, p.Pool().InUse())
			}
		}
	})
	t.Logf("ports bound in %s mode, program attached in %s mode", ports[0].Mode(), ports[0].AttachMode())
	return h1, h2, sw, ports
}

// inspectKind picks the inspect callout (scenario.Callout) a switch gets.
type inspectKind int

const (
	noInspect       inspectKind = iota
	inspectReinject             // absorb the original and reinject it
	inspectClone                // absorb the original, inject a clone
)

func (k inspectKind) String() string {
	return [...]string{"plain", "inspect-reinject", "inspect-clone"}[k]
}

// withInspect registers the inspect callout of kind k on every frame of
// the ingress layer.
func withInspect(k inspectKind) func(*testing.T, *vswitch.Switch, *inject.Stack) {
	return func(t *testing.T, sw *vswitch.Switch, st *inject.Stack) {
		if k == noInspect {
			return
		}
		h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Destroy() }) // after the switch closed
		id := sw.ID()
		c := &scenario.Callout{Handle: h, VSwitchID: id.Bytes(), Clone: k == inspectClone}
		if err := sw.RegisterCallout(&vswitch.Callout{Key: "inspect", Classify: c.Classify, InjectionHandle: h}); err != nil {
			t.Fatal(err)
		}
		if _, err := sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
			Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"}); err != nil {
			t.Fatal(err)
		}
	}
}

// ---- pcap files, tcpreplay and tcpdump ----

// udpFrames builds n Ethernet/IPv4/UDP frames from 10.79.0.1 to dstIP,
// port 7777, with correct checksums; the payload starts with the frame's
// index (at offset 42). macOf, if not nil, gives each frame's source MAC.
func udpFrames(t *testing.T, n int, src, dst net.HardwareAddr, dstIP string, macOf func() net.HardwareAddr) [][]byte {
	t.Helper()
	frames := make([][]byte, n)
	for i := range frames {
		if macOf != nil {
			src = macOf()
		}
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: uint16(i), Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(10, 79, 0, 1).To4(), DstIP: net.ParseIP(dstIP).To4()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 7777}
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
		frames[i] = bytes.Clone(buf.Bytes())
	}
	return frames
}

// writePcap writes frames to a pcap file in a temporary directory.
func writePcap(t *testing.T, frames [][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "replay.pcap")
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

// readPcap returns the complete records of a pcap file (tcpdump may be
// writing it, or may have been stopped in the middle of a record).
func readPcap(path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil
	}
	var out [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, bytes.Clone(d))
	}
}

// replay sends a pcap file into ifname inside ns with tcpreplay at pps
// frames per second (for at most a minute) and returns its summary line.
func replay(t *testing.T, ns, ifname, path string, pps int) string {
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
	return lastLine(string(out))
}

// capture is a tcpdump inside a namespace writing a pcap file; it is
// stopped at cleanup if the test did not stop it.
type capture struct {
	cmd  *exec.Cmd
	path string
	done chan struct{} // closed when tcpdump has exited
	log  bytes.Buffer  // tcpdump's stderr, to read once done is closed
}

// startCapture starts one in immediate mode: without it libpcap reads a
// TPACKET_V3 ring whose blocks reach tcpdump only when full or after a
// one-second timeout, and frames still in a block when tcpdump is stopped
// never reach the file.
func startCapture(t *testing.T, ns, ifname, filter string) *capture {
	t.Helper()
	c := &capture{path: filepath.Join(t.TempDir(), "capture.pcap"), done: make(chan struct{})}
	args := append([]string{"netns", "exec", ns, "tcpdump", "-i", ifname, "--immediate-mode", "-Q", "in", "-U", "-n", "-s", "0", "-Z", "root", "-w", c.path}, strings.Fields(filter)...)
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
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.done:
		t.Fatalf("tcpdump ended before listening:\n%s", c.log.String())
	case <-time.After(10 * time.Second):
		c.stop()
		t.Fatalf("tcpdump not listening after 10 s:\n%s", c.log.String())
	}
	return c
}

// stop ends tcpdump with SIGINT, which makes it flush, or after 5 s with
// SIGKILL, and waits for it.
func (c *capture) stop() {
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

// replayCapture replays frames into h1's interface while tcpdump captures
// what reaches h2's with filter, and returns the capture once it holds
// want frames (or after a timeout), after a grace for late duplicates.
func replayCapture(t *testing.T, h1, h2 *netns.Host, frames [][]byte, filter string, want int) [][]byte {
	t.Helper()
	path := writePcap(t, frames)
	c := startCapture(t, h2.NS, h2.If, filter)
	sum := replay(t, h1.NS, h1.If, path, 2000)
	for deadline := time.Now().Add(15 * time.Second); len(readPcap(c.path)) < want && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	// A grace for late frames (duplicates), longer when none are wanted.
	if want == 0 {
		time.Sleep(time.Second)
	} else {
		time.Sleep(300 * time.Millisecond)
	}
	c.stop()
	got := readPcap(c.path)
	t.Logf("replayed %d frames (tcpreplay: %s); captured %d", len(frames), sum, len(got))
	return got
}

// checkExactlyOnce checks that got holds each of frames exactly once and
// unchanged; a frame's index is the big-endian uint32 at idOff. The first
// changed frame is shown byte by byte.
func checkExactlyOnce(t *testing.T, frames, got [][]byte, idOff int) {
	t.Helper()
	count := make([]int, len(frames))
	foreign, changed := 0, 0
	for _, g := range got {
		if len(g) < idOff+4 || int(binary.BigEndian.Uint32(g[idOff:])) >= len(frames) {
			foreign++
			continue
		}
		i := int(binary.BigEndian.Uint32(g[idOff:]))
		if count[i]++; !bytes.Equal(g, frames[i]) {
			if changed++; changed == 1 {
				t.Errorf("frame %d changed on the way: %s", i, diff(frames[i], g))
			}
		}
	}
	missing, dup := 0, 0
	for _, k := range count {
		if k == 0 {
			missing++
		} else {
			dup += k - 1
		}
	}
	if missing != 0 || dup != 0 || changed != 0 || foreign != 0 {
		t.Errorf("of %d frames: %d missing, %d duplicates, %d changed, %d unknown captured", len(frames), missing, dup, changed, foreign)
	}
}

// diff describes how got differs from want.
func diff(want, got []byte) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
	}
	var b strings.Builder
	for i := range want {
		if want[i] != got[i] {
			fmt.Fprintf(&b, " [%d] %#02x want %#02x;", i, got[i], want[i])
		}
	}
	return b.String()
}

func macs(h1, h2 *netns.Host) (m1, m2 net.HardwareAddr) {
	m1, _ = net.ParseMAC(h1.MAC)
	m2, _ = net.ParseMAC(h2.MAC)
	return m1, m2
}

// ---- (a), (b): a pcap replayed with tcpreplay, captured with tcpdump ----

// TestReplayThroughSwitch replays 300 distinct UDP frames with correct
// checksums into h1, with the XDP program in driver and in generic mode:
// h2 captures each exactly once, byte for byte, and the port completes no
// checksum.
func TestReplayThroughSwitch(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 300
	for _, mode := range []afxdp.AttachMode{afxdp.AttachDriver, afxdp.AttachGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			h1, h2, sw, ports := clientBridge(t, clientOpts{port: afxdp.Config{Attach: mode}})
			if got := ports[0].AttachMode(); got != mode {
				t.Fatalf("attached in %s mode, asked for %s", got, mode)
			}
			m1, m2 := macs(h1, h2)
			frames := udpFrames(t, n, m1, m2, "10.79.0.2", nil)
			checkExactlyOnce(t, frames, replayCapture(t, h1, h2, frames, "udp and dst port 7777", n), 42)
			st := sw.Stats()
			if st.Ports[0].RxPackets < n || st.Ports[1].TxPackets < n {
				t.Errorf("switch counters do not show the frames: %+v", st.Ports)
			}
			if ps := ports[0].Stats(); ps.RxChecksumFixed != 0 || ps.KernelRxDropped != 0 {
				t.Errorf("receiving port completed %d checksums and the kernel dropped %d frames: %+v", ps.RxChecksumFixed, ps.KernelRxDropped, ps)
			}
		})
	}
}

func TestReplayThroughSwitchWithInspect(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 300
	for _, k := range []inspectKind{inspectReinject, inspectClone} {
		t.Run(k.String(), func(t *testing.T) {
			h1, h2, sw, _ := clientBridge(t, clientOpts{setup: withInspect(k)})
			m1, m2 := macs(h1, h2)
			frames := udpFrames(t, n, m1, m2, "10.79.0.2", nil)
			checkExactlyOnce(t, frames, replayCapture(t, h1, h2, frames, "udp and dst port 7777", n), 42)
			st := sw.Stats()
			if st.Ports[0].Absorbed < n || st.Ports[0].Injected < n {
				t.Errorf("the callout did not take the frames: absorbed %d, injected %d", st.Ports[0].Absorbed, st.Ports[0].Injected)
			}
		})
	}
}

// partial returns a copy of frame (Ethernet/IPv4/UDP) whose UDP checksum
// field holds only the pseudo-header sum, as a host with checksum offload
// hands it to its driver, and as tcpdump captures it on such a host.
func partial(frame []byte) []byte {
	f := bytes.Clone(frame)
	ip := f[14:]
	var s uint32 = 17 + uint32(binary.BigEndian.Uint16(ip[20+4:])) // protocol, UDP length
	for i := 12; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	binary.BigEndian.PutUint16(ip[20+6:], uint16(s))
	return f
}

// TestReplayPartialChecksum replays UDP frames that carry partial
// checksums (as captured on a sending host with offload). An AF_PACKET
// port forwards them as they are; an AF_XDP port, by default, completes
// them (RxChecksumFixed), so h2 receives the frames with the correct
// checksum, every other byte the same. With NoChecksumFix they cross
// unchanged.
func TestReplayPartialChecksum(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 200
	for _, noFix := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoChecksumFix=%v", noFix), func(t *testing.T) {
			h1, h2, _, ports := clientBridge(t, clientOpts{port: afxdp.Config{NoChecksumFix: noFix}})
			m1, m2 := macs(h1, h2)
			complete := udpFrames(t, n, m1, m2, "10.79.0.2", nil)
			sent := make([][]byte, n)
			for i, f := range complete {
				sent[i] = partial(f)
			}
			want, fixed := sent, uint64(0)
			if !noFix {
				want, fixed = complete, n
			}
			checkExactlyOnce(t, want, replayCapture(t, h1, h2, sent, "udp and dst port 7777", n), 42)
			if got := ports[0].Stats().RxChecksumFixed; got != fixed {
				t.Errorf("receiving port completed %d checksums, want %d", got, fixed)
			}
		})
	}
}

// ---- (c) VLANs ----

// tagged returns frames with an 802.1Q tag of vid (priority 3) inserted
// after the MAC addresses.
func tagged(frames [][]byte, vid uint16) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		g := binary.BigEndian.AppendUint16(append(make([]byte, 0, len(f)+4), f[:12]...), 0x8100)
		g = binary.BigEndian.AppendUint16(g, 3<<13|vid)
		out[i] = append(g, f[12:]...)
	}
	return out
}

// TestVLANTrunk puts both ports in trunk mode carrying VLAN 100 (native
// VLAN 1). Frames tagged 100 replayed from h1 reach h2 tagged, each once
// and unchanged; frames tagged 200 do not cross and count as VLAN
// mismatches. The same holds when h1 sends the tag out of band, as an
// 802.1Q interface on veth does. A ping between VLAN 100 subinterfaces of
// the hosts passes, one over VLAN 200 does not, and untagged ping uses the
// native VLAN.
func TestVLANTrunk(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	trunk := vswitch.PortConfig{Mode: vswitch.Trunk, VLAN: 1, Allowed: []uint16{100}}
	h1, h2, sw, _ := clientBridge(t, clientOpts{ports: [2]vswitch.PortConfig{trunk, trunk}})
	m1, m2 := macs(h1, h2)
	const n = 200
	plain := udpFrames(t, n, m1, m2, "10.79.0.2", nil)

	t.Run("frames-vlan-100", func(t *testing.T) {
		frames := tagged(plain, 100)
		checkExactlyOnce(t, frames, replayCapture(t, h1, h2, frames, "vlan 100 and udp and dst port 7777", n), 46)
	})
	t.Run("frames-vlan-200", func(t *testing.T) {
		before := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch]
		if got := replayCapture(t, h1, h2, tagged(plain, 200), "vlan 200", 0); len(got) != 0 {
			t.Errorf("%d frames of VLAN 200, which the trunks do not carry, reached h2", len(got))
		}
		if d := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch] - before; d < n {
			t.Errorf("%d of %d VLAN 200 frames counted as VLAN mismatches", d, n)
		}
	})
	// What an 802.1Q interface on veth sends: the tag beside the frame
	// (tx-vlan-hw-insert), for the receiving port to put back.
	t.Run("frames-vlan-100-offloaded", func(t *testing.T) {
		defer offloadTag(t, h1.NS, h1.If, 100)()
		got := replayCapture(t, h1, h2, plain, "udp and dst port 7777 or (vlan and udp and dst port 7777)", n)
		checkExactlyOnce(t, tagged(plain, 100), got, 46)
	})
	t.Run("frames-vlan-200-offloaded", func(t *testing.T) {
		defer offloadTag(t, h1.NS, h1.If, 200)()
		before := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch]
		if got := replayCapture(t, h1, h2, plain, "udp and dst port 7777 or (vlan and udp and dst port 7777)", 0); len(got) != 0 {
			t.Errorf("%d frames sent on VLAN 200, which the trunks do not carry, reached h2", len(got))
		}
		if d := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch] - before; d < n {
			t.Errorf("%d of %d VLAN 200 frames counted as VLAN mismatches", d, n)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if _, err := netns.Run("-n", h1.NS, "link", "add", "link", h1.If, "name", h1.If+".100", "type", "vlan", "id", "100"); err != nil {
			t.Skipf("this kernel has no 802.1Q interfaces, so the hosts cannot ping over a VLAN: %v", err)
		}
		_, _ = netns.Run("-n", h1.NS, "link", "del", h1.If+".100")
		for i, h := range []*netns.Host{h1, h2} {
			for _, vid := range []int{100, 200} {
				sub := fmt.Sprintf("%s.%d", h.If, vid)
				ns := h.NS
				t.Cleanup(func() { _, _ = netns.Run("-n", ns, "link", "del", sub) })
				for _, s := range [][]string{
					{"-n", ns, "link", "add", "link", h.If, "name", sub, "type", "vlan", "id", strconv.Itoa(vid)},
					{"-n", ns, "addr", "add", fmt.Sprintf("10.81.%d.%d/24", vid, i+1), "dev", sub},
					{"-n", ns, "link", "set", sub, "up"},
				} {
					if _, err := netns.Run(s...); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		out, err := netns.Exec(h1.NS, "ping", "-c", "5", "-i", "0.1", "-W", "2", "10.81.100.2")
		if err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Errorf("ping over VLAN 100 failed: %v\n%s", err, out)
		}
		out, err = netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.81.200.2")
		if err == nil || !strings.Contains(out, "100% packet loss") {
			t.Errorf("ping over VLAN 200, which the trunks do not carry, got through: %v\n%s", err, out)
		}
	})
	out, err := netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", "10.79.0.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("untagged ping on the native VLAN failed: %v\n%s", err, out)
	}
}

// offloadTag attaches to the egress of ifname in ns a TC program that gives
// every frame an 802.1Q tag of vid, priority 3 (the tag tagged writes),
// out of band (bpf_skb_vlan_push on an untagged skb sets skb->vlan_tci, as
// an 802.1Q interface on veth does), and returns a function that detaches
// it; cleanup detaches it too.
func offloadTag(t *testing.T, ns, ifname string, vid int32) func() {
	t.Helper()
	return offloadTCI(t, ns, ifname, 0x8100, 3<<13|vid)
}

// offloadTCI is offloadTag with any TPID and TCI.
func offloadTCI(t *testing.T, ns, ifname string, tpid uint16, tci int32) func() {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R2, int32(htons(tpid))), // r1 is the skb
		asm.Mov.Imm(asm.R3, tci),
		asm.FnSkbVlanPush.Call(),
		asm.Mov.Imm(asm.R0, 0), // TC_ACT_OK
		asm.Return(),
	}})
	if err != nil {
		t.Fatalf("load TC program: %v", err)
	}
	var l link.Link
	err = inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		return err
	})
	if err != nil {
		prog.Close()
		t.Fatalf("attach TC program to %s: %v", ifname, err)
	}
	detach := func() {
		if l != nil {
			l.Close()
			prog.Close()
			l = nil
		}
	}
	t.Cleanup(detach)
	return detach
}

// ---- (d) a flood of source MACs ----

// TestMACFlood replays 3000 frames from random source MACs into h1: the
// FDB stays within its size and the port's limit, counts what it refused,
// and the hosts still ping each other.
func TestMACFlood(t *testing.T) {
	netns.Require(t, "tcpreplay")
	const flood = 3000
	for _, tc := range []struct {
		name            string
		size, portLimit int
	}{
		{"port-limit", 1024, 64},
		{"table-full", 64, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h1, h2, sw, ports := clientBridge(t, clientOpts{switchCfg: func(c *vswitch.Config) { c.FDBSize, c.FDBPortLimit = tc.size, tc.portLimit }})
			if out, err := netns.Exec(h1.NS, "ping", "-c", "2", "-i", "0.1", "-W", "2", "10.79.0.2"); err != nil {
				t.Fatalf("ping before the flood: %v\n%s", err, out)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			_, m2 := macs(h1, h2)
			frames := udpFrames(t, flood, nil, m2, "10.79.0.99", func() net.HardwareAddr {
				m := make(net.HardwareAddr, 6)
				for j := range m {
					m[j] = byte(rng.Uint32())
				}
				m[0] = m[0]&^1 | 2 // unicast, locally administered
				return m
			})
			sum := replay(t, h1.NS, h1.If, writePcap(t, frames), 20000)
			for deadline := time.Now().Add(2 * time.Second); sw.Stats().Ports[0].RxPackets < flood && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			st := sw.Stats()
			e0, e1 := sw.FDBEntries(0), sw.FDBEntries(1)
			size := sw.Config().FDBSize
			t.Logf("%s; FDB entries %d + %d of %d (port limit %d); FDBPortLimit %d, FDBTableFull %d",
				sum, e0, e1, size, tc.portLimit, st.FDBPortLimit, st.FDBTableFull)
			if e0+e1 > int64(size) || e0 > int64(tc.portLimit) {
				t.Errorf("FDB over its bounds: %d + %d entries, size %d, port limit %d", e0, e1, size, tc.portLimit)
			}
			if tc.portLimit < size && st.FDBPortLimit == 0 {
				t.Errorf("no source address refused for the port limit")
			}
			if tc.portLimit >= size && st.FDBTableFull == 0 {
				t.Errorf("no source address refused for a full table")
			}
			if st.Ports[0].RxPackets < flood {
				t.Errorf("the switch received %d frames of a flood of %d; port %+v", st.Ports[0].RxPackets, flood, ports[0].Stats())
			}
			if out, err := netns.Exec(h1.NS, "ping", "-c", "3", "-i", "0.1", "-W", "2", "10.79.0.2"); err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Errorf("ping after the flood failed: %v\n%s", err, out)
			}
		})
	}
}
