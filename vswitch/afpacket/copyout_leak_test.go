//go:build linux

package afpacket_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// Copy pages must all come back to the pool once every copied frame is
// returned, whoever returns it and whenever: these tests check the count
// (Stats.CopyPagesInUse) and the pool itself (CopyPool) after Close.

// eagerCopy is a receiving port that copies a held block out at once: with
// LowWater at Blocks-1 one walked block still held makes the ring short.
func eagerCopy(blocks, copyPages int) afpacket.Config {
	return afpacket.Config{Blocks: blocks, BlockSize: 128 << 10, LowWater: blocks - 1, CopyPages: copyPages}
}

// checkPoolBack checks that no copy page is counted in use and that every
// page of the pool is free.
func checkPoolBack(t *testing.T, p *afpacket.Port) {
	t.Helper()
	if st := p.Stats(); st.CopyPagesInUse != 0 {
		t.Errorf("%d copy pages in use after every frame came back and the port closed", st.CopyPagesInUse)
	}
	if free, size := afpacket.CopyPool(p); free != size {
		t.Errorf("%d of the copy pool's %d pages free after close", free, size)
	}
}

// TestCopyPagesBackWhenReceivingStops is what a switch does at shutdown:
// it stops receiving, completes the frames it still holds, and closes the
// port. The copied frames come back with no Receive after them; their
// pages must still go back to the pool, by Close at the latest.
func TestCopyPagesBackWhenReceivingStops(t *testing.T) {
	const size = 1000
	a, b, h := pair(t, afpacket.Config{}, eagerCopy(4, 256))
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, 32, size, dst, src)
	r := newReceiver(b, size, dst, src, func(uint32) bool { return true })
	pump(t, s, a, r, 300, 10*time.Second)
	st := b.Stats()
	t.Logf("received %d, held %d; port stats %+v", r.got, len(r.held), st)
	if st.CopiedOut == 0 || st.CopyPagesInUse == 0 {
		t.Fatalf("no copy-out with every frame held: CopiedOut %d, CopyPagesInUse %d", st.CopiedOut, st.CopyPagesInUse)
	}
	r.checkHeld(t)
	r.releaseHeld() // and no Receive from here on
	if err := b.Close(); err != nil {
		t.Errorf("close after every frame came back: %v", err)
	}
	checkPoolBack(t, b)
}

// TestCloseReportsHeldCopies closes a port while copied frames are still
// held: Close must say so (an error naming the copy pages), not leave it
// to a counter nobody reads. The frames come back after Close, which must
// not crash.
func TestCloseReportsHeldCopies(t *testing.T) {
	const size = 1000
	a, b, h := pair(t, afpacket.Config{}, eagerCopy(4, 256))
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, 32, size, dst, src)
	r := newReceiver(b, size, dst, src, func(uint32) bool { return true })
	pump(t, s, a, r, 200, 10*time.Second)
	if st := b.Stats(); st.CopyPagesInUse == 0 {
		t.Fatalf("no copy page in use with every frame held: %+v", st)
	}
	err := b.Close()
	if err == nil || !strings.Contains(err.Error(), "copy pages") {
		t.Errorf("close with copied frames held: error %v, want one about copy pages", err)
	}
	t.Logf("close: %v", err)
	r.releaseHeld()
	if st := b.Stats(); st.CopyPagesInUse == 0 {
		t.Errorf("the pages of frames held at close count as back in the pool")
	}
}

// TestCopyOutFailedMove makes the first copy-out fail after it moved some
// pages (its first run of pages moves, the second fails) and the later ones
// fail at once, then lets moves succeed: the frames must read the same
// throughout, also once their block was copied out after all and the
// kernel refilled it; copy-out must resume; and every page must come back.
func TestCopyOutFailedMove(t *testing.T) {
	const size = 1000
	cfg := eagerCopy(4, 1024)
	cfg.RetireTimeout = 20 * time.Millisecond // full blocks: the first holds many frames
	a, b, h := pair(t, afpacket.Config{}, cfg)
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, 32, size, dst, src)
	// One frame in 8 is held: frames 8.8 KB apart, so a block's held
	// frames lie in pages apart, moved in several runs.
	r := newReceiver(b, size, dst, src, func(seq uint32) bool { return seq%8 == 0 })
	restore := afpacket.FailMovesAfter(1)
	pump(t, s, a, r, 400, 10*time.Second)
	restore()
	st := b.Stats()
	t.Logf("with failing moves: received %d, held %d; %+v", r.got, len(r.held), st)
	if st.CopyOutFailed == 0 || st.CopiedOut != 0 || st.CopyPagesInUse == 0 {
		t.Fatalf("want copy-outs failed, the first part-way (a page moved, none copied out): %+v", st)
	}
	r.checkHeld(t)
	before := r.got
	pump(t, s, a, r, 2000, 20*time.Second)
	st = b.Stats()
	t.Logf("after: received %d more, held %d; %+v", r.got-before, len(r.held), st)
	if st.CopiedOut == 0 {
		t.Errorf("no copy-out after moves work again: %+v", st)
	}
	if r.got-before < 2000*95/100 {
		t.Errorf("receiving stalled after a failed copy-out: %d of 2000 frames came", r.got-before)
	}
	r.checkHeld(t)
	r.releaseHeld()
	r.drain(t)
	if err := b.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	checkPoolBack(t, b)
}

