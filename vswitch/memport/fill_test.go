package memport_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// patterned returns an n-byte frame whose bytes differ from one position to
// the next and from one seed to another, so that a shifted, truncated or
// mixed-up copy shows.
func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	b[0] = 2 // a unicast destination
	return b
}

// checkFrames checks that each received frame is its template, byte for
// byte and in length, with the port as its originator, and that the
// receive wrote nothing outside the frame's data but the tail of its own
// descriptor's frame: the slab was filled with 0xEE before, so the
// backfill of every frame (the bytes just past the previous frame) and
// whatever lies more than 64 bytes past a frame's start must still hold it.
func checkFrames(t *testing.T, p *memport.Port, ls []*nbl.NetBufferList, tpl [][]byte, first int) {
	t.Helper()
	slab := p.Pool().Frames()
	headroom := p.Pool().Config().Headroom
	for i, l := range ls {
		want := tpl[(first+i)%len(tpl)]
		if !bytes.Equal(data(l), want) {
			t.Fatalf("frame %d (%d bytes) is not its template of %d bytes", first+i, len(data(l)), len(want))
		}
		if l.Originator != p {
			t.Fatalf("frame %d: originator %v", first+i, l.Originator)
		}
		f := slab.Frame(l.Index())
		for j, c := range f {
			inside := j >= headroom && j < headroom+max(len(want), 64)
			if !inside && c != 0xEE {
				t.Fatalf("frame %d (%d bytes): byte %d of the descriptor's frame was written (headroom %d)", first+i, len(want), j, headroom)
			}
		}
	}
}

