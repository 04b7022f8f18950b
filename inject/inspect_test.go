package inject

// Conformance cases 40 and 41: the inspect sample's pend/clone/reinject
// sequence, written with the WFP-named functions on the Default stack.

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// pendedPacket is the inspect sample's record of an absorbed packet: the
// completion context of the injection of its clone.
type pendedPacket struct {
	orig *nbl.NetBufferList
}

// inspectClassify runs the classify half of the sequence on orig: query
// (not injected), reference it, let the switch release it (BLOCK|ABSORB with
// the WRITE right cleared), clone it.
func inspectClassify(t *testing.T, h *Handle, p *nbl.Pool, o *countingOriginator, orig *nbl.NetBufferList) *nbl.NetBufferList {
	t.Helper()
	if st := FwpsQueryPacketInjectionState0(h, orig, nil); st != FWPS_PACKET_NOT_INJECTED {
		t.Fatalf("classify of a packet from the wire: %v", st)
	}
	wantStatus(t, "FwpsReferenceNetBufferList0(intendToModify TRUE)", FwpsReferenceNetBufferList0(orig, true), STATUS_SUCCESS)
	returnedBefore := o.total.Load()
	p.Release(orig) // the switch drops the absorbed packet; the reference keeps it
	if o.total.Load() != returnedBefore || orig.RefCount() != 1 {
		t.Fatalf("the referenced original left when its owner released it (RefCount %d)", orig.RefCount())
	}
	var clone *nbl.NetBufferList
	wantStatus(t, "FwpsAllocateCloneNetBufferList0", FwpsAllocateCloneNetBufferList0(orig, nil, nil, 0, &clone), STATUS_SUCCESS)
	if clone == nil || clone.Parent() != orig || !clone.IsClone() || orig.ChildRefCount() != 1 {
		t.Fatalf("clone %v parent ok %v, ChildRefCount %d", clone, clone != nil && clone.Parent() == orig, orig.ChildRefCount())
	}
	return clone
}

func TestCase40_InspectSequence(t *testing.T) {
	const packets = 8
	h := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4*packets)
	o := newOriginator(p.Cap())
	w := startWorker(t, Default, workerConfig{dispatch: true, pool: p})
	// The switch reclassifies the injected clone: the callout queries it
	// and must see its own packet, which it lets pass.
	var mu sync.Mutex
	var reclassified []FWPS_PACKET_INJECTION_STATE
	var reclassifiedCtx []any
	sw := newVSwitch(t, Default, func(head *nbl.NetBufferList, n int) {
		for l := head; l != nil; l = l.Next {
			var ctx any
			st := FwpsQueryPacketInjectionState0(h, l, &ctx)
			mu.Lock()
			reclassified, reclassifiedCtx = append(reclassified, st), append(reclassifiedCtx, ctx)
			mu.Unlock()
		}
		w.deliver(head, n)
	})

	var completions atomic.Int32
	var badCompletion atomic.Value
	complete := func(context any, clone *nbl.NetBufferList, dispatchLevel bool) {
		completions.Add(1)
		pp, ok := context.(*pendedPacket)
		if !ok || clone.Parent() != pp.orig || !dispatchLevel || !NT_SUCCESS(clone.Status) {
			badCompletion.Store("completion got the wrong context, a foreign NBL, dispatchLevel false or a failure")
		}
		orig := pp.orig
		if st := FwpsFreeCloneNetBufferList0(clone, 0); st != STATUS_SUCCESS {
			badCompletion.Store("FwpsFreeCloneNetBufferList0: " + st.Error())
		}
		if orig.ChildRefCount() != 0 {
			badCompletion.Store("ChildRefCount not 0 after the clone was freed")
		}
		if st := FwpsDereferenceNetBufferList0(orig, dispatchLevel); st != STATUS_SUCCESS {
			badCompletion.Store("FwpsDereferenceNetBufferList0: " + st.Error())
		}
	}

	origs := make([]*nbl.NetBufferList, packets)
	clones := make([]*nbl.NetBufferList, packets)
	for i := range origs {
		origs[i] = allocOriginal(t, p, o)
		clones[i] = inspectClassify(t, h, p, o, origs[i])
	}
	injCtx := newCtx("inspect")
	for i := range clones {
		wantStatus(t, "FwpsInjectvSwitchEthernetIngressAsync0", FwpsInjectvSwitchEthernetIngressAsync0(h, injCtx, 0, 0,
			sw.id.Bytes(), NDIS_SWITCH_DEFAULT_PORT_ID, 0, clones[i], complete, &pendedPacket{orig: origs[i]}), STATUS_SUCCESS)
	}
	w.stop()
	if v := badCompletion.Load(); v != nil {
		t.Fatal(v)
	}
	if n := completions.Load(); n != packets {
		t.Fatalf("%d completions, want %d", n, packets)
	}
	if len(reclassified) != packets {
		t.Fatalf("%d reclassifications", len(reclassified))
	}
	for i, st := range reclassified {
		if st != FWPS_PACKET_INJECTED_BY_SELF || reclassifiedCtx[i] != any(injCtx) {
			t.Fatalf("reclassified clone: %v, %v; want INJECTED_BY_SELF with the injection context", st, reclassifiedCtx[i])
		}
	}
	// Every original went back to its originator exactly once, with no
	// clone and no reference left (checked when it was returned).
	if o.total.Load() != packets || o.badHolds.Load() != 0 {
		t.Fatalf("originator: %d returns (%d with clones or references alive), want %d", o.total.Load(), o.badHolds.Load(), packets)
	}
	for i := range o.perIndex {
		if n := o.perIndex[i].Load(); n > 1 {
			t.Fatalf("descriptor %d returned %d times", i, n)
		}
	}
	if st := h.Stats(); st.Injected != packets || st.Completed != packets || st.Pending != 0 {
		t.Fatalf("handle stats %+v", st)
	}
	checkFull(t, p)
}

