package vswitch_test

// Test infrastructure shared by the tests and benchmarks of package vswitch:
// frames with an identifier in their payload, 802.1Q tagging, a rig that
// builds a switch on its own stack with memports and checks at close that
// every frame came back and every pool is full, counters summed over the
// ports, a sink that checks frames byte for byte, and the inspect sample's
// callout (reference, absorb, clone, inject, free in the completion).

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// testTimeout bounds every wait that must succeed: reaching it fails the
// test instead of hanging it. It is never a performance assertion.
const testTimeout = 20 * time.Second

// maxSteps bounds the Steps a manual switch is driven for while waiting for
// a condition.
const maxSteps = 1 << 20

// TestMain fails the run if goroutines leaked (workers left running by a
// switch that was not closed, injector goroutines of the tests): goroutines
// started by the tests and still running after a bounded wait, told apart
// by ID, with their stacks.
func TestMain(m *testing.M) {
	os.Exit(ledger.VerifyNoLeaks(m))
}

// ---- identities ----

var guidSeq atomic.Uint32

// newGUID returns a GUID no other test uses.
func newGUID() inject.GUID {
	g := inject.GUID{0x7a, 0x5e, 0x0b, 0x1c, 0x33, 0x44, 0x55, 0x66, 0x88, 0x99}
	binary.BigEndian.PutUint32(g[12:], guidSeq.Add(1))
	return g
}

// newStack returns a fresh, started stack.
func newStack() *inject.Stack {
	s := inject.NewStack()
	s.Start()
	return s
}

// macN returns the locally administered unicast address 02:00:00:00:hi:lo.
func macN(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)} }

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// quietLogger drops the switch's rare-event logs.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// ---- frames ----

// payloadOffset is where the UDP payload of an untagged udpFrame starts.
const payloadOffset = 14 + 20 + 8

// udpFrame builds an Ethernet/IPv4/UDP frame of size bytes (at least 42).
func udpFrame(t testing.TB, src, dst net.HardwareAddr, size int) []byte {
	t.Helper()
	return idFrame(t, src, dst, size, 0)
}

// idFrame is udpFrame with id in the first four bytes of the payload (the
// frame is then at least 46 bytes).
func idFrame(t testing.TB, src, dst net.HardwareAddr, size int, id uint32) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	pay := make([]byte, max(4, size-payloadOffset))
	binary.BigEndian.PutUint32(pay, id)
	for i := 4; i < len(pay); i++ {
		pay[i] = byte(i * 7)
	}
	f, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(pay))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rawFrame builds a frame of size bytes with an arbitrary EtherType and id
// in the first four bytes after the header.
func rawFrame(src, dst net.HardwareAddr, etherType uint16, size int, id uint32) []byte {
	f := make([]byte, max(size, 18))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], etherType)
	binary.BigEndian.PutUint32(f[14:18], id)
	for i := 18; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

// tagFrame returns f with an 802.1Q tag (TPID 0x8100) after the addresses.
func tagFrame(f []byte, vlan uint16, prio uint8) []byte {
	out := make([]byte, 0, len(f)+4)
	out = append(out, f[:12]...)
	tci := vlan&0x0FFF | uint16(prio&7)<<13
	out = append(out, 0x81, 0x00, byte(tci>>8), byte(tci))
	return append(out, f[12:]...)
}

// untagFrame returns f without its 802.1Q tag and the tag's TCI, or f and
// false if it has none.
func untagFrame(f []byte) ([]byte, uint16, bool) {
	if len(f) < 18 || binary.BigEndian.Uint16(f[12:14]) != 0x8100 {
		return f, 0, false
	}
	out := append(append([]byte(nil), f[:12]...), f[16:]...)
	return out, binary.BigEndian.Uint16(f[14:16]), true
}

// frameID reads the id idFrame wrote, allowing for an 802.1Q tag.
func frameID(f []byte) uint32 {
	off := payloadOffset
	if len(f) >= 16 && binary.BigEndian.Uint16(f[12:14]) == 0x8100 {
		off += 4
	}
	if len(f) < off+4 {
		return ^uint32(0)
	}
	return binary.BigEndian.Uint32(f[off:])
}

// nblBytes copies the data of an NBL's first NetBuffer (for tests: it
// allocates).
func nblBytes(l *nbl.NetBufferList) []byte {
	nb := l.FirstNetBuffer()
	b := make([]byte, nb.DataLength())
	nb.CopyOut(b, 0)
	return b
}

// ---- the rig ----

