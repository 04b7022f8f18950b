package inject

import (
	"encoding/binary"
	"fmt"

	"github.com/nblpipe/nblpipe/nbl"
)

// Done says what to call when an injected NBL completes: Fn once per NBL
// (the WFP form), or Batch once per batch of NBLs that share it, with
// Context. Leave both nil only for unaltered original NBLs, which then go
// back to their originator.
type Done struct {
	Fn      nbl.CompletionFunc
	Batch   *nbl.BatchCompletion
	Context any
}

func (d Done) empty() bool { return d.Fn == nil && d.Batch == nil }

// MaxChain is the longest NBL chain an injection call accepts.
const MaxChain = 1 << 16

// checkChain walks a chain and checks each NBL: from a pool, not in flight
// through another injection, and, when done is empty, an original (not a
// clone, and lent by an originator rather than made by the caller;
// conformance case 29) that the injector holds a reference on. It returns
// the number of NBLs. A chain that loops or exceeds MaxChain is refused.
// Nothing is changed.
func checkChain(head *nbl.NetBufferList, done Done) (int, error) {
	if head == nil {
		return 0, fmt.Errorf("%w: no NBL to inject", ErrInvalidParameter)
	}
	n := 0
	slow := head // moves one NBL for every two of l: l meets it only in a loop
	for l := head; l != nil; {
		if n == MaxChain {
			return 0, fmt.Errorf("%w: chain longer than %d NBLs", ErrInvalidParameter, MaxChain)
		}
		if l.Pool() == nil {
			return 0, fmt.Errorf("%w: NBL %d of the chain does not come from an nbl.Pool", ErrInvalidParameter, n)
		}
		if l.Completion.Owner != nil {
			return 0, fmt.Errorf("%w: NBL %d of the chain is already in flight through an injection", ErrInvalidParameter, n)
		}
		if done.empty() {
			if l.IsClone() || l.Originator == nil {
				return 0, fmt.Errorf("%w: NBL %d is a clone or was allocated by the caller: it needs a completion function to be freed in", ErrInvalidParameter, n)
			}
			if l.RefCount() < 1 {
				return 0, fmt.Errorf("%w: NBL %d is injected without a completion function but holds no reference: reference it first (the injection takes the reference over)", ErrInvalidParameter, n)
			}
		}
		n++
		l = l.Next
		if n%2 == 0 {
			slow = slow.Next
		}
		if l != nil && l == slow {
			return 0, fmt.Errorf("%w: the chain loops", ErrInvalidParameter)
		}
	}
	return n, nil
}

// start runs the checks every injection shares once its own are done:
// the chain, then the handle's pending count (failing when the handle is
// closing). On success the caller must tag and hand over the chain.
func (h *Handle) start(head *nbl.NetBufferList, done Done) (int, error) {
	n, err := checkChain(head, done)
	if err != nil {
		return 0, err
	}
	if !h.begin(n) {
		return 0, ErrHandleClosing
	}
	return n, nil
}

// commit tags and marks every NBL of the chain as injected by h.
func (h *Handle) commit(head *nbl.NetBufferList, injectionContext any, done Done) {
	for l := head; l != nil; l = l.Next {
		tag(l, h, injectionContext)
		setCompletion(l, h, &done)
	}
}

// setCompletion records in l what its completion must call, and that h
// injected it.
func setCompletion(l *nbl.NetBufferList, h *Handle, done *Done) {
	c := &l.Completion // field by field: cheaper than a composite literal here
	c.Fn, c.Batch, c.Context, c.Owner = done.Fn, done.Batch, done.Context, h
}

func (h *Handle) refuse(err error) error {
	if h != nil {
		h.refused.Add(1)
	}
	return err
}

// InjectVSwitchIngress injects a chain of NBLs into the ingress path of the
// virtual switch vSwitchID, as if it had arrived on sourcePortID and
// sourceNicIndex (FwpsInjectvSwitchEthernetIngressAsync0). Each NBL must
// start at its Ethernet header. The NBLs are tagged with h and
// injectionContext, so that a callout that queries them on the way back
// sees FWPS_PACKET_INJECTED_BY_SELF.
//
// On success the switch owns the chain and done runs once per NBL when it
// completes (case 22), with the NBL's Status set. On error nothing changed,
// no completion will run, and the caller still owns every NBL (cases 20,
// 41). Errors: ErrHandleStale without the L2 type; ErrHandleClosing;
// ErrNotFound for an unregistered switch; ErrInvalidParameter for a bad
// chain or a missing completion (case 29).
func (h *Handle) InjectVSwitchIngress(vSwitchID []byte, sourcePortID uint32, sourceNicIndex uint16, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	return h.injectVSwitch(injectionContext, vSwitchID, sourcePortID, sourceNicIndex, nbls, &done)
}

