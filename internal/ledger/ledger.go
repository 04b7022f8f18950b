// Package ledger checks, in tests, that nothing was lost: every NBL of a
// pool is free or accounted for, every accepted injection completed, and
// every frame a switch took in left it (transmitted, dropped under a
// counted reason, or absorbed); and that no goroutine a test started is
// still running.
//
// A test registers what it uses, then checks:
//
//	l := ledger.New(t)
//	l.Pool("clones", clonePool)
//	h := l.Handle(handle)       // h.Accepted(n) after each accepted injection
//	l.Switch(sw, gen, sink)     // the memports behind the switch's ports
//	...                         // traffic; l.Check() at any time
//	sw.Close(); handle.Destroy()
//	l.CheckClosed()             // exact books
//
// Check holds while traffic flows: it checks only what cannot be out of
// step, such as counters that never go back, frames returned never
// exceeding frames handed out, and pools within their size. It does not
// check the switch-wide balance: workers publish their counters every few
// bursts (every 64 Steps in manual mode) while injections and flood copies
// are counted at once, so no reading sees in and out at one moment.
// CheckClosed is exact and is meant for after every registered switch is
// closed and every handle destroyed.
//
// The switch-wide balance is the one documented on vswitch.Stats: the sum
// over ports (and the unknown-port slot) of received + injected, plus
// FloodCopies, equals transmitted + dropped + absorbed. A single port has
// no such balance in the switch's counters, since a frame received on one
// port is transmitted, or dropped at egress, on another; the ledger checks
// each port against its back end's own books instead (a memport's frames
// generated and returned, sent and reclaimed), and the switch's receive
// and transmit counts of the port against the port's.
//
// A pool's "allocated = free + in flight" is an identity of pool.Pool
// (InUse is Cap less the free ring, and counts the NBLs parked in caches),
// so it cannot fail by itself, and mid-run it cannot tell a parked NBL
// from one in flight; what can fail, and is checked, is that an NBL never
// comes back (CheckClosed finds the pool not full), or that more come back
// than went out (a port's books).
package ledger

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger/goroutines"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// T is the part of testing.TB the ledger reports through.
type T interface {
	Helper()
	Errorf(format string, args ...any)
}

// Ledger holds what a test registered. Its methods are safe for concurrent
// use.
type Ledger struct {
	t  T
	mu sync.Mutex

	pools    []*poolEntry
	handles  []*HandleAccount
	switches []*switchEntry
}

type poolEntry struct {
	name string
	p    *nbl.Pool
}

type switchEntry struct {
	name  string
	sw    *vswitch.Switch
	ports []Port
	last  *vswitch.Stats // the counters at the previous Check
	lastP []portReading
}

// New returns an empty ledger that reports to t.
func New(t T) *Ledger { return &Ledger{t: t} }

// Pool registers an NBL pool under a name for the reports. A pool
// registered twice is checked once.
func (l *Ledger) Pool(name string, p *nbl.Pool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addPool(name, p)
}

func (l *Ledger) addPool(name string, p *nbl.Pool) {
	for _, e := range l.pools {
		if e.p == p {
			return
		}
	}
	l.pools = append(l.pools, &poolEntry{name: name, p: p})
}

// HandleAccount is the ledger's account of an injection handle.
type HandleAccount struct {
	h        *inject.Handle
	mu       sync.Mutex
	accepted uint64
	counted  bool
	last     inject.HandleStats
}

// Handle registers an injection handle. The handle's own Injected figure
// is derived from its completed and pending counts, so to check that every
// accepted injection completed, the test also reports its accepted
// injections with Accepted.
func (l *Ledger) Handle(h *inject.Handle) *HandleAccount {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.handles {
		if a.h == h {
			return a
		}
	}
	a := &HandleAccount{h: h}
	l.handles = append(l.handles, a)
	return a
}

// Accepted records that an injection call through the handle accepted n
// NBLs (returned success).
func (a *HandleAccount) Accepted(n int) {
	a.mu.Lock()
	a.accepted += uint64(n)
	a.counted = true
	a.mu.Unlock()
}

