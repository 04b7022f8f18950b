package vswitch

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/internal/goid"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/ring"
)

// worker runs to completion over bursts: injected frames and received
// frames go through ingress classification, learning, forwarding and egress
// classification into the destination ports' transmit rings; then the
// worker transmits on its own ports and flushes its completions.
type worker struct {
	// Padded on both sides, as are the arrays it writes (cpu.Isolated):
	// the workers are made one after the other, and the allocator would
	// put each next to the last, where their writes would share lines.
	_         cpu.CacheLinePad
	sw        *Switch
	id        int
	ports     []*port
	txPorts   []*port      // the ports it sends to and reclaims from: its own, and every QueuedSender
	queued    []int        // per port index: frames sent through its own queue of a QueuedSender, not yet reclaimed
	caches    []*nbl.Cache // one per pool the worker releases into: ports' and the copy pool
	foreign   []*nbl.Cache // those of pools of ports other workers serve (flushed when idle)
	lent      []*nbl.Cache // those lent to their pools on the worker's goroutine
	copyCache *nbl.Cache   // the switch's copy pool
	cq        *inject.CompletionQueue
	injq      *ring.Ring[*nbl.NetBufferList]
	injecting atomic.Int64 // InjectIngress calls in progress into injq
	// g is the goroutine running the worker (goid.G), 0 when none: an
	// injection made on it, by a callout the worker is running, goes to
	// local instead of injq. localNext takes the injections made while
	// local is being switched.
	g         atomic.Uintptr
	local     []*nbl.NetBufferList
	localNext []*nbl.NetBufferList

	burst     []*nbl.NetBufferList
	txbuf     []*nbl.NetBufferList
	stage     []stage              // frames staged per destination port
	free      []*nbl.NetBufferList // frames to release in one burst
	lastSrc   fdbMemo              // the last source address learnt
	lastDst   fdbMemo              // the last destination looked up
	lastPool  *nbl.Pool            // cacheFor's last question
	lastCache *nbl.Cache           // and its answer
	dests     []int
	eng       *engine
	now       uint32
	inIngress IncomingValues
	inEgress  IncomingValues
	metaIn    Metadata // the ingress layer's metadata
	metaOut   Metadata // the egress layer's
	out       ClassifyOut
	hdr       [18]byte
	loops     uint64
	stats     workerStats
	counts    [][nCounters]uint64 // per port, plus the unknown-port slot
	pub       [][nCounters]atomic.Uint64
	pubRights atomic.Uint64

	// Where a callout panic lands (see ingressBurst): whether a callout
	// runs, the last callout called, the frame it classifies and the port
	// index its drop counts on, and the original of a flooded frame while
	// its copies are classified.
	calling   bool
	inCallout *Callout
	inFrame   *nbl.NetBufferList
	inIdx     int
	flooding  *nbl.NetBufferList
	floodSrc  int

	// credited holds the injection handles of the callouts this step ran,
	// which were asked for credit (inject.Handle.LendCredit) once in the
	// step; lastCredited is the last one. slotted holds the handles the
	// worker has a credit slot of, whose credit it returns now and then
	// (settleCredit), and whose slots it drops when it stops (unlend) or
	// the handle closes.
	credited     []*inject.Handle
	lastCredited *inject.Handle
	slotted      []*inject.Handle

	_ cpu.CacheLinePad
}

type workerStats struct {
	rightsViolations uint64
}

func newWorker(s *Switch, id int) (*worker, error) {
	injq, err := ring.New[*nbl.NetBufferList](s.cfg.InjectRingSize, ring.MPSC)
	if err != nil {
		return nil, err
	}
	w := &worker{
		sw:        s,
		id:        id,
		injq:      injq,
		burst:     cpu.Isolated[*nbl.NetBufferList](s.cfg.Burst, s.cfg.Burst),
		txbuf:     cpu.Isolated[*nbl.NetBufferList](s.cfg.Burst, s.cfg.Burst),
		stage:     cpu.Isolated[stage](len(s.ports), len(s.ports)),
		free:      cpu.Isolated[*nbl.NetBufferList](0, s.cfg.Burst),
		dests:     cpu.Isolated[int](0, len(s.ports)),
		local:     cpu.Isolated[*nbl.NetBufferList](0, s.cfg.InjectRingSize),
		localNext: cpu.Isolated[*nbl.NetBufferList](0, s.cfg.InjectRingSize),
		counts:    cpu.Isolated[[nCounters]uint64](len(s.ports)+1, len(s.ports)+1),
		queued:    cpu.Isolated[int](len(s.ports), len(s.ports)),
		credited:  cpu.Isolated[*inject.Handle](0, 4),
		slotted:   cpu.Isolated[*inject.Handle](0, 4),
		pub:       cpu.Isolated[[nCounters]atomic.Uint64](len(s.ports)+1, len(s.ports)+1),
	}
	for i := range w.stage {
		w.stage[i].buf = cpu.Isolated[*nbl.NetBufferList](s.cfg.Burst, s.cfg.Burst)
	}
	w.initValues()
	if w.copyCache, err = s.copies.NewCache(max(2, s.cfg.Burst*2)); err != nil {
		return nil, err
	}
	w.caches = append(w.caches, w.copyCache)
	return w, nil
}

