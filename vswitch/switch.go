package vswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/goid"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/ring"
)

// Config describes a switch.
type Config struct {
	// ID is the switch's GUID: the VSWITCH_ID incoming value and the
	// vSwitchId of FwpsInjectvSwitchEthernetIngressAsync0. Required.
	ID inject.GUID
	// Stack is the injection stack the switch registers with (default
	// inject.Default).
	Stack *inject.Stack
	// Workers is the number of worker goroutines (default 1). Port i is
	// served by worker i % Workers.
	Workers int
	// Burst is the number of frames a worker takes per receive call and per
	// step (default 32).
	Burst int
	// CopyPoolSize is the number of NBLs (with frames of MaxFrameSize) the
	// switch keeps for the copies of flooded frames (default 4096).
	CopyPoolSize int
	// MaxFrameSize is the largest frame switched, Ethernet header included
	// (default 9216); longer ones are dropped as oversize.
	MaxFrameSize int
	// FDBSize is the number of MAC table entries (default 8192; rounded up
	// to a power of two). FDBPortLimit bounds the entries one port may own
	// (default FDBSize/4). FDBAgeing is how long an entry lives without
	// being refreshed (default 300 s).
	FDBSize      int
	FDBPortLimit int
	FDBAgeing    time.Duration
	// HopLimit is how many times a frame (and its clones) may be injected
	// before the switch drops it as a loop (default 8).
	HopLimit uint16
	// StormLimit is the ports' default PortConfig.StormLimit: the frames
	// one port may have flooded per second (0: no limit).
	StormLimit int
	// InjectRingSize and TxRingSize size each worker's injection ring and
	// each port's transmit ring (default 4096 each).
	InjectRingSize int
	TxRingSize     int
	// Manual makes Start launch no goroutines: the caller drives the
	// workers with Step, on one goroutine. For tests, deterministic
	// benchmarks and programs with their own scheduling.
	Manual bool
	// PinWorkers binds worker i to CPU i (runtime.LockOSThread and
	// sched_setaffinity).
	PinWorkers bool
	// NetworkType is the VSWITCH_NETWORK_TYPE value classifies see
	// (FWP_VSWITCH_NETWORK_TYPE_*; default UNKNOWN).
	NetworkType uint8
	// ProfileLabels are extra pprof label pairs (key, value, ...) the
	// workers carry besides stage and worker, e.g. "scenario", "forward".
	ProfileLabels []string
	// Logger receives the switch's rare events (a callout disabled after a
	// panic, a table full); default slog.Default(). Each kind is logged
	// once, not per frame.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.ID == (inject.GUID{}) {
		return errors.New("vswitch: Config.ID (the switch GUID) is required")
	}
	if c.Stack == nil {
		c.Stack = inject.Default
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Workers, 1)
	def(&c.Burst, 32)
	def(&c.CopyPoolSize, 4096)
	def(&c.MaxFrameSize, 9216)
	def(&c.FDBSize, 8192)
	def(&c.FDBPortLimit, max(1, c.FDBSize/4))
	def(&c.InjectRingSize, 4096)
	def(&c.TxRingSize, 4096)
	if c.FDBAgeing == 0 {
		c.FDBAgeing = 300 * time.Second
	}
	if c.HopLimit == 0 {
		c.HopLimit = 8
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Workers < 1 || c.Workers > 1024:
		return fmt.Errorf("vswitch: Workers %d out of 1-1024", c.Workers)
	case c.Burst < 1 || c.Burst > 1024:
		return fmt.Errorf("vswitch: Burst %d out of 1-1024", c.Burst)
	case c.MaxFrameSize < 64:
		return fmt.Errorf("vswitch: MaxFrameSize %d below 64", c.MaxFrameSize)
	case len(c.ProfileLabels)%2 != 0:
		return fmt.Errorf("vswitch: ProfileLabels must be key, value pairs")
	case c.StormLimit < 0 || c.StormLimit > 1<<30:
		return fmt.Errorf("vswitch: StormLimit %d out of 0-2^30", c.StormLimit)
	case c.CopyPoolSize < 1 || c.FDBSize < 1 || c.FDBPortLimit < 1:
		return fmt.Errorf("vswitch: CopyPoolSize, FDBSize and FDBPortLimit must be positive")
	}
	for _, n := range []int{c.InjectRingSize, c.TxRingSize} {
		if n < 2 || n&(n-1) != 0 {
			return fmt.Errorf("vswitch: ring size %d is not a power of two of at least 2", n)
		}
	}
	return nil
}

