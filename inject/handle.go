package inject

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/internal/goid"
)

// ADDRESS_FAMILY is the address family of an injection handle (ws2def.h).
type ADDRESS_FAMILY uint16

// Address families.
const (
	AF_UNSPEC ADDRESS_FAMILY = 0
	AF_INET   ADDRESS_FAMILY = 2
	AF_INET6  ADDRESS_FAMILY = 23
)

// Injection types: the flags of FwpsInjectionHandleCreate0 (fwpsk.h).
const (
	FWPS_INJECTION_TYPE_STREAM            uint32 = 0x00000001
	FWPS_INJECTION_TYPE_TRANSPORT         uint32 = 0x00000002
	FWPS_INJECTION_TYPE_NETWORK           uint32 = 0x00000004
	FWPS_INJECTION_TYPE_FORWARD           uint32 = 0x00000008
	FWPS_INJECTION_TYPE_L2                uint32 = 0x00000010
	FWPS_INJECTION_TYPE_VSWITCH_TRANSPORT uint32 = 0x00000020
	// FWPS_INJECTION_TYPE_VSWITCH is the name an older version of the
	// vSwitch injection page used; it never was in fwpsk.h. It is the L2
	// type, which FwpsInjectvSwitchEthernetIngressAsync0 requires.
	FWPS_INJECTION_TYPE_VSWITCH = FWPS_INJECTION_TYPE_L2

	knownTypes = FWPS_INJECTION_TYPE_STREAM | FWPS_INJECTION_TYPE_TRANSPORT | FWPS_INJECTION_TYPE_NETWORK |
		FWPS_INJECTION_TYPE_FORWARD | FWPS_INJECTION_TYPE_L2 | FWPS_INJECTION_TYPE_VSWITCH_TRANSPORT
	// defaultTypes is what flags 0 means: transport, stream and forward.
	defaultTypes = FWPS_INJECTION_TYPE_TRANSPORT | FWPS_INJECTION_TYPE_STREAM | FWPS_INJECTION_TYPE_FORWARD
)

// Handle is an injection handle (the HANDLE of FwpsInjectionHandleCreate0).
// Its identity is what FwpsQueryPacketInjectionState0 compares: two
// handles of one program are "other" to each other.
//
// A Handle is safe for concurrent use. Destroy waits for every injection
// made through it to complete.
type Handle struct {
	_ noCopy

	// What every injection and query reads, and nothing writes but
	// Destroy: a line that workers on several cores keep shared.
	id      uint64
	types   uint32
	family  ADDRESS_FAMILY
	stack   *Stack
	closing atomic.Bool
	// lent counts the credit slots held (LendCredit, DropCredit), so that
	// an injection looks at the slots only when some are; it changes only
	// when a goroutine takes or frees a slot.
	lent atomic.Int32

	_ cpu.CacheLinePad
	// owners names the goroutine (goid.G) that holds each credit slot, 0
	// for a free slot. It changes only when a goroutine takes or frees a
	// slot, and every injection and completion run reads it while slots
	// are held, so it has a line of its own, apart from the slots' counts
	// that their goroutines write on every frame: a goroutine that looks
	// for its slot past another's reads no line the other writes.
	owners  [creditSlots]atomic.Uintptr
	_       cpu.CacheLinePad
	credits [creditSlots]creditSlot

	// pending counts injections accepted and not yet completed, and the
	// credit lent ahead. Inject adds before it checks closing; Destroy
	// sets closing before it reads pending (both sequentially
	// consistent), so an injection either sees closing and backs out, or
	// Destroy waits for it.
	pending   atomic.Int64
	completed atomic.Uint64

	refused atomic.Uint64
	drained chan struct{}
	once    sync.Once
}

// creditSlots is how many goroutines may hold credit of one handle at
// once; more take the usual way.
const creditSlots = 8

// creditSlot is the credit of one goroutine (LendCredit), alone in its
// cache line and the adjacent one (cpu.CacheLinePadSize); the goroutine
// that owners names for it is the only one that reads or writes it. credit
// is pending injections reserved ahead. taken counts the completions that
// goroutine delivered while it had credit, which became credit again
// instead of leaving the handle's shared counts (completeRun); ReturnCredit
// moves them to the handle's completed count.
type creditSlot struct {
	credit int64
	taken  uint64
	_      [cpu.CacheLinePadSize - 16]byte
}