// setupCaches gives the worker an NBL cache for every pool it may release
// into. For the pool of a port it serves, it shares the port's own cache
// when the port offers one (both run on this worker's goroutine), so a
// released frame is the next one received, still warm in this core's
// cache.
func (w *worker) setupCaches() error {
	for _, p := range w.sw.ports {
		pp, ok := p.p.(interface{ Pool() *nbl.Pool })
		if !ok || pp.Pool() == nil {
			continue
		}
		pool := pp.Pool()
		have := false
		for _, c := range w.caches {
			have = have || c.Pool() == pool
		}
		if have {
			continue
		}
		if pc, ok := p.p.(interface{ Cache() *nbl.Cache }); ok && p.owner == w && pc.Cache() != nil && pc.Cache().Pool() == pool {
			w.caches = append(w.caches, pc.Cache())
			continue
		}
		// The pool of a port another worker serves: its frames come back
		// here after crossing. Keep the cache small beside the pool, so
		// that the caches of all workers together cannot hold it all, and
		// flush it when the worker idles (loop, Step).
		size := min(w.sw.cfg.Burst*4, pool.Cap()/(4*len(w.sw.workers)))
		c, err := pool.NewCache(max(2, size))
		if err != nil {
			return err
		}
		w.caches = append(w.caches, c)
		w.foreign = append(w.foreign, c)
	}
	w.lastPool, w.lastCache = nil, nil
	w.metaIn.pool, w.metaIn.Cache = nil, nil
	w.metaOut.pool, w.metaOut.Cache = nil, nil
	return nil
}

// lend lends the worker's caches to their pools on the worker's goroutine
// (nbl.Cache.Lend): callouts and completion functions that use pool-level
// methods (Pool.Clone, FreeClone, NetBufferList.Dereference...) then go
// through them. A pool lends to one goroutine at a time, and one another
// worker already lends to keeps its shared ring for this one. So the
// worker first lends the caches of its own ports' pools, whose frames its
// callouts and completions see most; with order set (the workers'
// goroutines, not Step), it then waits until every worker has done so
// before it lends the rest (the copy pool's, other workers' ports'), so
// that no worker takes the pool of a port another serves from it.
func (w *worker) lend(order *sync.WaitGroup) {
	w.lent = w.lent[:0]
	w.lendCaches(false)
	if order != nil {
		order.Done()
		order.Wait()
	}
	w.lendCaches(true)
}

// lendCaches lends the caches of the pools of the worker's own ports, or
// (others) the rest.
func (w *worker) lendCaches(others bool) {
	for _, c := range w.caches {
		other := c == w.copyCache || slices.Contains(w.foreign, c)
		if other == others && c.Lend() {
			w.lent = append(w.lent, c)
		}
	}
}

func (w *worker) unlend() {
	for _, c := range w.lent {
		c.Unlend()
	}
	clear(w.lent)
	w.lent = w.lent[:0]
	// The credit slots too: another goroutine may run the worker next
	// (Step), and a goroutine that exits frees its slots.
	for _, h := range w.slotted {
		h.DropCredit()
	}
	clear(w.slotted)
	w.slotted = w.slotted[:0]
}

// flushForeign gives the descriptors the worker keeps for other workers'
// ports back to their pools.
func (w *worker) flushForeign() {
	for _, c := range w.foreign {
		c.Flush()
	}
}

func (w *worker) run(ready chan<- error) {
	defer w.sw.wg.Done()
	var setupErr error
	if w.sw.cfg.PinWorkers {
		unpin, err := cpu.Pin(w.id % runtime.NumCPU())
		defer unpin()
		setupErr = err
	}
	w.sw.stack.EnterDispatch()
	defer w.sw.stack.LeaveDispatch()
	cq, err := inject.NewCompletionQueue(w.sw.stack, 4*w.sw.cfg.Burst, w.caches...)
	if err != nil {
		w.sw.lendOrder.Done()
		ready <- err
		return
	}
	w.cq = cq
	ready <- setupErr
	labels := pprof.Labels(append([]string{"stage", "vswitch-worker", "worker", strconv.Itoa(w.id)}, w.sw.cfg.ProfileLabels...)...)
	pprof.Do(context.Background(), labels, func(context.Context) {
		w.g.Store(goid.G())
		w.lend(&w.sw.lendOrder)
		w.loop()
		w.unlend()
		w.g.Store(0)
	})
}

func (w *worker) loop() {
	idle := 0
	for !w.sw.stop.Load() {
		if w.step() {
			idle = 0
		} else {
			idle++
			if idle == 1 {
				w.flushForeign()
			}
			switch {
			case idle < 64:
			case idle < 4096:
				runtime.Gosched()
			default:
				time.Sleep(20 * time.Microsecond)
			}
		}
		w.loops++
		if w.loops&63 == 0 || idle == 64 {
			w.publish()
		}
	}
	w.cq.Flush()
	w.publish()
}

