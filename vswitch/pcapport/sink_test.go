package pcapport_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// nbls allocates NBLs holding frames, stamped with ts (0: none).
func nbls(t testing.TB, pool *nbl.Pool, frames [][]byte, ts []int64) []*nbl.NetBufferList {
	t.Helper()
	out := make([]*nbl.NetBufferList, len(frames))
	for i, f := range frames {
		l, err := pool.Allocate(pool.Config().Headroom, len(f))
		if err != nil {
			t.Fatal(err)
		}
		l.FirstNetBuffer().CopyIn(0, f)
		l.Info.Timestamp = ts[i]
		out[i] = l
	}
	return out
}

func testPool(t testing.TB, n int) *nbl.Pool {
	t.Helper()
	pool, err := nbl.NewPool(nbl.Config{NBLs: n, FrameSize: 2048, Headroom: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !pool.Full() {
			t.Errorf("%d NBLs of the test pool still out", pool.InUse())
		}
		pool.Close()
	})
	return pool
}

// The sink writes each frame with the NBL's timestamp, or Now's when it has
// none, truncated to Snaplen, in every output format; the frames come back
// through Reclaim in order; Close flushes.
func TestSinkWrite(t *testing.T) {
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 6789, time.UTC)
	frames := [][]byte{
		udpFrame(t, macA, macB, ipA, ipB, 1, 64),
		udpFrame(t, macA, macB, ipA, ipB, 2, 1500),
		arpFrame(t, macA, ipA, ipB),
	}
	stamps := []int64{t0.UnixNano(), 0, t0.Add(time.Second).UnixNano()}
	for _, c := range []struct {
		name   string
		cfg    pcapport.Config
		snap   int
		tsUnit time.Duration
	}{
		{"pcap-ns", pcapport.Config{}, pcapport.MaxSnaplen, 1},
		{"pcap-us", pcapport.Config{Microseconds: true}, pcapport.MaxSnaplen, time.Microsecond},
		{"pcapng", pcapport.Config{OutputFormat: pcapport.FormatPcapng}, pcapport.MaxSnaplen, 1},
		{"pcap-snaplen-100", pcapport.Config{Snaplen: 100}, 100, 1},
		{"pcapng-snaplen-100", pcapport.Config{OutputFormat: pcapport.FormatPcapng, Snaplen: 100}, 100, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := testPool(t, 8)
			var out bytes.Buffer
			cfg := c.cfg
			cfg.Output = &out
			cfg.Now = func() time.Time { return fixed }
			p := newPort(t, cfg)
			in := nbls(t, pool, frames, stamps)
			if n, err := p.Send(in); n != len(in) || err != nil {
				t.Fatalf("Send: %d, %v", n, err)
			}
			back := make([]*nbl.NetBufferList, 8)
			if n := p.Reclaim(back); n != len(in) || back[0] != in[0] || back[2] != in[2] {
				t.Fatalf("Reclaim: %d", n)
			}
			if n := p.Reclaim(back); n != 0 {
				t.Fatalf("second Reclaim: %d", n)
			}
			for _, l := range in {
				pool.Release(l)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			var want []record
			truncated := 0
			for i, f := range frames {
				ts := fixed
				if stamps[i] != 0 {
					ts = time.Unix(0, stamps[i]).UTC()
				}
				c := min(len(f), c.snap)
				if c < len(f) {
					truncated++
				}
				want = append(want, record{ts: ts.Truncate(c0(cfg)), data: f[:c], wire: len(f)})
			}
			sameRecords(t, c.name, readCapture(t, out.Bytes()), want, true)
			s := p.Stats()
			if s.Written != 3 || s.Reclaimed != 3 || s.WriteTruncated != uint64(truncated) || s.WriteErrors != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// c0 is the timestamp unit of the configured output.
func c0(cfg pcapport.Config) time.Duration {
	if cfg.Microseconds && cfg.OutputFormat == pcapport.FormatPcap {
		return time.Microsecond
	}
	return 1
}

// A frame whose data span several MDLs (a header prepended beyond the
// backfill) is written whole.
func TestSinkNonContiguous(t *testing.T) {
	pool, err := nbl.NewPool(nbl.Config{NBLs: 4, FrameSize: 256, Headroom: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	f := udpFrame(t, macA, macB, ipA, ipB, 9, 200)
	l, err := pool.Allocate(0, len(f)-20)
	if err != nil {
		t.Fatal(err)
	}
	l.FirstNetBuffer().CopyIn(0, f[20:])
	if err := l.FirstNetBuffer().Retreat(20, 0); err != nil {
		t.Fatal(err)
	}
	l.FirstNetBuffer().CopyIn(0, f[:20])
	if _, ok := l.FirstNetBuffer().Data(); ok {
		t.Fatal("the test frame is contiguous")
	}
	var out bytes.Buffer
	p := newPort(t, pcapport.Config{Output: &out})
	if n, err := p.Send([]*nbl.NetBufferList{l}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	p.Reclaim(make([]*nbl.NetBufferList, 1))
	pool.Release(l)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCapture(t, out.Bytes())
	if len(got) != 1 || !bytes.Equal(got[0].data, f) {
		t.Errorf("wrote %d frames, the first %d bytes", len(got), len(got[0].data))
	}
	if !pool.Full() {
		t.Error("pool not full")
	}
}

type failWriter struct{ after, n int }

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(b []byte) (int, error) {
	if w.n+len(b) > w.after {
		return 0, errDiskFull
	}
	w.n += len(b)
	return len(b), nil
}

// A write error stops the sink: Send takes the frames before it and
// returns the error, later Sends take nothing; TxSlots bounds what is not
// reclaimed; a port with no output refuses frames; Close reports frames
// never reclaimed.
func TestSinkErrors(t *testing.T) {
	pool := testPool(t, 64)
	frames := make([][]byte, 40)
	ts := make([]int64, len(frames))
	for i := range frames {
		frames[i] = udpFrame(t, macA, macB, ipA, ipB, uint32(i), 1500)
	}
	// The output buffer (64 KiB) fills after about 43 frames.
	p := newPort(t, pcapport.Config{Output: &failWriter{after: 1000}})
	in := nbls(t, pool, frames, ts)
	back := make([]*nbl.NetBufferList, 64)
	total := 0
	var err error
	for round := 0; round < 3 && err == nil; round++ {
		var n int
		n, err = p.Send(in)
		total += n
		if k := p.Reclaim(back); k != n {
			t.Fatalf("reclaimed %d of %d", k, n)
		}
	}
	if !errors.Is(err, errDiskFull) || total >= 3*len(in) {
		t.Fatalf("Send over a failing writer: took %d, %v", total, err)
	}
	if n, err2 := p.Send(in); n != 0 || !errors.Is(err2, errDiskFull) {
		t.Errorf("Send after the failure: %d, %v", n, err2)
	}
	if s := p.Stats(); s.WriteErrors != 1 || s.Written != uint64(total) {
		t.Errorf("stats %+v", s)
	}
	if err := p.Close(); !errors.Is(err, errDiskFull) {
		t.Errorf("Close: %v, want the write error", err)
	}

	var out bytes.Buffer
	p = newPort(t, pcapport.Config{Output: &out, TxSlots: 3})
	if n, err := p.Send(in[:5]); n != 3 || err != nil {
		t.Errorf("Send of 5 into 3 slots: %d, %v", n, err)
	}
	if err := p.Close(); !errors.Is(err, pcapport.ErrNotEmpty) {
		t.Errorf("Close with frames not reclaimed: %v", err)
	}
	p.Reclaim(back)

	src := newPort(t, pcapport.Config{Input: bytes.NewReader(pcapBytes(t, nil, true))})
	if n, err := src.Send(in[:1]); n != 0 || !errors.Is(err, pcapport.ErrNotSink) {
		t.Errorf("Send to a port with no output: %d, %v", n, err)
	}
	if n := src.Reclaim(back); n != 0 {
		t.Errorf("Reclaim on a port with no output: %d", n)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range in {
		pool.Release(l)
	}
	for _, c := range []pcapport.Config{{Output: &out, Snaplen: 5}, {Output: &out, OutputFormat: 9}, {Output: &out, OutputFile: "x"}} {
		if _, err := pcapport.New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}