type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// CreateHandle makes an injection handle for the given address family and
// injection types (FwpsInjectionHandleCreate0). types 0 means transport,
// stream and forward. It fails with:
//   - ErrNotReady when the stack is not started (conformance case 8);
//   - ErrInvalidParameter for unknown type bits, an unknown family, or a
//     NETWORK handle without a specific family (cases 9, 10);
//   - STATUS_INVALID_DEVICE_STATE when called on a goroutine marked
//     DISPATCH_LEVEL (case 15; WFP allows it only at PASSIVE_LEVEL).
func (s *Stack) CreateHandle(family ADDRESS_FAMILY, types uint32) (*Handle, error) {
	if types&^knownTypes != 0 {
		return nil, fmt.Errorf("%w: unknown injection type bits 0x%x", ErrInvalidParameter, types&^knownTypes)
	}
	if family != AF_UNSPEC && family != AF_INET && family != AF_INET6 {
		return nil, fmt.Errorf("%w: address family %d is not AF_UNSPEC, AF_INET or AF_INET6", ErrInvalidParameter, family)
	}
	if types == 0 {
		types = defaultTypes
	}
	if types&FWPS_INJECTION_TYPE_NETWORK != 0 && family == AF_UNSPEC {
		return nil, fmt.Errorf("%w: a NETWORK injection handle needs AF_INET or AF_INET6", ErrInvalidParameter)
	}
	if !s.Ready() {
		return nil, ErrNotReady
	}
	if s.AtDispatch() {
		return nil, fmt.Errorf("%w: injection handles are created at PASSIVE_LEVEL, not on a packet-path goroutine", STATUS_INVALID_DEVICE_STATE)
	}
	h := &Handle{
		id:      handleIDs.Add(1),
		family:  family,
		types:   types,
		stack:   s,
		drained: make(chan struct{}),
	}
	s.handles.Add(1)
	return h, nil
}

// ID returns the handle's identity as stored in injection tags (never 0).
func (h *Handle) ID() uint64 { return h.id }

// Family returns the handle's address family.
func (h *Handle) Family() ADDRESS_FAMILY { return h.family }

// Types returns the handle's injection type bits (flags 0 already expanded).
func (h *Handle) Types() uint32 { return h.types }

// Has reports whether the handle has every type bit of t.
func (h *Handle) Has(t uint32) bool { return h.types&t == t }

// Stack returns the stack the handle belongs to.
func (h *Handle) Stack() *Stack { return h.stack }

// Closing reports whether Destroy has begun.
func (h *Handle) Closing() bool { return h.closing.Load() }

// HandleStats are a handle's counters. Injected NBLs are accepted ones;
// injected = completed + pending at any quiet moment.
type HandleStats struct {
	Injected  uint64 // NBLs accepted by an injection call
	Completed uint64 // NBLs completed
	Pending   int64  // accepted and not completed
	Refused   uint64 // injection calls that returned an error
}

// Stats returns the handle's counters.
//
// Injected is derived (completed + pending), which spares the injection
// path an atomic operation; while injections run the figures are a snapshot.
// Credit lent (LendCredit) counts as injected and pending until it is
// returned, and completions a goroutine with credit delivered count as
// completed from then on.
func (h *Handle) Stats() HandleStats {
	c := h.completed.Load()
	p := h.pending.Load()
	return HandleStats{
		Injected:  c + uint64(max(p, 0)),
		Completed: c,
		Pending:   p,
		Refused:   h.refused.Load(),
	}
}

// Destroy closes the handle (FwpsInjectionHandleDestroy0): new injections
// fail with ErrHandleClosing (the caller keeps the NBL), and Destroy returns
// once every injection accepted before has completed (cases 12-14).
// Destroying twice is safe; the second call waits like the first. It fails
// with STATUS_INVALID_DEVICE_STATE on a DISPATCH_LEVEL goroutine, where
// waiting could deadlock the worker that must deliver the completions.
func (h *Handle) Destroy() error {
	return h.DestroyContext(context.Background())
}

// DestroyContext is Destroy with a bound: it returns ctx's error if ctx ends
// before every pending completion has run. The handle stays closing; call it
// again to keep waiting.
func (h *Handle) DestroyContext(ctx context.Context) error {
	if h.stack.AtDispatch() {
		return fmt.Errorf("%w: injection handles are destroyed at PASSIVE_LEVEL, not on a packet-path goroutine", STATUS_INVALID_DEVICE_STATE)
	}
	if !h.closing.Swap(true) {
		h.stack.handles.Add(-1)
	}
	if h.pending.Load() == 0 {
		h.signalDrained()
	}
	select {
	case <-h.drained:
		return nil
	default:
	}
	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("inject: destroy handle %d with %d completions pending: %w", h.id, h.pending.Load(), ctx.Err())
	}
}

func (h *Handle) signalDrained() { h.once.Do(func() { close(h.drained) }) }

// begin reserves n pending injections, or reports that the handle is
// closing (then nothing is reserved). A handle already seen closing is
// refused before reserving: injections refused after Destroy then never
// show in Stats as pending, not even for the instant between reserve and
// end.
func (h *Handle) begin(n int) bool {
	if h.closing.Load() {
		return false
	}
	if h.reserve(n) {
		return true
	}
	h.end(n)
	return false
}

// reserve adds n pending injections and reports whether the handle is
// still open. When it is not, the caller must take them back with end(n):
// begin does both; reserve alone inlines, for the single-NBL fast path.
func (h *Handle) reserve(n int) bool {
	// Pairs with the closing.Swap in DestroyContext: see the field comment.
	h.pending.Add(int64(n))
	return !h.closing.Load()
}

