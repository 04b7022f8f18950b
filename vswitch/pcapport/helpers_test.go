package pcapport_test

// Test infrastructure: frames built with gopacket, captures written with
// pcapgo or byte by byte (for the corrupt ones), captures read back, a
// receive loop that returns every frame to the port, and a goroutine leak
// check.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger/goroutines"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// TestMain fails the run if goroutines of the tests leaked (switch workers
// left running).
func TestMain(m *testing.M) { os.Exit(goroutines.VerifyNoLeaks(m)) }

// testTimeout bounds waits that must succeed; it is never a performance
// assertion.
const testTimeout = 20 * time.Second

var (
	macA      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ipA       = net.IP{10, 0, 0, 10}
	ipB       = net.IP{10, 0, 0, 11}
	// t0 is the capture time of the first frame of the test captures.
	t0 = time.Date(2024, 5, 17, 12, 0, 0, 123456789, time.UTC)
)

// record is one frame of a capture.
type record struct {
	ts   time.Time
	data []byte
	wire int // length on the wire
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// udpFrame builds an Ethernet/IPv4/UDP frame of size bytes (at least 46)
// with id in the first four bytes of the payload.
func udpFrame(t testing.TB, src, dst net.HardwareAddr, srcIP, dstIP net.IP, id uint32, size int) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: srcIP, DstIP: dstIP}
	u := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	pay := make([]byte, max(4, size-14-20-8))
	binary.BigEndian.PutUint32(pay, id)
	for i := 4; i < len(pay); i++ {
		pay[i] = byte(i*7) ^ byte(id)
	}
	return serialize(t, &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(pay))
}

// arpFrame builds a broadcast ARP request from src asking for target.
func arpFrame(t testing.TB, src net.HardwareAddr, srcIP, target net.IP) []byte {
	t.Helper()
	return serialize(t, &layers.Ethernet{SrcMAC: src, DstMAC: broadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: src, SourceProtAddress: srcIP.To4(),
			DstHwAddress: make([]byte, 6), DstProtAddress: target.To4()})
}

// hostTraffic is what a host sends to its peer: a broadcast ARP request
// first and every 50 frames, and n UDP frames of varied sizes whose ids
// start at idBase, 100 µs apart (plus a few nanoseconds, so nanosecond
// timestamps are seen to survive).
func hostTraffic(t testing.TB, src, dst net.HardwareAddr, srcIP, dstIP net.IP, n int, idBase uint32) []record {
	t.Helper()
	sizes := []int{60, 64, 128, 333, 512, 1000, 1514}
	var recs []record
	ts := t0
	add := func(f []byte) {
		recs = append(recs, record{ts: ts, data: f, wire: len(f)})
		ts = ts.Add(100*time.Microsecond + time.Duration(len(recs)%7))
	}
	for i := 0; i < n; i++ {
		if i%50 == 0 {
			add(arpFrame(t, src, srcIP, dstIP))
		}
		add(udpFrame(t, src, dst, srcIP, dstIP, idBase+uint32(i), sizes[i%len(sizes)]))
	}
	return recs
}

// pcapBytes writes records as a little-endian pcap file with pcapgo.
func pcapBytes(t testing.TB, recs []record, nanos bool) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if nanos {
		w = pcapgo.NewWriterNanos(&b)
	}
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: r.wire}, r.data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// pcapngBytes writes records as a pcapng file with pcapgo.
func pcapngBytes(t testing.TB, recs []record) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65536},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "pcapport test"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: r.wire}, r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readCapture reads a pcap or pcapng file back with pcapgo.
func readCapture(t testing.TB, b []byte) []record {
	t.Helper()
	type reader interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var r reader
	var err error
	if len(b) >= 4 && binary.LittleEndian.Uint32(b) == 0x0a0d0d0a {
		r, err = pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	} else {
		r, err = pcapgo.NewReader(bytes.NewReader(b))
	}
	if err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	var recs []record
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatalf("reading the output, record %d: %v", len(recs)+1, err)
		}
		recs = append(recs, record{ts: ci.Timestamp, data: data, wire: ci.Length})
	}
}

// sameRecords checks that got holds exactly want's frames, in order, with
// their timestamps (when checkTS).
func sameRecords(t testing.TB, what string, got, want []record, checkTS bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d frames, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		switch {
		case !bytes.Equal(g.data, w.data):
			t.Errorf("%s: frame %d differs (%d bytes, want %d)", what, i, len(g.data), len(w.data))
		case g.wire != w.wire:
			t.Errorf("%s: frame %d: wire length %d, want %d", what, i, g.wire, w.wire)
		case checkTS && !g.ts.Equal(w.ts):
			t.Errorf("%s: frame %d: timestamp %v, want %v", what, i, g.ts, w.ts)
		default:
			continue
		}
		if bad++; bad == 5 {
			t.Fatalf("%s: giving up", what)
		}
	}
}