// step runs one burst of every stage and reports whether anything moved.
func (w *worker) step() bool {
	w.eng = w.sw.engine.snap.Load()
	w.now = w.sw.now.Load()
	moved := false

	w.takeDeferred()
	// Injected frames first: they hold pool memory and a callout's
	// references, and they are the ones a reinjecting callout waits for.
	for range 4 {
		n := w.injq.DequeueBurst(w.burst)
		if n == 0 {
			break
		}
		moved = true
		w.ingressBurst(w.burst[:n], -1, true)
		w.flushFree()
		clear(w.burst[:n])
	}
	// Backpressure: while the injection ring is more than half full, take
	// no new frames from the ports; they wait in their own queues (for a
	// kernel port, its ring) instead of being dropped here.
	receive := w.injq.Len() <= w.injq.Cap()/2 && len(w.local) <= cap(w.local)/2
	for _, p := range w.ports {
		if !receive {
			break
		}
		if p.rxDone {
			continue
		}
		n, err := p.p.Receive(w.burst)
		if err != nil {
			w.receiveError(p, err)
		}
		if n == 0 {
			continue
		}
		moved = true
		var bytes uint64
		for _, l := range w.burst[:n] {
			l.Info.Switch.SourcePortID = p.cfg.ID
			l.Info.Switch.SourceNicIndex = p.cfg.NicIndex
			bytes += uint64(l.FirstNetBuffer().DataLength())
		}
		w.ingressBurst(w.burst[:n], p.idx, false)
		// What the burst dropped or absorbed goes back before the next
		// port receives: ports may share a pool.
		w.flushFree()
		w.count(p.idx, cRxPackets, uint64(n))
		w.count(p.idx, cRxBytes, bytes)
		clear(w.burst[:n])
	}
	// What callouts injected on this worker, now, while it is warm; a few
	// rounds, as switching these may inject again.
	for range 4 {
		if len(w.local) == 0 {
			break
		}
		moved = true
		ls := w.local
		w.local = w.localNext
		w.ingressBurst(ls, -1, true)
		w.flushFree()
		clear(ls)
		w.localNext = ls[:0]
	}
	w.flushStages()
	for _, p := range w.txPorts {
		if w.transmit(p) {
			moved = true
		}
	}
	w.flushFree()
	w.cq.Flush()
	if len(w.slotted) > 0 {
		w.settleCredit(!moved || w.loops%creditSteps == 0)
	}
	return moved
}

// creditSteps is how many steps a worker keeps the injection credit it
// was lent (between two returns, while traffic flows and no handle
// closes): returning and lending it again writes the handle's shared
// count, which the workers would otherwise pass between their cores on
// every step.
const creditSteps = 64

// credit asks h, the injection handle of a callout about to run, for
// credit for this step (inject.Handle.LendCredit): the callout's
// injections into the switch then add nothing each to the handle's shared
// count, which two workers would pass between their cores on every frame.
// Each handle is asked once a step, and lends more only when the credit
// is used up; settleCredit gives back what is left.
func (w *worker) credit(h *inject.Handle) {
	w.lastCredited = h
	if slices.Contains(w.credited, h) {
		return
	}
	w.credited = append(w.credited, h)
	if !slices.Contains(w.slotted, h) {
		w.slotted = append(w.slotted, h)
	}
	h.LendCredit(4 * len(w.burst))
}

// settleCredit ends a step's credit: the slots of handles that are closing
// are dropped, with their credit, so that Destroy waits at most a step for
// the worker; with all, every handle's credit goes back (the worker was
// idle, or kept it for creditSteps steps), so that the handles' counts are
// exact while the switch is quiet and their completed counts trail by at
// most creditSteps steps while it is not.
func (w *worker) settleCredit(all bool) {
	clear(w.credited)
	w.credited = w.credited[:0]
	w.lastCredited = nil
	for i := len(w.slotted) - 1; i >= 0; i-- {
		h := w.slotted[i]
		if h.Closing() {
			w.dropSlot(h)
		} else if all {
			h.ReturnCredit()
		}
	}
}

// dropSlot frees the worker's credit slot of h.
func (w *worker) dropSlot(h *inject.Handle) {
	h.DropCredit()
	if i := slices.Index(w.slotted, h); i >= 0 {
		w.slotted = slices.Delete(w.slotted, i, i+1)
	}
}

// ingressBurst takes a burst through ingress: frames received on the port
// with index idx, or injected frames (injected true, idx -1: each frame's
// source port is looked up).
//
// A callout that panics is recovered here, once per burst rather than per
// classify: the callout is disabled and counted, the frame it was
// classifying is completed with a failure status (DropCalloutPanic), and
// so is the original of a flooded frame whose copy it was classifying; the
// rest of the burst goes on without the callout. A panic raised outside a
// callout is a fault of the switch and is not recovered.
func (w *worker) ingressBurst(ls []*nbl.NetBufferList, idx int, injected bool) {
	i := 0
	defer func() {
		if !w.calling {
			return // no callout running: nothing to recover (or not ours)
		}
		r := recover()
		c, l, at := w.inCallout, w.inFrame, w.inIdx
		w.calling, w.inCallout, w.inFrame = false, nil, nil
		c.panics.Add(1)
		c.disabled.Store(true)
		w.sw.logf("vswitch: callout %q panicked and is disabled: %v\n%s", c.Key, r, debug.Stack())
		w.drop(l, at, DropCalloutPanic, nbl.StatusFailure)
		if o := w.flooding; o != nil && o != l {
			w.drop(o, w.floodSrc, DropCalloutPanic, nbl.StatusFailure)
		}
		w.flooding = nil
		if i+1 < len(ls) {
			w.ingressBurst(ls[i+1:], idx, injected)
		}
	}()
	for ; i < len(ls); i++ {
		l := ls[i]
		src := idx
		if injected {
			var ok bool
			if src, ok = w.sw.portIndex(l.Info.Switch.SourcePortID); !ok {
				src = -1
			}
		}
		w.ingress(l, src, injected)
	}
}

// receiveError counts a port's receive error; io.EOF ends its input.
func (w *worker) receiveError(p *port, err error) {
	w.count(p.idx, cRxErrors, 1)
	if errors.Is(err, io.EOF) {
		p.rxDone = true
		w.sw.logf("vswitch: port %q: end of input", p.cfg.Name)
		return
	}
	w.sw.logf("vswitch: port %q: receive error: %v", p.cfg.Name, err)
}

