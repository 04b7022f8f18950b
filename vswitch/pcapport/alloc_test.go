package pcapport_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// receiveBurst receives a burst and gives it back to the port's cache, as
// the switch worker that owns the port does.
func receiveBurst(t testing.TB, p *pcapport.Port, out []*nbl.NetBufferList) int {
	n, err := p.Receive(out)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	for _, l := range out[:n] {
		p.Cache().Release(l)
	}
	return n
}

// The steady-state read path allocates nothing: Receive of a burst, with
// the copy into pool frames, the timestamps, the drop checks and pacing;
// for pcap also across the rewinds of an endless loop.
func TestReceiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	small := hostTraffic(t, macA, macB, ipA, ipB, 20, 0)
	large := hostTraffic(t, macA, macB, ipA, ipB, 4000, 0)
	for _, c := range []struct {
		name string
		cfg  pcapport.Config
	}{
		{"pcap-loop", pcapport.Config{Input: bytes.NewReader(pcapBytes(t, small, true)), Loop: -1}},
		{"pcap-loop-paced", pcapport.Config{Input: bytes.NewReader(pcapBytes(t, small, false)), Loop: -1, Pace: true, Speed: 1e9}},
		{"pcapng", pcapport.Config{Input: bytes.NewReader(pcapngBytes(t, large))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPort(t, c.cfg)
			out := make([]*nbl.NetBufferList, 32)
			for range 20 { // warm: the readers' buffers, the cache
				receiveBurst(t, p, out)
			}
			frames := 0
			allocs := testing.AllocsPerRun(50, func() { frames += receiveBurst(t, p, out) })
			if allocs != 0 {
				t.Errorf("%v allocations per Receive of a burst", allocs)
			}
			if frames < 50*16 {
				t.Errorf("only %d frames in 51 bursts", frames)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The steady-state write path allocates nothing: Send of a burst with and
// without NBL timestamps, and Reclaim.
func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pool := testPool(t, 32)
	frames := make([][]byte, 32)
	ts := make([]int64, 32)
	for i := range frames {
		frames[i] = udpFrame(t, macA, macB, ipA, ipB, uint32(i), 60+i*40)
		if i%2 == 0 {
			ts[i] = t0.Add(time.Duration(i)).UnixNano()
		}
	}
	in := nbls(t, pool, frames, ts)
	defer func() {
		for _, l := range in {
			pool.Release(l)
		}
	}()
	back := make([]*nbl.NetBufferList, 32)
	for _, cfg := range []pcapport.Config{
		{Output: io.Discard},
		{Output: io.Discard, Microseconds: true},
		{Output: io.Discard, OutputFormat: pcapport.FormatPcapng},
		{Output: io.Discard, Snaplen: 100},
	} {
		t.Run(fmt.Sprintf("%v-us=%v-snap=%d", cfg.OutputFormat, cfg.Microseconds, cfg.Snaplen), func(t *testing.T) {
			p := newPort(t, cfg)
			send := func() {
				if n, err := p.Send(in); n != len(in) || err != nil {
					t.Fatalf("Send: %d, %v", n, err)
				}
				if n := p.Reclaim(back); n != len(in) {
					t.Fatalf("Reclaim: %d", n)
				}
			}
			send()
			if allocs := testing.AllocsPerRun(100, send); allocs != 0 {
				t.Errorf("%v allocations per Send and Reclaim of a burst", allocs)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkReceive replays a capture endlessly into bursts of 32 released
// at once; the baseline reads the same capture with pcapgo's
// ReadPacketData, which allocates each frame.
func BenchmarkReceive(b *testing.B) {
	recs := hostTraffic(b, macA, macB, ipA, ipB, 500, 0)
	data := pcapBytes(b, recs, true)
	b.Run("pcapport", func(b *testing.B) {
		p := newPort(b, pcapport.Config{Input: bytes.NewReader(data), Loop: -1})
		out := make([]*nbl.NetBufferList, 32)
		b.ReportAllocs()
		frames := 0
		for b.Loop() {
			frames += receiveBurst(b, p, out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/pkt")
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("pcapgo-ReadPacketData-baseline", func(b *testing.B) {
		b.ReportAllocs()
		frames := 0
		rd := newPcapgoReader(b, data)
		for b.Loop() {
			for range 32 {
				if _, _, err := rd.ReadPacketData(); err != nil {
					rd = newPcapgoReader(b, data)
					continue
				}
				frames++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/pkt")
	})
}

// BenchmarkSend writes bursts of 32 frames of 64 and 1500 bytes to
// io.Discard.
func BenchmarkSend(b *testing.B) {
	for _, size := range []int{64, 1500} {
		for _, format := range []pcapport.Format{pcapport.FormatPcap, pcapport.FormatPcapng} {
			b.Run(fmt.Sprintf("%v/%d", format, size), func(b *testing.B) {
				pool := testPool(b, 32)
				frames := make([][]byte, 32)
				for i := range frames {
					frames[i] = udpFrame(b, macA, macB, ipA, ipB, uint32(i), size)
				}
				in := nbls(b, pool, frames, make([]int64, 32))
				back := make([]*nbl.NetBufferList, 32)
				p := newPort(b, pcapport.Config{Output: io.Discard, OutputFormat: format})
				b.SetBytes(int64(32 * size))
				b.ReportAllocs()
				for b.Loop() {
					p.Send(in)
					p.Reclaim(back)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(32*b.N), "ns/pkt")
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
				for _, l := range in {
					pool.Release(l)
				}
			})
		}
	}
}

func newPcapgoReader(b *testing.B, data []byte) *pcapgo.Reader {
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	return r
}