// Books are a port back end's own counts of the frames it handed to the
// switch (Generated), got back (Returned), was given to send (Sent) and
// gave back after sending (Reclaimed).
type Books struct {
	Generated, Returned, Sent, Reclaimed uint64
}

// Port is a port back end that keeps books. Books must be safe to call
// while the switch runs, and each count must only grow.
type Port interface {
	Pool() *nbl.Pool
	Books() Books
}

type memportBooks struct{ *memport.Port }

func (m memportBooks) Books() Books {
	s := m.Stats()
	return Books{Generated: s.Generated, Returned: s.Returned, Sent: s.Sent, Reclaimed: s.Reclaimed}
}

// Switch registers a switch, and its copy pool. ports[i], when not nil, is
// the memport behind the switch's port i (directly, or inside a wrapper
// that passes its counts through); its pool is registered too.
func (l *Ledger) Switch(sw *vswitch.Switch, ports ...*memport.Port) {
	ps := make([]Port, len(ports))
	for i, p := range ports {
		if p != nil {
			ps[i] = memportBooks{p}
		}
	}
	l.SwitchPorts(sw, ps...)
}

// SwitchPorts is Switch for port back ends other than memports: ports[i],
// when not nil, keeps the books of the switch's port i.
func (l *Ledger) SwitchPorts(sw *vswitch.Switch, ports ...Port) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := fmt.Sprintf("switch %d", len(l.switches))
	l.addPool(name+" copy pool", sw.CopyPool())
	for i, p := range ports {
		if p != nil && p.Pool() != nil {
			l.addPool(fmt.Sprintf("%s port %d pool", name, i), p.Pool())
		}
	}
	l.switches = append(l.switches, &switchEntry{name: name, sw: sw, ports: ports})
}

// Check checks what holds at any moment, also while traffic flows: pools
// within their sizes, no handle with a negative pending count or a
// completed count that went back, no switch counter that went back since
// the previous Check, no more flooded frames than flood copies, and for
// each memport no more frames returned than generated, nor reclaimed than
// sent, nor more out than its pool holds. It reports what fails and
// returns whether all held.
func (l *Ledger) Check() bool {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := true
	for _, e := range l.pools {
		ok = checkPoolBounds(l.t, e.name, e.p) && ok
	}
	for _, a := range l.handles {
		ok = a.check(l.t) && ok
	}
	for _, e := range l.switches {
		ok = e.check(l.t) && ok
	}
	return ok
}

// CheckClosed checks the exact books once every registered switch is
// closed and every handle destroyed (or idle): every pool is full, every
// handle has nothing pending and completed what it accepted, every
// switch's counters balance, and every memport got back every frame it
// generated and reclaimed every frame it was sent, as many as the switch
// counted for the port. It reports what fails and returns whether all
// held.
func (l *Ledger) CheckClosed() bool {
	l.t.Helper()
	ok := l.Check()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.pools {
		if !e.p.Full() {
			nbs, mdls := e.p.ExtraInUse()
			l.t.Errorf("ledger: %s: %d NBLs, %d NetBuffers and %d MDLs not back after close (a leak)", e.name, e.p.InUse(), nbs, mdls)
			ok = false
		}
	}
	for _, a := range l.handles {
		ok = a.checkClosed(l.t) && ok
	}
	for _, e := range l.switches {
		ok = e.checkClosed(l.t) && ok
	}
	return ok
}

// checkPoolBounds checks that a pool's counts are within its sizes.
func checkPoolBounds(t T, name string, p *nbl.Pool) bool {
	t.Helper()
	ok := true
	if n := p.InUse(); n < 0 || n > p.Cap() {
		t.Errorf("ledger: %s: %d NBLs in use of %d", name, n, p.Cap())
		ok = false
	}
	cfg := p.Config()
	nbs, mdls := p.ExtraInUse()
	if nbs < 0 || nbs > cfg.ExtraNetBuffers || mdls < 0 || mdls > cfg.ExtraMdls {
		t.Errorf("ledger: %s: %d of %d extra NetBuffers and %d of %d extra MDLs in use", name, nbs, cfg.ExtraNetBuffers, mdls, cfg.ExtraMdls)
		ok = false
	}
	return ok
}