// injectLocal queues an injected chain on the worker's own goroutine (see
// Switch.InjectIngress, which queues a single NBL itself). What does not
// fit is completed with a failure status and counted as DropRingFull.
func (w *worker) injectLocal(nbls *nbl.NetBufferList, slot int, sourcePortID uint32, sourceNicIndex uint16) {
	n := uint64(0)
	for l := nbls; l != nil; {
		next := l.Next
		l.Next = nil
		l.Info.Switch.SourcePortID = sourcePortID
		l.Info.Switch.SourceNicIndex = sourceNicIndex
		n++
		if len(w.local) == cap(w.local) {
			w.count(slot, cDrop0+int(DropRingFull), 1)
			w.cq.Complete(l, inject.STATUS_INSUFFICIENT_RESOURCES)
		} else {
			w.local = append(w.local, l)
		}
		l = next
	}
	w.count(slot, cInjected, n)
}

// count adds to a per-port counter; idx -1 is the unknown-port slot.
func (w *worker) count(idx, c int, n uint64) {
	if idx < 0 {
		idx = len(w.counts) - 1
	}
	w.counts[idx][c] += n
}

// drop completes a frame that goes no further and counts it. A frame the
// switch owns is released with the others of its burst (releaseLater).
func (w *worker) drop(l *nbl.NetBufferList, idx int, r DropReason, st inject.Status) {
	w.count(idx, cDrop0+int(r), 1)
	if l.Completion.Owner == nil {
		l.Status = st
		w.releaseLater(l)
		return
	}
	w.cq.Complete(l, st)
}

// header returns the first bytes of a frame's data, up to 18: from the
// frame itself when they are contiguous (the usual case), else copied.
func (w *worker) header(nb *nbl.NetBuffer) []byte {
	if d, ok := nb.Data(); ok {
		return d
	}
	return w.headerCopy(nb)
}

func (w *worker) headerCopy(nb *nbl.NetBuffer) []byte {
	n := nb.CopyOut(w.hdr[:], 0)
	return w.hdr[:n]
}

// ingress takes one frame through the ingress layer, learning and
// forwarding. idx is the source port's index (-1 for an unknown one).
func (w *worker) ingress(l *nbl.NetBufferList, idx int, injected bool) {
	s := w.sw
	nb := l.FirstNetBuffer()
	if nb == nil || nb.DataLength() < 14 {
		w.drop(l, idx, DropMalformed, nbl.StatusInvalidParameter)
		return
	}
	if nb.DataLength() > s.cfg.MaxFrameSize && (l.Info.GSOSize == 0 || nb.DataLength() > maxGSOFrame) {
		w.drop(l, idx, DropOversize, inject.STATUS_INVALID_BUFFER_SIZE)
		return
	}
	if l.Tag.Hops > s.cfg.HopLimit {
		s.logf("vswitch: a frame was injected more than %d times (a reinjection loop?); such frames are dropped", s.cfg.HopLimit)
		w.drop(l, idx, DropHopLimit, inject.STATUS_HOPLIMIT_EXCEEDED)
		return
	}
	d, contiguous := nb.Data() // header, inlined: the usual case
	if !contiguous {
		d = w.headerCopy(nb)
	}
	// An in-frame 802.1Q tag moves out of band: the frame is switched
	// untagged with its tag in Info.Ieee8021Q, and tagged again on egress
	// where the port wants it.
	if et := binary.BigEndian.Uint16(d[12:14]); et == 0x8100 || et == 0x88A8 {
		if l.Info.Ieee8021Q.Present {
			w.dropDoubleTagged(l, idx)
			return
		}
		if len(d) < 18 {
			w.drop(l, idx, DropMalformed, nbl.StatusInvalidParameter)
			return
		}
		if shared(l) {
			// Untag a copy: the bytes belong to other NBLs too.
			c := w.copyOf(l)
			if c == nil {
				w.drop(l, idx, DropPoolEmpty, nbl.StatusResources)
				return
			}
			c.Info.Switch = l.Info.Switch
			w.finish(l, injected)
			l, nb, injected = c, c.FirstNetBuffer(), false
		}
		if !w.stripTag(l, nb) {
			w.drop(l, idx, DropMalformed, nbl.StatusInvalidParameter)
			return
		}
		d = w.header(nb)
		if et := binary.BigEndian.Uint16(d[12:14]); et == 0x8100 || et == 0x88A8 {
			w.dropDoubleTagged(l, idx)
			return
		}
	}
	var p *port
	if idx >= 0 {
		p = s.ports[idx]
	}
	var vlan uint16
	ok := true
	if p != nil && p.cfg.Mode == Access && !l.Info.Ieee8021Q.Present {
		vlan = p.cfg.VLAN // ingressVLAN's usual case, inlined
	} else {
		vlan, ok = w.ingressVLAN(l, p)
	}
	if !ok {
		w.drop(l, idx, DropVLANMismatch, nbl.StatusInvalidParameter)
		return
	}
	if injected && !w.hasInjectorFilter(l) {
		s.injectNoFilter.Add(1)
	}
	if len(w.eng.ingress) > 0 && (p == nil || p.cfg.ID != 0) {
		if w.eng.ingressValues {
			w.fillIngress(l, d, vlan, p)
		}
		switch w.classify(w.eng.ingress, &w.inIngress, &w.metaIn, l, idx) {
		case verdictBlock:
			w.drop(l, idx, DropFilterBlock, STATUS_FWP_BLOCKED)
			return
		case verdictCalloutBlock:
			w.drop(l, idx, DropCalloutBlock, STATUS_FWP_BLOCKED)
			return
		case verdictAbsorb:
			w.absorb(l, idx, injected)
			return
		}
	}
	if p != nil && d[6]&1 == 0 && !w.lastSrc.hit(s.fdb, vlan, d[6:12], idx, w.now) {
		r := s.fdb.learn(vlan, d[6:12], idx, w.now)
		if r == learnKnown || r == learnUpdated || r == learnInserted {
			w.lastSrc.set(s.fdb, vlan, d[6:12], idx, w.now)
		}
		switch r {
		case learnTableFull:
			s.learnFull.Add(1)
			s.logf("vswitch: MAC table full: new source addresses are not learnt (their frames are flooded)")
		case learnPortLimit:
			s.learnPortLimit.Add(1)
			s.logf("vswitch: a port reached its MAC address limit; further source addresses on it are not learnt")
		}
	}
	w.forward(l, d, vlan, idx, injected)
}