// port is the switch's state for one port.
type port struct {
	cfg     PortConfig
	p       Port
	idx     int
	owner   *worker
	name    []byte
	tx      *ring.Ring[*nbl.NetBufferList] // MPSC: any worker enqueues, the owner sends
	q       QueuedSender                   // non-nil: every worker sends through its own queue (tx unused)
	allowed [4096 / 64]uint64              // trunk VLAN bitmap
	closed  bool
	rxDone  bool // Receive returned io.EOF (owner worker only)
	// Storm limit, kept by the owner worker alone (frames from a port,
	// received or injected, are switched on its owner).
	stormLimit uint32 // 0: none
	stormSec   uint32 // the second stormUsed counts in
	stormUsed  uint32
}

func (p *port) allows(vlan uint16) bool { return p.allowed[vlan/64]&(1<<(vlan%64)) != 0 }

// Switch is a virtual switch: ports, a MAC table, VLANs, flooding, and the
// WFP vSwitch layers with their filters and callouts. It registers with an
// inject.Stack as the target of FwpsInjectvSwitchEthernetIngressAsync0.
//
// Set it up with AddPort, RegisterCallout and AddFilter, then Start it.
// Callouts and filters can also change while it runs. Close stops it.
type Switch struct {
	cfg     Config
	stack   *inject.Stack
	ports   []*port
	byID    map[uint32]int
	dense   []int32 // port ID -> index+1 for IDs below denseIDs
	workers []*worker
	fdb     *fdb
	copies  *nbl.Pool
	engine  filterEngine
	start   time.Time
	idBytes [16]byte

	state atomic.Int32 // 0 set up, 1 running, 2 closing, 3 closed
	// now is the switch's clock in whole seconds since start, for MAC
	// ageing: a ticker keeps it, so workers read a word instead of the
	// system clock (tens of nanoseconds on a VM).
	now       atomic.Uint32
	stopClock chan struct{}
	stop      atomic.Bool
	wg        sync.WaitGroup
	closeMu   sync.Mutex
	// lendOrder holds each worker's goroutine until every worker has lent
	// the caches of its own ports' pools (worker.lend).
	lendOrder sync.WaitGroup

	// stats not tied to a port
	rightsViolations atomic.Uint64
	injectNoFilter   atomic.Uint64
	learnFull        atomic.Uint64
	learnPortLimit   atomic.Uint64
	flooded          atomic.Uint64
	floodCopies      atomic.Uint64
	// Counted outside the workers, per port plus the unknown-port slot:
	// injections (on the injector's goroutine) and their refusals.
	injected   []atomic.Uint64
	extraDrops [][NumDropReasons]atomic.Uint64
	deferred   deferredCompletions

	logged sync.Map
}

const (
	stateSetup = iota
	stateRunning
	stateClosing
	stateClosed
)

// ErrClosed is returned by operations on a closed switch.
var ErrClosed = errors.New("vswitch: switch closed")

// New makes a switch. It registers with its stack when it starts.
func New(cfg Config) (*Switch, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	copies, err := nbl.NewPool(nbl.Config{NBLs: cfg.CopyPoolSize, FrameSize: cfg.MaxFrameSize + 128, Headroom: 128})
	if err != nil {
		return nil, err
	}
	s := &Switch{cfg: cfg, stack: cfg.Stack, byID: map[uint32]int{}, copies: copies, start: time.Now(), idBytes: cfg.ID,
		injected: make([]atomic.Uint64, 1), extraDrops: make([][NumDropReasons]atomic.Uint64, 1)}
	s.engine.init()
	return s, nil
}

// ID returns the switch's GUID.
func (s *Switch) ID() inject.GUID { return s.cfg.ID }

// VSwitchID implements inject.VSwitchTarget.
func (s *Switch) VSwitchID() inject.GUID { return s.cfg.ID }

// Config returns the configuration with defaults filled in.
func (s *Switch) Config() Config { return s.cfg }

