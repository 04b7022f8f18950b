// Regression tests for bugs found while writing the test suite; each
// failed before its fix.

package inject

import (
	"context"
	"fmt"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// Handle IDs come from a per-Stack counter (Stack.nextID), and the
// injection tag stores only that number. Handles of two stacks in one
// process therefore share IDs, and QueryState (FwpsQueryPacketInjectionState0)
// tells a handle of stack B that a packet injected through a handle of stack
// A is its own: INJECTED_BY_SELF, with A's injection context. Identity is
// supposed to be per handle (spec §2). A callout that trusts the answer lets
// a foreign packet through uninspected (or, the other way round, re-injects
// its own packet forever). Fix: take IDs from one process-wide counter.
func TestRegression_HandleIDsCollideAcrossStacks(t *testing.T) {
	sa, sb := newStack(t), newStack(t)
	ha := newHandle(t, sa, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	hb := newHandle(t, sb, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	q := newQueue(t, sa, 4, nil)
	sw := newVSwitch(t, sa, completeNow(q, STATUS_SUCCESS))
	l := alloc(t, p)
	ctxA := newCtx("stack A's injection")
	if err := ha.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, ctxA, Done{Fn: newRecorder(t, false).fn}); err != nil {
		t.Fatal(err)
	}
	st, ctx := hb.QueryState(l)
	freeNBL(t, l)
	checkFull(t, p)
	if ha.ID() == hb.ID() {
		t.Logf("handles of two stacks share ID %d", ha.ID())
	}
	if st != FWPS_PACKET_INJECTED_BY_OTHER || ctx != nil {
		t.Fatalf("a handle of stack B queried a packet injected through stack A's handle: %v, %v; want INJECTED_BY_OTHER, nil", st, ctx)
	}
}

// DestroyContext selects on h.drained and ctx.Done() at once. With nothing
// pending, drained is closed before the select, but if ctx has already
// ended, Go picks one of the two ready cases at random: about half the
// calls report "destroy handle N with 0 completions pending: context
// canceled" although every completion has run and the handle is fully
// destroyed. A caller with a shutdown deadline that has just passed gets a
// spurious failure (and may retry, log or leak). Fix: check drained first
// (a non-blocking receive) before the select.
func TestRegression_DestroyContextExpiredWithNothingPending(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failures := 0
	var first error
	for range 200 {
		h, err := s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.DestroyContext(ctx); err != nil {
			failures++
			if first == nil {
				first = err
			}
		}
		if h.Stats().Pending != 0 {
			t.Fatal("pending")
		}
	}
	if failures != 0 {
		t.Fatalf("%d of 200 DestroyContext calls with nothing pending and an expired context failed; first: %v", failures, first)
	}
}

// A BatchCompletion receives q.batch, the queue's own scratch slice. If the
// function completes NBLs into the same queue (a completion that injects a
// new packet, e.g. an ICMP "packet too big" for an NBL that completed with
// STATUS_INVALID_BUFFER_SIZE as WinDivert does (spec §4), through a target
// that completes at once into the worker's queue, as VSwitchTarget allows)
// and that fills the queue, the nested Flush gathers its own batch into
// q.batch and then clears it: the slice the outer function is still
// iterating now holds nil (or other NBLs). A function that first sends the
// replies and then frees the whole batch finds nil where its first NBLs
// were, never frees them (a leak), and its nil dereference panics
// (recovered and counted). Per-NBL completion
// functions are not affected. Fix: make Flush non-re-entrant (a flushing
// flag: a Complete that fills the queue during a flush leaves the new
// entries to the running flush, e.g. in a second preallocated buffer), or
// give each nesting level its own batch buffer. (A sub-slice of q.nbls
// would not do: the nested Flush clears q.nbls too.)
func TestRegression_ReentrantCompleteCorruptsBatchSlice(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 32)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	q := newQueue(t, s, 8, nil)
	hold := &holder{}
	data := newVSwitch(t, s, hold.deliver)
	// The ICMP path is paused: it completes what it is given at once, into
	// the worker's queue (this goroutine's).
	icmpPath := newVSwitch(t, s, func(head *nbl.NetBufferList, _ int) { q.CompleteChain(head, NDIS_STATUS_PAUSED) })
	freeAll := &nbl.BatchCompletion{Fn: func(_ any, ls []*nbl.NetBufferList) {
		for _, l := range ls {
			freeNBL(t, l)
		}
	}}
	var corrupted []string
	tooBig := &nbl.BatchCompletion{}
	tooBig.Fn = func(_ any, ls []*nbl.NetBufferList) {
		delivered := append([]*nbl.NetBufferList(nil), ls...)
		// First answer the oversize packets, then free the whole batch.
		for _, l := range ls {
			if l.Status == STATUS_INVALID_BUFFER_SIZE {
				icmp := alloc(t, p)
				if err := h.InjectVSwitchIngress(icmpPath.id.Bytes(), 0, 0, icmp, nil, Done{Batch: freeAll}); err != nil {
					t.Errorf("inject ICMP: %v", err)
					freeNBL(t, icmp)
				}
			}
		}
		for i, l := range ls {
			if l != delivered[i] {
				corrupted = append(corrupted, fmt.Sprintf("ls[%d] = %p, was %p", i, l, delivered[i]))
				l = delivered[i] // free the right NBL anyway
			}
			freeNBL(t, l)
		}
	}
	for range 6 {
		if err := h.InjectVSwitchIngress(data.id.Bytes(), 0, 0, alloc(t, p), nil, Done{Batch: tooBig}); err != nil {
			t.Fatal(err)
		}
	}
	hold.complete(q, STATUS_INVALID_BUFFER_SIZE, -1)
	q.Flush()
	if len(corrupted) != 0 {
		t.Errorf("the batch slice changed under the batch completion function: %v", corrupted)
	}
	if !p.Full() || q.Stats().Panics != 0 {
		t.Fatalf("pool full %v (InUse %d), queue panics %d", p.Full(), p.InUse(), q.Stats().Panics)
	}
}