func (a *HandleAccount) check(t T) bool {
	t.Helper()
	s := a.h.Stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	ok := checkHandleRunning(t, a.h.ID(), a.last, s)
	a.last = s
	return ok
}

// checkHandleRunning checks a handle's counters against the previous
// reading.
func checkHandleRunning(t T, id uint64, prev, s inject.HandleStats) bool {
	t.Helper()
	ok := true
	if s.Pending < 0 {
		t.Errorf("ledger: handle %d: %d pending (more completions than injections)", id, s.Pending)
		ok = false
	}
	if s.Completed < prev.Completed || s.Refused < prev.Refused {
		t.Errorf("ledger: handle %d: counters went back: %+v, before %+v", id, s, prev)
		ok = false
	}
	return ok
}

func (a *HandleAccount) checkClosed(t T) bool {
	t.Helper()
	s := a.h.Stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	return checkHandleClosed(t, a.h.ID(), s, a.accepted, a.counted)
}

// checkHandleClosed checks a quiet handle: nothing pending, and, when the
// test counted its accepted injections, exactly that many completed.
func checkHandleClosed(t T, id uint64, s inject.HandleStats, accepted uint64, counted bool) bool {
	t.Helper()
	ok := true
	if s.Pending != 0 || s.Injected != s.Completed {
		t.Errorf("ledger: handle %d: %d injected, %d completed, %d pending after close", id, s.Injected, s.Completed, s.Pending)
		ok = false
	}
	if counted && s.Completed != accepted {
		t.Errorf("ledger: handle %d: %d injections accepted, %d completed", id, accepted, s.Completed)
		ok = false
	}
	return ok
}

func (e *switchEntry) check(t T) bool {
	t.Helper()
	st := e.sw.Stats()
	ok := checkRunning(t, e.name, e.last, &st)
	e.last = &st
	ps := readPorts(e.ports)
	for i, s := range ps {
		if e.ports[i] == nil {
			continue
		}
		name := fmt.Sprintf("%s port %d", e.name, i)
		poolCap := -1
		if p := e.ports[i].Pool(); p != nil {
			poolCap = p.Cap()
		}
		ok = checkPortRunning(t, name, s, poolCap) && ok
		if e.lastP != nil {
			ok = checkPortMonotonic(t, name, e.lastP[i], s) && ok
		}
	}
	e.lastP = ps
	return ok
}

// readPorts reads the ports' books while they may change: the
// counts of frames given back (Returned, Reclaimed) come from a first
// reading and the counts of frames handed out (Generated, Sent) from a
// second, so that a frame counted as given back is always counted as
// handed out. Out is the frames out at the first reading, or less.
func readPorts(ports []Port) []portReading {
	out := make([]portReading, len(ports))
	for i, p := range ports {
		if p == nil {
			continue
		}
		first := p.Books()
		second := p.Books()
		out[i] = portReading{
			Generated: second.Generated, Returned: first.Returned,
			Sent: second.Sent, Reclaimed: first.Reclaimed,
			Out: int64(first.Generated) - int64(first.Returned),
		}
	}
	return out
}

// portReading is a consistent reading of a memport's books.
type portReading struct {
	Generated, Returned, Sent, Reclaimed uint64
	Out                                  int64
}