// rig is a switch on its own stack, with memports, that checks at close
// what every test checks.
type rig struct {
	t     testing.TB
	stack *inject.Stack
	id    inject.GUID
	sw    *vswitch.Switch
	ports []*memport.Port
	gens  []*memport.Port
	pools []*nbl.Pool // the tests' own pools: must be full at close
	hs    []*inject.Handle
}

// newRig makes a switch; cfg.ID, Stack and (unless set) Logger are filled
// in. A cleanup closes it (bounded) if the test did not.
func newRig(t testing.TB, cfg vswitch.Config) *rig {
	t.Helper()
	r := &rig{t: t, stack: newStack(), id: newGUID()}
	cfg.ID, cfg.Stack = r.id, r.stack
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	sw, err := vswitch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sw = sw
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = sw.CloseContext(ctx)
		for _, h := range r.hs {
			hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
			_ = h.DestroyContext(hctx)
			hcancel()
		}
	})
	return r
}

// manualRig is newRig with Config.Manual set.
func manualRig(t testing.TB, cfg vswitch.Config) *rig {
	cfg.Manual = true
	return newRig(t, cfg)
}

// port adds a memport; one with Frames counts as a generator.
func (r *rig) port(mc memport.Config, pc vswitch.PortConfig) *memport.Port {
	r.t.Helper()
	p, err := memport.New(mc)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.sw.AddPort(p, pc); err != nil {
		r.t.Fatal(err)
	}
	r.ports = append(r.ports, p)
	if len(mc.Frames) > 0 {
		r.gens = append(r.gens, p)
	}
	return p
}

// gen adds a generator of limit frames from templates.
func (r *rig) gen(limit uint64, pc vswitch.PortConfig, frames ...[]byte) *memport.Port {
	r.t.Helper()
	return r.port(memport.Config{Frames: frames, Limit: limit}, pc)
}

// sink adds a port that receives nothing and captures up to capture frames.
func (r *rig) sink(capture int, pc vswitch.PortConfig) *memport.Port {
	r.t.Helper()
	return r.port(memport.Config{Capture: capture}, pc)
}

func (r *rig) start() {
	r.t.Helper()
	if err := r.sw.Start(); err != nil {
		r.t.Fatal(err)
	}
}

// handle creates an L2 injection handle on the rig's stack.
func (r *rig) handle() *inject.Handle {
	r.t.Helper()
	h, err := r.stack.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		r.t.Fatal(err)
	}
	r.hs = append(r.hs, h)
	return h
}

// pool makes an NBL pool that must be full when the rig closes.
func (r *rig) pool(n int) *nbl.Pool {
	r.t.Helper()
	p, err := nbl.NewPool(nbl.Config{NBLs: n})
	if err != nil {
		r.t.Fatal(err)
	}
	r.pools = append(r.pools, p)
	return p
}

// clonePool makes a pool of n NBLs without frames, for clones; it must be
// full when the rig closes.
func (r *rig) clonePool(n int) *nbl.Pool {
	r.t.Helper()
	p, err := nbl.NewPool(nbl.Config{NBLs: n, NoFrames: true})
	if err != nil {
		r.t.Fatal(err)
	}
	r.pools = append(r.pools, p)
	return p
}

// callout registers a callout with a filter at layer and weight, with
// conditions if any.
func (r *rig) callout(key string, layer uint16, weight uint64, h *inject.Handle, fn vswitch.ClassifyFn, conds ...vswitch.Condition) *vswitch.Callout {
	r.t.Helper()
	c := &vswitch.Callout{Key: key, Classify: fn, InjectionHandle: h}
	if err := r.sw.RegisterCallout(c); err != nil {
		r.t.Fatal(err)
	}
	r.filter(&vswitch.Filter{Key: key + "/filter", LayerID: layer, Weight: weight, Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: key, Conditions: conds})
	return c
}

// gatedPort is a generator that receives only as many frames as it has
// been allowed (open): benchmarks use it to start the timed frames after
// the warm-up ones have gone through.
type gatedPort struct {
	*memport.Port
	budget atomic.Int64
}

func (g *gatedPort) open(n int64) { g.budget.Add(n) }

func (g *gatedPort) Receive(out []*nbl.NetBufferList) (int, error) {
	n := min(int64(len(out)), g.budget.Load())
	if n <= 0 {
		return 0, nil
	}
	k, err := g.Port.Receive(out[:n])
	g.budget.Add(-int64(k))
	return k, err
}

