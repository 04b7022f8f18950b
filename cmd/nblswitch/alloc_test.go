//go:build linux

package main

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// memRig is the daemon's switch set-up (gated ports, a callout from
// setupCallout) over in-memory ports, stepped by hand: a generator sending
// unicast frames to a sink that announced its address once.
type memRig struct {
	sw        *vswitch.Switch
	cs        *calloutSet
	gen, sink *memport.Port
	stop      atomic.Bool
}

var (
	macGen  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macSink = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

func newMemRig(t *testing.T, callout string, frames uint64) *memRig {
	t.Helper()
	st := inject.NewStack()
	st.Start()
	sw, err := vswitch.New(vswitch.Config{ID: switchID, Stack: st, Manual: true, Burst: 32})
	if err != nil {
		t.Fatal(err)
	}
	r := &memRig{sw: sw}
	fg, err := scenario.Frame(macGen, macSink, 64)
	if err != nil {
		t.Fatal(err)
	}
	announce, err := scenario.Frame(macSink, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 64)
	if err != nil {
		t.Fatal(err)
	}
	if r.gen, err = memport.New(memport.Config{Frames: [][]byte{fg}, Limit: frames, PoolSize: 4096, MaxInFlight: 1024}); err != nil {
		t.Fatal(err)
	}
	if r.sink, err = memport.New(memport.Config{Frames: [][]byte{announce}, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*memport.Port{r.gen, r.sink} {
		if err := sw.AddPort(&gatedPort{Port: p, stop: &r.stop}, vswitch.PortConfig{ID: uint32(i + 1), NicIndex: uint16(i), Name: []string{"gen", "sink"}[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if r.cs, err = setupCallout(sw, st, callout); err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// finish steps until the generator got every frame back, closes, and checks
// the accounting.
func (r *memRig) finish(t *testing.T, frames uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); r.gen.Stats().Returned < frames || r.cs.inFlight() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("generator got %d of %d frames back, %d injections pending", r.gen.Stats().Returned, frames, r.cs.inFlight())
		}
		r.sw.Step()
	}
	for range 128 { // let the counters settle and publish
		r.sw.Step()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.sw.CloseContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.cs.close(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.sw.Stats()
	if b := balanceOf(st); !b.Balanced {
		t.Errorf("counters do not balance: %+v", b)
	}
	if got := r.sink.Stats().Sent; got != frames {
		t.Errorf("sink got %d of %d frames", got, frames)
	}
}

// TestCalloutStepAllocs: one Step of the daemon's switch moving a burst of
// 32 frames through the gated ports allocates nothing, with each callout.
func TestCalloutStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const frames, runs = 20000, 100
	for _, name := range callouts {
		t.Run(name, func(t *testing.T) {
			r := newMemRig(t, name, frames)
			for range 200 {
				r.sw.Step()
			}
			before := r.sink.Stats().Sent
			allocs := testing.AllocsPerRun(runs, func() { r.sw.Step() })
			if allocs != 0 {
				t.Errorf("%v allocations per Step", allocs)
			}
			// AllocsPerRun runs once more to warm up: a burst per step.
			if moved := r.sink.Stats().Sent - before; moved != (runs+1)*32 {
				t.Errorf("%d frames reached the sink in %d steps, want 32 per step", moved, runs+1)
			}
			r.finish(t, frames)
			cst := r.cs.stats()
			switch name {
			case calloutCount:
				// Every generated frame passes both layers; the sink's
				// announcement passes ingress and egress towards the
				// generator.
				if cst.IngressFrames != frames+1 || cst.EgressFrames != frames+1 || cst.IngressBytes < frames*60 {
					t.Errorf("count callout: %+v", cst)
				}
			case calloutReinject, calloutInspect:
				// The announcement from the sink is inspected too.
				if cst.Injected != frames+1 || cst.Completed != frames+1 || cst.Failed+cst.CloneFailed != 0 || cst.HandlePend != 0 {
					t.Errorf("%s callout: %+v", name, cst)
				}
			}
		})
	}
}

// TestGatedPortStopsReceiving: once stopped, the switch takes no frame
// from a gated port; frames already in flight still finish.
func TestGatedPortStopsReceiving(t *testing.T) {
	r := newMemRig(t, calloutInspect, 0)
	for range 50 {
		r.sw.Step()
	}
	r.stop.Store(true)
	for range 50 { // finish what is in flight
		r.sw.Step()
	}
	gen := r.gen.Stats().Generated
	sent := r.sink.Stats().Sent
	for range 100 {
		r.sw.Step()
	}
	if g := r.gen.Stats().Generated; g != gen || gen == 0 {
		t.Errorf("the generator produced %d frames, then %d more after the gate closed", gen, g-gen)
	}
	if s := r.sink.Stats().Sent; s != sent || sent == 0 {
		t.Errorf("the sink got %d frames, then %d more after the gate closed and the switch went quiet", sent, s-sent)
	}
	var g gatedPort
	g.Port = r.gen
	if g.Pool() != r.gen.Pool() || g.Cache() != r.gen.Cache() {
		t.Error("gatedPort hides the port's pool or cache")
	}
	r.finish(t, gen)
}

// TestCloneCalloutFailures: when clones run out, the clone callout blocks
// the frames (the switch counts them as callout-block) rather than losing
// them, and the counters still balance.
func TestCloneCalloutFailures(t *testing.T) {
	r := newMemRig(t, calloutInspect, 0)
	// Hold every clone of the callout's pool, so that cloning fails.
	var held []*nbl.NetBufferList
	p := r.cs.clone.pool
	buf := make([]byte, 64)
	for {
		l, err := p.AllocateAround(buf, 0, len(buf))
		if err != nil {
			break
		}
		held = append(held, l)
	}
	for range 20 {
		r.sw.Step()
	}
	r.stop.Store(true)
	for range 100 {
		r.sw.Step()
	}
	if len(held) != p.Cap() {
		t.Fatalf("held %d of the %d clone descriptors", len(held), p.Cap())
	}
	for _, l := range held {
		if err := p.Free(l); err != nil {
			t.Fatal(err)
		}
	}
	gen := r.gen.Stats().Generated
	for deadline := time.Now().Add(10 * time.Second); r.gen.Stats().Returned < gen; {
		if time.Now().After(deadline) {
			t.Fatal("frames not returned")
		}
		r.sw.Step()
	}
	for range 128 {
		r.sw.Step()
	}
	st := r.sw.Stats()
	cst := r.cs.stats()
	blocked := st.Ports[0].Drops[vswitch.DropCalloutBlock] + st.Ports[1].Drops[vswitch.DropCalloutBlock]
	if cst.CloneFailed == 0 || blocked != cst.CloneFailed || cst.Injected != 0 {
		t.Errorf("clone failures %d, callout-block drops %d, injected %d", cst.CloneFailed, blocked, cst.Injected)
	}
	if b := balanceOf(st); !b.Balanced {
		t.Errorf("counters do not balance: %+v", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.sw.CloseContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.cs.close(ctx); err != nil {
		t.Fatal(err)
	}
}