// injectVSwitch is the body of InjectVSwitchIngress and of
// FwpsInjectvSwitchEthernetIngressAsync0, which calls it directly: its
// parameters come in the WFP function's order, so that few registers move
// between the two. done is read, never kept.
//
// The inspect pattern reinjects every frame on its own, from the switch
// worker: a chain of one NBL, into the switch injected into last, with a
// tag no other handle wrote, is the common case. It is checked, reserved
// and tagged here inline, with no call before the switch's; anything else,
// and every fault but a closing handle, takes injectVSwitchSlow, which
// checks from the start and reports the fault. The conditions below are
// checkChain's for a chain of one NBL (from a pool, not in flight, and
// without done an original holding a reference), the handle's type and
// the remembered switch, so both paths accept the same injections. They
// are branches to one label rather than a helper that returns a bool,
// which the compiler would materialize and test again.
func (h *Handle) injectVSwitch(injectionContext any, vSwitchID []byte, sourcePortID uint32, sourceNicIndex uint16, nbls *nbl.NetBufferList, done *Done) error {
	if h == nil || nbls == nil || nbls.Next != nil || h.types&FWPS_INJECTION_TYPE_L2 == 0 ||
		nbls.Tag.Handle != 0 && nbls.Tag.Handle != h.id || nbls.Completion.Owner != nil {
		goto slow
	}
	if nbls.Pool() == nil {
		goto slow
	}
	if done.Fn == nil && done.Batch == nil {
		if nbls.IsClone() || nbls.Originator == nil {
			goto slow
		}
		if nbls.RefCount() < 1 {
			goto slow
		}
	}
	// lastVSwitch, written out for the same reason.
	if e := h.stack.last.Load(); e != nil && len(vSwitchID) == len(GUID{}) {
		lo, hi := binary.LittleEndian.Uint64(vSwitchID), binary.LittleEndian.Uint64(vSwitchID[8:])
		if e.lo == lo && e.hi == hi {
			// A pending injection: from the calling goroutine's credit
			// (LendCredit), else reserved.
			if c := h.credit(); c != nil {
				if h.closing.Load() {
					return h.refuse(ErrHandleClosing)
				}
				c.credit--
			} else if h.closing.Load() {
				// Closing already: refused before reserving (see begin).
				return h.refuse(ErrHandleClosing)
			} else if !h.reserve(1) {
				return h.refuseClosing()
			}
			tagFresh(nbls, h, injectionContext)
			setCompletion(nbls, h, done)
			e.t.InjectIngress(nbls, 1, sourcePortID, sourceNicIndex)
			return nil
		}
	}
slow:
	return h.injectVSwitchSlow(injectionContext, vSwitchID, sourcePortID, sourceNicIndex, nbls, done)
}

// refuseClosing takes back the pending injection the fast path reserved on
// a closing handle and refuses it, as begin and start do for the general
// path.
//
//go:noinline
func (h *Handle) refuseClosing() error {
	h.end(1)
	return h.refuse(ErrHandleClosing)
}

// injectVSwitchSlow is the general path of injectVSwitch: any handle,
// switch ID and chain, every check in order.
//
//go:noinline
func (h *Handle) injectVSwitchSlow(injectionContext any, vSwitchID []byte, sourcePortID uint32, sourceNicIndex uint16, nbls *nbl.NetBufferList, done *Done) error {
	if h == nil {
		return ErrInvalidParameter
	}
	if !h.Has(FWPS_INJECTION_TYPE_L2) {
		return h.refuse(ErrHandleStale)
	}
	t := h.stack.lastVSwitch(vSwitchID)
	if t == nil {
		var ok bool
		if t, ok = h.stack.lookupVSwitch(vSwitchID); !ok {
			if len(vSwitchID) != len(GUID{}) {
				return h.refuse(fmt.Errorf("%w: vSwitch ID of %d bytes, want 16", ErrInvalidParameter, len(vSwitchID)))
			}
			return h.refuse(ErrNotFound)
		}
	}
	n, err := h.start(nbls, *done)
	if err != nil {
		return h.refuse(err)
	}
	h.commit(nbls, injectionContext, *done)
	t.InjectIngress(nbls, n, sourcePortID, sourceNicIndex)
	return nil
}
