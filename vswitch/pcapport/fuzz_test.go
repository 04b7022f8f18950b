package pcapport_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

var update = flag.Bool("update", false, "rewrite the seed corpus in testdata/fuzz/FuzzPcapReader")

// seed is a named input of the seed corpus.
type seed struct {
	name string
	data []byte
}

// seeds are valid small captures of every format and the corrupt cases of
// TestCorrupt (the small ones).
func seeds(t testing.TB) []seed {
	le := binary.LittleEndian
	recs := []record{
		{ts: t0, data: arpFrame(t, macA, ipA, ipB)},
		{ts: t0.Add(1), data: udpFrame(t, macA, macB, ipA, ipB, 1, 60)},
		{ts: t0.Add(2), data: udpFrame(t, macB, macA, ipB, ipA, 2, 90)},
	}
	for i := range recs {
		recs[i].wire = len(recs[i].data)
	}
	f := recs[1].data
	n := uint32(len(f))
	s := []seed{
		{"valid-pcap-us", pcapBytes(t, recs, false)},
		{"valid-pcap-ns", pcapBytes(t, recs, true)},
		{"valid-pcap-be", cat(rawPcap(binary.BigEndian, 0xa1b2c3d4, 1500, 1), rawRecord(binary.BigEndian, 1, 2, n, n, f))},
		{"valid-pcapng", pcapngBytes(t, recs)},
		{"valid-pcapng-be", cat(ngSHB(binary.BigEndian), ngIDB(binary.BigEndian, 1, 0, ngOption(binary.BigEndian, 9, []byte{0x88})), ngEPB(binary.BigEndian, 0, 1, n, n, f))},
		{"valid-pcapng-mixed", cat(ngSHB(le), ngIDB(le, 1, 0), ngIDB(le, uint16(layers.LinkTypeRaw), 0),
			ngEPB(le, 0, 1, n, n, f), ngEPB(le, 1, 2, n-14, n-14, f[14:]), ngSPB(le, n, f), ngBlock(le, 0x0bad, []byte("skip")),
			ngSHB(le), ngIDB(le, 1, 64), ngSPB(le, n, f[:64]))},
		{"valid-pcap-gzip", gzipped(t, pcapBytes(t, recs, true))},
		{"valid-pcapng-gzip", gzipped(t, pcapngBytes(t, recs))},
		{"drops-pcap", cat(rawPcap(le, 0xa1b2c3d4, 65535, 1), rawRecord(le, 1, 0, 10, 10, f[:10]), rawRecord(le, 2, 0, 40, n, f[:40]), rawRecord(le, 3, 0, n, n, f))},
	}
	for _, c := range corruptCases(t) {
		if len(c.data) <= 4096 {
			s = append(s, seed{"corrupt-" + c.name, c.data})
		}
	}
	return s
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// The committed seed corpus is the one seeds builds (go test -run
// TestSeedCorpus -update rewrites it).
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzPcapReader")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range seeds(t) {
		path := filepath.Join(dir, s.name)
		want := corpusFile(s.data)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := readCorpusFile(path)
		if err != nil {
			t.Errorf("%s: %v; run go test ./vswitch/pcapport -run TestSeedCorpus -update", path, err)
			continue
		}
		// Compressed seeds are compared decompressed: compress/flate's
		// output may change with the Go release.
		if !bytes.Equal(gunzipped(got), gunzipped(s.data)) {
			t.Errorf("%s is stale; run go test ./vswitch/pcapport -run TestSeedCorpus -update", path)
		}
	}
}

// FuzzPcapReader feeds arbitrary bytes to a source as its capture: New and
// Receive give an error or frames, never a panic; every frame is an
// Ethernet frame within MaxFrameSize from the port's pool, and every one
// comes back; the input ends (io.EOF or ErrCorrupt) in a bounded number of
// calls; the pool is full after Close.
func FuzzPcapReader(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s.data)
	}
	const maxFrame = 2048
	pool, err := nbl.NewPool(nbl.Config{NBLs: 64, FrameSize: maxFrame + 128, Headroom: 128})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { pool.Close() })
	out := make([]*nbl.NetBufferList, 8)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pcapport.New(pcapport.Config{Input: bytes.NewReader(data), Pool: pool, MaxFrameSize: maxFrame, KeepTruncated: len(data)%2 == 1})
		if err != nil {
			if !errors.Is(err, pcapport.ErrCorrupt) && !errors.Is(err, pcapport.ErrFormat) && !errors.Is(err, pcapport.ErrLinkType) {
				t.Fatalf("New: unexpected error %v", err)
			}
			return
		}
		for calls := 0; ; calls++ {
			if calls == 1<<20 {
				t.Fatal("the input does not end")
			}
			n, err := p.Receive(out)
			for _, l := range out[:n] {
				if l.Pool() != pool || l.Originator != p {
					t.Fatal("a frame not from the port's pool")
				}
				if k := l.FirstNetBuffer().DataLength(); k < 14 || k > maxFrame {
					t.Fatalf("a frame of %d bytes", k)
				}
				pool.Release(l)
			}
			clear(out)
			if err == io.EOF {
				if p.Err() != nil {
					t.Fatalf("Err %v after a clean end", p.Err())
				}
				break
			}
			if err != nil {
				if !errors.Is(err, pcapport.ErrCorrupt) || p.Err() != err {
					t.Fatalf("Receive: unexpected error %v (Err %v)", err, p.Err())
				}
				break
			}
		}
		select {
		case <-p.Done():
		default:
			t.Fatal("Done not closed with every frame back")
		}
		if s := p.Stats(); s.Returned != s.Received {
			t.Fatalf("%d frames received, %d returned", s.Received, s.Returned)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if !pool.Full() {
			t.Fatalf("%d NBLs out after Close", pool.InUse())
		}
	})
}

// readCorpusFile reads the []byte of a one-value corpus file.
func readCorpusFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, ok := bytes.CutPrefix(b, []byte("go test fuzz v1\n[]byte("))
	if !ok || !bytes.HasSuffix(rest, []byte(")\n")) {
		return nil, errors.New("not a corpus file of one []byte")
	}
	s, err := strconv.Unquote(string(rest[:len(rest)-2]))
	return []byte(s), err
}

// gunzipped returns b decompressed if it is gzipped, else b.
func gunzipped(b []byte) []byte {
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b
	}
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return b
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return b
	}
	return out
}