// dropDoubleTagged drops a frame still tagged under its outer tag: a
// double-tagged (QinQ) frame. This switch does not tunnel them: leaving
// untagged on an access port or a trunk's native VLAN, its inner tag would
// put it into another VLAN beyond the link (VLAN hopping).
func (w *worker) dropDoubleTagged(l *nbl.NetBufferList, idx int) {
	w.sw.logf("vswitch: double-tagged frames are dropped (they could hop VLANs)")
	w.drop(l, idx, DropVLANMismatch, nbl.StatusInvalidParameter)
}

// maxGSOFrame is the largest frame accepted when it carries GSO
// information: 64 KiB of IP packet plus link headers.
const maxGSOFrame = 65535 + 18

// STATUS_FWP_BLOCKED is the status of a frame blocked by a filter or
// callout (the NTSTATUS of a WFP block).
const STATUS_FWP_BLOCKED nbl.Status = 0xC022001B

// stripTag removes an in-frame 802.1Q tag into Info.Ieee8021Q.
func (w *worker) stripTag(l *nbl.NetBufferList, nb *nbl.NetBuffer) bool {
	var h [16]byte
	if nb.CopyOut(h[:], 0) < 16 {
		return false
	}
	tci := binary.BigEndian.Uint16(h[14:16])
	l.Info.Ieee8021Q = nbl.Ieee8021QInfo{
		VlanID: tci & 0x0FFF, Priority: uint8(tci >> 13), CFI: tci&0x1000 != 0,
		Present: true, TPID: binary.BigEndian.Uint16(h[12:14]),
	}
	// Slide the MAC addresses over the tag, then drop the first 4 bytes.
	if nb.CopyIn(4, h[0:12]) != 12 {
		return false
	}
	return nb.Advance(4, false) == nil
}

// ingressVLAN applies the source port's VLAN rules and returns the
// frame's VLAN.
func (w *worker) ingressVLAN(l *nbl.NetBufferList, p *port) (uint16, bool) {
	q := &l.Info.Ieee8021Q
	tagged := q.Present && q.VlanID != 0
	if p == nil {
		if tagged {
			return q.VlanID, true
		}
		return 1, true
	}
	if p.cfg.Mode == Access {
		if tagged && q.VlanID != p.cfg.VLAN {
			return 0, false
		}
		return p.cfg.VLAN, true
	}
	if !tagged {
		return p.cfg.VLAN, p.cfg.VLAN != 0
	}
	// A tagged frame of the native VLAN is that VLAN's too.
	return q.VlanID, p.carries(q.VlanID)
}

// hasInjectorFilter reports whether an ingress filter's callout belongs to
// the handle that injected l (Callout.InjectionHandle).
func (w *worker) hasInjectorFilter(l *nbl.NetBufferList) bool {
	for _, id := range w.eng.injectors {
		if id == l.Tag.Handle {
			return true
		}
	}
	return false
}

// absorb ends the switch's part in a frame a callout absorbed. A frame the
// switch received, or copied, is released: it leaves now, or when the
// callout drops the reference it took to keep it. A frame that arrived by
// injection is completed: for the switch its journey is over.
//
// The inspect pattern's usual frame, one the switch owns that the callout
// injected as it was, with no completion function, into this worker's
// local queue, is not released here: its completion, which drops the
// reference the injection carries, releases it too, in one atomic
// operation instead of two (nbl.Completion.OwnerRelease). The local queue
// is this worker's to process, after this classify, so the completion
// cannot come before the hand-over. Likewise, when the callout injected a
// clone of the frame there instead (the clone pattern), the release goes
// to the clone: freeing it drops its hold on the frame and releases the
// frame in one operation (nbl.NetBufferList.ReleaseParentWhenFreed).
func (w *worker) absorb(l *nbl.NetBufferList, idx int, injected bool) {
	w.count(idx, cAbsorbed, 1)
	if n := len(w.local); !injected && n > 0 {
		last := w.local[n-1]
		if last == l {
			if c := &l.Completion; c.Fn == nil && c.Batch == nil {
				c.OwnerRelease = true
				return
			}
		} else if last.Parent() == l {
			last.ReleaseParentWhenFreed()
			return
		}
	}
	w.finish(l, injected)
}

// finish ends the switch's part in a frame that goes no further as it is.
// A frame the switch received or copied is released. A frame that arrived
// by injection completes. When its injector gave a completion function
// (which frees or reuses the NBL) and a callout still holds the frame (a
// reference, a clone), the completion waits until the last hold is
// dropped, as NDIS returns no NBL while it has references or children. An
// original injected with no completion function completes at once: that
// drops only the reference its injector handed over, and the holder's own
// reference keeps it.
func (w *worker) finish(l *nbl.NetBufferList, injected bool) {
	if !injected {
		// At once, not with the burst (releaseLater): an absorbed frame is
		// usually held, and its release is only marked.
		w.release(l)
		return
	}
	c := &l.Completion
	if (c.Fn == nil && c.Batch == nil) || (l.RefCount() == 0 && l.ChildRefCount() == 0) {
		w.cq.Complete(l, inject.STATUS_SUCCESS)
		return
	}
	if c := w.cacheFor(l.Pool()); c != nil {
		c.ReleaseTo(l, w.sw)
		return
	}
	// A pool the worker has no cache for (the injector's own): its shared
	// ring, still deferring the completion while the frame is held.
	l.Pool().ReleaseTo(l, w.sw)
}