// gatedGen adds a gated generator of frames from templates.
func (r *rig) gatedGen(pc vswitch.PortConfig, frames ...[]byte) *gatedPort {
	r.t.Helper()
	p, err := memport.New(memport.Config{Frames: frames})
	if err != nil {
		r.t.Fatal(err)
	}
	g := &gatedPort{Port: p}
	if err := r.sw.AddPort(g, pc); err != nil {
		r.t.Fatal(err)
	}
	r.ports = append(r.ports, p)
	r.gens = append(r.gens, p)
	return g
}

func (r *rig) filter(f *vswitch.Filter) {
	r.t.Helper()
	if _, err := r.sw.AddFilter(f); err != nil {
		r.t.Fatal(err)
	}
}

// stepUntil drives a manual switch until cond holds.
func (r *rig) stepUntil(what string, cond func() bool) {
	r.t.Helper()
	for i := 0; !cond(); i++ {
		if i == maxSteps {
			r.t.Fatalf("after %d steps: still waiting for %s", maxSteps, what)
		}
		r.sw.Step()
	}
}

// settle drives a manual switch until several Steps in a row move nothing.
func (r *rig) settle() {
	r.t.Helper()
	idle := 0
	for i := 0; idle < 4; i++ {
		if i == maxSteps {
			r.t.Fatalf("the switch still moves frames after %d steps", maxSteps)
		}
		if r.sw.Step() {
			idle = 0
		} else {
			idle++
		}
	}
}

