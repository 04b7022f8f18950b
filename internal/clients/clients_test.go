package clients_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
)

// recorder is a testing.TB that records what the code under test reports
// instead of failing the test; Fatal and Fatalf end the goroutine, as they
// do on a real test (run the code with record).
type recorder struct {
	testing.TB
	errs  []string
	fatal bool
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) {
	r.errs = append(r.errs, fmt.Sprint(args...))
	r.fatal = true
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.fatal = true
	runtime.Goexit()
}

// record runs f with a recorder on its own goroutine and returns what it
// recorded.
func record(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func spec() clients.UDP {
	return clients.UDP{SrcMAC: macA, DstMAC: macB, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2), DstPort: clients.Port}
}

// sum16 is the ones' complement sum of b (padded to even length) and
// start, folded to 16 bits.
func sum16(start uint32, b []byte) uint16 {
	s := start
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return uint16(s)
}

func TestUDPFrames(t *testing.T) {
	const n = 210 // past 200: payload sizes wrap around
	frames := clients.UDPFrames(t, n, spec())
	if len(frames) != n {
		t.Fatalf("%d frames, want %d", len(frames), n)
	}
	seen := map[string]int{}
	for i, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if eth == nil || ip == nil || udp == nil || p.ErrorLayer() != nil {
			t.Fatalf("frame %d does not decode as Ethernet/IPv4/UDP: %v", i, p)
		}
		if !bytes.Equal(eth.SrcMAC, macA) || !bytes.Equal(eth.DstMAC, macB) {
			t.Errorf("frame %d: MACs %s > %s", i, eth.SrcMAC, eth.DstMAC)
		}
		if !ip.SrcIP.Equal(net.IPv4(10, 0, 0, 1)) || !ip.DstIP.Equal(net.IPv4(10, 0, 0, 2)) || ip.Id != uint16(i) || ip.TTL != 64 {
			t.Errorf("frame %d: IPv4 %s > %s id %d ttl %d", i, ip.SrcIP, ip.DstIP, ip.Id, ip.TTL)
		}
		if udp.SrcPort != 40000 || udp.DstPort != clients.Port {
			t.Errorf("frame %d: UDP ports %d > %d", i, udp.SrcPort, udp.DstPort)
		}
		if len(udp.Payload) != 32+i%200 || len(f) != clients.IDOffset+32+i%200 {
			t.Errorf("frame %d: %d bytes of payload, %d in all", i, len(udp.Payload), len(f))
		}
		if got := binary.BigEndian.Uint32(f[clients.IDOffset:]); got != uint32(i) {
			t.Errorf("frame %d carries index %d at IDOffset", i, got)
		}
		if s := sum16(0, f[14:34]); s != 0xFFFF {
			t.Errorf("frame %d: IPv4 header checksum does not add up (%#04x)", i, s)
		}
		// UDP: the pseudo-header (addresses, protocol, length) and the
		// datagram, checksum included, add up to 0xFFFF.
		pseudo := uint32(sum16(0, f[26:34])) + 17 + uint32(len(f)-34)
		if s := sum16(pseudo, f[34:]); s != 0xFFFF || binary.BigEndian.Uint16(f[40:]) == 0 {
			t.Errorf("frame %d: UDP checksum does not add up (%#04x)", i, s)
		}
		seen[string(f)]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct frames of %d", len(seen), n)
	}

	u := spec()
	u.SrcMACs = clients.RandomMACs(1, 2)
	again := clients.RandomMACs(1, 2)
	for i, f := range clients.UDPFrames(t, 50, u) {
		if want := again(i); !bytes.Equal(f[6:12], want) || f[6]&1 != 0 || f[6]&2 == 0 {
			t.Errorf("frame %d: source MAC %s, want %s (the seeds' sequence), unicast and locally administered", i, net.HardwareAddr(f[6:12]), want)
		}
	}
}

func TestUDPFramesBadSpec(t *testing.T) {
	u := spec()
	u.SrcIP = nil
	if r := record(t, func(tb testing.TB) { clients.UDPFrames(tb, 1, u) }); !r.fatal {
		t.Errorf("frames without a source address built: %v", r.errs)
	}
}

