//go:build linux

package afpacket_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// heldFrame is a frame a test keeps: its NBL, the slice of its data taken
// when it arrived (which must stay valid: copy-out keeps addresses), and
// the bytes it must hold.
type heldFrame struct {
	l     *nbl.NetBufferList
	early []byte
	want  []byte
}

// receiver drains a port, checks every test frame's bytes, keeps the
// frames keep says to, and releases the rest.
type receiver struct {
	p        *afpacket.Port
	out, rel []*nbl.NetBufferList
	size     int
	dst, src net.HardwareAddr
	keep     func(seq uint32) bool
	seen     map[uint32]bool
	held     []heldFrame
	got      int
	dups     int
	corrupt  int
	scratch  []byte
}

func newReceiver(p *afpacket.Port, size int, dst, src net.HardwareAddr, keep func(uint32) bool) *receiver {
	return &receiver{p: p, out: make([]*nbl.NetBufferList, 64), rel: make([]*nbl.NetBufferList, 0, 64), size: size,
		dst: dst, src: src, keep: keep, seen: map[uint32]bool{}, scratch: make([]byte, size)}
}

// drain receives until the port has nothing more and returns how many
// test frames came.
func (r *receiver) drain(t *testing.T) int {
	total := 0
	for {
		n, err := r.p.Receive(r.out)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		for _, l := range r.out[:n] {
			d, ok := l.FirstNetBuffer().Data()
			seq, isTest := frameSeq(d)
			if !ok || !isTest {
				r.rel = append(r.rel, l)
				continue
			}
			total++
			r.got++
			if r.seen[seq] {
				r.dups++
			}
			r.seen[seq] = true
			testFrame(r.scratch, r.dst, r.src, seq)
			if !bytes.Equal(d, r.scratch) {
				r.corrupt++
			}
			if r.keep(seq) {
				r.held = append(r.held, heldFrame{l: l, early: d, want: append([]byte(nil), r.scratch...)})
				continue
			}
			r.rel = append(r.rel, l)
		}
		clear(r.out[:n])
		r.p.Cache().ReleaseBurst(r.rel)
		clear(r.rel)
		r.rel = r.rel[:0]
	}
}

