package vswitch_test

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/internal/goid"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// Ports with per-worker transmit queues (vswitch.QueuedSender) beside ports
// without, on two workers: four ports in a ring, each sending to the next,
// so that every frame is for a port of the other worker. Every frame
// reaches its destination exactly once (and, before the addresses are
// learnt, flooded copies the others), nothing is dropped, every generated
// frame goes back to its port, and the counters balance. A port with
// queues is sent to by the worker that switched the frame (its OnSend runs
// on the other worker's goroutine too); a port without queues only by its
// own worker, the frames crossing through its ring.
func TestTxQueues(t *testing.T) {
	n := uint64(20000)
	if raceEnabled {
		n = 4000
	}
	r := newRig(t, vswitch.Config{Workers: 2})
	const ports = 4
	type sinkSeen struct {
		mu      sync.Mutex
		gs      map[uintptr]bool // goroutines that ran OnSend
		fromPrv atomic.Uint64    // frames of the previous port (addressed here)
		others  atomic.Uint64    // flooded copies of other ports' frames
	}
	seen := make([]*sinkSeen, ports)
	gens := make([]*memport.Port, ports)
	for i := range ports {
		s := &sinkSeen{gs: map[uintptr]bool{}}
		seen[i] = s
		prev := (i + ports - 1) % ports
		gens[i] = r.port(memport.Config{
			Frames:   [][]byte{idFrame(t, macN(i+1), macN((i+1)%ports+1), 64, uint32(i))},
			Limit:    n,
			TxQueues: i%2 == 0, // ports 1 and 3 (the first worker's)
			// Room for every frame that can be in flight to a port: its
			// previous port's window and the flooded copies before the
			// addresses are learnt (a full queue drops, as a NIC does).
			MaxInFlight: 1024,
			TxSlots:     16384,
			OnSend: func(l *nbl.NetBufferList) {
				d, _ := l.FirstNetBuffer().Data()
				if id := binary.BigEndian.Uint32(d[payloadOffset:]); id == uint32(prev) {
					s.fromPrv.Add(1)
				} else {
					s.others.Add(1)
				}
				g := goid.G()
				s.mu.Lock()
				s.gs[g] = true
				s.mu.Unlock()
			},
		}, vswitch.PortConfig{ID: uint32(i + 1), Name: "p" + string(rune('1'+i))})
	}
	r.start()
	r.waitUntil("every frame back", func() bool {
		for _, g := range gens {
			if g.Stats().Returned != n {
				return false
			}
		}
		return true
	})
	st := r.close()
	var copies uint64
	for i, s := range seen {
		if got := s.fromPrv.Load(); got != n {
			t.Errorf("port %d: %d frames of the previous port, want %d", i+1, got, n)
		}
		copies += s.others.Load()
		if sent := gens[i].Stats().Sent; sent != s.fromPrv.Load()+s.others.Load() {
			t.Errorf("port %d: Sent %d, OnSend saw %d", i+1, sent, s.fromPrv.Load()+s.others.Load())
		}
	}
	tt := checkConservation(t, st, copies)
	if tt.dropped != 0 || tt.tx != ports*n+copies {
		t.Errorf("%v; want no drops and %d sent", tt, ports*n+copies)
	}
	// The second worker's goroutine sends to ports 2 and 4 (its own, no
	// queues); it also sends the frames of port 4 to port 1 through its
	// queue there. Without queues they would cross to the first worker.
	if len(seen[1].gs) != 1 || len(seen[3].gs) != 1 {
		t.Fatalf("ports without queues were sent to from %d and %d goroutines, want 1 each", len(seen[1].gs), len(seen[3].gs))
	}
	var second uintptr
	for g := range seen[1].gs {
		second = g
	}
	if !seen[3].gs[second] {
		t.Fatal("ports 2 and 4 were sent to from different goroutines")
	}
	for _, i := range []int{0, 2} {
		if !seen[i].gs[second] {
			t.Errorf("port %d (queues, the first worker's) was never sent to from the second worker's goroutine", i+1)
		}
	}
}
