package memport_test

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

func frame(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	b[0] = 2 // a unicast destination
	return b
}

func newPort(t *testing.T, cfg memport.Config) *memport.Port {
	t.Helper()
	p, err := memport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func data(l *nbl.NetBufferList) []byte {
	d, ok := l.FirstNetBuffer().Data()
	if !ok {
		panic("frame not contiguous")
	}
	return d
}

func release(p *memport.Port, ls []*nbl.NetBufferList) {
	for _, l := range ls {
		p.Pool().Release(l)
	}
}

// A generator receives its templates in turn, each in memory of its own,
// up to Limit, with itself as the originator; released frames come back.
func TestGenerator(t *testing.T) {
	tpl := [][]byte{frame(60, 0xa), frame(70, 0xb), frame(80, 0xc)}
	p := newPort(t, memport.Config{Frames: tpl, Limit: 7})
	out := make([]*nbl.NetBufferList, 5)
	n, err := p.Receive(out)
	if err != nil || n != 5 {
		t.Fatalf("Receive: %d %v", n, err)
	}
	for i, l := range out[:n] {
		if !bytes.Equal(data(l), tpl[i%3]) {
			t.Errorf("frame %d is not template %d", i, i%3)
		}
		if l.Originator != p {
			t.Errorf("frame %d: originator %v", i, l.Originator)
		}
	}
	data(out[0])[5] = 0xff // frames do not share bytes
	if data(out[3])[5] != 0xa {
		t.Error("two frames of one template share memory")
	}
	got := append([]*nbl.NetBufferList(nil), out[:n]...)
	n, _ = p.Receive(out)
	if n != 2 || !bytes.Equal(data(out[0]), tpl[2]) || !bytes.Equal(data(out[1]), tpl[0]) {
		t.Fatalf("second Receive: %d frames", n)
	}
	got = append(got, out[:n]...)
	if n, _ := p.Receive(out); n != 0 {
		t.Errorf("Receive past the limit: %d", n)
	}
	if s := p.Stats(); s.Generated != 7 || s.Returned != 0 {
		t.Errorf("%+v", s)
	}
	release(p, got)
	if s := p.Stats(); s.Returned != 7 {
		t.Errorf("%+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := memport.New(memport.Config{Frames: [][]byte{make([]byte, 13)}}); err == nil {
		t.Error("a 13-byte template accepted")
	}
	pool, err := nbl.NewPool(nbl.Config{NBLs: 4, FrameSize: 256, Headroom: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := memport.New(memport.Config{Frames: [][]byte{frame(200, 1)}, Pool: pool}); err == nil {
		t.Error("a template larger than the pool's frames accepted")
	}
}

// An empty pool cuts a Receive short and is counted; MaxInFlight bounds the
// frames not yet returned.
func TestPoolEmptyAndMaxInFlight(t *testing.T) {
	p := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}, PoolSize: 4})
	out := make([]*nbl.NetBufferList, 8)
	n, _ := p.Receive(out)
	if n != 4 || p.Stats().PoolEmpty != 1 {
		t.Errorf("Receive from a pool of 4: %d frames, %+v", n, p.Stats())
	}
	release(p, out[:n])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	q := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}, MaxInFlight: 3})
	n, _ = q.Receive(out)
	if n != 3 {
		t.Fatalf("MaxInFlight 3: %d frames", n)
	}
	if m, _ := q.Receive(out[3:]); m != 0 {
		t.Errorf("%d more frames while 3 are in flight", m)
	}
	release(q, out[:1])
	if m, _ := q.Receive(out[3:]); m != 1 {
		t.Errorf("%d frames after one came back, want 1", m)
	}
	release(q, out[1:4])
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

// Send takes what fits TxSlots, shows each frame to OnSend, captures copies,
// and Reclaim gives the frames back in order.
func TestSendReclaimCapture(t *testing.T) {
	src := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1), frame(100, 2)}})
	var seen atomic.Int64
	sink := newPort(t, memport.Config{TxSlots: 3, Capture: 2, OnSend: func(*nbl.NetBufferList) { seen.Add(1) }})
	in := make([]*nbl.NetBufferList, 5)
	if n, _ := src.Receive(in); n != 5 {
		t.Fatal(n)
	}
	n, err := sink.Send(in)
	if n != 3 || err != nil || seen.Load() != 3 {
		t.Fatalf("Send of 5 into 3 slots: %d %v, OnSend saw %d", n, err, seen.Load())
	}
	if s := sink.Stats(); s.Sent != 3 || s.SentBytes != 64+100+64 {
		t.Errorf("%+v", s)
	}
	capt := sink.Captured()
	data(in[0])[1] = 0x77
	if len(capt) != 2 || capt[0][1] != 1 || len(capt[1]) != 100 {
		t.Error("captures are not copies of the first two frames")
	}
	out := make([]*nbl.NetBufferList, 2)
	if k := sink.Reclaim(out); k != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("Reclaim: %d", k)
	}
	if k := sink.Reclaim(out); k != 1 || out[0] != in[2] {
		t.Fatalf("second Reclaim: %d", k)
	}
	if k := sink.Reclaim(out); k != 0 {
		t.Fatalf("third Reclaim: %d", k)
	}
	release(src, in)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}

