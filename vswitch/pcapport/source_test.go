package pcapport_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// truncateTS drops what a microsecond pcap does not keep.
func truncateTS(recs []record) []record {
	out := make([]record, len(recs))
	for i, r := range recs {
		out[i] = r
		out[i].ts = r.ts.Truncate(time.Microsecond)
	}
	return out
}

// Every input format yields the capture's frames, in order, each in an NBL
// of the port's pool with the port as originator and the capture time as
// its timestamp; then io.EOF, sticky, and Done once every frame is back.
func TestSourceFormats(t *testing.T) {
	recs := hostTraffic(t, macA, macB, ipA, ipB, 120, 1)
	bigEndian := rawPcap(binary.BigEndian, 0xa1b23c4d, 65535, 1)
	for _, r := range recs {
		bigEndian = append(bigEndian, rawRecord(binary.BigEndian, uint32(r.ts.Unix()), uint32(r.ts.Nanosecond()), uint32(len(r.data)), uint32(r.wire), r.data)...)
	}
	cases := []struct {
		name string
		data []byte
		want []record
	}{
		{"pcap-ns", pcapBytes(t, recs, true), recs},
		{"pcap-us", pcapBytes(t, recs, false), truncateTS(recs)},
		{"pcap-ns-big-endian", bigEndian, recs},
		{"pcapng", pcapngBytes(t, recs), recs},
		{"pcap-gzip", gzipped(t, pcapBytes(t, recs, true)), recs},
		{"pcapng-gzip", gzipped(t, pcapngBytes(t, recs)), recs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPort(t, pcapport.Config{Input: bytes.NewReader(c.data), PoolSize: 64})
			select {
			case <-p.Done():
				t.Fatal("Done before the input was read")
			default:
			}
			got, err := drain(t, p, 32, 1000)
			if err != io.EOF {
				t.Fatalf("Receive ended with %v, want io.EOF", err)
			}
			sameRecords(t, c.name, got, c.want, true)
			out := make([]*nbl.NetBufferList, 4)
			for range 3 {
				if n, err := p.Receive(out); n != 0 || err != io.EOF {
					t.Fatalf("Receive after the end: %d, %v", n, err)
				}
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Done not closed after the end with every frame back")
			}
			s := p.Stats()
			if s.Received != uint64(len(recs)) || s.Returned != s.Received || s.Passes != 1 || s.Dropped() != 0 {
				t.Errorf("stats %+v", s)
			}
			var bytes uint64
			for _, r := range recs {
				bytes += uint64(len(r.data))
			}
			if s.ReceivedBytes != bytes {
				t.Errorf("ReceivedBytes %d, want %d", s.ReceivedBytes, bytes)
			}
			if p.Err() != nil {
				t.Errorf("Err after a clean end: %v", p.Err())
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Done waits for the frames still out; a frame held keeps it open.
func TestSourceDoneWaitsForFrames(t *testing.T) {
	recs := hostTraffic(t, macA, macB, ipA, ipB, 3, 1)
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(pcapBytes(t, recs, true))})
	out := make([]*nbl.NetBufferList, 8)
	n, err := p.Receive(out)
	if n != len(recs) || err != io.EOF {
		t.Fatalf("Receive: %d, %v; want %d, io.EOF", n, err, len(recs))
	}
	for _, l := range out[:n-1] {
		l.Pool().Release(l)
	}
	select {
	case <-p.Done():
		t.Fatal("Done with a frame still out")
	default:
	}
	if err := p.Close(); err == nil {
		t.Error("Close with a frame of the port's pool still out succeeded")
	}
	out[n-1].Pool().Release(out[n-1])
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed")
	}
}

// InputFile and OutputFile are opened and closed by the port.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	recs := hostTraffic(t, macA, macB, ipA, ipB, 40, 1)
	in := filepath.Join(dir, "in.pcapng")
	if err := os.WriteFile(in, pcapngBytes(t, recs), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.pcap")
	p := newPort(t, pcapport.Config{InputFile: in, Loop: 2})
	got, err := drain(t, p, 16, 1000)
	if err != io.EOF {
		t.Fatal(err)
	}
	sameRecords(t, "two passes over a file", got, append(append([]record(nil), recs...), recs...), true)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	sink := newPort(t, pcapport.Config{OutputFile: out})
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || len(readCapture(t, b)) != 0 || len(b) != 24 {
		t.Errorf("an empty sink's file: %d bytes, %v", len(b), err)
	}
	if _, err := pcapport.New(pcapport.Config{InputFile: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing input file: %v", err)
	}
	if _, err := pcapport.New(pcapport.Config{Input: bytes.NewReader(nil), InputFile: in}); err == nil {
		t.Error("Input and InputFile both accepted")
	}
}

// Records that cannot be switched are dropped and counted by reason; the
// rest go through.
func TestSourceDrops(t *testing.T) {
	le := binary.LittleEndian
	good := udpFrame(t, macA, macB, ipA, ipB, 7, 100)
	big := udpFrame(t, macA, macB, ipA, ipB, 8, 300)
	runt := good[:10]
	file := cat(rawPcap(le, 0xa1b2c3d4, 65535, 1),
		rawRecord(le, 1, 0, uint32(len(good)), uint32(len(good)), good),
		rawRecord(le, 2, 0, uint32(len(runt)), uint32(len(runt)), runt),
		rawRecord(le, 3, 0, uint32(len(big)), uint32(len(big)), big),
		rawRecord(le, 4, 0, 60, 100, good[:60]), // captured short
		rawRecord(le, 5, 0, 0, 0, nil),
		rawRecord(le, 6, 0, uint32(len(good)), uint32(len(good)), good),
	)
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(file), MaxFrameSize: 200})
	got, err := drain(t, p, 8, 100)
	if err != io.EOF {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0].data, good) || !bytes.Equal(got[1].data, good) || got[1].ts.Unix() != 6 {
		t.Errorf("got %d frames, want the two good ones", len(got))
	}
	s := p.Stats()
	want := [pcapport.NumDropReasons]uint64{pcapport.DropRunt: 2, pcapport.DropOversize: 1, pcapport.DropTruncated: 1}
	if s.Drops != want {
		t.Errorf("drops %v, want %v", s.Drops, want)
	}
	for r := range pcapport.NumDropReasons {
		if r.String() == "" || r.String() == pcapport.NumDropReasons.String() {
			t.Errorf("drop reason %d has no name", r)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// KeepTruncated forwards the captured part.
	p = newPort(t, pcapport.Config{Input: bytes.NewReader(file), MaxFrameSize: 200, KeepTruncated: true})
	got, _ = drain(t, p, 8, 100)
	if len(got) != 3 || !bytes.Equal(got[1].data, good[:60]) || p.Stats().Drops[pcapport.DropTruncated] != 0 {
		t.Errorf("KeepTruncated: %d frames, stats %+v", len(got), p.Stats())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// In a pcapng file, packets of a non-Ethernet interface are dropped and
// counted; simple packet blocks (which have no timestamp) go through with
// timestamp 0; interface timestamp resolutions are honoured.
func TestPcapngInterfaces(t *testing.T) {
	le := binary.LittleEndian
	f1 := udpFrame(t, macA, macB, ipA, ipB, 1, 80)
	f2 := udpFrame(t, macA, macB, ipA, ipB, 2, 90)
	raw := f1[14:] // an IPv4 packet
	file := cat(ngSHB(le),
		ngIDB(le, uint16(layers.LinkTypeEthernet), 0),                                 // 0: µs
		ngIDB(le, uint16(layers.LinkTypeRaw), 0),                                      // 1
		ngIDB(le, uint16(layers.LinkTypeEthernet), 0, ngOption(le, 9, []byte{9})),     // 2: ns
		ngEPB(le, 0, 1_700_000_000_000_001, uint32(len(f1)), uint32(len(f1)), f1),     // µs
		ngEPB(le, 1, 1_700_000_000_000_002, uint32(len(raw)), uint32(len(raw)), raw),  // dropped
		ngEPB(le, 2, 1_700_000_000_000_000_003, uint32(len(f2)), uint32(len(f2)), f2), // ns
		ngBlock(le, 0x0bad, []byte("a block nobody reads")),                           // skipped
		ngSPB(le, uint32(len(f2)), f2),                                                // no timestamp
	)
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(file)})
	got, err := drain(t, p, 8, 100)
	if err != io.EOF {
		t.Fatal(err)
	}
	want := []record{
		{ts: time.Unix(1_700_000_000, 1000).UTC(), data: f1, wire: len(f1)},
		{ts: time.Unix(1_700_000_000, 3).UTC(), data: f2, wire: len(f2)},
		{data: f2, wire: len(f2)},
	}
	sameRecords(t, "pcapng", got, want, true)
	if s := p.Stats(); s.Drops[pcapport.DropLinkType] != 1 || s.Dropped() != 1 {
		t.Errorf("drops %v", s.Drops)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// Loop replays the input several times, or until Close; it needs a
// seekable input; a pass that yields nothing ends an endless replay.
func TestLoop(t *testing.T) {
	recs := hostTraffic(t, macA, macB, ipA, ipB, 30, 1)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"pcap", pcapBytes(t, recs, true)},
		{"pcapng", pcapngBytes(t, recs)},
		{"pcap-gzip", gzipped(t, pcapBytes(t, recs, true))},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The capture starts after some bytes of another kind: a loop
			// goes back to where it started.
			in := bytes.NewReader(append([]byte("prefix"), c.data...))
			in.Seek(6, io.SeekStart)
			p := newPort(t, pcapport.Config{Input: in, Loop: 3})
			got, err := drain(t, p, 7, 1000)
			if err != io.EOF {
				t.Fatal(err)
			}
			var want []record
			for range 3 {
				want = append(want, recs...)
			}
			sameRecords(t, "three passes", got, want, true)
			if s := p.Stats(); s.Passes != 3 || s.Received != uint64(len(want)) {
				t.Errorf("stats %+v", s)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}

			p = newPort(t, pcapport.Config{Input: bytes.NewReader(c.data), Loop: -1})
			got, err = drain(t, p, 32, 100)
			if err != nil || len(got) != 3200 {
				t.Fatalf("endless loop: %d frames in 100 bursts of 32, %v", len(got), err)
			}
			sameRecords(t, "endless loop", got[:len(recs)], recs, true)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := p.Receive(make([]*nbl.NetBufferList, 4)); n != 0 || err == nil {
				t.Errorf("Receive after Close: %d, %v", n, err)
			}
		})
	}
	if _, err := pcapport.New(pcapport.Config{Input: io.MultiReader(bytes.NewReader(pcapBytes(t, recs, true))), Loop: 2}); err == nil {
		t.Error("Loop over an input that cannot seek accepted")
	}
	le := binary.LittleEndian
	runts := cat(rawPcap(le, 0xa1b2c3d4, 65535, 1), rawRecord(le, 1, 0, 4, 4, []byte{1, 2, 3, 4}))
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(runts), Loop: -1})
	if got, err := drain(t, p, 8, 100); err != io.EOF || len(got) != 0 {
		t.Errorf("endless loop over nothing switchable: %d frames, %v", len(got), err)
	}
	if s := p.Stats(); s.Passes != 1 || s.Drops[pcapport.DropRunt] != 1 {
		t.Errorf("stats %+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// Pace releases a frame when its time since the pass's first frame, divided
// by Speed, has passed on the port's clock; Receive does not wait.
func TestPace(t *testing.T) {
	le := binary.LittleEndian
	f := udpFrame(t, macA, macB, ipA, ipB, 1, 64)
	// Frames at 0, 10, 20, 30 ms of capture time, and one out of order.
	file := rawPcap(le, 0xa1b23c4d, 65535, 1)
	for _, ms := range []uint32{0, 10, 20, 30, 5} {
		file = append(file, rawRecord(le, 100, ms*1e6, uint32(len(f)), uint32(len(f)), f)...)
	}
	var now int64 = 1e9
	clock := func() int64 { return now }
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(file), Pace: true, Speed: 2, Clock: clock, Loop: 2})
	out := make([]*nbl.NetBufferList, 8)
	recv := func() int {
		n, _ := p.Receive(out)
		for _, l := range out[:n] {
			l.Pool().Release(l)
		}
		return n
	}
	// At twice the speed: 0, 5, 10, 15 ms after the first, then the late
	// one at once.
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {4 * time.Millisecond, 0}, {time.Millisecond, 1}, {9 * time.Millisecond, 1}, {0, 0}, {time.Millisecond, 1 + 1 + 1}} {
		now += int64(step.advance)
		if n := recv(); n != step.want {
			t.Fatalf("at +%v: %d frames, want %d", step.advance, n, step.want)
		}
	}
	// The last Receive delivered the frame at 15 ms and the late one (due
	// at once), finished the first pass and delivered the second pass's
	// first frame, which set the bases again.
	if n := recv(); n != 0 {
		t.Fatalf("second pass: %d frames before time moved, want 0", n)
	}
	now += int64(15 * time.Millisecond)
	if n := recv(); n != 4 {
		t.Fatalf("second pass after 15 ms: %d frames, want 4", n)
	}
	if s := p.Stats(); s.Passes != 2 || s.Received != 10 {
		t.Errorf("stats %+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pcapport.New(pcapport.Config{Input: bytes.NewReader(file), Speed: -1}); err == nil {
		t.Error("a negative Speed accepted")
	}
}