// shared reports whether other NBLs may describe l's bytes: then the switch
// must not rewrite them in place.
func shared(l *nbl.NetBufferList) bool { return l.IsClone() || l.ChildRefCount() > 0 }

// releaseLater gathers frames to release in one burst (releaseNow): one
// pass over the worker's caches for a run of frames of one pool.
func (w *worker) releaseLater(l *nbl.NetBufferList) {
	w.free = append(w.free, l)
	if len(w.free) == cap(w.free) {
		w.releaseNow()
	}
}

// flushFree releases what releaseLater gathered.
func (w *worker) flushFree() {
	if len(w.free) > 0 {
		w.releaseNow()
	}
}

func (w *worker) releaseNow() {
	ls := w.free
	w.releaseRuns(ls)
	clear(ls)
	w.free = ls[:0]
}

// releaseRuns releases frames the switch owns, a run of one pool at a
// time.
func (w *worker) releaseRuns(ls []*nbl.NetBufferList) {
	for i := 0; i < len(ls); {
		p := ls[i].Pool()
		j := i + 1
		for j < len(ls) && ls[j].Pool() == p {
			j++
		}
		c := w.cacheFor(p)
		if c != nil {
			c.ReleaseBurst(ls[i:j])
		} else {
			for _, l := range ls[i:j] {
				p.Release(l)
			}
		}
		i = j
	}
}

// cacheFor returns the worker's cache for pool p, or nil. The last answer
// is remembered: frames come in runs of one pool.
func (w *worker) cacheFor(p *nbl.Pool) *nbl.Cache {
	if p == w.lastPool {
		return w.lastCache
	}
	var found *nbl.Cache
	for _, c := range w.caches {
		if c.Pool() == p {
			found = c
			break
		}
	}
	w.lastPool, w.lastCache = p, found
	return found
}

// release releases a frame the switch owns through the worker's cache for
// its pool.
func (w *worker) release(l *nbl.NetBufferList) {
	p := l.Pool()
	if c := w.cacheFor(p); c != nil {
		c.Release(l)
		return
	}
	p.Release(l)
}

// forward looks the destination up and stages the frame (and copies of it,
// for flooding) for the destination ports.
func (w *worker) forward(l *nbl.NetBufferList, d []byte, vlan uint16, src int, injected bool) {
	// The usual frame: unicast to the address the memo holds, on another
	// port of its VLAN, with no egress filter to run and no tag to write.
	// It is staged here, in a function with no call before the stage, so
	// that its arguments stay in registers; every other frame takes
	// forwardAny (which also handles this case, for a memo miss).
	if d[0]&1 == 0 {
		if to := w.lastDst.port; to >= 0 && to != src && w.lastDst.hit(w.sw.fdb, vlan, d[0:6], to, w.now) {
			if dp := w.sw.ports[to]; dp.carries(vlan) && len(w.eng.egress) == 0 && !needsTag(dp, vlan) {
				l.Info.Ieee8021Q = nbl.Ieee8021QInfo{}
				if w.put(to, l) {
					w.flushStage(to)
				}
				return
			}
		}
	}
	w.forwardAny(l, d, vlan, src, injected)
}

// forwardAny is forward for any frame.
func (w *worker) forwardAny(l *nbl.NetBufferList, d []byte, vlan uint16, src int, injected bool) {
	s := w.sw
	dests := w.dests[:0]
	if d[0]&1 == 0 {
		to := w.lastDst.port
		if !w.lastDst.hit(s.fdb, vlan, d[0:6], to, w.now) {
			to = s.fdb.lookup(vlan, d[0:6], w.now)
			w.lastDst.set(s.fdb, vlan, d[0:6], to, w.now)
		}
		if to >= 0 {
			if to == src {
				w.drop(l, src, DropNoDestination, nbl.StatusInvalidParameter)
				return
			}
			if dp := s.ports[to]; dp.carries(vlan) {
				if len(w.eng.egress) == 0 && !needsTag(dp, vlan) {
					// The usual unicast frame: no egress filter to run
					// and no tag to write (renderVLAN's other case).
					l.Info.Ieee8021Q = nbl.Ieee8021QInfo{} // one word: cheaper than testing it
					if w.put(to, l) {
						w.flushStage(to)
					}
					return
				}
				w.egress(l, to, vlan, false, injected)
				return
			}
		}
	}
	for _, p := range s.ports {
		if p.idx != src && p.carries(vlan) {
			dests = append(dests, p.idx)
		}
	}
	w.dests = dests
	if src >= 0 && len(dests) > 0 {
		if p := s.ports[src]; p.stormLimit != 0 {
			if p.stormSec != w.now {
				p.stormSec, p.stormUsed = w.now, 0
			}
			if p.stormUsed >= p.stormLimit {
				s.logf("vswitch: a port floods more than its storm limit of frames per second (a loop?); the excess is dropped")
				w.drop(l, src, DropStorm, inject.STATUS_INSUFFICIENT_RESOURCES)
				return
			}
			p.stormUsed++
		}
	}
	switch len(dests) {
	case 0:
		w.drop(l, src, DropNoDestination, nbl.StatusInvalidParameter)
		return
	case 1:
		w.egress(l, dests[0], vlan, false, injected)
		return
	}
	// Copies first, from the untouched frame: egress may rewrite the
	// original (tags, callouts).
	w.flooding, w.floodSrc = l, src
	for _, to := range dests[1:] {
		s.floodCopies.Add(1) // one by one: a callout panic may end the loop
		c := w.copyOf(l)
		if c == nil {
			w.count(to, cDrop0+int(DropPoolEmpty), 1)
			continue
		}
		w.egress(c, to, vlan, true, false)
	}
	w.flooding = nil
	// Counted after its copies, so that a reading of the counters never
	// shows more floods than copies.
	s.flooded.Add(1)
	w.egress(l, dests[0], vlan, false, injected)
}

