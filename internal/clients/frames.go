package clients

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/internal/netns"
)

// Where a frame built by UDPFrames carries its index: the first four bytes
// of the UDP payload, after 14 bytes of Ethernet, 20 of IPv4 and 8 of UDP
// header, and 4 bytes further once Tagged inserted an 802.1Q tag.
const (
	IDOffset       = 14 + 20 + 8
	TaggedIDOffset = IDOffset + 4
)

// Port is the UDP destination port of the frames Between describes.
const Port = 7777

// UDP describes the frames UDPFrames builds.
type UDP struct {
	SrcMAC, DstMAC net.HardwareAddr
	SrcIP, DstIP   net.IP
	DstPort        uint16
	// SrcMACs, if not nil, gives frame i's source MAC instead of SrcMAC.
	SrcMACs func(i int) net.HardwareAddr
}

// Between describes frames from host a to host b: their MACs and
// addresses (Addr, without the prefix length), to UDP port Port.
func Between(t testing.TB, a, b *netns.Host) UDP {
	t.Helper()
	u := UDP{DstPort: Port}
	var err error
	if u.SrcMAC, err = net.ParseMAC(a.MAC); err != nil {
		t.Fatalf("host %s: %v", a.NS, err)
	}
	if u.DstMAC, err = net.ParseMAC(b.MAC); err != nil {
		t.Fatalf("host %s: %v", b.NS, err)
	}
	u.SrcIP, u.DstIP = HostIP(t, a), HostIP(t, b)
	return u
}

// HostIP returns h's IPv4 address, Addr without its prefix length.
func HostIP(t testing.TB, h *netns.Host) net.IP {
	t.Helper()
	ip, _, err := net.ParseCIDR(h.Addr)
	if err != nil || ip.To4() == nil {
		t.Fatalf("host %s has no IPv4 address (%q): %v", h.NS, h.Addr, err)
	}
	return ip.To4()
}

// RandomMACs returns a function that gives a new random unicast, locally
// administered MAC on each call, the same sequence for the same seeds.
func RandomMACs(seed1, seed2 uint64) func(int) net.HardwareAddr {
	rng := rand.New(rand.NewPCG(seed1, seed2))
	return func(int) net.HardwareAddr {
		m := make(net.HardwareAddr, 6)
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		m[0] = m[0]&^1 | 2 // unicast, locally administered
		return m
	}
}

// UDPFrames builds n Ethernet/IPv4/UDP frames as u describes, from source
// port 40000, with correct lengths and checksums. Frame i has IPv4 ID i and
// a payload of 32+i%200 bytes that starts with i (big endian, at IDOffset)
// and goes on with a pattern made from i, so that every frame differs.
func UDPFrames(t testing.TB, n int, u UDP) [][]byte {
	t.Helper()
	frames := make([][]byte, n)
	for i := range frames {
		src := u.SrcMAC
		if u.SrcMACs != nil {
			src = u.SrcMACs(i)
		}
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: u.DstMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: uint16(i), Protocol: layers.IPProtocolUDP,
			SrcIP: u.SrcIP.To4(), DstIP: u.DstIP.To4()}
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(u.DstPort)}
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
			t.Fatalf("frame %d: %v", i, err)
		}
		frames[i] = bytes.Clone(buf.Bytes())
	}
	return frames
}

// Tagged returns copies of frames with an 802.1Q tag of vid (priority 3)
// inserted after the MAC addresses.
func Tagged(frames [][]byte, vid uint16) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		g := make([]byte, 0, len(f)+4)
		g = append(g, f[:12]...)
		g = binary.BigEndian.AppendUint16(g, 0x8100)
		g = binary.BigEndian.AppendUint16(g, 3<<13|vid)
		out[i] = append(g, f[12:]...)
	}
	return out
}

// Delivery is what a capture held of a set of numbered frames.
type Delivery struct {
	Frames     int // frames sent
	Missing    int // frames not captured
	Duplicates int // captures beyond the first of a frame
	Changed    int // captures that differ from the frame of their index
	Unknown    int // captures without an index of a sent frame
	// FirstChanged tells how the first changed capture differs.
	FirstChanged string
}

// OK reports whether every frame was captured exactly once, unchanged, and
// nothing else was.
func (d Delivery) OK() bool {
	return d.Missing == 0 && d.Duplicates == 0 && d.Changed == 0 && d.Unknown == 0
}

func (d Delivery) String() string {
	return fmt.Sprintf("of %d frames: %d missing, %d duplicates, %d changed, %d unknown captured",
		d.Frames, d.Missing, d.Duplicates, d.Changed, d.Unknown)
}

// ExactlyOnce compares got, what was captured, with frames, what was sent;
// a frame's index is the big-endian uint32 at idOff.
func ExactlyOnce(frames, got [][]byte, idOff int) Delivery {
	d := Delivery{Frames: len(frames)}
	count := make([]int, len(frames))
	for _, g := range got {
		if len(g) < idOff+4 || binary.BigEndian.Uint32(g[idOff:]) >= uint32(len(frames)) {
			d.Unknown++
			continue
		}
		i := int(binary.BigEndian.Uint32(g[idOff:]))
		count[i]++
		if !bytes.Equal(g, frames[i]) {
			if d.Changed++; d.Changed == 1 {
				d.FirstChanged = fmt.Sprintf("frame %d:%s", i, diff(frames[i], g))
			}
		}
	}
	for _, k := range count {
		if k == 0 {
			d.Missing++
		} else {
			d.Duplicates += k - 1
		}
	}
	return d
}

// CheckExactlyOnce fails the test unless got holds each of frames exactly
// once and unchanged, and nothing else (see ExactlyOnce); it shows the
// first changed frame byte by byte.
func CheckExactlyOnce(t testing.TB, frames, got [][]byte, idOff int) {
	t.Helper()
	d := ExactlyOnce(frames, got, idOff)
	if d.FirstChanged != "" {
		t.Errorf("changed on the way: %s", d.FirstChanged)
	}
	if !d.OK() {
		t.Errorf("%v", d)
	}
}

// diff tells how got differs from want.
func diff(want, got []byte) string {
	if len(want) != len(got) {
		return fmt.Sprintf(" %d bytes, want %d", len(got), len(want))
	}
	var b strings.Builder
	for i := range want {
		if want[i] != got[i] {
			fmt.Fprintf(&b, " [%d] %#02x want %#02x;", i, got[i], want[i])
		}
	}
	return b.String()
}