// AddPort attaches a port. Ports are added before Start.
func (s *Switch) AddPort(p Port, cfg PortConfig) error {
	if s.state.Load() != stateSetup {
		return errors.New("vswitch: ports are added before Start")
	}
	if p == nil {
		return errors.New("vswitch: nil Port")
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if _, dup := s.byID[cfg.ID]; dup {
		return fmt.Errorf("vswitch: port ID %d is taken", cfg.ID)
	}
	tx, err := ring.New[*nbl.NetBufferList](s.cfg.TxRingSize, ring.MPSC)
	if err != nil {
		return err
	}
	pt := &port{cfg: cfg, p: p, idx: len(s.ports), name: []byte(cfg.Name), tx: tx}
	switch {
	case cfg.StormLimit > 0:
		pt.stormLimit = uint32(cfg.StormLimit)
	case cfg.StormLimit == 0 && s.cfg.StormLimit > 0:
		pt.stormLimit = uint32(s.cfg.StormLimit)
	}
	for _, v := range cfg.Allowed {
		pt.allowed[v/64] |= 1 << (v % 64)
	}
	s.byID[cfg.ID] = pt.idx
	if cfg.ID < denseIDs {
		if int(cfg.ID) >= len(s.dense) {
			s.dense = append(s.dense, make([]int32, int(cfg.ID)+1-len(s.dense))...)
		}
		s.dense[cfg.ID] = int32(pt.idx + 1)
	}
	s.ports = append(s.ports, pt)
	s.injected = make([]atomic.Uint64, len(s.ports)+1)
	s.extraDrops = make([][NumDropReasons]atomic.Uint64, len(s.ports)+1)
	return nil
}

// denseIDs bounds the port IDs looked up in an array rather than the map.
const denseIDs = 4096

// portIndex returns the index of the port with the given ID.
func (s *Switch) portIndex(id uint32) (int, bool) {
	if id < uint32(len(s.dense)) {
		i := int(s.dense[id]) - 1
		return i, i >= 0
	}
	if id < denseIDs {
		return -1, false
	}
	i, ok := s.byID[id]
	return i, ok
}

// Ports returns the number of ports.
func (s *Switch) Ports() int { return len(s.ports) }

// Start launches the workers.
func (s *Switch) Start() error {
	if !s.state.CompareAndSwap(stateSetup, stateRunning) {
		return errors.New("vswitch: Start called twice or after Close")
	}
	limits := make([]int64, len(s.ports)+1)
	for i := range limits {
		limits[i] = int64(s.cfg.FDBPortLimit)
		if i < len(s.ports) && s.ports[i].cfg.MaxFDBEntries > 0 {
			limits[i] = int64(s.ports[i].cfg.MaxFDBEntries)
		}
	}
	s.fdb = newFDB(s.cfg.FDBSize, limits, uint32(s.cfg.FDBAgeing/time.Second))
	s.workers = make([]*worker, s.cfg.Workers)
	for i := range s.workers {
		w, err := newWorker(s, i)
		if err != nil {
			return err
		}
		s.workers[i] = w
	}
	for _, p := range s.ports {
		p.owner = s.workers[p.idx%len(s.workers)]
		p.owner.ports = append(p.owner.ports, p)
		p.q = nil
		if q, ok := p.p.(QueuedSender); ok && q.TxQueues(len(s.workers)) {
			p.q = q
		}
	}
	for _, w := range s.workers {
		w.txPorts = w.txPorts[:0]
		for _, p := range s.ports {
			if p.owner == w || p.q != nil {
				w.txPorts = append(w.txPorts, p)
			}
		}
	}
	for _, w := range s.workers {
		if err := w.setupCaches(); err != nil {
			return err
		}
	}
	if err := s.stack.RegisterVSwitch(s); err != nil {
		s.state.Store(stateSetup)
		return err
	}
	s.stopClock = make(chan struct{})
	s.wg.Add(1)
	go s.clock(s.stopClock)
	if s.cfg.Manual {
		for _, w := range s.workers {
			cq, err := inject.NewCompletionQueue(s.stack, 4*s.cfg.Burst, w.caches...)
			if err != nil {
				return err
			}
			w.cq = cq
		}
		return nil
	}
	ready := make(chan error, len(s.workers))
	s.lendOrder.Add(len(s.workers))
	for _, w := range s.workers {
		s.wg.Add(1)
		go w.run(ready)
	}
	for range s.workers {
		if err := <-ready; err != nil {
			s.cfg.Logger.Warn("vswitch: worker set-up", "err", err)
		}
	}
	return nil
}

// clock keeps s.now until Close.
func (s *Switch) clock(stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.now.Store(uint32(time.Since(s.start) / time.Second))
		case <-stop:
			return
		}
	}
}

// Step runs one burst of every worker on the calling goroutine and reports
// whether any frame moved. It is for switches made with Config.Manual; a
// Step must not run concurrently with another Step or with Close.
func (s *Switch) Step() bool {
	if !s.cfg.Manual || s.state.Load() != stateRunning {
		return false
	}
	moved := false
	g := goid.G()
	for _, w := range s.workers {
		w.g.Store(g)
		w.lend(nil)
		if w.step() {
			moved = true
		} else {
			w.flushForeign()
		}
		w.unlend()
		w.g.Store(0)
		w.loops++
		if w.loops&63 == 0 {
			w.publish()
		}
	}
	return moved
}

