package afxdp

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// refChecksum is RFC 1071 written out plainly, 16 bits at a time.
func refChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return uint16(s)
}

func TestChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		rng.Read(b)
		for _, off := range []int{0, 1} { // unaligned starts too
			if off > len(b) {
				continue
			}
			if got, want := checksum(b[off:]), refChecksum(b[off:]); got != want {
				t.Fatalf("len %d off %d: checksum %#04x, want %#04x", n, off, got, want)
			}
		}
	}
	all := bytes.Repeat([]byte{0xFF}, 65536) // the accumulator must not overflow
	if got, want := checksum(all), refChecksum(all); got != want {
		t.Fatalf("64 KiB of ones: %#04x, want %#04x", got, want)
	}
}

// testFrame is a well-formed frame with a correct checksum, where its L4
// header starts and where the checksum field is.
type testFrame struct {
	b        []byte
	l4, csum int
}

// frames returns TCP and UDP frames over IPv4 and IPv6, one of them behind
// an 802.1Q tag.
func frames(t testing.TB) (out []testFrame) {
	mac1 := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	payload := gopacket.Payload(bytes.Repeat([]byte("nblpipe!"), 37)[:293])
	build := func(vlan bool, ip gopacket.NetworkLayer, l4 gopacket.SerializableLayer) {
		eth := &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2}
		ls := []gopacket.SerializableLayer{eth}
		off := 14
		if vlan {
			eth.EthernetType = layers.EthernetTypeDot1Q
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: 7})
			off += 4
		}
		var et layers.EthernetType
		switch v := ip.(type) {
		case *layers.IPv4:
			et = layers.EthernetTypeIPv4
			off += 20
			ls = append(ls, v)
		case *layers.IPv6:
			et = layers.EthernetTypeIPv6
			off += 40
			ls = append(ls, v)
		}
		if vlan {
			ls[1].(*layers.Dot1Q).Type = et
		} else {
			eth.EthernetType = et
		}
		at := off
		switch v := l4.(type) {
		case *layers.TCP:
			v.SetNetworkLayerForChecksum(ip)
			at += 16
		case *layers.UDP:
			v.SetNetworkLayerForChecksum(ip)
			at += 6
		}
		ls = append(ls, l4, payload)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		out = append(out, testFrame{append([]byte(nil), buf.Bytes()...), off, at})
	}
	v4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: net.IP{10, 1, 2, 3}, DstIP: net.IP{10, 3, 2, 1}}
	}
	v6 := func(p layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	}
	tcp := func() *layers.TCP {
		return &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: 12345, ACK: true, Window: 512}
	}
	udp := func() *layers.UDP { return &layers.UDP{SrcPort: 40000, DstPort: 53} }
	build(false, v4(layers.IPProtocolTCP), tcp())
	build(false, v4(layers.IPProtocolUDP), udp())
	build(false, v6(layers.IPProtocolTCP), tcp())
	build(false, v6(layers.IPProtocolUDP), udp())
	build(true, v4(layers.IPProtocolTCP), tcp())
	return out
}

// makePartial rewrites a frame's L4 checksum field as CHECKSUM_PARTIAL
// leaves it: the folded pseudo-header sum, not inverted. The correct
// checksum C satisfies fold(pseudo + data + C) = 0xFFFF, so with the field
// zeroed, fold(data) gives pseudo = ~C - data.
func makePartial(f []byte, at, l4start int) {
	good := binary.BigEndian.Uint16(f[at:])
	binary.BigEndian.PutUint16(f[at:], 0)
	data := checksum(f[l4start:])
	// pseudo = ^good - data in one's-complement arithmetic.
	pseudo := fold(uint64(^good) + uint64(^data))
	binary.BigEndian.PutUint16(f[at:], pseudo)
}

func TestFixPartialChecksum(t *testing.T) {
	for i, tf := range frames(t) {
		f, at := tf.b, tf.csum
		if fixPartialChecksum(append([]byte(nil), f...)) {
			t.Errorf("frame %d: a frame with a correct checksum was changed", i)
		}
		p := append([]byte(nil), f...)
		makePartial(p, at, tf.l4)
		if bytes.Equal(p, f) {
			t.Fatalf("frame %d: makePartial changed nothing", i)
		}
		if !fixPartialChecksum(p) {
			t.Errorf("frame %d: partial checksum not recognised", i)
			continue
		}
		if !bytes.Equal(p, f) {
			t.Errorf("frame %d: fixed checksum %#04x, want %#04x", i, binary.BigEndian.Uint16(p[at:]), binary.BigEndian.Uint16(f[at:]))
		}
		// completeChecksum, as the transmit path uses it, gives the same.
		q := append([]byte(nil), f...)
		makePartial(q, at, tf.l4)
		completeChecksum(q, tf.l4, at-tf.l4)
		if !bytes.Equal(q, f) {
			t.Errorf("frame %d: completeChecksum gave %#04x, want %#04x", i, binary.BigEndian.Uint16(q[at:]), binary.BigEndian.Uint16(f[at:]))
		}
	}
}

func TestFixPartialChecksumLeavesOthersAlone(t *testing.T) {
	tf := frames(t)[0]
	tcp4 := tf.b
	cases := map[string][]byte{
		"short":        tcp4[:13],
		"truncated-ip": tcp4[:30],
		"arp":          append(append([]byte(nil), tcp4[:12]...), 0x08, 0x06, 0, 1, 8, 0, 6, 4),
	}
	frag := append([]byte(nil), tcp4...)
	makePartial(frag, tf.csum, tf.l4)
	frag[14+6] |= 0x20 // more fragments
	cases["fragment"] = frag
	bad := append([]byte(nil), tcp4...)
	bad[len(bad)-1] ^= 0xFF // corrupt payload, field not partial
	cases["corrupt"] = bad
	long := append([]byte(nil), tcp4...)
	long[14+2], long[14+3] = 0xFF, 0xFF // IP total length beyond the frame
	cases["bad-length"] = long
	for name, f := range cases {
		c := append([]byte(nil), f...)
		if fixPartialChecksum(c) || !bytes.Equal(c, f) {
			t.Errorf("%s: frame changed", name)
		}
	}
}

// FuzzFixPartialChecksum: any input is handled without a panic, and a
// frame the function changes ends with a checksum that verifies.
func FuzzFixPartialChecksum(f *testing.F) {
	for _, tf := range frames(f) {
		f.Add(tf.b)
		p := append([]byte(nil), tf.b...)
		makePartial(p, tf.csum, tf.l4)
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := append([]byte(nil), b...)
		if !fixPartialChecksum(c) {
			if !bytes.Equal(b, c) {
				t.Fatal("reported no change but changed the frame")
			}
			return
		}
		// Fixed: now it must be left alone, as a frame that verifies.
		d := append([]byte(nil), c...)
		if fixPartialChecksum(d) {
			t.Fatal("a fixed frame was fixed again")
		}
	})
}