// checkRunning checks a switch's counters against the previous reading
// (nil at the first Check).
func checkRunning(t T, name string, prev, st *vswitch.Stats) bool {
	t.Helper()
	ok := true
	if st.Flooded > st.FloodCopies {
		t.Errorf("ledger: %s: %d frames flooded with %d copies", name, st.Flooded, st.FloodCopies)
		ok = false
	}
	if prev == nil {
		return ok
	}
	if len(prev.Ports) != len(st.Ports) {
		t.Errorf("ledger: %s: %d ports, %d before", name, len(st.Ports), len(prev.Ports))
		return false
	}
	back := func(what string, now, before uint64) {
		if now < before {
			t.Errorf("ledger: %s: %s went back from %d to %d", name, what, before, now)
			ok = false
		}
	}
	for i := range st.Ports {
		p, q := &st.Ports[i], &prev.Ports[i]
		portCounters(fmt.Sprintf("port %d", i), p, q, back)
	}
	portCounters("unknown port", &st.Unknown, &prev.Unknown, back)
	back("FloodCopies", st.FloodCopies, prev.FloodCopies)
	back("Flooded", st.Flooded, prev.Flooded)
	back("FDBTableFull", st.FDBTableFull, prev.FDBTableFull)
	back("FDBPortLimit", st.FDBPortLimit, prev.FDBPortLimit)
	return ok
}

func portCounters(port string, p, q *vswitch.PortStats, back func(string, uint64, uint64)) {
	back(port+" RxPackets", p.RxPackets, q.RxPackets)
	back(port+" TxPackets", p.TxPackets, q.TxPackets)
	back(port+" Injected", p.Injected, q.Injected)
	back(port+" Absorbed", p.Absorbed, q.Absorbed)
	back(port+" RxErrors", p.RxErrors, q.RxErrors)
	for r := range p.Drops {
		back(fmt.Sprintf("%s drops %v", port, vswitch.DropReason(r)), p.Drops[r], q.Drops[r])
	}
}

// checkPortRunning checks a port's books at any moment (poolCap -1: the
// port has no pool).
func checkPortRunning(t T, name string, s portReading, poolCap int) bool {
	t.Helper()
	ok := true
	if s.Returned > s.Generated {
		t.Errorf("ledger: %s: %d frames returned of %d generated (returned twice?)", name, s.Returned, s.Generated)
		ok = false
	}
	if poolCap >= 0 && s.Out > int64(poolCap) {
		t.Errorf("ledger: %s: %d frames out, more than its pool's %d", name, s.Out, poolCap)
		ok = false
	}
	if s.Reclaimed > s.Sent {
		t.Errorf("ledger: %s: %d frames reclaimed of %d sent", name, s.Reclaimed, s.Sent)
		ok = false
	}
	return ok
}

func checkPortMonotonic(t T, name string, prev, s portReading) bool {
	t.Helper()
	if s.Generated < prev.Generated || s.Returned < prev.Returned || s.Sent < prev.Sent || s.Reclaimed < prev.Reclaimed {
		t.Errorf("ledger: %s: counters went back: %+v, before %+v", name, s, prev)
		return false
	}
	return true
}

func (e *switchEntry) checkClosed(t T) bool {
	t.Helper()
	st := e.sw.Stats()
	ok := CheckBalance(t, e.name, st)
	for i, p := range e.ports {
		if p == nil {
			continue
		}
		if i >= len(st.Ports) {
			t.Errorf("ledger: %s: memport given for port %d of %d", e.name, i, len(st.Ports))
			ok = false
			continue
		}
		ok = checkPortClosed(t, fmt.Sprintf("%s port %d", e.name, i), p.Books(), st.Ports[i]) && ok
	}
	return ok
}

// CheckBalance checks the switch-wide balance of a switch's final
// counters: received + injected + flood copies = transmitted + dropped +
// absorbed.
func CheckBalance(t T, name string, st vswitch.Stats) bool {
	t.Helper()
	s := Sum(st)
	if in, out := s.In(st), s.Out(); in != out {
		t.Errorf("ledger: %s: received %d + injected %d + flood copies %d = %d, but transmitted %d + dropped %d + absorbed %d = %d (%v)",
			name, s.Rx, s.Injected, st.FloodCopies, in, s.Tx, s.Dropped, s.Absorbed, out, s)
		return false
	}
	return true
}