// InjectIngress implements inject.VSwitchTarget: an injected chain enters
// the ingress path of the worker that serves its source port (worker 0 for
// an unknown port) through that worker's injection ring. NBLs that do not
// fit, or that arrive while the switch closes, are completed at once with a
// failure status and counted.
func (s *Switch) InjectIngress(nbls *nbl.NetBufferList, count int, sourcePortID uint32, sourceNicIndex uint16) {
	w := s.workers0()
	slot := len(s.ports) // the unknown-port slot
	if idx, known := s.portIndex(sourcePortID); known {
		slot = idx
		if w != nil {
			w = s.ports[idx].owner
		}
	}
	if w != nil {
		if g := w.g.Load(); g != 0 && g == goid.G() {
			// A callout of this worker injects while the worker classifies:
			// the frames join the worker's local queue, with no ring and no
			// atomic counter in between. One NBL with room for it, a
			// callout's usual call, is queued here, with no further call.
			if nbls.Next == nil && len(w.local) < cap(w.local) {
				nbls.Info.Switch.SourcePortID = sourcePortID
				nbls.Info.Switch.SourceNicIndex = sourceNicIndex
				w.local = append(w.local, nbls)
				w.counts[slot][cInjected]++
				return
			}
			w.injectLocal(nbls, slot, sourcePortID, sourceNicIndex)
			return
		}
	}
	n, _ := nbls.Len(inject.MaxChain)
	s.injected[slot].Add(uint64(n))
	if w == nil {
		s.extraDrops[slot][DropClosed].Add(uint64(n))
		s.failChain(nbls, inject.STATUS_INVALID_DEVICE_STATE)
		return
	}
	w.injecting.Add(1)
	if s.state.Load() != stateRunning {
		w.injecting.Add(-1)
		s.extraDrops[slot][DropClosed].Add(uint64(n))
		s.failChain(nbls, inject.STATUS_INVALID_DEVICE_STATE)
		return
	}
	for l := nbls; l != nil; {
		next := l.Next
		l.Next = nil
		l.Info.Switch.SourcePortID = sourcePortID
		l.Info.Switch.SourceNicIndex = sourceNicIndex
		if !w.injq.Enqueue(l) {
			// The ring is full: complete the rest with a failure. This runs
			// on the caller's goroutine, so it uses a queue of its own.
			l.Next = next
			k, _ := l.Len(inject.MaxChain)
			s.extraDrops[slot][DropRingFull].Add(uint64(k))
			s.failChain(l, inject.STATUS_INSUFFICIENT_RESOURCES)
			break
		}
		l = next
	}
	w.injecting.Add(-1)
}

func (s *Switch) workers0() *worker {
	if len(s.workers) == 0 {
		return nil
	}
	return s.workers[0]
}

// failChain completes a chain with a failure status on the calling
// goroutine (rare paths only: it allocates a completion queue).
func (s *Switch) failChain(l *nbl.NetBufferList, st inject.Status) {
	q, _ := inject.NewCompletionQueue(s.stack, 64, nil)
	q.CompleteChain(l, st)
	q.Flush()
}

// Close stops the switch: it leaves the stack (new injections find no
// switch), stops the workers after their current burst, completes every
// frame still queued (counted as DropClosed, with
// STATUS_INVALID_DEVICE_STATE for injected ones), closes the ports and
// frees the switch's memory. It returns within the context's deadline or
// reports what it could not finish. Close is idempotent.
func (s *Switch) Close() error { return s.CloseContext(context.Background()) }

// CloseContext is Close with a bound on the wait for the workers.
func (s *Switch) CloseContext(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	switch s.state.Load() {
	case stateClosed:
		return nil
	case stateSetup:
		s.state.Store(stateClosed)
		var errs []error
		for _, p := range s.ports {
			errs = append(errs, p.p.Close())
		}
		s.copies.Close()
		return errors.Join(errs...)
	}
	s.stack.UnregisterVSwitch(s.cfg.ID)
	s.state.Store(stateClosing)
	s.stop.Store(true)
	if s.stopClock != nil {
		// Close may run again after a timeout: stop the clock once.
		close(s.stopClock)
		s.stopClock = nil
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("vswitch: close: workers still running: %w", ctx.Err())
	}
	// Injections that passed the state check before it changed are still
	// enqueueing: wait for them, then drain.
	for _, w := range s.workers {
		for w.injecting.Load() != 0 {
			runtime.Gosched()
		}
	}
	s.deferred.mu.Lock()
	s.deferred.closed = true
	s.deferred.mu.Unlock()
	for _, w := range s.workers {
		w.takeDeferred()
		w.drain()
	}
	for _, w := range s.workers {
		for _, c := range w.caches {
			c.Flush()
		}
		w.publish()
	}
	var errs []error
	for _, p := range s.ports {
		errs = append(errs, p.p.Close())
	}
	s.state.Store(stateClosed)
	if !s.copies.Full() {
		errs = append(errs, fmt.Errorf("vswitch: %d copy NBLs still in use at close", s.copies.InUse()))
	}
	errs = append(errs, s.copies.Close())
	return errors.Join(errs...)
}