// When the pool is empty, Receive returns what it got and the next frame
// waits: nothing is lost.
func TestPoolEmpty(t *testing.T) {
	recs := hostTraffic(t, macA, macB, ipA, ipB, 20, 1)
	pool, err := nbl.NewPool(nbl.Config{NBLs: 4, FrameSize: 2048, Headroom: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p := newPort(t, pcapport.Config{Input: bytes.NewReader(pcapBytes(t, recs, true)), Pool: pool})
	out := make([]*nbl.NetBufferList, 8)
	n, err := p.Receive(out)
	if n != 4 || err != nil {
		t.Fatalf("Receive from a pool of 4: %d, %v", n, err)
	}
	if m, _ := p.Receive(out[n:]); m != 0 || p.Stats().PoolEmpty != 2 {
		t.Fatalf("Receive from an empty pool: %d, stats %+v", m, p.Stats())
	}
	var got []record
	for _, l := range out[:n] {
		got = append(got, record{ts: time.Unix(0, l.Info.Timestamp).UTC(), data: append([]byte(nil), mustData(t, l)...), wire: l.FirstNetBuffer().DataLength()})
		l.Pool().Release(l)
	}
	rest, err := drain(t, p, 3, 100)
	if err != io.EOF {
		t.Fatal(err)
	}
	sameRecords(t, "through a small pool", append(got, rest...), recs, true)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !pool.Full() {
		t.Errorf("%d NBLs of the caller's pool out after Close", pool.InUse())
	}
	if _, err := pcapport.New(pcapport.Config{Input: bytes.NewReader(pcapBytes(t, recs, true)), Pool: pool, MaxFrameSize: 4000}); err == nil {
		t.Error("a MaxFrameSize larger than the pool's frames accepted")
	}
}

func mustData(t testing.TB, l *nbl.NetBufferList) []byte {
	t.Helper()
	d, ok := l.FirstNetBuffer().Data()
	if !ok {
		t.Fatal("frame not contiguous")
	}
	return d
}