// checkHeld reports held frames whose bytes changed, seen either through
// the NBL now or through the slice taken when they arrived.
func (r *receiver) checkHeld(t *testing.T) {
	t.Helper()
	bad := 0
	for _, h := range r.held {
		d, ok := h.l.FirstNetBuffer().Data()
		if !ok || !bytes.Equal(d, h.want) || !bytes.Equal(h.early, h.want) {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d held frames changed while held", bad, len(r.held))
	}
}

func (r *receiver) releaseHeld() {
	for _, h := range r.held {
		r.p.Cache().Release(h.l)
	}
	r.held = nil
}

// pump sends total frames from s on a and drains b after each burst, for
// at most limit, then drains b until it is quiet.
func pump(t *testing.T, s *sender, a *afpacket.Port, r *receiver, total int, limit time.Duration) (sent int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for sent < total && time.Now().Before(deadline) {
		n, err := s.send(a, min(32, total-sent))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		if n == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		r.drain(t)
	}
	quiet := time.Now()
	for time.Since(quiet) < 100*time.Millisecond && time.Now().Before(deadline.Add(time.Second)) {
		if r.drain(t) > 0 {
			quiet = time.Now()
		}
		time.Sleep(200 * time.Microsecond)
	}
	return sent
}

// TestCopyOutKeepsTheRingMoving holds one frame in 128 for the whole run,
// so that every ring block keeps a frame or two, while 12000 frames go
// through a ring of 8 blocks of about 120 frames each. With copy-out the
// port goes on receiving (the held frames are copied out and their blocks
// go back to the kernel) and the held frames read the same throughout; with
// copy-out off the ring stops after its 8 blocks, which shows what the
// feature is for.
func TestCopyOutKeepsTheRingMoving(t *testing.T) {
	const total, size = 12000, 1000
	ring := afpacket.Config{Blocks: 8, BlockSize: 128 << 10}
	for _, tc := range []struct {
		name      string
		copyPages int
	}{{"copy-out", 256}, {"copy-out-off", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			bcfg := ring
			bcfg.CopyPages = tc.copyPages
			a, b, h := pair(t, afpacket.Config{}, bcfg)
			dst, _ := net.ParseMAC(h.MAC)
			src, _ := net.ParseMAC(h.PeerMAC)
			s := newSender(t, 32, size, dst, src)
			r := newReceiver(b, size, dst, src, func(seq uint32) bool { return seq%128 == 0 })
			sent := pump(t, s, a, r, total, 20*time.Second)
			st := b.Stats()
			t.Logf("sent %d, received %d, held %d; port stats %+v", sent, r.got, len(r.held), st)
			if r.dups != 0 || r.corrupt != 0 {
				t.Errorf("%d duplicate and %d corrupt frames received", r.dups, r.corrupt)
			}
			r.checkHeld(t)
			perRing := ring.Blocks * ring.BlockSize / size
			if tc.copyPages < 0 {
				if r.got > 2*perRing {
					t.Errorf("without copy-out %d frames came through a ring of about %d with every block held", r.got, perRing)
				}
				if st.CopiedOut != 0 {
					t.Errorf("copy-out off, yet CopiedOut = %d", st.CopiedOut)
				}
			} else {
				if sent < total || r.got < total*95/100 {
					t.Errorf("receiving stalled: sent %d of %d, received %d", sent, total, r.got)
				}
				if st.CopiedOut == 0 || st.CopiedFrames == 0 || st.CopiedFrames > uint64(len(r.held)) {
					t.Errorf("copy-out counters: CopiedOut %d, CopiedFrames %d for %d held frames", st.CopiedOut, st.CopiedFrames, len(r.held))
				}
				if st.CopyPagesInUse == 0 {
					t.Errorf("held frames were copied out but no copy page is in use")
				}
			}
			r.releaseHeld()
			r.drain(t) // the port takes the copies' pages back on its next Receive
			if st := b.Stats(); st.CopyPagesInUse != 0 {
				t.Errorf("%d copy pages still in use after every held frame was released", st.CopyPagesInUse)
			}
			// The ring works normally afterwards.
			r.keep = func(uint32) bool { return false }
			before := r.got
			pump(t, s, a, r, 500, 5*time.Second)
			if r.got-before < 450 {
				t.Errorf("after the held frames were released only %d of 500 frames came", r.got-before)
			}
		})
	}
}

// TestCopyOutMaxHold holds a few frames at a low rate: the ring is never
// short, but after MaxHold the port copies their block out anyway.
func TestCopyOutMaxHold(t *testing.T) {
	const size = 200
	a, b, h := pair(t, afpacket.Config{}, afpacket.Config{Blocks: 8, BlockSize: 128 << 10, MaxHold: 20 * time.Millisecond})
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, 32, size, dst, src)
	r := newReceiver(b, size, dst, src, func(uint32) bool { return true })
	pump(t, s, a, r, 10, 5*time.Second)
	if len(r.held) != 10 {
		t.Fatalf("received %d of 10 frames", len(r.held))
	}
	deadline := time.Now().Add(3 * time.Second)
	for b.Stats().CopiedOut == 0 && time.Now().Before(deadline) {
		r.drain(t)
		time.Sleep(time.Millisecond)
	}
	st := b.Stats()
	if st.CopiedOut == 0 || st.CopiedFrames != 10 {
		t.Fatalf("after MaxHold: CopiedOut %d, CopiedFrames %d (want the 10 held frames)", st.CopiedOut, st.CopiedFrames)
	}
	r.checkHeld(t)
	r.keep = func(uint32) bool { return false }
	pump(t, s, a, r, 100, 5*time.Second)
	if r.got != 110 {
		t.Errorf("received %d frames after the copy-out, want 100 more than 10", r.got)
	}
	r.checkHeld(t)
	r.releaseHeld()
	r.drain(t)
	if st := b.Stats(); st.CopyPagesInUse != 0 {
		t.Errorf("%d copy pages in use after release", st.CopyPagesInUse)
	}
}