// Generated frames are their templates byte for byte, for lengths around
// the 64-byte block the generator copies short templates in, with one
// template, several of one length, and several lengths; and no receive
// writes outside its descriptor's frame.
func TestTemplateLengths(t *testing.T) {
	for _, n := range []int{14, 15, 60, 63, 64, 65, 127, 1500} {
		for _, shape := range []string{"one", "same", "mixed"} {
			t.Run(fmt.Sprintf("%d/%s", n, shape), func(t *testing.T) {
				var tpl [][]byte
				switch shape {
				case "one":
					tpl = [][]byte{patterned(n, 1)}
				case "same":
					tpl = [][]byte{patterned(n, 1), patterned(n, 2), patterned(n, 3)}
				case "mixed":
					tpl = [][]byte{patterned(n, 1), patterned(14, 2), patterned(max(n-1, 14), 3), patterned(n+1, 4)}
				}
				p := newPort(t, memport.Config{Frames: tpl, PoolSize: 64})
				for i := range p.Pool().Frames().Bytes() {
					p.Pool().Frames().Bytes()[i] = 0xEE
				}
				out := make([]*nbl.NetBufferList, 7)
				first := 0
				for range 3 {
					k, err := p.Receive(out)
					if err != nil || k != len(out) {
						t.Fatalf("Receive: %d %v", k, err)
					}
					checkFrames(t, p, out[:k], tpl, first)
					first += k
					release(p, out[:k])
				}
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// With frames that leave less than 64 bytes after the backfill, short
// templates are still copied exactly, and nothing is written past them.
func TestTemplateInTightFrames(t *testing.T) {
	// Frames of 192 bytes (a multiple of the cache line, so exactly that)
	// with 150 bytes of backfill: 42 bytes of room.
	pool, err := nbl.NewPool(nbl.Config{NBLs: 16, FrameSize: 192, Headroom: 150})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if pool.Config().FrameSize != 192 {
		t.Fatalf("frame size %d, the test needs 192", pool.Config().FrameSize)
	}
	for _, tpl := range [][][]byte{{patterned(40, 1)}, {patterned(42, 1), patterned(42, 5)}, {patterned(14, 1), patterned(42, 2)}} {
		p := newPort(t, memport.Config{Frames: tpl, Pool: pool})
		slab := pool.Frames().Bytes()
		for i := range slab {
			slab[i] = 0xEE
		}
		out := make([]*nbl.NetBufferList, 5)
		k, err := p.Receive(out)
		if err != nil || k != len(out) {
			t.Fatalf("Receive: %d %v", k, err)
		}
		headroom := pool.Config().Headroom
		for i, l := range out[:k] {
			want := tpl[i%len(tpl)]
			if !bytes.Equal(data(l), want) {
				t.Errorf("frame %d is not its template", i)
			}
			for j, c := range pool.Frames().Frame(l.Index()) {
				if (j < headroom || j >= headroom+len(want)) && c != 0xEE {
					t.Fatalf("frame %d: byte %d outside its data written", i, j)
				}
			}
		}
		release(p, out[:k])
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Stamps fall on every StampEvery-th generated frame however the frames
// are split into bursts, and each is a fresh Clock reading.
func TestStampsAcrossBursts(t *testing.T) {
	for _, every := range []int{1, 3, 7, 61} {
		var now atomic.Int64
		clock := func() int64 { return now.Add(1) }
		p := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}, StampEvery: every, Clock: clock})
		out := make([]*nbl.NetBufferList, 32)
		total := 0
		last := int64(0)
		for _, burst := range []int{1, 2, 5, 32, 7, 3, 32, 1, 20} {
			k, _ := p.Receive(out[:burst])
			if k != burst {
				t.Fatalf("Receive of %d: %d", burst, k)
			}
			for i, l := range out[:k] {
				g := total + i + 1 // frames generated so far, this one included
				ts := l.Info.Timestamp
				if (ts != 0) != (g%every == 0) {
					t.Fatalf("StampEvery %d: frame %d has timestamp %d", every, g, ts)
				}
				if ts != 0 {
					if ts <= last {
						t.Fatalf("StampEvery %d: frame %d stamped %d after %d", every, g, ts, last)
					}
					last = ts
				}
			}
			total += k
			release(p, out[:k])
		}
		if want := int64(total / every); now.Load() != want {
			t.Errorf("StampEvery %d: %d Clock calls for %d frames, want %d", every, now.Load(), total, want)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A Receive cut short by MaxInFlight or Limit is not a pool running empty.
func TestPoolEmptyOnlyWhenEmpty(t *testing.T) {
	p := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}, MaxInFlight: 3, Limit: 5})
	out := make([]*nbl.NetBufferList, 8)
	var held []*nbl.NetBufferList
	for range 3 {
		k, _ := p.Receive(out)
		held = append(held, out[:k]...)
	}
	if len(held) != 3 {
		t.Fatalf("%d frames in flight, want 3", len(held))
	}
	release(p, held)
	held = held[:0]
	for range 3 {
		k, _ := p.Receive(out)
		held = append(held, out[:k]...)
		release(p, out[:k])
	}
	if len(held) != 2 {
		t.Errorf("%d frames after the first 3, want 2 (Limit 5)", len(held))
	}
	if s := p.Stats(); s.PoolEmpty != 0 || s.Generated != 5 || s.Returned != 5 {
		t.Errorf("%+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// Receive, Send and Reclaim do not allocate, whatever the templates.
func TestNoAllocs(t *testing.T) {
	for _, c := range []struct {
		name string
		tpl  [][]byte
	}{
		{"64", [][]byte{frame(64, 1)}},
		{"60x2", [][]byte{frame(60, 1), frame(60, 2)}},
		{"1500", [][]byte{frame(1500, 1)}},
		{"mixed", [][]byte{frame(64, 1), frame(100, 2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := newPort(t, memport.Config{Frames: c.tpl, StampEvery: 5, MaxInFlight: 64})
			sink := newPort(t, memport.Config{StampEvery: 1, LatencySamples: 16})
			in := make([]*nbl.NetBufferList, 32)
			done := make([]*nbl.NetBufferList, 32)
			moved := 0
			cycle := func() {
				k, _ := src.Receive(in)
				s, _ := sink.Send(in[:k])
				r := sink.Reclaim(done)
				for _, l := range done[:r] {
					src.Pool().Release(l)
				}
				moved += s
			}
			for range 10 {
				cycle()
			}
			if a := testing.AllocsPerRun(100, cycle); a != 0 {
				t.Errorf("%v allocations per Receive, Send and Reclaim of a burst", a)
			}
			if moved < 100*32 {
				t.Errorf("only %d frames moved", moved)
			}
			if s := src.Stats(); s.Generated != s.Returned || sink.Stats().Sent != s.Generated {
				t.Errorf("source %+v, sink %+v", s, sink.Stats())
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