// carries reports whether a port is a member of vlan.
func (p *port) carries(vlan uint16) bool {
	if p.cfg.Mode == Access || p.cfg.VLAN == vlan {
		return p.cfg.VLAN == vlan
	}
	return p.allows(vlan)
}

// copyOf makes a copy of a frame in the switch's copy pool, or nil when the
// pool is empty.
func (w *worker) copyOf(l *nbl.NetBufferList) *nbl.NetBufferList {
	nb := l.FirstNetBuffer()
	n := nb.DataLength()
	c, err := w.copyCache.Allocate(128, n)
	if err != nil {
		return nil
	}
	data, _ := c.FirstNetBuffer().Data()
	nb.CopyOut(data, 0)
	c.Info = l.Info
	c.NblFlags = l.NblFlags
	c.Tag = l.Tag
	return c
}

// egress runs the egress layer for one destination, renders the VLAN tag
// for the port and stages the frame for it.
func (w *worker) egress(l *nbl.NetBufferList, to int, vlan uint16, multiDest, injected bool) {
	s := w.sw
	p := s.ports[to]
	if len(w.eng.egress) > 0 && p.cfg.ID != 0 {
		if w.eng.egressValues {
			w.fillEgress(l, vlan, p, multiDest)
		}
		switch w.classify(w.eng.egress, &w.inEgress, &w.metaOut, l, to) {
		case verdictBlock:
			w.drop(l, to, DropFilterBlock, STATUS_FWP_BLOCKED)
			return
		case verdictCalloutBlock:
			w.drop(l, to, DropCalloutBlock, STATUS_FWP_BLOCKED)
			return
		case verdictAbsorb:
			w.absorb(l, to, injected)
			return
		}
	}
	if needsTag(p, vlan) && shared(l) {
		// Tag a copy: the bytes belong to other NBLs too.
		c := w.copyOf(l)
		if c == nil {
			w.drop(l, to, DropPoolEmpty, nbl.StatusResources)
			return
		}
		w.finish(l, injected)
		l = c
	}
	if !w.renderVLAN(l, p, vlan) {
		w.drop(l, to, DropPoolEmpty, nbl.StatusResources)
		return
	}
	if w.put(to, l) {
		w.flushStage(to)
	}
}

// stage holds the frames a worker sends to one port, flushed when full
// and at the end of every step.
type stage struct {
	n   int
	buf []*nbl.NetBufferList // Config.Burst long
}

// put stages a frame for port to and reports whether the stage is full:
// then the caller flushes it (flushStage).
func (w *worker) put(to int, l *nbl.NetBufferList) bool {
	st := &w.stage[to]
	st.buf[st.n] = l
	st.n++
	return st.n == len(st.buf)
}

// renderVLAN puts the frame's tag on the wire form the port wants: none on
// an access port or for the trunk's native VLAN, an in-frame 802.1Q tag
// otherwise. The out-of-band tag is cleared either way.
func (w *worker) renderVLAN(l *nbl.NetBufferList, p *port, vlan uint16) bool {
	q := l.Info.Ieee8021Q
	l.Info.Ieee8021Q = nbl.Ieee8021QInfo{}
	if !needsTag(p, vlan) {
		return true
	}
	nb := l.FirstNetBuffer()
	if nb.Retreat(4, 0) != nil {
		return false
	}
	var h [16]byte
	nb.CopyOut(h[4:16], 4) // the MAC addresses, now 4 bytes in
	tci := vlan&0x0FFF | uint16(q.Priority&7)<<13
	if q.CFI {
		tci |= 0x1000
	}
	copy(h[0:12], h[4:16])
	binary.BigEndian.PutUint16(h[12:14], 0x8100)
	binary.BigEndian.PutUint16(h[14:16], tci)
	nb.CopyIn(0, h[:])
	return true
}

// needsTag reports whether frames of vlan leave port p tagged.
func needsTag(p *port, vlan uint16) bool { return p.cfg.Mode != Access && vlan != p.cfg.VLAN }

// flushStages moves every staged frame into its port's transmit ring.
func (w *worker) flushStages() {
	for to := range w.stage {
		if w.stage[to].n > 0 {
			w.flushStage(to)
		}
	}
}

func (w *worker) flushStage(to int) {
	sg := &w.stage[to]
	st := sg.buf[:sg.n]
	sg.n = 0
	p := w.sw.ports[to]
	if p.owner == w || p.q != nil {
		// Our own port, or our own queue of it: send now, no ring in
		// between.
		w.send(p, st)
	} else {
		n := p.tx.EnqueueBurst(st)
		for _, l := range st[n:] {
			w.drop(l, to, DropRingFull, inject.STATUS_INSUFFICIENT_RESOURCES)
		}
	}
	clear(st)
}

