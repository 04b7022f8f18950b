package inject

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/internal/goid"
	"github.com/nblpipe/nblpipe/nbl"
)

// GUID identifies a virtual switch, as the VSWITCH_ID incoming value
// (FWP_BYTE_BLOB of the switch's GUID) does.
type GUID [16]byte

// ParseGUID parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (braces
// optional) into the 16 bytes as they appear in memory on Windows: the
// first three groups little-endian.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("%w: %q is not a GUID", ErrInvalidParameter, s)
	}
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("%w: %q is not a GUID: %v", ErrInvalidParameter, s, err)
	}
	copy(g[:], b)
	g[0], g[1], g[2], g[3] = g[3], g[2], g[1], g[0]
	g[4], g[5] = g[5], g[4]
	g[6], g[7] = g[7], g[6]
	return g, nil
}

// String formats g as ParseGUID reads it.
func (g GUID) String() string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8:10], g[10:])
}

// Bytes returns the GUID as the FWP_BYTE_BLOB the injection function takes.
// The slice aliases a copy; it is safe to keep.
func (g GUID) Bytes() []byte { b := g; return b[:] }

// VSwitchTarget is a virtual switch's ingress path, registered with a Stack
// so that FwpsInjectvSwitchEthernetIngressAsync0 can find it by its ID.
// Package vswitch implements it; inject never imports vswitch.
type VSwitchTarget interface {
	// VSwitchID returns the switch's GUID.
	VSwitchID() GUID
	// InjectIngress takes a validated, tagged chain of count NBLs into the
	// ingress path, as if it had arrived on the given source port and NIC.
	// The switch owns the chain from then on and must complete every NBL
	// of it exactly once through a CompletionQueue: after its journey, or
	// at once with a failure Status if it cannot take it (it is closing,
	// its queue is full). It may be called on any goroutine.
	InjectIngress(nbls *nbl.NetBufferList, count int, sourcePortID uint32, sourceNicIndex uint16)
}

// Stack is the model of the TCP/IP stack and its WFP injection engine: the
// registry of injection targets (data paths) and handles. A Stack is not
// ready until Start; creating a handle before then fails with
// STATUS_FWP_TCPIP_NOT_READY, as during early boot on Windows.
//
// Goroutines that run packet paths (switch workers) mark themselves as
// running at DISPATCH_LEVEL with EnterDispatch; completions delivered on
// them report dispatchLevel true, and handle creation and destruction, which
// WFP allows only at PASSIVE_LEVEL, are refused on them.
type Stack struct {
	ready    atomic.Bool
	mu       sync.Mutex
	vswitch  atomic.Pointer[map[GUID]VSwitchTarget] // copy on write
	last     atomic.Pointer[vswitchEntry]           // the last target found
	dispatch sync.Map                               // goroutine ID -> struct{}
	handles  atomic.Int64                           // live handles
	paths    [3]atomic.Pointer[DataPath]            // PathIP, PathStream, PathMAC
}

// handleIDs numbers handles process-wide: tags store only the number, so
// handles of two stacks must not share one.
var handleIDs atomic.Uint64

// NewStack returns a stack that is not ready yet.
func NewStack() *Stack {
	s := &Stack{}
	m := map[GUID]VSwitchTarget{}
	s.vswitch.Store(&m)
	return s
}

// Default is the process-wide stack the WFP-named functions use. It is not
// ready until Default.Start().
var Default = NewStack()

// Start makes the stack ready: handles can be created.
func (s *Stack) Start() { s.ready.Store(true) }

// Stop makes the stack not ready again; existing handles keep working, new
// ones fail with STATUS_FWP_TCPIP_NOT_READY.
func (s *Stack) Stop() { s.ready.Store(false) }

// Ready reports whether Start has been called (and Stop not since).
func (s *Stack) Ready() bool { return s.ready.Load() }

// Handles returns the number of handles created and not yet destroyed.
func (s *Stack) Handles() int { return int(s.handles.Load()) }

// RegisterVSwitch adds a switch's ingress path under its GUID. It fails
// with ErrInvalidParameter if a target with that GUID is registered.
func (s *Stack) RegisterVSwitch(t VSwitchTarget) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.vswitch.Load()
	id := t.VSwitchID()
	if _, dup := old[id]; dup {
		return fmt.Errorf("%w: a vSwitch %s is already registered", ErrInvalidParameter, id)
	}
	m := make(map[GUID]VSwitchTarget, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[id] = t
	s.vswitch.Store(&m)
	s.last.Store(nil)
	return nil
}

// UnregisterVSwitch removes a switch's ingress path; injections that find it
// gone fail with STATUS_NOT_FOUND.
func (s *Stack) UnregisterVSwitch(id GUID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.vswitch.Load()
	if _, ok := old[id]; !ok {
		return
	}
	m := make(map[GUID]VSwitchTarget, len(old))
	for k, v := range old {
		if k != id {
			m[k] = v
		}
	}
	s.vswitch.Store(&m)
	s.last.Store(nil)
}

type vswitchEntry struct {
	lo, hi uint64 // the GUID's bytes 0-7 and 8-15, little-endian
	t      VSwitchTarget
}

// lastVSwitch returns the switch lookupVSwitch found last if its ID is id,
// else nil: a run of injections into one switch compares the ID as two
// words, without locking, hashing or a call. The injection's fast path
// does the same inline.
func (s *Stack) lastVSwitch(id []byte) VSwitchTarget {
	if e := s.last.Load(); e != nil && len(id) == len(GUID{}) &&
		e.lo == binary.LittleEndian.Uint64(id) && e.hi == binary.LittleEndian.Uint64(id[8:]) {
		return e.t
	}
	return nil
}

// lookupVSwitch finds a registered switch without locking or allocating,
// and remembers it for lastVSwitch.
func (s *Stack) lookupVSwitch(id []byte) (VSwitchTarget, bool) {
	if len(id) != len(GUID{}) {
		return nil, false
	}
	t, ok := (*s.vswitch.Load())[GUID(id)]
	if ok {
		s.last.Store(&vswitchEntry{lo: binary.LittleEndian.Uint64(id), hi: binary.LittleEndian.Uint64(id[8:]), t: t})
	}
	return t, ok
}

// EnterDispatch marks the calling goroutine as running at DISPATCH_LEVEL
// (a packet-path worker) until LeaveDispatch. Call it once when a worker
// starts, not per packet: it costs about a microsecond.
func (s *Stack) EnterDispatch() { s.dispatch.Store(goid.Get(), struct{}{}) }

// LeaveDispatch clears the mark EnterDispatch set on the calling goroutine.
func (s *Stack) LeaveDispatch() { s.dispatch.Delete(goid.Get()) }

// AtDispatch reports whether the calling goroutine is marked as running at
// DISPATCH_LEVEL. It costs about a microsecond.
func (s *Stack) AtDispatch() bool {
	_, ok := s.dispatch.Load(goid.Get())
	return ok
}