func TestBetween(t *testing.T) {
	a := &netns.Host{NS: "a", MAC: macA.String(), Addr: "10.1.2.3/24"}
	b := &netns.Host{NS: "b", MAC: macB.String(), Addr: "10.1.2.4/24"}
	u := clients.Between(t, a, b)
	if !bytes.Equal(u.SrcMAC, macA) || !bytes.Equal(u.DstMAC, macB) || !u.SrcIP.Equal(net.IPv4(10, 1, 2, 3)) || !u.DstIP.Equal(net.IPv4(10, 1, 2, 4)) || u.DstPort != clients.Port {
		t.Errorf("Between: %+v", u)
	}
	for _, bad := range []*netns.Host{
		{NS: "c", MAC: macB.String()},                            // no address
		{NS: "d", MAC: "not a mac", Addr: "10.1.2.4/24"},         // bad MAC
		{NS: "e", MAC: macB.String(), Addr: "2001:db8::1/64"},    // not IPv4
		{NS: "f", MAC: macB.String(), Addr: "10.1.2.4 and more"}, // not CIDR
	} {
		if r := record(t, func(tb testing.TB) { clients.Between(tb, a, bad) }); !r.fatal {
			t.Errorf("Between accepted host %+v", bad)
		}
	}
}

func TestTagged(t *testing.T) {
	plain := clients.UDPFrames(t, 3, spec())
	for i, g := range clients.Tagged(plain, 100) {
		f := plain[i]
		if len(g) != len(f)+4 || !bytes.Equal(g[:12], f[:12]) || !bytes.Equal(g[16:], f[12:]) {
			t.Fatalf("frame %d: tag not inserted after the MACs:\n% x\n% x", i, f, g)
		}
		if tpid, tci := binary.BigEndian.Uint16(g[12:]), binary.BigEndian.Uint16(g[14:]); tpid != 0x8100 || tci != 3<<13|100 {
			t.Errorf("frame %d: tag %#04x %#04x, want 0x8100, priority 3, VLAN 100", i, tpid, tci)
		}
		if got := binary.BigEndian.Uint32(g[clients.TaggedIDOffset:]); got != uint32(i) {
			t.Errorf("tagged frame %d carries index %d at TaggedIDOffset", i, got)
		}
	}
	if binary.BigEndian.Uint16(plain[0][12:]) != 0x0800 {
		t.Error("Tagged changed the frames it was given")
	}
}

func TestPcapRoundTrip(t *testing.T) {
	frames := clients.UDPFrames(t, 20, spec())
	path := clients.WritePcap(t, frames)
	got := clients.ReadPcap(t, path)
	if len(got) != len(frames) || clients.CountPcap(path) != len(frames) {
		t.Fatalf("read %d frames, counted %d, wrote %d", len(got), clients.CountPcap(path), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Errorf("frame %d changed in the file", i)
		}
	}
	if d := clients.ExactlyOnce(frames, got, clients.IDOffset); !d.OK() {
		t.Errorf("round trip: %v", d)
	}

	// A last record cut short, as tcpdump stopped by a signal may leave.
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-5); err != nil {
		t.Fatal(err)
	}
	if got := clients.ReadPcap(t, path); len(got) != len(frames)-1 || !bytes.Equal(got[len(got)-1], frames[len(frames)-2]) {
		t.Errorf("after cutting the last record: read %d frames, want the %d complete ones", len(got), len(frames)-1)
	}
	if n := clients.CountPcap(path); n != len(frames)-1 {
		t.Errorf("after cutting the last record: counted %d, want %d", n, len(frames)-1)
	}

	// No file, or a file without a pcap header: 0 to count, an error to read.
	missing := path + ".missing"
	if n := clients.CountPcap(missing); n != 0 {
		t.Errorf("counted %d frames in a file that is not there", n)
	}
	if r := record(t, func(tb testing.TB) { clients.ReadPcap(tb, missing) }); !r.fatal {
		t.Error("ReadPcap of a missing file did not fail")
	}
	if err := os.WriteFile(missing, []byte("not a pcap file at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := record(t, func(tb testing.TB) { clients.ReadPcap(tb, missing) }); !r.fatal || clients.CountPcap(missing) != 0 {
		t.Error("a file without a pcap header read as one")
	}
}