// waitUntil polls cond while the workers run.
func (r *rig) waitUntil(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("after %v: still waiting for %s", testTimeout, what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// close closes the switch and checks what holds after every scenario:
// Close succeeds (so every memport's pool is full and nothing is left
// unreclaimed) and is idempotent, every generated frame came back exactly
// once, the copy pool and the test's pools are full. It returns the final
// counters.
func (r *rig) close() vswitch.Stats {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := r.sw.CloseContext(ctx); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
	if err := r.sw.Close(); err != nil {
		r.t.Fatalf("second Close: %v", err)
	}
	if r.sw.Step() {
		r.t.Error("Step after Close moved frames")
	}
	for i, g := range r.gens {
		if s := g.Stats(); s.Returned != s.Generated {
			r.t.Errorf("generator %d: %d frames generated, %d returned", i, s.Generated, s.Returned)
		}
	}
	for _, p := range r.ports {
		if s := p.Stats(); s.Reclaimed != s.Sent {
			r.t.Errorf("port: %d frames sent, %d reclaimed", s.Sent, s.Reclaimed)
		}
	}
	if !r.sw.CopyPool().Full() {
		r.t.Errorf("copy pool: %d NBLs in use after Close", r.sw.CopyPool().InUse())
	}
	for i, p := range r.pools {
		if !p.Full() {
			nbs, mdls := p.ExtraInUse()
			r.t.Errorf("test pool %d: %d NBLs, %d NBs, %d MDLs in use after Close", i, p.InUse(), nbs, mdls)
		}
	}
	return r.sw.Stats()
}

// ---- counters ----

// totals are ledger.Totals under the names the tests here use.
type totals struct {
	rx, injected, tx, absorbed, dropped uint64
	drops                               [vswitch.NumDropReasons]uint64
}

// sum adds up the switch's counters over its ports and the unknown-port
// slot (ledger.Sum).
func sum(st vswitch.Stats) totals {
	s := ledger.Sum(st)
	return totals{s.Rx, s.Injected, s.Tx, s.Absorbed, s.Dropped, s.Drops}
}

func (t totals) String() string {
	return ledger.Totals{Rx: t.rx, Injected: t.injected, Tx: t.tx, Absorbed: t.absorbed, Dropped: t.dropped, Drops: t.drops}.String()
}

// checkConservation checks that every frame that entered the switch
// (received, injected, and copies made for flooding) left it: transmitted,
// dropped or absorbed.
func checkConservation(t testing.TB, st vswitch.Stats, copies uint64) totals {
	t.Helper()
	tt := sum(st)
	if in, out := tt.rx+tt.injected+copies, tt.tx+tt.dropped+tt.absorbed; in != out {
		t.Errorf("conservation: received+injected+copies = %d, transmitted+dropped+absorbed = %d (%v, copies %d)", in, out, tt, copies)
	}
	return tt
}

// ---- a checking sink ----

// idSink counts the frames a port transmits by id and checks each against
// the template with that id (after removing an 802.1Q tag, which must
// then carry vlan).
type idSink struct {
	mu        sync.Mutex
	templates map[uint32][]byte
	tagged    bool
	vlan      uint16
	counts    map[uint32]int
	bad       []string
	total     atomic.Uint64
}

func newIDSink(templates map[uint32][]byte) *idSink {
	return &idSink{templates: templates, counts: map[uint32]int{}}
}

// onSend is the memport OnSend hook.
func (s *idSink) onSend(l *nbl.NetBufferList) {
	b := nblBytes(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total.Add(1)
	if s.tagged {
		u, tci, ok := untagFrame(b)
		if !ok || tci&0x0FFF != s.vlan {
			s.bad = append(s.bad, fmt.Sprintf("frame not tagged with VLAN %d: % x", s.vlan, b[:min(len(b), 18)]))
			return
		}
		b = u
	}
	id := frameID(b)
	want, ok := s.templates[id]
	if !ok || !bytes.Equal(b, want) {
		if len(s.bad) < 8 {
			s.bad = append(s.bad, fmt.Sprintf("frame id %d differs from its template:\n got % x\nwant % x", id, b, want))
		}
		return
	}
	s.counts[id]++
}

// check requires each template to have arrived exactly per times, and no
// other frame.
func (s *idSink) check(t testing.TB, per int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bad {
		t.Error(b)
	}
	for id := range s.templates {
		if s.counts[id] != per {
			t.Errorf("frame id %d arrived %d times, want %d", id, s.counts[id], per)
		}
	}
}

// idTemplates builds n frames from src to dst with ids 0..n-1.
func idTemplates(t testing.TB, n int, src, dst net.HardwareAddr, size int) ([][]byte, map[uint32][]byte) {
	t.Helper()
	list := make([][]byte, n)
	byID := map[uint32][]byte{}
	for i := range list {
		list[i] = idFrame(t, src, dst, size, uint32(i))
		byID[uint32(i)] = list[i]
	}
	return list, byID
}

// ---- classify helpers ----

// absorb writes BLOCK with ABSORB and clears the write right, as the
// inspect sample does.
func absorb(out *vswitch.ClassifyOut) {
	out.ActionType = vswitch.FWP_ACTION_BLOCK
	out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
	out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
}

func permit(out *vswitch.ClassifyOut) { out.ActionType = vswitch.FWP_ACTION_PERMIT }

// ---- the inspect sample's callout ----

// inspector is the inspect sample's pattern at a vSwitch layer: frames it
// injected itself are permitted; others are referenced and absorbed, then a
// clone is injected whose completion frees it and dereferences the
// original. Synchronously inside classify, or, with async set, on another
// goroutine (run) that receives the originals through a channel. It
// allocates nothing per frame: the completion function and the switch ID are
// made once.
type inspector struct {
	h    *inject.Handle
	swID []byte
	// clonePool, when set, holds the clones (otherwise the original's
	// pool); cloneCache and freeCache are caches of it for the classify's
	// and the completion's goroutine.
	clonePool             *nbl.Pool
	cloneCache, freeCache *nbl.Cache
	async                 chan *nbl.NetBufferList
	// check, when set, runs in the completion before the clone is freed.
	check func(orig, clone *nbl.NetBufferList)

	completeFn inject.FWPS_INJECT_COMPLETE0

	absorbed, injected, completions   atomic.Int64
	cloneFails, injectFails, overflow atomic.Int64
	badStatus, doubleCompletion       atomic.Int64
	lastInjectStatus                  atomic.Uint32
}

func newInspector(h *inject.Handle, swID inject.GUID) *inspector {
	x := &inspector{h: h, swID: swID.Bytes()}
	x.completeFn = x.complete
	return x
}

func (x *inspector) classify(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	if inject.FwpsQueryPacketInjectionState0(x.h, l, nil).SelfInjected() {
		permit(out)
		return
	}
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 {
		return // FWP_ACTION_CONTINUE: nothing may be pended without the right
	}
	inject.FwpsReferenceNetBufferList0(l, true)
	absorb(out)
	x.absorbed.Add(1)
	if x.async != nil {
		select {
		case x.async <- l:
		default:
			// The queue is full: block without absorbing, as inspect does
			// when it cannot pend.
			x.overflow.Add(1)
			x.absorbed.Add(-1)
			out.Flags &^= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
			inject.FwpsDereferenceNetBufferList0(l, true)
		}
		return
	}
	x.cloneAndInject(l, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, x.cloneCache)
}

// run is the out-of-band injector of an async inspector.
func (x *inspector) run() {
	for orig := range x.async {
		x.cloneAndInject(orig, orig.Info.Switch.SourcePortID, orig.Info.Switch.SourceNicIndex, nil)
	}
}

func (x *inspector) cloneAndInject(orig *nbl.NetBufferList, port uint32, nic uint16, cache *nbl.Cache) {
	var cl *nbl.NetBufferList
	if cache != nil {
		var err error
		if cl, err = cache.Clone(orig); err != nil {
			cl = nil
		}
	} else if st := inject.FwpsAllocateCloneNetBufferList0(orig, x.clonePool, nil, 0, &cl); st != inject.STATUS_SUCCESS {
		cl = nil
	}
	if cl == nil {
		x.cloneFails.Add(1)
		inject.FwpsDereferenceNetBufferList0(orig, false)
		return
	}
	cl.Scratch = x // marks the clone as in flight: the completion checks it once
	st := inject.FwpsInjectvSwitchEthernetIngressAsync0(x.h, nil, 0, 0, x.swID, port, nic, cl, x.completeFn, orig)
	x.lastInjectStatus.Store(uint32(st))
	if st != inject.STATUS_SUCCESS {
		// The caller still owns the clone: free it and drop the reference
		// (conformance case 41).
		x.injectFails.Add(1)
		cl.Scratch = nil
		x.freeClone(cl, cache)
		inject.FwpsDereferenceNetBufferList0(orig, false)
		return
	}
	x.injected.Add(1)
}

func (x *inspector) freeClone(cl *nbl.NetBufferList, cache *nbl.Cache) {
	if cache != nil {
		_ = cache.FreeClone(cl)
		return
	}
	inject.FwpsFreeCloneNetBufferList0(cl, 0)
}

func (x *inspector) complete(ctx any, cl *nbl.NetBufferList, dispatchLevel bool) {
	orig := ctx.(*nbl.NetBufferList)
	if cl.Scratch != any(x) {
		x.doubleCompletion.Add(1)
	}
	cl.Scratch = nil
	if !inject.NT_SUCCESS(cl.Status) {
		x.badStatus.Add(1)
	}
	if x.check != nil {
		x.check(orig, cl)
	}
	x.freeClone(cl, x.freeCache)
	inject.FwpsDereferenceNetBufferList0(orig, dispatchLevel)
	x.completions.Add(1)
}

// verify checks the inspector's counters after the switch closed: n frames
// absorbed, each clone injected and completed once, nothing failed.
func (x *inspector) verify(t testing.TB, n int64) {
	t.Helper()
	if a, i, c := x.absorbed.Load(), x.injected.Load(), x.completions.Load(); a != n || i != n || c != n {
		t.Errorf("inspector: %d absorbed, %d clones injected, %d completions; want %d each", a, i, c, n)
	}
	if f, g, o := x.cloneFails.Load(), x.injectFails.Load(), x.overflow.Load(); f+g+o != 0 {
		t.Errorf("inspector: %d clone failures, %d injection failures (last status %v), %d queue overflows",
			f, g, inject.Status(x.lastInjectStatus.Load()), o)
	}
	if b, d := x.badStatus.Load(), x.doubleCompletion.Load(); b+d != 0 {
		t.Errorf("inspector: %d completions with a failure status, %d completions of a clone not in flight", b, d)
	}
	if s := x.h.Stats(); s.Injected != uint64(n) || s.Completed != uint64(n) || s.Pending != 0 {
		t.Errorf("handle: %+v, want %d injected and completed", s, n)
	}
}

// ---- an injector that allocates its own NBLs ----

// freer is a completion that frees caller-allocated NBLs and records their
// status.
type freer struct {
	mu       sync.Mutex
	pool     *nbl.Pool
	statuses []inject.Status
	ctxs     []any
	nbls     []*nbl.NetBufferList
	dispatch []bool
}

func (f *freer) fn(ctx any, l *nbl.NetBufferList, dispatchLevel bool) {
	f.mu.Lock()
	f.statuses = append(f.statuses, l.Status)
	f.ctxs = append(f.ctxs, ctx)
	f.nbls = append(f.nbls, l)
	f.dispatch = append(f.dispatch, dispatchLevel)
	f.mu.Unlock()
	if err := f.pool.Free(l); err != nil {
		panic(fmt.Sprintf("freer: %v", err))
	}
}

func (f *freer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.statuses)
}

// alloc copies data into a fresh NBL of p.
func alloc(t testing.TB, p *nbl.Pool, data []byte) *nbl.NetBufferList {
	t.Helper()
	l, err := p.Allocate(p.Config().Headroom, len(data))
	if err != nil {
		t.Fatal(err)
	}
	if n := l.FirstNetBuffer().CopyIn(0, data); n != len(data) {
		t.Fatalf("copied %d of %d bytes", n, len(data))
	}
	return l
}

// memportSink is the configuration of a sink port that checks its frames.
func memportSink(s *idSink) memport.Config { return memport.Config{OnSend: s.onSend} }