func TestCase41_InspectInjectFails(t *testing.T) {
	for _, failure := range []string{"unknown-vswitch", "closing-handle"} {
		t.Run(failure, func(t *testing.T) {
			h := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			p := newPool(t, 8)
			o := newOriginator(p.Cap())
			w := startWorker(t, Default, workerConfig{dispatch: true})
			sw := newVSwitch(t, Default, w.deliver)
			var completions atomic.Int32
			complete := func(any, *nbl.NetBufferList, bool) { completions.Add(1) }

			orig := allocOriginal(t, p, o)
			clone := inspectClassify(t, h, p, o, orig)
			id, want := sw.id.Bytes(), STATUS_SUCCESS
			switch failure {
			case "unknown-vswitch":
				g := nextGUID()
				id, want = g.Bytes(), STATUS_NOT_FOUND
			case "closing-handle":
				wantStatus(t, "FwpsInjectionHandleDestroy0", FwpsInjectionHandleDestroy0(h), STATUS_SUCCESS)
				want = STATUS_FWP_INJECT_HANDLE_CLOSING
			}
			before := snap(clone)
			wantStatus(t, "inject that fails", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, id, 0, 0, clone, complete, &pendedPacket{orig: orig}), want)
			if snap(clone) != before {
				t.Fatal("the failed injection changed the clone")
			}
			// The caller still owns the clone: free it now, then drop the
			// reference on the original.
			wantStatus(t, "FwpsFreeCloneNetBufferList0", FwpsFreeCloneNetBufferList0(clone, 0), STATUS_SUCCESS)
			if orig.ChildRefCount() != 0 || o.total.Load() != 0 {
				t.Fatalf("after freeing the clone: ChildRefCount %d, originator returns %d; want 0, 0 (still referenced)", orig.ChildRefCount(), o.total.Load())
			}
			wantStatus(t, "FwpsDereferenceNetBufferList0", FwpsDereferenceNetBufferList0(orig, false), STATUS_SUCCESS)
			if o.total.Load() != 1 || o.badHolds.Load() != 0 {
				t.Fatalf("originator returns %d (with holds %d), want exactly 1", o.total.Load(), o.badHolds.Load())
			}
			w.stop()
			if n := completions.Load(); n != 0 || sw.numCalls() != 0 {
				t.Fatalf("%d completions, %d switch calls after a failed injection; want none", n, sw.numCalls())
			}
			if st := h.Stats(); st.Injected != 0 || st.Pending != 0 || st.Refused != 1 {
				t.Fatalf("handle stats %+v", st)
			}
			checkFull(t, p)
		})
	}
}