func TestExactlyOnce(t *testing.T) {
	frames := clients.UDPFrames(t, 8, spec())
	changed := bytes.Clone(frames[3])
	changed[len(changed)-1] ^= 0xFF
	short := frames[0][:clients.IDOffset+2]
	foreign := bytes.Clone(frames[1])
	binary.BigEndian.PutUint32(foreign[clients.IDOffset:], 8) // an index not sent
	without := func(i int) [][]byte {
		return append(append([][]byte{}, frames[:i]...), frames[i+1:]...)
	}
	plus := func(extra ...[]byte) [][]byte {
		return append(append([][]byte{}, frames...), extra...)
	}
	reversed := make([][]byte, len(frames))
	for i, f := range frames {
		reversed[len(frames)-1-i] = f
	}
	for _, c := range []struct {
		name string
		got  [][]byte
		want clients.Delivery
	}{
		{"all", frames, clients.Delivery{}},
		{"reordered", reversed, clients.Delivery{}},
		{"missing", without(5), clients.Delivery{Missing: 1}},
		{"none", nil, clients.Delivery{Missing: 8}},
		{"duplicate", plus(frames[2], frames[2]), clients.Delivery{Duplicates: 2}},
		{"changed", append(without(3), changed), clients.Delivery{Changed: 1}},
		{"changed-and-original", plus(changed), clients.Delivery{Changed: 1, Duplicates: 1}},
		{"short", plus(short), clients.Delivery{Unknown: 1}},
		{"foreign", plus(foreign), clients.Delivery{Unknown: 1}},
		{"tagged-at-untagged-offset", clients.Tagged(frames, 100), clients.Delivery{Missing: 8, Unknown: 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := clients.ExactlyOnce(frames, c.got, clients.IDOffset)
			first := d.FirstChanged
			d.FirstChanged = ""
			c.want.Frames = len(frames)
			if d != c.want {
				t.Errorf("got %v, want %v", d, c.want)
			}
			if (c.want.Changed != 0) != strings.Contains(first, fmt.Sprintf("frame 3: [%d] ", len(changed)-1)) {
				t.Errorf("first changed frame described as %q", first)
			}
			r := record(t, func(tb testing.TB) { clients.CheckExactlyOnce(tb, frames, c.got, clients.IDOffset) })
			if wantOK := c.want == (clients.Delivery{Frames: len(frames)}); wantOK != (len(r.errs) == 0) || r.fatal {
				t.Errorf("CheckExactlyOnce reported %q (fatal %v)", r.errs, r.fatal)
			}
			if len(r.errs) > 0 && !strings.Contains(strings.Join(r.errs, "\n"), c.want.String()) {
				t.Errorf("CheckExactlyOnce reported %q, want the counts %q", r.errs, c.want)
			}
		})
	}
	tagged := clients.Tagged(frames, 7)
	if d := clients.ExactlyOnce(tagged, tagged, clients.TaggedIDOffset); !d.OK() {
		t.Errorf("tagged frames against themselves: %v", d)
	}
}

func TestLastLine(t *testing.T) {
	if got := clients.LastLine("a\nb\n\n"); got != "b" {
		t.Errorf("LastLine = %q", got)
	}
}

// TestReplayCapture runs tcpreplay and tcpdump between two namespaces
// joined by a veth pair, with no switch: the capture holds every frame
// once, byte for byte, nothing when the filter matches none, and what came
// when it waited for nothing.
func TestReplayCapture(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump", "ping")
	t.Cleanup(func() { // registered first: runs after DirectPair's cleanups
		if left := netns.Leftovers(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	a, b := clients.DirectPair(t)
	clients.Ping(t, a, b, 2)
	frames := clients.UDPFrames(t, 100, clients.Between(t, a, b))
	got := clients.ReplayCapture(t, a, b, frames, fmt.Sprintf("udp and dst port %d", clients.Port), len(frames))
	clients.CheckExactlyOnce(t, frames, got, clients.IDOffset)
	if got := clients.ReplayCapture(t, a, b, frames, fmt.Sprintf("udp and dst port %d", clients.Port+1), 0); len(got) != 0 {
		t.Errorf("captured %d frames that the filter does not match", len(got))
	}
	// Waiting for none, the capture still holds what came.
	got = clients.ReplayCapture(t, a, b, frames[:10], fmt.Sprintf("udp and dst port %d", clients.Port), 0)
	clients.CheckExactlyOnce(t, frames[:10], got, clients.IDOffset)
	// Tagged frames cross a veth with their tag; the capture matches it.
	tagged := clients.Tagged(frames[:20], 100)
	got = clients.ReplayCapture(t, a, b, tagged, "vlan 100 and udp", len(tagged))
	clients.CheckExactlyOnce(t, tagged, got, clients.TaggedIDOffset)
}