// send hands frames to a port the worker serves; what it does not take is
// dropped and counted.
func (w *worker) send(p *port, out []*nbl.NetBufferList) {
	var bytes uint64
	for _, l := range out {
		bytes += uint64(l.FirstNetBuffer().DataLength())
	}
	var sent int
	if p.q != nil {
		sent, _ = p.q.SendQueue(w.id, out)
	} else {
		sent, _ = p.p.Send(out)
	}
	sent = min(max(sent, 0), len(out))
	if p.q != nil {
		w.queued[p.idx] += sent
	}
	var unsentBytes uint64
	for _, l := range out[sent:] {
		unsentBytes += uint64(l.FirstNetBuffer().DataLength())
		w.drop(l, p.idx, DropTxError, nbl.StatusFailure)
	}
	w.count(p.idx, cTxPackets, uint64(sent))
	w.count(p.idx, cTxBytes, bytes-unsentBytes)
}

// transmit sends what other workers left in a port's ring and completes
// what the port has finished with. It reports whether anything moved.
func (w *worker) transmit(p *port) bool {
	moved := false
	for p.q == nil {
		n := p.tx.DequeueBurst(w.txbuf)
		if n == 0 {
			break
		}
		moved = true
		w.send(p, w.txbuf[:n])
		clear(w.txbuf[:n])
		if n < len(w.txbuf) {
			break
		}
	}
	if w.reclaim(p) {
		moved = true
	}
	return moved
}

// reclaim takes back what the port finished sending: frames that were not
// injected are released here; injected ones complete through the
// completion queue.
func (w *worker) reclaim(p *port) bool {
	moved := false
	for {
		var n int
		if p.q != nil {
			// Only a queue with frames in it: the port's other fields,
			// which its own worker writes, stay out of this cache.
			if w.queued[p.idx] == 0 {
				return moved
			}
			n = p.q.ReclaimQueue(w.id, w.txbuf)
			w.queued[p.idx] -= n
		} else {
			n = p.p.Reclaim(w.txbuf)
		}
		if n == 0 {
			return moved
		}
		moved = true
		// Released straight from txbuf, in the runs between injected
		// frames (those complete).
		ls := w.txbuf[:n]
		start := 0
		for i, l := range ls {
			if l.Completion.Owner != nil {
				if start < i {
					w.releaseRuns(ls[start:i])
				}
				w.cq.Complete(l, inject.STATUS_SUCCESS)
				start = i + 1
			}
		}
		if start < len(ls) {
			w.releaseRuns(ls[start:])
		}
		w.flushFree()
		clear(ls)
	}
}

// drain completes everything left in the worker's rings after it stopped
// (the switch is closing).
func (w *worker) drain() {
	for _, l := range w.local {
		idx, ok := w.sw.portIndex(l.Info.Switch.SourcePortID)
		if !ok {
			idx = -1
		}
		w.drop(l, idx, DropClosed, inject.STATUS_INVALID_DEVICE_STATE)
	}
	clear(w.local)
	w.local = w.local[:0]
	for {
		n := w.injq.DequeueBurst(w.burst)
		if n == 0 {
			break
		}
		for _, l := range w.burst[:n] {
			idx, ok := w.sw.portIndex(l.Info.Switch.SourcePortID)
			if !ok {
				idx = -1
			}
			w.drop(l, idx, DropClosed, inject.STATUS_INVALID_DEVICE_STATE)
		}
		clear(w.burst[:n])
	}
	w.flushStages()
	for _, p := range w.txPorts {
		for p.q == nil {
			n := p.tx.DequeueBurst(w.txbuf)
			if n == 0 {
				break
			}
			for _, l := range w.txbuf[:n] {
				w.drop(l, p.idx, DropClosed, inject.STATUS_INVALID_DEVICE_STATE)
			}
			clear(w.txbuf[:n])
		}
		w.reclaim(p)
	}
	w.flushFree()
	w.cq.Flush()
}

// publish copies the worker's counters where Stats can read them.
func (w *worker) publish() {
	for i := range w.counts {
		for c := range w.counts[i] {
			if v := w.counts[i][c]; v != w.pub[i][c].Load() {
				w.pub[i][c].Store(v)
			}
		}
	}
	if w.stats.rightsViolations != w.pubRights.Load() {
		w.pubRights.Store(w.stats.rightsViolations)
	}
}

func (w *worker) read(i int, ps *PortStats) {
	c := &w.pub[i]
	ps.RxPackets += c[cRxPackets].Load()
	ps.RxBytes += c[cRxBytes].Load()
	ps.TxPackets += c[cTxPackets].Load()
	ps.TxBytes += c[cTxBytes].Load()
	ps.Injected += c[cInjected].Load()
	ps.Absorbed += c[cAbsorbed].Load()
	ps.RxErrors += c[cRxErrors].Load()
	for r := range ps.Drops {
		ps.Drops[r] += c[cDrop0+r].Load()
	}
}

// fdbMemo remembers one MAC table result for the rest of the second, while
// the table does not change: frames of one flow come in runs, and the run
// then costs one table access instead of one per frame.
type fdbMemo struct {
	mac  [6]byte
	vlan uint16
	port int
	now  uint32
	gen  uint64
}

func (m *fdbMemo) hit(t *fdb, vlan uint16, mac []byte, port int, now uint32) bool {
	return [6]byte(mac) == m.mac && m.vlan == vlan && m.port == port && m.now == now && m.gen == t.gen.Load()
}

func (m *fdbMemo) set(t *fdb, vlan uint16, mac []byte, port int, now uint32) {
	m.mac, m.vlan, m.port, m.now, m.gen = [6]byte(mac), vlan, port, now, t.gen.Load()
}
