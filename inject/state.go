package inject

import "github.com/nblpipe/nblpipe/nbl"

// FWPS_PACKET_INJECTION_STATE is what FwpsQueryPacketInjectionState0
// returns (fwpsk.h).
type FWPS_PACKET_INJECTION_STATE uint32

// Injection states.
const (
	// FWPS_PACKET_NOT_INJECTED: the NBL did not come from an injection.
	FWPS_PACKET_NOT_INJECTED FWPS_PACKET_INJECTION_STATE = 0
	// FWPS_PACKET_INJECTED_BY_SELF: injected through the queried handle.
	FWPS_PACKET_INJECTED_BY_SELF FWPS_PACKET_INJECTION_STATE = 1
	// FWPS_PACKET_INJECTED_BY_OTHER: injected through another handle.
	FWPS_PACKET_INJECTED_BY_OTHER FWPS_PACKET_INJECTION_STATE = 2
	// FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF: injected through the queried
	// handle earlier, then cloned and injected again through another.
	FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF FWPS_PACKET_INJECTION_STATE = 3
	FWPS_PACKET_INJECTION_STATE_MAX         FWPS_PACKET_INJECTION_STATE = 4
)

var stateNames = [...]string{
	"FWPS_PACKET_NOT_INJECTED", "FWPS_PACKET_INJECTED_BY_SELF",
	"FWPS_PACKET_INJECTED_BY_OTHER", "FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF",
}

func (s FWPS_PACKET_INJECTION_STATE) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "FWPS_PACKET_INJECTION_STATE_MAX"
}

// SelfInjected reports whether s is INJECTED_BY_SELF or
// PREVIOUSLY_INJECTED_BY_SELF: the states in which a callout must let the
// packet pass instead of inspecting it again.
func (s FWPS_PACKET_INJECTION_STATE) SelfInjected() bool {
	return s == FWPS_PACKET_INJECTED_BY_SELF || s == FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF
}

// QueryState tells how l relates to h's injections
// (FwpsQueryPacketInjectionState0). For INJECTED_BY_SELF and
// PREVIOUSLY_INJECTED_BY_SELF it also returns the injectionContext given
// with that injection; otherwise nil (cases 30-34). It never allocates and is
// safe on any goroutine that holds l. A nil handle or NBL gives
// FWPS_PACKET_NOT_INJECTED.
func (h *Handle) QueryState(l *nbl.NetBufferList) (FWPS_PACKET_INJECTION_STATE, any) {
	if h == nil || l == nil {
		return FWPS_PACKET_NOT_INJECTED, nil
	}
	t := &l.Tag
	switch {
	case t.Handle == 0:
		return FWPS_PACKET_NOT_INJECTED, nil
	case t.Handle == h.id:
		return FWPS_PACKET_INJECTED_BY_SELF, t.Context
	}
	for i := range min(int(t.HistoryLen), nbl.MaxInjectionHistory) {
		if t.History[i] == h.id {
			return FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF, t.HistoryContext[i]
		}
	}
	return FWPS_PACKET_INJECTED_BY_OTHER, nil
}

// tag records that h injects l with injectionContext: the previous injector,
// if any, moves into the history (the oldest entry falls off when it is
// full) and the hop count goes up.
func tag(l *nbl.NetBufferList, h *Handle, injectionContext any) {
	t := &l.Tag
	if t.Handle != 0 && t.Handle != h.id {
		copy(t.History[1:], t.History[:nbl.MaxInjectionHistory-1])
		copy(t.HistoryContext[1:], t.HistoryContext[:nbl.MaxInjectionHistory-1])
		t.History[0], t.HistoryContext[0] = t.Handle, t.Context
		if t.HistoryLen < nbl.MaxInjectionHistory {
			t.HistoryLen++
		}
	}
	t.Handle = h.id
	t.Context = injectionContext
	t.Hops++
}

// tagFresh is tag for an NBL that no other handle injected last
// (l.Tag.Handle is 0 or h's): there is no history to push, and it inlines.
func tagFresh(l *nbl.NetBufferList, h *Handle, injectionContext any) {
	t := &l.Tag
	t.Handle = h.id
	t.Context = injectionContext
	t.Hops++
}
