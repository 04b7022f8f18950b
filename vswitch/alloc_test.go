package vswitch_test

import (
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// reinjector absorbs every frame from its source address it did not inject
// and injects the original itself, referenced, with no completion function
// (the switch drops the reference when the injection completes). Its state
// is made once: classify allocates nothing.
type reinjector struct {
	h        *inject.Handle
	swID     []byte
	absorbed uint64
	failed   uint64
}

func (x *reinjector) classify(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	if inject.FwpsQueryPacketInjectionState0(x.h, l, nil) == inject.FWPS_PACKET_INJECTED_BY_SELF {
		permit(out)
		return
	}
	inject.FwpsReferenceNetBufferList0(l, false)
	if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(x.h, nil, 0, 0, x.swID, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, l, nil, nil); st != inject.STATUS_SUCCESS {
		x.failed++
		inject.FwpsDereferenceNetBufferList0(l, false)
		out.ActionType = vswitch.FWP_ACTION_BLOCK
		return
	}
	x.absorbed++
	absorb(out)
}

// fromGen is a filter condition for frames sent by macN(1), the
// generator's address in the allocation tests and benchmarks.
func fromGen() []vswitch.Condition {
	return []vswitch.Condition{{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAC_SOURCE_ADDRESS, Match: vswitch.FWP_MATCH_EQUAL, Bytes: macN(1)}}
}

// TestStepAllocs: one Step of a manual switch that moves a burst of 32
// frames from a generator to a sink (receive, ingress, learning, lookup,
// egress, transmit, reclaim, completion, return to the port) allocates
// nothing: with no filters (and a sink with transmit queues), with a PERMIT filter at both layers, with a
// BLOCK filter (the drop path, which releases a burst's frames together),
// with a callout that absorbs and reinjects each original, and with the
// inspect sample's clone-and-inject callout.
func TestStepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const burst, warm, runs = 32, 200, 100
	for _, name := range []string{"no-filters", "tx-queues", "permit-filter", "block-filter", "absorb-reinject", "clone-reinject"} {
		t.Run(name, func(t *testing.T) {
			r := manualRig(t, vswitch.Config{Burst: burst})
			gen := r.gen(20000, vswitch.PortConfig{ID: 1, Name: "gen"}, udpFrame(t, macN(1), macN(2), 64))
			// The sink announces its address once, so the generator's
			// frames are unicast to a learnt station.
			// With tx-queues, it is a vswitch.QueuedSender.
			sink := r.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(2), broadcast, 64)}, Limit: 1, TxQueues: name == "tx-queues"}, vswitch.PortConfig{ID: 2, Name: "sink"})
			var x *inspector
			var clonePool *nbl.Pool
			var reinj *reinjector
			switch name {
			case "permit-filter":
				r.filter(&vswitch.Filter{Key: "in", LayerID: ingress, Action: vswitch.FWP_ACTION_PERMIT, Conditions: fromGen()})
				r.filter(&vswitch.Filter{Key: "out", LayerID: egress, Action: vswitch.FWP_ACTION_PERMIT})
			case "block-filter":
				r.filter(&vswitch.Filter{Key: "block", LayerID: ingress, Action: vswitch.FWP_ACTION_BLOCK, Conditions: fromGen()})
			case "absorb-reinject":
				h := r.handle()
				reinj = &reinjector{h: h, swID: r.id.Bytes()}
				r.callout("reinject", ingress, 1, h, reinj.classify, fromGen()...)
			case "clone-reinject":
				h := r.handle()
				x = newInspector(h, r.id)
				var err error
				if clonePool, err = nbl.NewPool(nbl.Config{NBLs: 4096, NoFrames: true}); err != nil {
					t.Fatal(err)
				}
				x.clonePool = clonePool
				if x.cloneCache, err = clonePool.NewCache(128); err != nil {
					t.Fatal(err)
				}
				if x.freeCache, err = clonePool.NewCache(128); err != nil {
					t.Fatal(err)
				}
				r.callout("inspect", ingress, 1, h, x.classify, fromGen()...)
			}
			r.start()
			for i := 0; i < warm; i++ {
				r.sw.Step()
			}
			// A frame is done when it reaches the sink, or, blocked, when
			// it is back at the generator.
			done := func() uint64 { return sink.Stats().Sent }
			if name == "block-filter" {
				done = func() uint64 { return gen.Stats().Returned }
			}
			before := done()
			allocs := testing.AllocsPerRun(runs, func() { r.sw.Step() })
			moved := done() - before
			if allocs != 0 {
				t.Errorf("%v allocations per Step", allocs)
			}
			// AllocsPerRun runs the function once more to warm up.
			if moved != (runs+1)*burst {
				t.Errorf("%d frames reached the sink in %d steps, want a burst of %d per step", moved, runs+1, burst)
			}
			r.stepUntil("the generator to finish", func() bool { return gen.Stats().Returned == 20000 })
			r.settle()
			if x != nil {
				x.cloneCache.Flush()
				x.freeCache.Flush()
			}
			r.close()
			switch {
			case x != nil:
				x.verify(t, 20000)
				if !clonePool.Full() {
					t.Errorf("%d clones not freed", clonePool.InUse())
				}
			case reinj != nil:
				if reinj.absorbed != 20000 || reinj.failed != 0 {
					t.Errorf("%d absorbed and reinjected, %d failed", reinj.absorbed, reinj.failed)
				}
			}
			want := uint64(20000)
			if name == "block-filter" {
				want = 0
				if d := r.sw.Stats().Ports[0].Drops[vswitch.DropFilterBlock]; d != 20000 {
					t.Errorf("%d frames blocked, want 20000", d)
				}
			}
			if got := sink.Stats().Sent; got != want {
				t.Errorf("sink got %d frames, want %d", got, want)
			}
		})
	}
}