// LendCredit reserves n pending injections ahead for the calling
// goroutine, a packet-path worker that injects through h, with one atomic
// operation on the handle's shared count: until ReturnCredit, its
// single-NBL vSwitch ingress injections (InjectVSwitchIngress,
// FwpsInjectvSwitchEthernetIngressAsync0) each take one from the credit
// instead of an atomic operation on that count, which workers on several
// cores would pass between them on every frame; the rest take the usual
// way. The goroutine keeps a slot of h from its first LendCredit until
// DropCredit, so that lending again touches no line another goroutine
// reads. It reports false, and lends nothing, when n is not positive, the
// handle is closing, creditSlots other goroutines hold slots of h, or
// goroutines cannot be told apart (architectures other than amd64 and
// arm64); true when the goroutine has credit, also from an earlier call.
//
// Completions of h's injections that the goroutine delivers while it has
// credit (a CompletionQueue it flushes) become credit again, so a worker
// that both injects and completes writes none of the handle's shared
// lines for either until ReturnCredit, which counts them as completed.
//
// The credit counts as pending: Destroy waits for ReturnCredit, and Stats
// counts unused credit as injected and pending until then. So a goroutine
// returns it soon, before it waits for anything, and as soon as the
// handle is closing: the vSwitch workers lend it for the handles of the
// callouts they run, return it when they go idle and every 64 steps while
// they are busy, drop the slot of a closing handle at the end of a step,
// and drop their slots when they stop.
func (h *Handle) LendCredit(n int) bool {
	g := goid.G()
	if g == 0 || n <= 0 || h.closing.Load() {
		return false
	}
	c := h.creditOf(g)
	if c == nil {
		if c = h.claimSlot(g); c == nil {
			return false
		}
	}
	if c.credit > 0 {
		return true
	}
	if !h.reserve(n) {
		h.end(n)
		return false
	}
	c.credit = int64(n)
	return true
}

// claimSlot takes a free credit slot for goroutine g, or returns nil.
func (h *Handle) claimSlot(g uintptr) *creditSlot {
	for i := range h.owners {
		if o := &h.owners[i]; o.Load() == 0 && o.CompareAndSwap(0, g) {
			h.lent.Add(1)
			return &h.credits[i]
		}
	}
	return nil
}

// ReturnCredit gives back the unused credit that LendCredit lent the
// calling goroutine, which keeps its slot; with none lent to it, it does
// nothing.
func (h *Handle) ReturnCredit() {
	g := goid.G()
	if g == 0 {
		return
	}
	c := h.creditOf(g)
	if c == nil {
		return
	}
	// Completed first: when the last pending injection ends, Destroy's
	// caller may read Stats.
	if c.taken > 0 {
		h.completed.Add(c.taken)
		c.taken = 0
	}
	if c.credit > 0 {
		n := c.credit
		c.credit = 0
		h.end(int(n))
	}
}

// DropCredit is ReturnCredit, and frees the calling goroutine's slot of h.
// A goroutine that lent credit calls it before it exits.
func (h *Handle) DropCredit() {
	g := goid.G()
	if g == 0 {
		return
	}
	i := h.slotOf(g)
	if i < 0 {
		return
	}
	h.ReturnCredit()
	h.lent.Add(-1)
	h.owners[i].Store(0)
}

// credit returns the calling goroutine's credit slot when it has credit
// left, else nil: one load when no goroutine holds credit of h.
func (h *Handle) credit() *creditSlot {
	if h.lent.Load() == 0 {
		return nil
	}
	if c := h.creditOf(goid.G()); c != nil && c.credit > 0 {
		return c
	}
	return nil
}

// creditOf returns the credit slot of goroutine g, or nil.
func (h *Handle) creditOf(g uintptr) *creditSlot {
	if i := h.slotOf(g); i >= 0 {
		return &h.credits[i]
	}
	return nil
}

// slotOf returns the index of goroutine g's credit slot, or -1.
func (h *Handle) slotOf(g uintptr) int {
	for i := range h.owners {
		if h.owners[i].Load() == g {
			return i
		}
	}
	return -1
}

// completeRun accounts n completions of h's injections delivered by the
// calling goroutine. A goroutine with credit of h takes them back as
// credit: the injections they end stop counting as pending and as many
// count as lent, so the shared count stays as it is and none of the
// handle's shared lines is written until ReturnCredit counts them as
// completed. Otherwise they leave the shared counts at once.
func (h *Handle) completeRun(n int) {
	if h.lent.Load() != 0 {
		if c := h.creditOf(goid.G()); c != nil && c.credit > 0 {
			c.credit += int64(n)
			c.taken += uint64(n)
			return
		}
	}
	h.completed.Add(uint64(n))
	h.end(n)
}

// end releases n pending injections; the last one after Destroy began wakes
// Destroy.
func (h *Handle) end(n int) {
	if h.pending.Add(-int64(n)) == 0 && h.closing.Load() {
		h.signalDrained()
	}
}
