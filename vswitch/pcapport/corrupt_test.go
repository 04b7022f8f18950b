package pcapport_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// corruptCase is a capture that must fail: at New (atNew) or, after good
// frames, at Receive, with an error matching want.
type corruptCase struct {
	name  string
	data  []byte
	want  error
	atNew bool
	good  int
}

// corruptCases covers truncations, inconsistent and absurd lengths, and the
// pcapng fields pcapgo.NgReader trusts.
func corruptCases(t testing.TB) []corruptCase {
	le, be := binary.LittleEndian, binary.BigEndian
	f := udpFrame(t, macA, macB, ipA, ipB, 1, 100)
	n := uint32(len(f))
	hdr := rawPcap(le, 0xa1b2c3d4, 65535, 1)
	rec := rawRecord(le, 1, 0, n, n, f)
	ngHead := cat(ngSHB(le), ngIDB(le, 1, 0))
	epb := ngEPB(le, 0, 1, n, n, f)
	badLen := func(b []byte, length uint32) []byte {
		b = bytes.Clone(b)
		le.PutUint32(b[4:], length)
		return b
	}
	return []corruptCase{
		{"empty", nil, pcapport.ErrCorrupt, true, 0},
		{"three-bytes", []byte{0xd4, 0xc3, 0xb2}, pcapport.ErrCorrupt, true, 0},
		{"unknown-magic", bytes.Repeat([]byte("not a capture "), 4), pcapport.ErrFormat, true, 0},
		{"truncated-pcap-header", hdr[:10], pcapport.ErrCorrupt, true, 0},
		{"pcap-version-3", func() []byte { b := bytes.Clone(hdr); le.PutUint16(b[4:], 3); return b }(), pcapport.ErrFormat, true, 0},
		{"pcap-not-ethernet", rawPcap(le, 0xa1b2c3d4, 65535, uint32(layers.LinkTypeRaw)), pcapport.ErrLinkType, true, 0},
		{"truncated-record-header", cat(hdr, rec, rec[:9]), pcapport.ErrCorrupt, false, 1},
		{"truncated-record-data", cat(hdr, rec, rec[:16+50]), pcapport.ErrCorrupt, false, 1},
		{"record-header-only", cat(hdr, rec, rec[:16]), pcapport.ErrCorrupt, false, 1},
		{"caplen-over-snaplen", cat(rawPcap(le, 0xa1b2c3d4, 64, 1), rawRecord(le, 1, 0, 64, 64, f[:64]), rawRecord(le, 1, 0, n, n, f)), pcapport.ErrCorrupt, false, 1},
		{"caplen-over-wire-length", cat(hdr, rec, rawRecord(le, 1, 0, n, 60, f)), pcapport.ErrCorrupt, false, 1},
		{"absurd-caplen", cat(hdr, rec, rawRecord(le, 1, 0, 0xfffffff0, 0xfffffff0, f)), pcapport.ErrCorrupt, false, 1},
		{"absurd-caplen-and-snaplen", cat(rawPcap(be, 0xa1b2c3d4, 0xffffffff, 1), rawRecord(be, 1, 0, 0x7ffffff0, 0x7ffffff0, f)), pcapport.ErrCorrupt, false, 0},
		{"gzip-cut", gzipped(t, cat(hdr, rec, rec))[:40], pcapport.ErrCorrupt, false, 0},
		{"gzip-garbage", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3, 4, 5, 6}, pcapport.ErrCorrupt, true, 0},

		{"pcapng-truncated-shb", ngSHB(le)[:20], pcapport.ErrCorrupt, true, 0},
		{"pcapng-bad-byte-order", func() []byte { b := ngSHB(le); le.PutUint32(b[8:], 0x12345678); return b }(), pcapport.ErrCorrupt, true, 0},
		{"pcapng-version-2", func() []byte { b := ngSHB(le); le.PutUint16(b[12:], 2); return b }(), pcapport.ErrFormat, true, 0},
		{"pcapng-no-section-header", cat(ngIDB(le, 1, 0)), pcapport.ErrFormat, true, 0},
		{"pcapng-shb-length-not-multiple-of-4", badLen(ngSHB(le), 30), pcapport.ErrCorrupt, true, 0},
		{"pcapng-absurd-block-length", cat(ngHead, epb, badLen(epb, 0xfffffff0)), pcapport.ErrCorrupt, false, 1},
		{"pcapng-block-length-under-header", cat(ngHead, epb, badLen(epb, 8)), pcapport.ErrCorrupt, false, 1},
		{"pcapng-trailer-mismatch", cat(ngHead, epb, func() []byte { b := bytes.Clone(epb); le.PutUint32(b[len(b)-4:], 12); return b }()), pcapport.ErrCorrupt, false, 1},
		{"pcapng-truncated-block", cat(ngHead, epb, epb[:len(epb)-8]), pcapport.ErrCorrupt, false, 1},
		{"pcapng-truncated-block-header", cat(ngHead, epb, epb[:5]), pcapport.ErrCorrupt, false, 1},
		{"pcapng-caplen-beyond-block", cat(ngHead, epb, ngEPB(le, 0, 1, 0x7fffffff, 0x7fffffff, f)), pcapport.ErrCorrupt, false, 1},
		{"pcapng-spb-beyond-block", cat(ngHead, epb, ngSPB(le, 0xfffffff0, f)), pcapport.ErrCorrupt, false, 1},
		{"pcapng-packet-before-interface", cat(ngSHB(le), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-unknown-interface", cat(ngHead, epb, ngEPB(le, 7, 1, n, n, f)), pcapport.ErrCorrupt, false, 1},
		// pcapgo.NgReader divides by the interface's resolution: 2^-127
		// and 10^-64 overflow it to zero.
		{"pcapng-tsresol-binary-127", cat(ngSHB(le), ngIDB(le, 1, 0, ngOption(le, 9, []byte{0xff})), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-tsresol-decimal-64", cat(ngSHB(le), ngIDB(le, 1, 0, ngOption(le, 9, []byte{64})), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-tsresol-empty", cat(ngSHB(le), ngIDB(le, 1, 0, ngOption(le, 9, nil)), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-tsoffset-short", cat(ngSHB(le), ngIDB(le, 1, 0, ngOption(le, 14, []byte{1, 2})), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-option-beyond-block", cat(ngSHB(le), func() []byte {
			b := ngIDB(le, 1, 0, ngOption(le, 2, []byte("eth0")))
			le.PutUint16(b[18:], 200)
			return b
		}(), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-option-length-wraps", cat(ngSHB(le), func() []byte {
			// An option whose padded length does not fit 16 bits, in a
			// block long enough to hold it.
			b := ngIDB(le, 1, 0, ngOption(le, 2, make([]byte, 65533)))
			return b
		}(), epb), pcapport.ErrCorrupt, false, 0},
		{"pcapng-end-of-options-with-length", cat(ngSHB(le, ngOption(le, 0, []byte{1, 2, 3, 4}))), pcapport.ErrCorrupt, true, 0},
	}
}

// A corrupt capture gives an error (at New, or at Receive after the frames
// before the damage), never a panic, a hang or an absurd allocation; every
// frame delivered comes back and the port closes clean.
func TestCorrupt(t *testing.T) {
	for _, c := range corruptCases(t) {
		t.Run(c.name, func(t *testing.T) {
			p, err := pcapport.New(pcapport.Config{Input: bytes.NewReader(c.data), PoolSize: 16})
			if c.atNew {
				if !errors.Is(err, c.want) {
					t.Fatalf("New: %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got, err := drain(t, p, 4, 100)
			if !errors.Is(err, c.want) || err == io.EOF {
				t.Errorf("Receive ended with %v, want %v", err, c.want)
			}
			if len(got) != c.good {
				t.Errorf("%d frames before the error, want %d", len(got), c.good)
			}
			if !errors.Is(p.Err(), c.want) {
				t.Errorf("Err: %v", p.Err())
			}
			if _, again := drain(t, p, 4, 1); again != err {
				t.Errorf("the error is not sticky: %v, then %v", err, again)
			}
			select {
			case <-p.Done():
			default:
				t.Error("Done not closed after the input failed")
			}
			if s := p.Stats(); s.Returned != s.Received {
				t.Errorf("stats %+v", s)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