// TestCopyOutConcurrentReturns returns held frames from other goroutines
// while the port copies blocks out: the frames themselves, clones of them
// (the frame comes back when the clone is freed) and references to them
// (when the reference is dropped), in random order and at random moments.
// The receiver then stops, the other goroutines return what they still
// hold, and either the port closes at once (what a switch does at
// shutdown) or one more Receive comes first: every page must be back.
func TestCopyOutConcurrentReturns(t *testing.T) {
	for round := range 4 {
		receiveAfter := round%2 == 1
		t.Run(fmt.Sprintf("%d-receive-after-returns-%v", round, receiveAfter), func(t *testing.T) {
			concurrentReturns(t, int64(round), receiveAfter)
		})
	}
}

const (
	kindHeld = iota
	kindClone
	kindRef
)

type heldItem struct {
	l    *nbl.NetBufferList
	kind int
	seq  uint32
}

func concurrentReturns(t *testing.T, seed int64, receiveAfter bool) {
	const total, size, returners, window = 6000, 600, 2, 150
	a, b, h := pair(t, afpacket.Config{}, eagerCopy(8, 1024))
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, 32, size, dst, src)
	clones, err := nbl.NewPool(nbl.Config{NBLs: 2048, NoFrames: true})
	if err != nil {
		t.Fatal(err)
	}
	cloneCache, err := clones.NewCache(64)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan heldItem, 512)
	var corrupt, returned, failures atomic.Int64
	var wg sync.WaitGroup
	for g := range returners {
		own, err1 := b.Pool().NewCache(64)
		cc, err2 := clones.NewCache(64)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		wg.Add(1)
		go func(rng *rand.Rand) {
			defer wg.Done()
			want := make([]byte, size)
			give := func(it heldItem) {
				d, ok := it.l.FirstNetBuffer().Data()
				testFrame(want, dst, src, it.seq)
				if !ok || !bytes.Equal(d, want) {
					corrupt.Add(1)
				}
				switch it.kind {
				case kindHeld:
					own.Release(it.l)
				case kindClone:
					if err := cc.FreeClone(it.l); err != nil {
						failures.Add(1)
					}
				case kindRef:
					own.Dereference(it.l)
				}
				returned.Add(1)
			}
			var held []heldItem
			for it := range ch {
				held = append(held, it)
				for len(held) > window || len(held) > 0 && rng.Intn(3) == 0 {
					i := rng.Intn(len(held))
					give(held[i])
					held[i] = held[len(held)-1]
					held = held[:len(held)-1]
				}
				if rng.Intn(8) == 0 {
					runtime.Gosched()
				}
			}
			// The receiver has stopped: what is left comes back with no
			// Receive after it.
			for _, it := range held {
				give(it)
			}
			own.Flush()
			cc.Flush()
		}(rand.New(rand.NewSource(seed*returners + int64(g) + 1)))
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(ch)
			wg.Wait()
		}
	}
	t.Cleanup(stop) // on a failure too, before the port closes

	out := make([]*nbl.NetBufferList, 64)
	rel := make([]*nbl.NetBufferList, 0, 64)
	got, handed := 0, 0
	receive := func() int {
		n, err := b.Receive(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range out[:n] {
			d, ok := l.FirstNetBuffer().Data()
			seq, test := frameSeq(d)
			rel = append(rel, l) // the receiver's own hold goes in all cases
			if !ok || !test {
				continue
			}
			got++
			switch seq % 4 {
			case 1:
				rel = rel[:len(rel)-1] // handed over whole
				ch <- heldItem{l, kindHeld, seq}
			case 2:
				if c, err := cloneCache.Clone(l); err == nil {
					ch <- heldItem{c, kindClone, seq}
				} else {
					continue
				}
			case 3:
				l.Reference()
				ch <- heldItem{l, kindRef, seq}
			default:
				continue
			}
			handed++
		}
		clear(out[:n])
		b.Cache().ReleaseBurst(rel)
		clear(rel)
		rel = rel[:0]
		return n
	}
	sent := 0
	deadline := time.Now().Add(20 * time.Second)
	for sent < total && time.Now().Before(deadline) {
		n, err := s.send(a, min(32, total-sent))
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		if n == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		for receive() > 0 {
		}
	}
	for quiet := time.Now(); time.Since(quiet) < 100*time.Millisecond; {
		if receive() > 0 {
			quiet = time.Now()
		}
		time.Sleep(200 * time.Microsecond)
	}
	st := b.Stats()
	stop()
	cloneCache.Flush()
	t.Logf("sent %d, received %d, handed to other goroutines %d (returned %d); port stats while held %+v", sent, got, handed, returned.Load(), st)
	if st.CopiedOut == 0 {
		t.Errorf("no block was copied out: the test did not exercise copy-out")
	}
	if got < total/2 {
		t.Errorf("received %d of %d frames", got, total)
	}
	if c := corrupt.Load(); c != 0 {
		t.Errorf("%d frames read wrong when their holder returned them", c)
	}
	if f := failures.Load(); f != 0 {
		t.Errorf("%d clones could not be freed", f)
	}
	if int(returned.Load()) != handed {
		t.Errorf("%d frames handed over, %d returned", handed, returned.Load())
	}
	if receiveAfter {
		// The port takes the pages back on its own, without Close.
		if n := receive(); n != 0 {
			t.Logf("%d more frames", n)
		}
		if free, size := afpacket.CopyPool(b); free != size || b.Stats().CopyPagesInUse != 0 {
			t.Errorf("after a Receive that followed the last return: %d of %d copy pages free, %d counted in use",
				free, size, b.Stats().CopyPagesInUse)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("close after every frame came back: %v", err)
	}
	checkPoolBack(t, b)
	if !clones.Full() {
		t.Errorf("%d clone descriptors still in use", clones.InUse())
	}
	if err := clones.Close(); err != nil {
		t.Error(err)
	}
}