// newPort makes a port or fails the test.
func newPort(t testing.TB, cfg pcapport.Config) *pcapport.Port {
	t.Helper()
	p, err := pcapport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// drain receives from p in bursts until Receive returns an error (or
// maxCalls calls), copying each frame out and releasing it, so every NBL
// goes back to the port. It returns the frames and the error.
func drain(t testing.TB, p *pcapport.Port, burst, maxCalls int) ([]record, error) {
	t.Helper()
	out := make([]*nbl.NetBufferList, burst)
	var recs []record
	for range maxCalls {
		n, err := p.Receive(out)
		for _, l := range out[:n] {
			if l.Originator != p {
				t.Fatalf("frame %d: originator %v, want the port", len(recs), l.Originator)
			}
			nb := l.FirstNetBuffer()
			b := make([]byte, nb.DataLength())
			nb.CopyOut(b, 0)
			var ts time.Time
			if l.Info.Timestamp != 0 {
				ts = time.Unix(0, l.Info.Timestamp).UTC()
			}
			recs = append(recs, record{ts: ts, data: b, wire: len(b)})
			l.Pool().Release(l)
		}
		clear(out)
		if err != nil {
			return recs, err
		}
	}
	return recs, nil
}

// ---- byte-by-byte captures, for the corrupt cases and the seed corpus ----

// byteOrder is binary.LittleEndian or binary.BigEndian.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// rawPcap is a pcap file header.
func rawPcap(order byteOrder, magic, snaplen, linkType uint32) []byte {
	b := make([]byte, 24)
	order.PutUint32(b[0:], magic)
	order.PutUint16(b[4:], 2)
	order.PutUint16(b[6:], 4)
	order.PutUint32(b[16:], snaplen)
	order.PutUint32(b[20:], linkType)
	return b
}

// rawRecord is a pcap record: its header, then data (which need not be
// caplen bytes long).
func rawRecord(order byteOrder, sec, frac, caplen, wire uint32, data []byte) []byte {
	b := make([]byte, 16, 16+len(data))
	order.PutUint32(b[0:], sec)
	order.PutUint32(b[4:], frac)
	order.PutUint32(b[8:], caplen)
	order.PutUint32(b[12:], wire)
	return append(b, data...)
}

// ngBlock is a pcapng block of type typ around body (padded to 4 bytes).
func ngBlock(order byteOrder, typ uint32, body []byte) []byte {
	pad := (4 - len(body)%4) % 4
	n := 12 + len(body) + pad
	b := make([]byte, 8, n)
	order.PutUint32(b[0:], typ)
	order.PutUint32(b[4:], uint32(n))
	b = append(b, body...)
	b = append(b, make([]byte, pad)...)
	return order.AppendUint32(b, uint32(n))
}

// ngOption is a pcapng option, padded.
func ngOption(order byteOrder, code uint16, val []byte) []byte {
	b := order.AppendUint16(nil, code)
	b = order.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	return append(b, make([]byte, (4-len(val)%4)%4)...)
}

// ngSHB is a section header block (version 1.0) with options.
func ngSHB(order byteOrder, opts ...[]byte) []byte {
	body := order.AppendUint32(nil, 0x1a2b3c4d)
	body = order.AppendUint16(body, 1)
	body = order.AppendUint16(body, 0)
	body = order.AppendUint64(body, ^uint64(0))
	for _, o := range opts {
		body = append(body, o...)
	}
	return ngBlock(order, 0x0a0d0d0a, body)
}

// ngIDB is an interface description block with options.
func ngIDB(order byteOrder, linkType uint16, snaplen uint32, opts ...[]byte) []byte {
	body := order.AppendUint16(nil, linkType)
	body = order.AppendUint16(body, 0)
	body = order.AppendUint32(body, snaplen)
	for _, o := range opts {
		body = append(body, o...)
	}
	return ngBlock(order, 1, body)
}

// ngEPB is an enhanced packet block; ts is in the interface's units
// (microseconds by default).
func ngEPB(order byteOrder, iface uint32, ts uint64, caplen, wire uint32, data []byte) []byte {
	body := order.AppendUint32(nil, iface)
	body = order.AppendUint32(body, uint32(ts>>32))
	body = order.AppendUint32(body, uint32(ts))
	body = order.AppendUint32(body, caplen)
	body = order.AppendUint32(body, wire)
	return ngBlock(order, 6, append(body, data...))
}

// ngSPB is a simple packet block.
func ngSPB(order byteOrder, wire uint32, data []byte) []byte {
	return ngBlock(order, 3, append(order.AppendUint32(nil, wire), data...))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ---- switches ----

var guidSeq atomic.Uint32

// newSwitch makes a switch on a stack of its own.
func newSwitch(t testing.TB, cfg vswitch.Config) (*vswitch.Switch, *inject.Stack) {
	t.Helper()
	st := inject.NewStack()
	st.Start()
	cfg.ID = inject.GUID{0x9c, 0xa9, 0x70, 0x27}
	binary.BigEndian.PutUint32(cfg.ID[12:], guidSeq.Add(1))
	cfg.Stack = st
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sw, err := vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sw, st
}