// logf logs a rare event once per format string.
func (s *Switch) logf(format string, args ...any) {
	if _, seen := s.logged.LoadOrStore(format, true); seen {
		return
	}
	s.cfg.Logger.Warn(fmt.Sprintf(format, args...))
}

// Stats are the switch's counters besides the per-port ones.
type Stats struct {
	Ports []PortStats
	// Unknown counts frames injected with a source port the switch does
	// not have.
	Unknown PortStats
	// FDBTableFull and FDBPortLimit count source addresses not learnt
	// because the table's probe window was full or the port had its share.
	FDBTableFull, FDBPortLimit uint64
	// Flooded counts frames sent to more than one port; FloodCopies counts
	// the copies made for them (or that failed, counted as DropPoolEmpty).
	// With them the counters balance: the sum over ports of received +
	// injected + FloodCopies equals transmitted + dropped + absorbed.
	Flooded, FloodCopies uint64
	// RightsViolations counts PERMITs written by callouts that lacked
	// FWPS_RIGHT_ACTION_WRITE (ignored).
	RightsViolations uint64
	// InjectedWithoutFilter counts injected frames whose injecting handle
	// has no callout with a filter at the ingress layer: in WFP their fate
	// is undefined (conformance case 55); here they are switched normally.
	InjectedWithoutFilter uint64
}

// Stats returns the counters. Workers publish their counts every few
// bursts, so figures may lag by a millisecond; after Close they are exact.
func (s *Switch) Stats() Stats {
	st := Stats{Ports: make([]PortStats, len(s.ports))}
	for _, w := range s.workers {
		for i := range st.Ports {
			w.read(i, &st.Ports[i])
		}
		w.read(len(s.ports), &st.Unknown)
		st.RightsViolations += w.pubRights.Load()
	}
	for i := range s.injected {
		ps := &st.Unknown
		if i < len(s.ports) {
			ps = &st.Ports[i]
		}
		ps.Injected += s.injected[i].Load()
		for r := range s.extraDrops[i] {
			ps.Drops[r] += s.extraDrops[i][r].Load()
		}
	}
	st.FDBTableFull = s.learnFull.Load()
	st.FDBPortLimit = s.learnPortLimit.Load()
	st.Flooded = s.flooded.Load()
	st.FloodCopies = s.floodCopies.Load()
	st.InjectedWithoutFilter = s.injectNoFilter.Load()
	return st
}

// CopyPool returns the pool of the switch's own NBLs (flood copies).
func (s *Switch) CopyPool() *nbl.Pool { return s.copies }

// FDBEntries returns the number of MAC addresses learnt on a port (by
// index in AddPort order).
func (s *Switch) FDBEntries(portIndex int) int64 {
	if s.fdb == nil {
		return 0
	}
	return s.fdb.entries(portIndex)
}

// deferredCompletions holds absorbed injected frames whose last hold was
// dropped off the worker (a callout's Dereference or FreeClone): their
// injection completes at a worker's next step.
type deferredCompletions struct {
	mu     sync.Mutex
	list   []*nbl.NetBufferList
	n      atomic.Int32
	closed bool
}

// FinishNetBufferList implements nbl.Finisher: an absorbed injected frame
// is no longer held; its injection can complete. After Close it completes
// here, on the caller's goroutine.
func (s *Switch) FinishNetBufferList(l *nbl.NetBufferList) {
	d := &s.deferred
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		s.failChain(l, inject.STATUS_SUCCESS)
		return
	}
	d.list = append(d.list, l)
	d.n.Add(1)
	d.mu.Unlock()
}

// takeDeferred completes the deferred frames through the worker's queue.
func (w *worker) takeDeferred() {
	d := &w.sw.deferred
	if d.n.Load() == 0 {
		return
	}
	d.mu.Lock()
	list := d.list
	d.list = nil
	d.n.Store(0)
	d.mu.Unlock()
	for _, l := range list {
		w.cq.Complete(l, inject.STATUS_SUCCESS)
	}
}
