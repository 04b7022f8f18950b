//go:build linux

package afpacket_test

import (
	"net"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// TestZeroAllocs measures the port's per-packet paths on a veth whose far
// end is in a namespace: Send with Reclaim, Receive, the return of frames
// (release to the port), and Receive while frames are held so that it
// copies blocks out. Each must allocate nothing.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const runs, burst = 100, 32
	// Blocks close when full or after 20 ms, so that frames queued while
	// nobody reads fill blocks rather than time slots.
	a, b, h := pair(t, afpacket.Config{}, afpacket.Config{Blocks: 8, BlockSize: 128 << 10, CopyPages: 256, RetireTimeout: 20 * time.Millisecond})
	dst, _ := net.ParseMAC(h.MAC)
	src, _ := net.ParseMAC(h.PeerMAC)
	s := newSender(t, burst, 64, dst, src)
	out := make([]*nbl.NetBufferList, burst)
	held := make([]*nbl.NetBufferList, 0, 8192)
	rel := make([]*nbl.NetBufferList, 0, burst)
	drainAll := func() {
		for {
			n, _ := b.Receive(out)
			if n == 0 {
				return
			}
			b.Cache().ReleaseBurst(out[:n])
			clear(out)
		}
	}
	// A warm-up through every path.
	r := newReceiver(b, 64, dst, src, func(uint32) bool { return false })
	pump(t, s, a, r, 500, 5*time.Second)

	t.Run("Send+Reclaim", func(t *testing.T) {
		sent := 0
		allocs := testing.AllocsPerRun(runs, func() {
			n, err := s.send(a, burst)
			if err != nil {
				t.Fatal(err)
			}
			sent += n
		})
		if sent == 0 {
			t.Fatal("nothing was sent")
		}
		if allocs != 0 {
			t.Errorf("Send and Reclaim: %v allocations per burst, want 0", allocs)
		}
		time.Sleep(50 * time.Millisecond)
		drainAll()
	})

	t.Run("Receive", func(t *testing.T) {
		// Queue more frames than the measurement takes, then let the
		// kernel close the blocks.
		for range runs + 10 {
			if _, err := s.send(a, burst); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		got := 0
		allocs := testing.AllocsPerRun(runs, func() {
			n, _ := b.Receive(out)
			got += n
			held = append(held, out[:n]...)
			clear(out)
		})
		if got < runs*burst {
			t.Fatalf("received %d frames in %d calls of %d: the measurement did not receive (port %+v)", got, runs+1, burst, b.Stats())
		}
		if allocs != 0 {
			t.Errorf("Receive: %v allocations per burst, want 0", allocs)
		}
	})

	t.Run("Return", func(t *testing.T) {
		if len(held) < (runs+1)*burst {
			t.Skip("Receive failed to hold frames")
		}
		returned := 0
		allocs := testing.AllocsPerRun(runs, func() {
			k := min(burst, len(held))
			rel = append(rel[:0], held[len(held)-k:]...)
			held = held[:len(held)-k]
			b.Cache().ReleaseBurst(rel)
			returned += k
		})
		if returned < runs*burst {
			t.Fatalf("returned %d frames", returned)
		}
		if allocs != 0 {
			t.Errorf("frame return: %v allocations per burst, want 0", allocs)
		}
		b.Cache().ReleaseBurst(held)
		held = held[:0]
		drainAll()
	})

	t.Run("Receive+CopyOut", func(t *testing.T) {
		// One frame in each burst is kept: the ring fills with held frames
		// and Receive copies blocks out.
		big := newSender(t, burst, 1000, dst, src)
		before := b.Stats()
		allocs := testing.AllocsPerRun(runs, func() {
			if _, err := big.send(a, burst); err != nil {
				t.Fatal(err)
			}
			got := 0
			for spin := 0; got < burst && spin < 500; spin++ {
				n, _ := b.Receive(out)
				if n == 0 {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				got += n
				held = append(held, out[0])
				b.Cache().ReleaseBurst(out[1:n])
				clear(out)
			}
		})
		st := b.Stats()
		if st.CopiedOut == before.CopiedOut {
			t.Fatalf("no block was copied out while %d frames were held (stats %+v)", len(held), st)
		}
		if allocs != 0 {
			t.Errorf("Receive with copy-out: %v allocations per burst, want 0", allocs)
		}
		t.Logf("%d blocks copied out, %d frames", st.CopiedOut-before.CopiedOut, st.CopiedFrames-before.CopiedFrames)
		b.Cache().ReleaseBurst(held)
		held = held[:0]
		drainAll()
	})
}