// SendError decides how much a Send takes; its error is returned and
// counted; nonsense counts are clamped.
func TestSendError(t *testing.T) {
	src := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}})
	in := make([]*nbl.NetBufferList, 4)
	src.Receive(in)
	boom := errors.New("boom")
	k := 1
	sink := newPort(t, memport.Config{SendError: func(n int) (int, error) { return k, boom }})
	out := make([]*nbl.NetBufferList, 8)
	for _, c := range []struct{ k, want int }{{1, 1}, {-3, 0}, {99, 3}} {
		k = c.k
		n, err := sink.Send(in[:3])
		if n != c.want || !errors.Is(err, boom) {
			t.Errorf("SendError returning %d: Send took %d (%v), want %d", c.k, n, err, c.want)
		}
		sink.Reclaim(out)
	}
	if s := sink.Stats(); s.SendErrors != 3 || s.Sent != 4 {
		t.Errorf("%+v", s)
	}
	release(src, in)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}

// Close refuses to close over frames sent and not reclaimed, or over its own
// pool's frames still out; afterwards the port receives nothing.
func TestClose(t *testing.T) {
	src := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}})
	sink := newPort(t, memport.Config{})
	in := make([]*nbl.NetBufferList, 2)
	src.Receive(in)
	sink.Send(in[:1])
	if err := sink.Close(); !errors.Is(err, memport.ErrNotEmpty) {
		t.Errorf("Close with a frame not reclaimed: %v", err)
	}
	if err := src.Close(); err == nil {
		t.Error("Close with the port's frames still out succeeded")
	}
	if n, _ := src.Receive(in); n != 0 {
		t.Error("a closed port received")
	}
}

// Every StampEvery-th generated frame carries its receive time; a port
// that sends it records the time from the stamp to the send.
func TestLatencyStamps(t *testing.T) {
	var now atomic.Int64
	clock := func() int64 { return now.Add(10) }
	src := newPort(t, memport.Config{Frames: [][]byte{frame(64, 1)}, StampEvery: 2, Clock: clock})
	sink := newPort(t, memport.Config{StampEvery: 1, LatencySamples: 8, Clock: clock})
	in := make([]*nbl.NetBufferList, 4)
	src.Receive(in)
	for i, l := range in {
		if stamped := l.Info.Timestamp != 0; stamped != (i%2 == 1) {
			t.Errorf("frame %d: timestamp %d", i, l.Info.Timestamp)
		}
	}
	sink.Send(in)
	lat := sink.Latencies()
	if len(lat) != 2 || lat[0] <= 0 || lat[1] <= 0 {
		t.Errorf("latencies %v, want two positive", lat)
	}
	out := make([]*nbl.NetBufferList, 4)
	sink.Reclaim(out)
	release(src, in)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}

// With TxQueues the port has a transmit queue per worker: each reclaims
// only what was sent through it, each is bounded by TxSlots, the counters
// add the queues up, and Close refuses frames left in any queue. Without
// it, TxQueues reports false and the port keeps one queue.
func TestTxQueues(t *testing.T) {
	if newPort(t, memport.Config{}).TxQueues(2) {
		t.Fatal("TxQueues(2) true without Config.TxQueues")
	}
	gen := newPort(t, memport.Config{Frames: [][]byte{frame(60, 1)}, Limit: 6})
	p := newPort(t, memport.Config{TxQueues: true, TxSlots: 2})
	if !p.TxQueues(2) {
		t.Fatal("TxQueues(2) false with Config.TxQueues")
	}
	in := make([]*nbl.NetBufferList, 6)
	if n, err := gen.Receive(in); n != 6 || err != nil {
		t.Fatalf("Receive: %d %v", n, err)
	}
	if n, err := p.SendQueue(0, in[:3]); n != 2 || err != nil {
		t.Fatalf("SendQueue(0) of 3 with 2 slots: %d %v", n, err)
	}
	if n, err := p.SendQueue(1, in[2:4]); n != 2 || err != nil {
		t.Fatalf("SendQueue(1): %d %v", n, err)
	}
	if st := p.Stats(); st.Sent != 4 || st.SentBytes != 240 {
		t.Fatalf("after sending 4 frames: %+v", st)
	}
	out := make([]*nbl.NetBufferList, 6)
	if n := p.ReclaimQueue(1, out); n != 2 || out[0] != in[2] || out[1] != in[3] {
		t.Fatalf("ReclaimQueue(1): %d frames", n)
	}
	release(gen, out[:2])
	if err := p.Close(); !errors.Is(err, memport.ErrNotEmpty) {
		t.Fatalf("Close with two frames in queue 0: %v", err)
	}
	if n := p.Reclaim(out); n != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("Reclaim (queue 0): %d frames", n)
	}
	release(gen, out[:2])
	release(gen, in[4:])
	if st := p.Stats(); st.Reclaimed != 4 {
		t.Fatalf("after reclaiming 4 frames: %+v", st)
	}
	if st := gen.Stats(); st.Returned != 6 {
		t.Fatalf("generator: %+v", st)
	}
	if err := gen.Close(); err != nil {
		t.Fatal(err)
	}
}

// While frames flow, a Stats reading never shows more frames returned than
// generated (the soak test checks this of every port it reads).
func TestStatsWhileFlowing(t *testing.T) {
	p := newPort(t, memport.Config{Frames: [][]byte{frame(60, 0xa)}})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		out := make([]*nbl.NetBufferList, 1)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, _ := p.Receive(out); n == 1 {
				release(p, out[:1])
			}
		}
	}()
	bad := 0
	var last memport.Stats
	for i := 0; i < 200000; i++ {
		if s := p.Stats(); s.Returned > s.Generated {
			bad++
			last = s
		}
	}
	close(stop)
	<-done
	if bad > 0 {
		t.Errorf("%d of 200000 readings showed more returned than generated, e.g. %+v", bad, last)
	}
	if s := p.Stats(); s.Generated == 0 || s.Returned != s.Generated {
		t.Errorf("after the flow: %+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