// checkPortClosed checks a port's books against themselves and against
// the switch's counters of the port.
func checkPortClosed(t T, name string, s Books, ps vswitch.PortStats) bool {
	t.Helper()
	ok := true
	if s.Returned != s.Generated {
		t.Errorf("ledger: %s: %d frames generated, %d returned", name, s.Generated, s.Returned)
		ok = false
	}
	if s.Reclaimed != s.Sent {
		t.Errorf("ledger: %s: %d frames sent, %d reclaimed", name, s.Sent, s.Reclaimed)
		ok = false
	}
	if ps.RxPackets != s.Generated {
		t.Errorf("ledger: %s: the switch received %d frames, the port generated %d", name, ps.RxPackets, s.Generated)
		ok = false
	}
	if ps.TxPackets != s.Sent {
		t.Errorf("ledger: %s: the switch transmitted %d frames, the port took %d", name, ps.TxPackets, s.Sent)
		ok = false
	}
	return ok
}

// Totals are a switch's counters summed over its ports and the
// unknown-port slot.
type Totals struct {
	Rx, Injected, Tx, Absorbed, Dropped uint64
	Drops                               [vswitch.NumDropReasons]uint64
}

// Sum adds up a switch's per-port counters.
func Sum(st vswitch.Stats) Totals {
	var s Totals
	add := func(p *vswitch.PortStats) {
		s.Rx += p.RxPackets
		s.Injected += p.Injected
		s.Tx += p.TxPackets
		s.Absorbed += p.Absorbed
		s.Dropped += p.Dropped()
		for r, n := range p.Drops {
			s.Drops[r] += n
		}
	}
	for i := range st.Ports {
		add(&st.Ports[i])
	}
	add(&st.Unknown)
	return s
}

// In is what entered the switch: received, injected, and flood copies.
func (s Totals) In(st vswitch.Stats) uint64 { return s.Rx + s.Injected + st.FloodCopies }

// Out is what left it: transmitted, dropped, absorbed.
func (s Totals) Out() uint64 { return s.Tx + s.Dropped + s.Absorbed }

func (s Totals) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rx %d injected %d tx %d absorbed %d dropped %d", s.Rx, s.Injected, s.Tx, s.Absorbed, s.Dropped)
	for r, n := range s.Drops {
		if n != 0 {
			fmt.Fprintf(&b, " %v=%d", vswitch.DropReason(r), n)
		}
	}
	return b.String()
}

// CleanupT is T with Cleanup, for Goroutines.
type CleanupT interface {
	T
	Cleanup(func())
}

// Goroutines records the goroutines alive now and, when the test ends,
// reports those it started that are still running after a bounded wait
// (goroutines.DefaultWait). Goroutines of the runtime and of package
// testing are ignored. Not for tests that run in parallel with others,
// whose goroutines it would count.
func Goroutines(t CleanupT) {
	t.Helper()
	GoroutinesWithin(t, goroutines.DefaultWait)
}

// GoroutinesWithin is Goroutines with its own bound on the wait.
func GoroutinesWithin(t CleanupT, wait time.Duration) {
	t.Helper()
	before := goroutines.Take()
	t.Cleanup(func() {
		if leaked := before.Leaked(wait); len(leaked) > 0 {
			t.Errorf("ledger: %d goroutines started by the test are still running:\n%s", len(leaked), goroutines.Format(leaked))
		}
	})
}

// VerifyNoLeaks runs the tests and returns their exit code, or 1 when they
// passed but left goroutines running:
//
//	func TestMain(m *testing.M) { os.Exit(ledger.VerifyNoLeaks(m)) }
//
// Packages below vswitch (nbl, inject, ...) cannot import ledger from
// their internal tests without an import cycle; they use package
// internal/ledger/goroutines, which imports nothing of the project.
func VerifyNoLeaks(m goroutines.Runner) int { return goroutines.VerifyNoLeaks(m) }
