package inject

// FuzzWFPCalls: byte programs that drive the WFP-named API of fwps.go
// (handle create/destroy, the injection state query, the NBL allocation,
// clone, free, reference and dereference functions, and every Inject*Async
// function) against a model of what each call must do.
//
// A program is a header byte followed by up to wfMaxOps operations, each an
// opcode byte and its argument bytes (a missing byte reads as 0). The header
// says whether the fake vSwitch and the fake data paths complete an injected
// chain inside the injection call or hold it until a flush operation, and
// with which status. Selector bytes pick a handle (0 nil, 1+i the i-th
// handle the program created) or an NBL (0 nil, 1 a zero-value
// NetBufferList that no pool owns, 2+i the i-th NBL the program allocated or
// cloned; a freed one makes the operation a no-op, so freed descriptors are
// never used again).
//
// Per call the test checks: the call does not panic (except
// FwpsDereferenceNetBufferList0 without a matching reference, whose panic is
// documented, conformance case 51, and which must change nothing); the
// status is one the function documents (wfDoc* tables); it is success
// exactly when the model finds no broken rule, and otherwise one of the
// statuses of the rules broken; a refused call changes no NBL (Next links,
// Status, Completion, Tag, reference and clone counts), reaches no target
// and completes nothing; a successful injection reaches its target once
// with the caller's arguments and completes each NBL of the chain exactly
// once, with its completion context and the status the target gave. After
// every operation the handles' counters, each pool's descriptors in use and
// every NBL's fields must match the model. At the end of a program the
// targets are flushed, every reference dropped, every NBL freed, every
// handle destroyed (with nothing pending) and every pool must be full.
//
// The seed programs are wfSeeds; their encoded form is committed under
// testdata/fuzz/FuzzWFPCalls (TestWFPCallsSeedCorpus keeps the two in step).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
)

const (
	wfMaxInput  = 1024 // longer inputs are ignored
	wfMaxOps    = 64   // operations per program
	wfMaxHandle = 8    // handles per program
	wfMaxSlots  = 40   // NBLs allocated or cloned per program
	wfMaxMdls   = 6    // caller MDLs per program
	wfMaxChain  = 6    // NBLs per injected chain
	wfPoolA     = 12
	wfPoolB     = 6
	wfExtraMdls = 8
)

// Opcodes (the opcode byte modulo 16).
const (
	wfOpCreate    = 0  // af, types[, 4], opt(bit0 nil out, bit1 on the other stack)
	wfOpDestroy   = 1  // handle, status (completes what the targets hold if the handle has pending injections)
	wfOpAlloc     = 2  // opt(bit0 pool B, bit1 original), offset, length
	wfOpFwpsAlloc = 3  // opt, contextSize, contextBackFill, mdl mode[, sizes], offset[, 4], length
	wfOpFree      = 4  // nbl
	wfOpClone     = 5  // nbl, pools, flags
	wfOpFreeClone = 6  // nbl, flags
	wfOpRef       = 7  // nbl, intendToModify
	wfOpDeref     = 8  // nbl, dispatchLevel
	wfOpQuery     = 9  // handle, nbl, opt(bit0 nil context pointer)
	wfOpInject    = 10 // fn, handle, count, members, links, opt, flags[, reserved], arguments
	wfOpFlush     = 11 // count (0 = all), status
	wfOpToggle    = 12 // which: bits 0-1 vSwitch/IP/stream/MAC, bit 2 the other stack
	wfOpStopStart = 13 // Default.Stop / Default.Start
	wfOpInject2   = 14 // as wfOpInject
	wfOpInject3   = 15 // as wfOpInject
)

var wfOpNames = [16]string{"create", "destroy", "alloc", "FwpsAllocateNetBufferAndNetBufferList0", "FwpsFreeNetBufferList0",
	"FwpsAllocateCloneNetBufferList0", "FwpsFreeCloneNetBufferList0", "FwpsReferenceNetBufferList0",
	"FwpsDereferenceNetBufferList0", "FwpsQueryPacketInjectionState0", "inject", "flush", "toggle target",
	"stop/start", "inject", "inject"}

// Injection functions (the fn byte modulo 10).
const (
	wfFnVSwitch = iota
	wfFnForward
	wfFnNetworkSend
	wfFnNetworkReceive
	wfFnTransportSend0
	wfFnTransportSend1
	wfFnTransportReceive
	wfFnStream
	wfFnMacSend
	wfFnMacReceive
	wfNumFns
)

// wfSet is a set of outcomes, one bit per status.
type wfSet uint16

const (
	wfSuccess wfSet = 1 << iota
	wfInvalid
	wfStale
	wfClosing
	wfNotReady
	wfNotFound
	wfNullPtr
	wfFwpInvalid
	wfResources
	wfDeviceState
)

func wfOf(s Status) wfSet {
	switch s {
	case STATUS_SUCCESS:
		return wfSuccess
	case STATUS_INVALID_PARAMETER:
		return wfInvalid
	case STATUS_FWP_INJECT_HANDLE_STALE:
		return wfStale
	case STATUS_FWP_INJECT_HANDLE_CLOSING:
		return wfClosing
	case STATUS_FWP_TCPIP_NOT_READY:
		return wfNotReady
	case STATUS_NOT_FOUND:
		return wfNotFound
	case STATUS_FWP_NULL_POINTER:
		return wfNullPtr
	case STATUS_FWP_INVALID_PARAMETER:
		return wfFwpInvalid
	case STATUS_INSUFFICIENT_RESOURCES:
		return wfResources
	case STATUS_INVALID_DEVICE_STATE:
		return wfDeviceState
	}
	return 0
}

// The statuses each function documents (fwps.go, inject.go, datapath.go and
// handle.go doc comments; spec §1-§5).
const (
	wfDocCreate  = wfSuccess | wfInvalid | wfNotReady | wfDeviceState
	wfDocDestroy = wfSuccess | wfInvalid | wfDeviceState
	wfDocAlloc   = wfSuccess | wfInvalid | wfResources // allocate, clone
	wfDocFree    = wfSuccess | wfInvalid               // free, free clone, reference, dereference
	wfDocVSwitch = wfSuccess | wfInvalid | wfStale | wfClosing | wfNotFound
	wfDocPath    = wfSuccess | wfInvalid | wfStale | wfClosing | wfNotReady
	wfDocStream  = wfDocPath | wfNullPtr | wfFwpInvalid
)

type wfFn struct {
	name string
	need uint32
	path Path // 0 for the vSwitch
	doc  wfSet
}

var wfFns = [wfNumFns]wfFn{
	{"FwpsInjectvSwitchEthernetIngressAsync0", FWPS_INJECTION_TYPE_L2, 0, wfDocVSwitch},
	{"FwpsInjectForwardAsync0", FWPS_INJECTION_TYPE_FORWARD, PathIP, wfDocPath},
	{"FwpsInjectNetworkSendAsync0", FWPS_INJECTION_TYPE_NETWORK, PathIP, wfDocPath},
	{"FwpsInjectNetworkReceiveAsync0", FWPS_INJECTION_TYPE_NETWORK, PathIP, wfDocPath},
	{"FwpsInjectTransportSendAsync0", FWPS_INJECTION_TYPE_TRANSPORT, PathIP, wfDocPath},
	{"FwpsInjectTransportSendAsync1", FWPS_INJECTION_TYPE_TRANSPORT, PathIP, wfDocPath},
	{"FwpsInjectTransportReceiveAsync0", FWPS_INJECTION_TYPE_TRANSPORT, PathIP, wfDocPath},
	{"FwpsStreamInjectAsync0", FWPS_INJECTION_TYPE_STREAM, PathStream, wfDocStream},
	{"FwpsInjectMacSendAsync0", FWPS_INJECTION_TYPE_L2, PathMAC, wfDocPath},
	{"FwpsInjectMacReceiveAsync0", FWPS_INJECTION_TYPE_L2, PathMAC, wfDocPath},
}

// wfCompletionStatuses are the statuses a target completes NBLs with: the
// status byte modulo 4.
var wfCompletionStatuses = [4]Status{STATUS_SUCCESS, STATUS_INVALID_BUFFER_SIZE, STATUS_REQUEST_ABORTED, nbl.StatusBufferOverflow}

// wfVerbose (NBLPIPE_WFP_TRACE=1, with -v) logs every call and its status.
var wfVerbose = os.Getenv("NBLPIPE_WFP_TRACE") == "1"

var (
	wfSentinelHandle = &Handle{}
	wfSentinelNBL    = &nbl.NetBufferList{}
	wfSentinelCtx    = &wfCtx{n: -1 << 30}
)

type wfCtx struct{ n int }

// ---- program reader ----

type wfReader struct {
	b []byte
	i int
}

func (r *wfReader) more() bool { return r.i < len(r.b) }

func (r *wfReader) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *wfReader) u16() uint16 { return uint16(r.next()) | uint16(r.next())<<8 }
func (r *wfReader) u32() uint32 { return uint32(r.u16()) | uint32(r.u16())<<16 }

// ---- model ----

type wfKind uint8

const (
	wfCreated  wfKind = iota // allocated by the caller: no Originator
	wfOriginal               // lent by an originator (a port)
	wfClone
	wfForeign // the zero-value NetBufferList no pool owns
)

type wfHandle struct {
	h         *Handle
	si        int // 0 Default, 1 the program's other stack
	types     uint32
	destroyed bool
	pending   int
	injected  uint64
	refused   uint64
}

type wfHist struct {
	id  uint64
	ctx any
}

type wfNBL struct {
	l        *nbl.NetBufferList
	kind     wfKind
	slot     int
	parent   *wfNBL
	children int
	refs     int
	status   Status
	freed    bool
	returned int // times the originator got it back

	// While in flight through an injection.
	inflight       bool
	owner          *wfHandle
	nilFn          bool
	cctx           any
	freeOnComplete bool
	completions    int

	// The injection tag the NBL must carry.
	tagID  uint64
	tagCtx any
	hist   []wfHist
	hops   uint16
}

type wfVSCall struct {
	head  *nbl.NetBufferList
	count int
	port  uint32
	nic   uint16
}

type wfVSwitch struct {
	e  *wfEnv
	id GUID
}

func (v *wfVSwitch) VSwitchID() GUID { return v.id }

func (v *wfVSwitch) InjectIngress(nbls *nbl.NetBufferList, count int, port uint32, nic uint16) {
	v.e.calls++
	v.e.lastVS = wfVSCall{head: nbls, count: count, port: port, nic: nic}
	v.e.deliver(nbls, count, v.e.nowVSwitch)
}

type wfPath struct{ e *wfEnv }

func (p *wfPath) Inject(r Request) {
	p.e.calls++
	p.e.lastReq = r
	if r.NBLs != nil {
		p.e.deliver(r.NBLs, r.Count, p.e.nowPath)
	}
}

type wfMdl struct {
	p *nbl.Pool
	m *nbl.Mdl
}

type wfEnv struct {
	t     *testing.T
	r     *wfReader
	trace []string

	stacks  [2]*Stack
	pools   [2]*nbl.Pool
	q       *CompletionQueue
	handles []*wfHandle
	slots   []*wfNBL
	foreign *wfNBL
	byPtr   map[*nbl.NetBufferList]*wfNBL
	mdls    []wfMdl

	vsw     [2]*wfVSwitch
	paths   [2][3]*wfPath
	regVS   [2]bool
	regPath [2][3]bool

	nowVSwitch, nowPath bool
	nowStatus           Status
	held                []*nbl.NetBufferList
	completing          Status
	calls               int
	callbacks           int
	lastVS              wfVSCall
	lastReq             Request
	expectReturn        *wfNBL

	stopped     bool
	baseHandles int
	liveDefault int
	seq         int
	finished    bool
	quiet       bool // after a failure: callbacks stop checking
}

// FuzzWFPCalls: see the comment at the top of the file.
func FuzzWFPCalls(f *testing.F) {
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > wfMaxInput {
			return
		}
		e := newWFEnv(t, prog)
		e.run()
	})
}

func newWFEnv(t *testing.T, prog []byte) *wfEnv {
	e := &wfEnv{t: t, r: &wfReader{b: prog}, byPtr: map[*nbl.NetBufferList]*wfNBL{}}
	e.stacks = [2]*Stack{Default, NewStack()}
	e.stacks[1].Start()
	for i, n := range []int{wfPoolA, wfPoolB} {
		p, err := nbl.NewPool(nbl.Config{NBLs: n, FrameSize: 256, Headroom: 32, ExtraMdls: wfExtraMdls, HeaderBufferSize: 64})
		if err != nil {
			t.Fatalf("NewPool: %v", err)
		}
		e.pools[i] = p
	}
	q, err := NewCompletionQueue(Default, 64)
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	e.foreign = &wfNBL{l: &nbl.NetBufferList{}, kind: wfForeign, slot: -1}
	e.baseHandles = Default.Handles()
	t.Cleanup(e.cleanup)
	for si := range e.stacks {
		e.vsw[si] = &wfVSwitch{e: e, id: nextGUID()}
		for i := range e.paths[si] {
			e.paths[si][i] = &wfPath{e: e}
		}
	}
	// Default serves every target; the other stack only a vSwitch and the
	// IP path, so that its handles meet TCPIP_NOT_READY on the others.
	e.toggle(0, 0)
	e.toggle(0, 1)
	e.toggle(0, 2)
	e.toggle(0, 3)
	e.toggle(1, 0)
	e.toggle(1, 1)
	h := e.r.next()
	e.nowVSwitch = h&1 != 0
	e.nowPath = h&2 != 0
	e.nowStatus = wfCompletionStatuses[(h>>2)&3]
	return e
}

func (e *wfEnv) fatalf(format string, args ...any) {
	e.t.Helper()
	e.quiet = true
	e.t.Fatalf("%s\nops: %s", fmt.Sprintf(format, args...), strings.Join(e.trace, ", "))
}

func (e *wfEnv) errorf(format string, args ...any) {
	e.t.Helper()
	if e.quiet {
		return
	}
	e.t.Errorf("%s\nops: %s", fmt.Sprintf(format, args...), strings.Join(e.trace, ", "))
}

func (e *wfEnv) run() {
	for n := 0; n < wfMaxOps && e.r.more(); n++ {
		op := e.r.next() % 16
		e.trace = append(e.trace, wfOpNames[op])
		switch op {
		case wfOpCreate:
			e.opCreate()
		case wfOpDestroy:
			e.opDestroy()
		case wfOpAlloc:
			e.opAlloc()
		case wfOpFwpsAlloc:
			e.opFwpsAlloc()
		case wfOpFree:
			e.opFree()
		case wfOpClone:
			e.opClone()
		case wfOpFreeClone:
			e.opFreeClone()
		case wfOpRef:
			e.opRef()
		case wfOpDeref:
			e.opDeref()
		case wfOpQuery:
			e.opQuery()
		case wfOpInject, wfOpInject2, wfOpInject3:
			e.opInject()
		case wfOpFlush:
			n := int(e.r.next() % 8)
			e.flushHeld(n, wfCompletionStatuses[e.r.next()%4])
		case wfOpToggle:
			b := e.r.next()
			e.toggle(int(b>>2)&1, int(b%4))
		case wfOpStopStart:
			if e.stopped {
				Default.Start()
			} else {
				Default.Stop()
			}
			e.stopped = !e.stopped
		}
		e.checkAll()
		if e.t.Failed() {
			e.fatalf("failed in operation %d", n)
		}
	}
	e.trace = append(e.trace, "end")
	e.finish()
}

// ---- selectors and argument pickers ----

func (e *wfEnv) pickHandle() *wfHandle {
	b := int(e.r.next())
	i := b % (len(e.handles) + 1)
	if i == 0 {
		return nil
	}
	return e.handles[i-1]
}

// pickNBL returns the selected NBL (nil for selector 0) and false when the
// selected slot was freed.
func (e *wfEnv) pickNBL() (*wfNBL, bool) {
	i := int(e.r.next()) % (len(e.slots) + 2)
	switch i {
	case 0:
		return nil, true
	case 1:
		return e.foreign, true
	}
	m := e.slots[i-2]
	return m, m != nil
}

func nblOf(m *wfNBL) *nbl.NetBufferList {
	if m == nil {
		return nil
	}
	return m.l
}

// pickFlags: mostly 0, else one bit, else any 32 bits.
func (e *wfEnv) pickFlags() uint32 {
	b := e.r.next()
	switch {
	case b < 0xC0:
		return 0
	case b < 0xE0:
		return 1 << (b & 31)
	}
	return e.r.u32()
}

func (e *wfEnv) pickAF() ADDRESS_FAMILY {
	switch e.r.next() % 4 {
	case 0:
		return AF_INET
	case 1:
		return AF_INET6
	case 2:
		return AF_UNSPEC
	}
	return ADDRESS_FAMILY(e.r.next())
}

var wfLayers = [8]uint16{FWPS_LAYER_STREAM_V4, FWPS_LAYER_STREAM_V6, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET,
	FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE, FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE,
	FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, FWPS_LAYER_EGRESS_VSWITCH_ETHERNET}

func (e *wfEnv) pickLayer() uint16 {
	b := e.r.next() % 9
	if b < 8 {
		return wfLayers[b]
	}
	return e.r.u16()
}

var wfStreamFlags = [8]uint32{FWPS_STREAM_FLAG_SEND, FWPS_STREAM_FLAG_RECEIVE,
	FWPS_STREAM_FLAG_SEND | FWPS_STREAM_FLAG_SEND_DISCONNECT, FWPS_STREAM_FLAG_RECEIVE | FWPS_STREAM_FLAG_RECEIVE_DISCONNECT,
	FWPS_STREAM_FLAG_SEND_DISCONNECT, FWPS_STREAM_FLAG_RECEIVE_DISCONNECT,
	FWPS_STREAM_FLAG_SEND | FWPS_STREAM_FLAG_SEND_NODELAY | FWPS_STREAM_FLAG_SEND_EXPEDITED, 0}

func (e *wfEnv) pickStreamFlags() uint32 {
	b := e.r.next() % 9
	if b < 8 {
		return wfStreamFlags[b]
	}
	return e.r.u32()
}

// pickVSwitchID: Default's switch, the other stack's, an unknown GUID, a
// short ID, nil, or 17 bytes.
func (e *wfEnv) pickVSwitchID() []byte {
	switch e.r.next() % 6 {
	case 0:
		return e.vsw[0].id.Bytes()
	case 1:
		return e.vsw[1].id.Bytes()
	case 2:
		g := GUID{0xde, 0xad, 0xbe, 0xef}
		return g.Bytes()
	case 3:
		return e.vsw[0].id.Bytes()[:e.r.next()%16]
	case 4:
		return nil
	}
	return append(e.vsw[0].id.Bytes(), 0)
}

// pv32 and pv64 are pass-through values, distinct per call.
func (e *wfEnv) pv32() uint32 { return uint32(e.r.next()) | uint32(e.seq)<<8 }
func (e *wfEnv) pv64() uint64 { return uint64(e.pv32())<<32 | uint64(e.seq) }

func (e *wfEnv) pickCtxSize() uint16 {
	b := e.r.next() % 8
	if b < 6 {
		return uint16(b) * 16 // 0..80: 80 exceeds the pool's 64 bytes
	}
	if b == 6 {
		return 8
	}
	return e.r.u16()
}

// ---- checks ----

// expect fails unless got is documented for the function and is one of
// allowed.
func (e *wfEnv) expect(what string, got Status, doc, allowed wfSet) {
	e.t.Helper()
	if wfVerbose {
		e.t.Logf("%s -> %v (allowed %s)", what, got, wfSetString(allowed))
	}
	g := wfOf(got)
	if g == 0 || g&doc == 0 {
		e.fatalf("%s returned %v, which it does not document", what, got)
	}
	if g&allowed == 0 {
		e.fatalf("%s returned %v, want one of %s", what, got, wfSetString(allowed))
	}
}

func wfSetString(s wfSet) string {
	var out []string
	for _, st := range []Status{STATUS_SUCCESS, STATUS_INVALID_PARAMETER, STATUS_FWP_INJECT_HANDLE_STALE,
		STATUS_FWP_INJECT_HANDLE_CLOSING, STATUS_FWP_TCPIP_NOT_READY, STATUS_NOT_FOUND, STATUS_FWP_NULL_POINTER,
		STATUS_FWP_INVALID_PARAMETER, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_STATE} {
		if s&wfOf(st) != 0 {
			out = append(out, st.Error())
		}
	}
	return "{" + strings.Join(out, ", ") + "}"
}

// wanted turns the rules a call breaks into its allowed outcomes.
func wanted(errs wfSet) wfSet {
	if errs == 0 {
		return wfSuccess
	}
	return errs
}

// live lists the NBLs the program holds or has in flight, the foreign one
// first.
func (e *wfEnv) live() []*wfNBL {
	out := []*wfNBL{e.foreign}
	for _, m := range e.slots {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func (e *wfEnv) snapAll() []nblSnap {
	ls := e.live()
	out := make([]nblSnap, len(ls))
	for i, m := range ls {
		out[i] = snap(m.l)
	}
	return out
}

func (e *wfEnv) checkUnchanged(what string, before []nblSnap) {
	e.t.Helper()
	for i, m := range e.live() {
		if got := snap(m.l); got != before[i] {
			e.fatalf("%s refused but changed NBL %d:\n got %+v\nwant %+v", what, m.slot, got, before[i])
		}
	}
}

func (e *wfEnv) checkAll() {
	e.t.Helper()
	for i, hm := range e.handles {
		st := hm.h.Stats()
		if st.Pending != int64(hm.pending) || st.Injected != hm.injected || st.Refused != hm.refused {
			e.fatalf("handle %d: stats %+v, want pending %d, injected %d, refused %d", i+1, st, hm.pending, hm.injected, hm.refused)
		}
		if hm.h.Closing() != hm.destroyed {
			e.fatalf("handle %d: Closing() = %v, destroyed %v", i+1, hm.h.Closing(), hm.destroyed)
		}
	}
	if n := Default.Handles(); n != e.baseHandles+e.liveDefault {
		e.fatalf("Default.Handles() = %d, want %d", n, e.baseHandles+e.liveDefault)
	}
	var inUse [2]int
	for _, m := range e.slots {
		if m == nil {
			continue
		}
		for i, p := range e.pools {
			if m.l.Pool() == p {
				inUse[i]++
			}
		}
		e.checkNBL(m)
	}
	for i, p := range e.pools {
		if p.InUse() != inUse[i] {
			e.fatalf("pool %d: %d descriptors in use, the program holds %d", i, p.InUse(), inUse[i])
		}
	}
	if snap(e.foreign.l) != snap(wfSentinelNBL) || e.foreign.l.Tag.Handle != 0 {
		e.fatalf("the zero-value NBL changed: %+v", snap(e.foreign.l))
	}
	if st := e.q.Stats(); st.Panics != 0 || e.q.Len() != 0 {
		e.fatalf("completion queue: %+v, %d queued", st, e.q.Len())
	}
	for _, l := range e.held {
		if m := e.byPtr[l]; m == nil || !m.inflight {
			e.fatalf("the target holds an NBL that is not in flight")
		}
	}
}

func (e *wfEnv) checkNBL(m *wfNBL) {
	e.t.Helper()
	l := m.l
	if l.Next != nil {
		e.fatalf("NBL %d: Next is set", m.slot)
	}
	if l.RefCount() != int32(m.refs) || l.ChildRefCount() != int32(m.children) {
		e.fatalf("NBL %d: %d references and %d clones, want %d and %d", m.slot, l.RefCount(), l.ChildRefCount(), m.refs, m.children)
	}
	if l.Status != m.status {
		e.fatalf("NBL %d: Status %v, want %v", m.slot, l.Status, m.status)
	}
	if l.IsClone() != (m.kind == wfClone) || (l.Originator != nil) != (m.kind == wfOriginal) {
		e.fatalf("NBL %d: clone %v, originator %v; kind %d", m.slot, l.IsClone(), l.Originator != nil, m.kind)
	}
	if m.kind == wfClone && l.Parent() != m.parent.l {
		e.fatalf("NBL %d: wrong parent", m.slot)
	}
	c := &l.Completion
	if m.inflight {
		if c.Owner != any(m.owner.h) || (c.Fn == nil) != m.nilFn || c.Context != m.cctx || c.Batch != nil {
			e.fatalf("NBL %d in flight: completion %+v (fn set %v), want owner %d, nil fn %v, context %v", m.slot, *c, c.Fn != nil, m.owner.h.ID(), m.nilFn, m.cctx)
		}
	} else if c.Fn != nil || c.Batch != nil || c.Context != nil || c.Owner != nil {
		e.fatalf("NBL %d: completion fields set while the program holds it: %+v", m.slot, *c)
	}
	t := &l.Tag
	ok := t.Handle == m.tagID && t.Context == m.tagCtx && int(t.HistoryLen) == len(m.hist) && t.Hops == m.hops
	for i := 0; ok && i < len(m.hist); i++ {
		ok = t.History[i] == m.hist[i].id && t.HistoryContext[i] == m.hist[i].ctx
	}
	if !ok {
		e.fatalf("NBL %d: tag %+v, want handle %d, context %v, history %v, hops %d", m.slot, *t, m.tagID, m.tagCtx, m.hist, m.hops)
	}
}

// ---- model bookkeeping ----

func (e *wfEnv) addNBL(l *nbl.NetBufferList, kind wfKind, parent *wfNBL) *wfNBL {
	m := &wfNBL{l: l, kind: kind, slot: len(e.slots), parent: parent, status: STATUS_SUCCESS}
	if parent != nil {
		parent.children++
		m.tagID, m.tagCtx, m.hops = parent.tagID, parent.tagCtx, parent.hops
		m.hist = append([]wfHist(nil), parent.hist...)
	}
	e.slots = append(e.slots, m)
	e.byPtr[l] = m
	return m
}

func (e *wfEnv) removeNBL(m *wfNBL) {
	m.freed = true
	e.slots[m.slot] = nil
	delete(e.byPtr, m.l)
	if m.parent != nil {
		m.parent.children--
	}
}

// held reports whether Free or FreeClone must refuse m for its holds.
func (m *wfNBL) held() bool { return m.refs > 0 || m.children > 0 }

func (e *wfEnv) toggle(si, which int) {
	s := e.stacks[si]
	if which == 0 {
		if e.regVS[si] {
			s.UnregisterVSwitch(e.vsw[si].id)
		} else if err := s.RegisterVSwitch(e.vsw[si]); err != nil {
			e.fatalf("RegisterVSwitch: %v", err)
		}
		e.regVS[si] = !e.regVS[si]
		return
	}
	p := Path(which)
	if e.regPath[si][p-1] {
		s.UnregisterDataPath(p)
	} else if err := s.RegisterDataPath(p, e.paths[si][p-1]); err != nil {
		e.fatalf("RegisterDataPath(%d): %v", p, err)
	}
	e.regPath[si][p-1] = !e.regPath[si][p-1]
}

// ---- completion ----

// deliver is the targets' common body: unlink the chain, then complete it
// now or hold it for a flush.
func (e *wfEnv) deliver(head *nbl.NetBufferList, count int, now bool) {
	ls := make([]*nbl.NetBufferList, 0, count)
	for l := head; l != nil && len(ls) <= count; {
		next := l.Next
		l.Next = nil
		ls = append(ls, l)
		l = next
	}
	if len(ls) != count {
		e.errorf("a target got a chain of %d NBLs with count %d", len(ls), count)
	}
	if now {
		e.completeList(ls, e.nowStatus)
		return
	}
	e.held = append(e.held, ls...)
}

func (e *wfEnv) flushHeld(n int, st Status) {
	if n <= 0 || n > len(e.held) {
		n = len(e.held)
	}
	take := append([]*nbl.NetBufferList(nil), e.held[:n]...)
	e.held = append(e.held[:0], e.held[n:]...)
	e.completeList(take, st)
}

// completeList completes ls with st through the queue and checks that each
// completed once: a completion function call, or for an original injected
// without one, the injection's reference dropped.
func (e *wfEnv) completeList(ls []*nbl.NetBufferList, st Status) {
	if len(ls) == 0 {
		return
	}
	ms := make([]*wfNBL, len(ls))
	for i, l := range ls {
		ms[i] = e.byPtr[l]
		if ms[i] == nil || !ms[i].inflight {
			e.errorf("a target completes an NBL that is not in flight")
		}
	}
	e.completing = st
	for _, l := range ls {
		e.q.Complete(l, st)
	}
	e.q.Flush()
	if p := e.q.Stats().Panics; p != 0 {
		e.errorf("%d completion functions panicked", p)
	}
	for _, m := range ms {
		if m == nil || e.quiet {
			continue
		}
		m.owner.pending--
		m.inflight = false
		if m.nilFn {
			m.refs--
		} else if m.completions != 1 {
			e.errorf("NBL %d: %d completions, want 1", m.slot, m.completions)
		}
		if !m.freed {
			m.status = st
		}
	}
}

// complete is the FWPS_INJECT_COMPLETE0 of every injection.
func (e *wfEnv) complete(ctx any, l *nbl.NetBufferList, dispatchLevel bool) {
	e.callbacks++
	if e.quiet {
		return
	}
	m := e.byPtr[l]
	if m == nil || !m.inflight || m.nilFn {
		e.errorf("completion for an NBL that is not in flight with a completion function")
		return
	}
	m.completions++
	if ctx != m.cctx || dispatchLevel || l.Status != e.completing {
		e.errorf("NBL %d completed with context %v (want %v), dispatch %v, status %v (want %v)", m.slot, ctx, m.cctx, dispatchLevel, l.Status, e.completing)
	}
	if c := &l.Completion; c.Fn != nil || c.Owner != nil || c.Context != nil {
		e.errorf("NBL %d: completion fields still set in its completion function", m.slot)
	}
	if !m.freeOnComplete {
		return
	}
	// Free it here, as a driver's completion function does.
	switch {
	case m.kind == wfClone:
		if m.held() {
			if nbl.DebugChecks {
				return
			}
			e.expect("FwpsFreeCloneNetBufferList0 in completion", FwpsFreeCloneNetBufferList0(l, 0), wfDocFree, wfInvalid)
			return
		}
		e.expect("FwpsFreeCloneNetBufferList0 in completion", FwpsFreeCloneNetBufferList0(l, 0), wfDocFree, wfSuccess)
		e.removeNBL(m)
	default:
		if m.held() {
			if nbl.DebugChecks {
				return
			}
			e.expect("FwpsFreeNetBufferList0 in completion", FwpsFreeNetBufferList0(l), wfDocFree, wfInvalid)
			return
		}
		e.expectReturn = m
		e.expect("FwpsFreeNetBufferList0 in completion", FwpsFreeNetBufferList0(l), wfDocFree, wfSuccess)
		e.expectReturn = nil
		e.checkReturned(m)
		e.removeNBL(m)
	}
}

// ReturnNetBufferList makes the environment the originator of its
// originals.
func (e *wfEnv) ReturnNetBufferList(l *nbl.NetBufferList) {
	if e.quiet {
		return
	}
	m := e.byPtr[l]
	if m == nil || m != e.expectReturn {
		e.errorf("an original went back to its originator unexpectedly")
		return
	}
	m.returned++
	if l.RefCount() != 0 || l.ChildRefCount() != 0 {
		e.errorf("NBL %d went back to its originator with %d references and %d clones", m.slot, l.RefCount(), l.ChildRefCount())
	}
}

func (e *wfEnv) checkReturned(m *wfNBL) {
	want := 0
	if m.kind == wfOriginal {
		want = 1
	}
	if m.returned != want {
		e.errorf("NBL %d went back to its originator %d times, want %d", m.slot, m.returned, want)
	}
}

// ---- operations ----

func (e *wfEnv) opCreate() {
	af := e.pickAF()
	tb := e.r.next()
	types := uint32(tb & 0x3F)
	if tb >= 0xC0 {
		types = e.r.u32()
	}
	opt := e.r.next()
	if len(e.handles) >= wfMaxHandle {
		return
	}
	expanded := types
	if expanded == 0 {
		expanded = FWPS_INJECTION_TYPE_TRANSPORT | FWPS_INJECTION_TYPE_STREAM | FWPS_INJECTION_TYPE_FORWARD
	}
	var errs wfSet
	if types&^0x3F != 0 || (af != AF_UNSPEC && af != AF_INET && af != AF_INET6) ||
		(expanded&FWPS_INJECTION_TYPE_NETWORK != 0 && af == AF_UNSPEC) {
		errs |= wfInvalid
	}
	if opt&2 != 0 {
		// A handle of another stack (no WFP name: WFP has one stack).
		h, err := e.stacks[1].CreateHandle(af, types)
		e.expect("Stack.CreateHandle", nbl.StatusOf(err), wfDocCreate, wanted(errs))
		if err == nil {
			e.handles = append(e.handles, &wfHandle{h: h, si: 1, types: expanded})
		}
		return
	}
	nilOut := opt&1 != 0
	if nilOut {
		errs |= wfInvalid
	}
	if e.stopped {
		errs |= wfNotReady
	}
	before := Default.Handles()
	out := wfSentinelHandle
	p := &out
	if nilOut {
		p = nil
	}
	st := FwpsInjectionHandleCreate0(af, types, p)
	e.expect("FwpsInjectionHandleCreate0", st, wfDocCreate, wanted(errs))
	if st != STATUS_SUCCESS {
		if out != wfSentinelHandle || Default.Handles() != before {
			e.fatalf("FwpsInjectionHandleCreate0 failed but wrote a handle or counted one")
		}
		return
	}
	if out == nil || out == wfSentinelHandle || out.Stack() != Default || out.Types() != expanded || out.Family() != af || out.ID() == 0 {
		e.fatalf("FwpsInjectionHandleCreate0(%d, 0x%x) made %+v", af, types, out)
	}
	e.liveDefault++
	e.handles = append(e.handles, &wfHandle{h: out, types: expanded})
}

func (e *wfEnv) opDestroy() {
	hm := e.pickHandle()
	st := wfCompletionStatuses[e.r.next()%4]
	if hm == nil {
		e.expect("FwpsInjectionHandleDestroy0(nil)", FwpsInjectionHandleDestroy0(nil), wfDocDestroy, wfInvalid)
		return
	}
	e.destroy(hm, st)
}

// destroy destroys a handle. With injections pending it runs
// FwpsInjectionHandleDestroy0 on another goroutine, checks that it waits
// (the handle is closing and the call has not returned), completes what
// the targets hold with st, and then wants it to return STATUS_SUCCESS.
func (e *wfEnv) destroy(hm *wfHandle, st Status) {
	if hm.pending == 0 {
		e.expect("FwpsInjectionHandleDestroy0", FwpsInjectionHandleDestroy0(hm.h), wfDocDestroy, wfSuccess)
	} else {
		done := make(chan Status, 1)
		go func() { done <- FwpsInjectionHandleDestroy0(hm.h) }()
		deadline := time.Now().Add(testTimeout)
		for !hm.h.Closing() {
			if time.Now().After(deadline) {
				e.fatalf("the handle did not start closing within %v", testTimeout)
			}
			runtime.Gosched()
		}
		// Deterministic: the call cannot return while completions it waits
		// for are still held by the target on this goroutine.
		select {
		case got := <-done:
			e.fatalf("FwpsInjectionHandleDestroy0 returned %v with %d completions pending", got, hm.pending)
		default:
		}
		e.flushHeld(-1, st)
		if hm.pending != 0 {
			e.fatalf("handle still has %d pending after the targets were flushed", hm.pending)
		}
		select {
		case got := <-done:
			e.expect("FwpsInjectionHandleDestroy0 (waited)", got, wfDocDestroy, wfSuccess)
		case <-time.After(testTimeout):
			e.fatalf("FwpsInjectionHandleDestroy0 did not return within %v of its last completion", testTimeout)
		}
	}
	if !hm.destroyed && hm.si == 0 {
		e.liveDefault--
	}
	hm.destroyed = true
}

func (e *wfEnv) opAlloc() {
	b := e.r.next()
	p := e.pools[b&1]
	off := int(e.r.next()) % 64
	ln := min(int(e.r.next()), p.Config().FrameSize-off)
	if len(e.slots) >= wfMaxSlots || p.InUse() == p.Cap() {
		return
	}
	l, err := p.Allocate(off, ln)
	if err != nil {
		e.fatalf("Allocate(%d, %d): %v", off, ln, err)
	}
	kind := wfCreated
	if b&2 != 0 {
		kind = wfOriginal
		l.Originator = e
	}
	e.addNBL(l, kind, nil)
}

func (e *wfEnv) opFwpsAlloc() {
	opt := e.r.next()
	var p *nbl.Pool
	switch opt % 3 {
	case 1:
		p = e.pools[0]
	case 2:
		p = e.pools[1]
	}
	cs, bf := e.pickCtxSize(), e.pickCtxSize()
	mode := e.r.next() % 4
	mp := p
	if mp == nil {
		mp = e.pools[0]
	}
	var chain *nbl.Mdl
	total := uint64(0)
	if mode != 0 {
		n := 1
		if mode == 2 {
			n = 2
		}
		var ms []*nbl.Mdl
		for i := 0; i < n; i++ {
			size := int(e.r.next())
			if mode == 3 {
				size = 0
			}
			if len(e.mdls) >= wfMaxMdls {
				return
			}
			m, err := mp.AllocateMdl(make([]byte, size))
			if err != nil {
				return // the pool's extra MDLs are taken (by clones too): not this function's business
			}
			e.mdls = append(e.mdls, wfMdl{p: mp, m: m})
			total += uint64(size)
			ms = append(ms, m)
		}
		for i := 0; i+1 < len(ms); i++ {
			if err := ms[i].SetNext(ms[i+1]); err != nil {
				e.fatalf("SetNext: %v", err)
			}
		}
		chain = ms[0]
	}
	off := uint32(e.r.next())
	if opt&0x40 != 0 {
		off = e.r.u32()
	}
	ln := uint64(e.r.next())
	if opt&0x80 != 0 {
		ln += 1 << 32 // a SIZE_T beyond the 32-bit DataLength
	}
	nilOut := opt&0x20 != 0
	if len(e.slots) >= wfMaxSlots {
		return
	}
	var errs wfSet
	if p == nil || nilOut || ln > 0xFFFFFFFF || cs%16 != 0 || bf%16 != 0 ||
		(chain == nil && (off != 0 || ln != 0)) || uint64(off)+ln > total ||
		int(cs)+int(bf) > p.Config().ContextSize {
		errs |= wfInvalid
	}
	if errs == 0 && p.InUse() == p.Cap() {
		errs |= wfResources
	}
	var inUse int
	if p != nil {
		inUse = p.InUse()
	}
	out := wfSentinelNBL
	po := &out
	if nilOut {
		po = nil
	}
	st := FwpsAllocateNetBufferAndNetBufferList0(p, cs, bf, chain, off, ln, po)
	e.expect("FwpsAllocateNetBufferAndNetBufferList0", st, wfDocAlloc, wanted(errs))
	if st != STATUS_SUCCESS {
		if out != wfSentinelNBL || (p != nil && p.InUse() != inUse) {
			e.fatalf("FwpsAllocateNetBufferAndNetBufferList0 failed but wrote an NBL or took a descriptor")
		}
		return
	}
	nb := out.FirstNetBuffer()
	if out.Pool() != p || out.IsClone() || out.Originator != nil || out.Next != nil || nb == nil ||
		nb.DataOffset() != int(off) || uint64(nb.DataLength()) != ln || nb.MdlChain() != chain ||
		out.Context() == nil || len(out.Context().Data()) != int(cs) || out.Tag.Handle != 0 {
		e.fatalf("FwpsAllocateNetBufferAndNetBufferList0(ctx %d, backfill %d, offset %d, length %d) made a wrong NBL", cs, bf, off, ln)
	}
	e.addNBL(out, wfCreated, nil)
}

func (e *wfEnv) opFree() {
	m, ok := e.pickNBL()
	if !ok || (m != nil && m.inflight) {
		return // freed, or the target holds it
	}
	var errs wfSet
	switch {
	case m == nil || m.kind == wfForeign || m.kind == wfClone:
		errs = wfInvalid
	case m.held():
		if nbl.DebugChecks {
			return // the debug build panics on this misuse
		}
		errs = wfInvalid
	}
	before := e.snapAll()
	e.expectReturn = m
	st := FwpsFreeNetBufferList0(nblOf(m))
	e.expectReturn = nil
	e.expect("FwpsFreeNetBufferList0", st, wfDocFree, wanted(errs))
	if st != STATUS_SUCCESS {
		e.checkUnchanged("FwpsFreeNetBufferList0", before)
		return
	}
	e.checkReturned(m)
	e.removeNBL(m)
}

// mdlsFrom counts the MDLs from the first NetBuffer's current one on: a
// bound on the extra MDLs a clone of l takes, plus one.
func mdlsFrom(l *nbl.NetBufferList) int {
	n := 0
	if nb := l.FirstNetBuffer(); nb != nil {
		for m := nb.CurrentMdl(); m != nil; m = m.Next() {
			n++
		}
	}
	return n
}

func (e *wfEnv) opClone() {
	m, ok := e.pickNBL()
	pb := e.r.next()
	flags := e.pickFlags()
	if !ok || (m != nil && m.inflight) || len(e.slots) >= wfMaxSlots {
		return
	}
	var nblPool, nbPool *nbl.Pool
	if i := pb % 3; i > 0 {
		nblPool = e.pools[i-1]
	}
	switch (pb / 3) % 3 {
	case 1:
		nbPool = nblPool
	case 2:
		nbPool = e.pools[1]
		if nblPool == e.pools[1] {
			nbPool = e.pools[0]
		}
	}
	nilOut := pb&0x80 != 0
	var allowed wfSet
	var tp *nbl.Pool
	if m == nil || m.kind == wfForeign || nilOut || flags != 0 || (nbPool != nil && nbPool != nblPool) {
		allowed = wfInvalid
	} else {
		tp = nblPool
		if tp == nil {
			tp = m.l.Pool()
		}
		_, mdls := tp.ExtraInUse()
		switch {
		case tp.InUse() == tp.Cap():
			allowed = wfResources
		case tp.Config().ExtraMdls-mdls >= mdlsFrom(m.l)-1:
			allowed = wfSuccess
		default:
			allowed = wfSuccess | wfResources
		}
	}
	before := e.snapAll()
	var inUse, nbs, mdls int
	if tp != nil {
		inUse = tp.InUse()
		nbs, mdls = tp.ExtraInUse()
	}
	out := wfSentinelNBL
	po := &out
	if nilOut {
		po = nil
	}
	st := FwpsAllocateCloneNetBufferList0(nblOf(m), nblPool, nbPool, flags, po)
	e.expect("FwpsAllocateCloneNetBufferList0", st, wfDocAlloc, allowed)
	if st != STATUS_SUCCESS {
		e.checkUnchanged("FwpsAllocateCloneNetBufferList0", before)
		if out != wfSentinelNBL {
			e.fatalf("FwpsAllocateCloneNetBufferList0 failed but wrote an NBL")
		}
		if tp != nil {
			if n, x := tp.ExtraInUse(); tp.InUse() != inUse || n != nbs || x != mdls {
				e.fatalf("FwpsAllocateCloneNetBufferList0 failed but kept pool objects")
			}
		}
		return
	}
	nb, onb := out.FirstNetBuffer(), m.l.FirstNetBuffer()
	if out == nil || out == wfSentinelNBL || !out.IsClone() || out.Parent() != m.l || out.Pool() != tp || out.Context() != nil ||
		out.Next != nil || nb == nil || nb.DataOffset() != 0 || nb.DataLength() != onb.DataLength() || out.NblFlags != m.l.NblFlags {
		e.fatalf("FwpsAllocateCloneNetBufferList0 made a wrong clone")
	}
	e.addNBL(out, wfClone, m)
}

func (e *wfEnv) opFreeClone() {
	m, ok := e.pickNBL()
	flags := e.pickFlags()
	if !ok || (m != nil && m.inflight) {
		return
	}
	var errs wfSet
	switch {
	case m == nil || m.kind == wfForeign || flags != 0 || m.kind != wfClone:
		errs = wfInvalid
	case m.held():
		if nbl.DebugChecks {
			return
		}
		errs = wfInvalid
	}
	before := e.snapAll()
	st := FwpsFreeCloneNetBufferList0(nblOf(m), flags)
	e.expect("FwpsFreeCloneNetBufferList0", st, wfDocFree, wanted(errs))
	if st != STATUS_SUCCESS {
		e.checkUnchanged("FwpsFreeCloneNetBufferList0", before)
		return
	}
	e.removeNBL(m)
}

func (e *wfEnv) opRef() {
	m, ok := e.pickNBL()
	intend := e.r.next()&1 != 0
	if !ok || (m != nil && m.inflight) {
		return
	}
	var errs wfSet
	if m == nil || m.kind == wfForeign {
		errs = wfInvalid
	}
	before := e.snapAll()
	st := FwpsReferenceNetBufferList0(nblOf(m), intend)
	e.expect("FwpsReferenceNetBufferList0", st, wfDocFree, wanted(errs))
	if st != STATUS_SUCCESS {
		e.checkUnchanged("FwpsReferenceNetBufferList0", before)
		return
	}
	m.refs++
}

func (e *wfEnv) opDeref() {
	m, ok := e.pickNBL()
	dispatch := e.r.next()&1 != 0
	if !ok || (m != nil && m.inflight) {
		return
	}
	before := e.snapAll()
	if m != nil && m.kind != wfForeign && m.refs == 0 {
		// Without a matching reference the call panics (case 51) and
		// must change nothing.
		var r any
		func() {
			defer func() { r = recover() }()
			FwpsDereferenceNetBufferList0(m.l, dispatch)
		}()
		if r == nil || !strings.Contains(fmt.Sprint(r), "without a matching Reference") {
			e.fatalf("FwpsDereferenceNetBufferList0 without a reference: recovered %v, want the documented panic", r)
		}
		e.checkUnchanged("FwpsDereferenceNetBufferList0 without a reference", before)
		return
	}
	var errs wfSet
	if m == nil || m.kind == wfForeign {
		errs = wfInvalid
	}
	st := FwpsDereferenceNetBufferList0(nblOf(m), dispatch)
	e.expect("FwpsDereferenceNetBufferList0", st, wfDocFree, wanted(errs))
	if st != STATUS_SUCCESS {
		e.checkUnchanged("FwpsDereferenceNetBufferList0", before)
		return
	}
	m.refs--
}

// wantState is the model of FwpsQueryPacketInjectionState0 (cases 30-34).
func wantState(hm *wfHandle, m *wfNBL) (FWPS_PACKET_INJECTION_STATE, any) {
	if hm == nil || m == nil || m.tagID == 0 {
		return FWPS_PACKET_NOT_INJECTED, nil
	}
	id := hm.h.ID()
	if m.tagID == id {
		return FWPS_PACKET_INJECTED_BY_SELF, m.tagCtx
	}
	for _, x := range m.hist {
		if x.id == id {
			return FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF, x.ctx
		}
	}
	return FWPS_PACKET_INJECTED_BY_OTHER, nil
}

func (e *wfEnv) opQuery() {
	hm := e.pickHandle()
	m, ok := e.pickNBL()
	nilCtx := e.r.next()&1 != 0
	if !ok {
		return
	}
	var h *Handle
	if hm != nil {
		h = hm.h
	}
	wantSt, wantCtx := wantState(hm, m)
	before := e.snapAll()
	out := any(wfSentinelCtx)
	p := &out
	if nilCtx {
		p = nil
	}
	got := FwpsQueryPacketInjectionState0(h, nblOf(m), p)
	if wfVerbose {
		e.t.Logf("FwpsQueryPacketInjectionState0 -> %v, %v", got, out)
	}
	if got != wantSt || (!nilCtx && out != wantCtx) || (nilCtx && out != any(wfSentinelCtx)) {
		e.fatalf("FwpsQueryPacketInjectionState0 = %v, context %v; want %v, %v", got, out, wantSt, wantCtx)
	}
	e.checkUnchanged("FwpsQueryPacketInjectionState0", before)
}

func wfContains(ms []*wfNBL, m *wfNBL) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

func (e *wfEnv) opInject() {
	fi := int(e.r.next() % wfNumFns)
	fn := &wfFns[fi]
	hm := e.pickHandle()

	// The chain: up to wfMaxChain distinct NBLs, linked in order or as the
	// link bytes say (loops included). An NBL in flight keeps its Next:
	// the target owns it.
	k := int(e.r.next()) % (wfMaxChain + 1)
	var members []*wfNBL
	for i := 0; i < k; i++ {
		m, ok := e.pickNBL()
		if ok && m != nil && !wfContains(members, m) {
			members = append(members, m)
		}
	}
	lm := e.r.next()
	links := make([]int, len(members))
	for i := range members {
		links[i] = i + 1
		if lm&0x80 != 0 {
			links[i] = int(e.r.next()) % (len(members) + 1)
		}
		if links[i] == len(members) || members[i].inflight {
			links[i] = -1
		}
	}
	var walk []*wfNBL
	loops := false
	if len(members) > 0 {
		seen := make([]bool, len(members))
		for i := 0; i >= 0; i = links[i] {
			if seen[i] {
				loops = true
				break
			}
			seen[i] = true
			walk = append(walk, members[i])
		}
	}
	var head *nbl.NetBufferList
	if len(members) > 0 {
		head = members[0].l
	}

	opt := e.r.next()
	nilFn, freeOnComplete := opt&1 != 0, opt&2 != 0
	var ictx, cctx any
	e.seq++
	if opt&4 == 0 {
		ictx = &wfCtx{n: e.seq}
	}
	if opt&8 == 0 {
		cctx = &wfCtx{n: -e.seq}
	}
	nilArgs := opt&16 != 0
	var fnv FWPS_INJECT_COMPLETE0
	if !nilFn {
		fnv = e.complete
	}
	flags := e.pickFlags()
	var reserved uintptr
	if fi == wfFnVSwitch || fi == wfFnTransportReceive {
		reserved = uintptr(e.pickFlags())
	}

	// Arguments and the rules they break.
	var errs wfSet
	var want Request
	var vsID []byte
	var port uint32
	var nic uint16
	streamNil := false // a stream disconnect without data
	checkAF := func(af ADDRESS_FAMILY) {
		if af != AF_INET && af != AF_INET6 {
			errs |= wfInvalid
		}
	}
	if flags != 0 && fi != wfFnNetworkSend {
		errs |= wfInvalid
	}
	if reserved != 0 {
		errs |= wfInvalid
	}
	switch fi {
	case wfFnVSwitch:
		vsID, port, nic = e.pickVSwitchID(), e.pv32(), uint16(e.pv32())
	case wfFnForward:
		want = Request{Kind: KindForward, AddressFamily: e.pickAF(), CompartmentID: e.pv32(), InterfaceIndex: e.pv32()}
		checkAF(want.AddressFamily)
	case wfFnNetworkSend:
		want = Request{Kind: KindNetworkSend, Flags: flags, CompartmentID: e.pv32()}
		if flags&^FWPS_SEND_INJECT_PRESERVE_IPID != 0 {
			errs |= wfInvalid
		}
	case wfFnNetworkReceive:
		want = Request{Kind: KindNetworkReceive, CompartmentID: e.pv32(), InterfaceIndex: e.pv32(), SubInterfaceIndex: e.pv32()}
	case wfFnTransportSend0, wfFnTransportSend1:
		want = Request{Kind: KindTransportSend, EndpointHandle: e.pv64(), AddressFamily: e.pickAF(), CompartmentID: e.pv32()}
		checkAF(want.AddressFamily)
		if !nilArgs {
			want.SendArgs = &FWPS_TRANSPORT_SEND_PARAMS1{RemoteAddress: []byte{192, 0, 2, e.r.next()}, RemoteScopeID: e.pv32(), ControlData: []byte{e.r.next()}}
			if fi == wfFnTransportSend1 {
				want.SendArgs.HeaderIncludeHeader = []byte{0x45, e.r.next()}
				want.SendArgs.HeaderIncludeHeaderLength = 2
			}
		}
	case wfFnTransportReceive:
		want = Request{Kind: KindTransportReceive, AddressFamily: e.pickAF(), CompartmentID: e.pv32(), InterfaceIndex: e.pv32(), SubInterfaceIndex: e.pv32()}
		checkAF(want.AddressFamily)
	case wfFnStream:
		want = Request{Kind: KindStream, FlowID: e.pv64(), CalloutID: e.pv32(), LayerID: e.pickLayer(), StreamFlags: e.pickStreamFlags(), DataLength: uint64(e.r.next())}
		if nilFn {
			errs |= wfNullPtr
		}
		if want.LayerID != FWPS_LAYER_STREAM_V4 && want.LayerID != FWPS_LAYER_STREAM_V6 {
			errs |= wfInvalid
		}
		sf := want.StreamFlags
		if sf&^(0x1F|0x1F0000) != 0 ||
			(sf&FWPS_STREAM_FLAG_SEND_DISCONNECT != 0 && sf&FWPS_STREAM_FLAG_SEND == 0) ||
			(sf&FWPS_STREAM_FLAG_RECEIVE_DISCONNECT != 0 && sf&FWPS_STREAM_FLAG_RECEIVE == 0) {
			errs |= wfFwpInvalid
		}
		disconnect := sf&(FWPS_STREAM_FLAG_SEND_DISCONNECT|FWPS_STREAM_FLAG_RECEIVE_DISCONNECT) != 0
		streamNil = head == nil && disconnect
	case wfFnMacSend, wfFnMacReceive:
		kind, eth, native := KindMacSend, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE
		if fi == wfFnMacReceive {
			kind, eth, native = KindMacReceive, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE
		}
		want = Request{Kind: kind, LayerID: e.pickLayer(), InterfaceIndex: e.pv32(), NdisPort: e.pv32()}
		if want.LayerID != eth && want.LayerID != native {
			errs |= wfInvalid
		}
	}
	var h *Handle
	if hm == nil {
		errs |= wfInvalid
	} else {
		h = hm.h
		if hm.types&fn.need != fn.need {
			errs |= wfStale
		}
		if fi == wfFnVSwitch {
			if len(vsID) != len(GUID{}) {
				errs |= wfInvalid
			} else if !e.regVS[hm.si] || GUID(vsID) != e.vsw[hm.si].id {
				errs |= wfNotFound
			}
		} else if !e.regPath[hm.si][fn.path-1] {
			errs |= wfNotReady
		}
		if hm.destroyed {
			errs |= wfClosing
		}
	}
	if !streamNil {
		bad := head == nil || loops
		for _, m := range walk {
			if m.kind == wfForeign || m.inflight || (nilFn && (m.kind != wfOriginal || m.refs < 1)) {
				bad = true
			}
		}
		if bad {
			errs |= wfInvalid
		}
	}

	// Link the chain (only NBLs the program holds).
	for i, m := range members {
		if m.inflight {
			continue
		}
		if links[i] >= 0 {
			m.l.Next = members[links[i]].l
		} else {
			m.l.Next = nil
		}
	}
	before := e.snapAll()
	calls, callbacks, held := e.calls, e.callbacks, len(e.held)

	// A successful injection puts the walk in flight before the call
	// returns (a target that completes at once runs the completions inside
	// it), so the model moves first.
	if errs == 0 && !streamNil {
		for _, m := range walk {
			if m.tagID != 0 && m.tagID != h.ID() {
				m.hist = append([]wfHist{{m.tagID, m.tagCtx}}, m.hist...)
				if len(m.hist) > nbl.MaxInjectionHistory {
					m.hist = m.hist[:nbl.MaxInjectionHistory]
				}
			}
			m.tagID, m.tagCtx = h.ID(), ictx
			m.hops++
			m.inflight, m.owner, m.nilFn, m.cctx, m.freeOnComplete, m.completions = true, hm, nilFn, cctx, freeOnComplete, 0
		}
		hm.pending += len(walk)
		hm.injected += uint64(len(walk))
	}

	var st Status
	switch fi {
	case wfFnVSwitch:
		st = FwpsInjectvSwitchEthernetIngressAsync0(h, ictx, flags, reserved, vsID, port, nic, head, fnv, cctx)
	case wfFnForward:
		st = FwpsInjectForwardAsync0(h, ictx, flags, want.AddressFamily, want.CompartmentID, want.InterfaceIndex, head, fnv, cctx)
	case wfFnNetworkSend:
		st = FwpsInjectNetworkSendAsync0(h, ictx, flags, want.CompartmentID, head, fnv, cctx)
	case wfFnNetworkReceive:
		st = FwpsInjectNetworkReceiveAsync0(h, ictx, flags, want.CompartmentID, want.InterfaceIndex, want.SubInterfaceIndex, head, fnv, cctx)
	case wfFnTransportSend0:
		var args *FWPS_TRANSPORT_SEND_PARAMS0
		if a := want.SendArgs; a != nil {
			args = &FWPS_TRANSPORT_SEND_PARAMS0{RemoteAddress: a.RemoteAddress, RemoteScopeID: a.RemoteScopeID, ControlData: a.ControlData}
		}
		st = FwpsInjectTransportSendAsync0(h, ictx, want.EndpointHandle, flags, args, want.AddressFamily, want.CompartmentID, head, fnv, cctx)
	case wfFnTransportSend1:
		st = FwpsInjectTransportSendAsync1(h, ictx, want.EndpointHandle, flags, want.SendArgs, want.AddressFamily, want.CompartmentID, head, fnv, cctx)
	case wfFnTransportReceive:
		st = FwpsInjectTransportReceiveAsync0(h, ictx, reserved, flags, want.AddressFamily, want.CompartmentID, want.InterfaceIndex, want.SubInterfaceIndex, head, fnv, cctx)
	case wfFnStream:
		st = FwpsStreamInjectAsync0(h, ictx, flags, want.FlowID, want.CalloutID, want.LayerID, want.StreamFlags, head, want.DataLength, fnv, cctx)
	case wfFnMacSend:
		st = FwpsInjectMacSendAsync0(h, ictx, flags, want.LayerID, want.InterfaceIndex, want.NdisPort, head, fnv, cctx)
	case wfFnMacReceive:
		st = FwpsInjectMacReceiveAsync0(h, ictx, flags, want.LayerID, want.InterfaceIndex, want.NdisPort, head, fnv, cctx)
	}
	e.expect(fn.name, st, fn.doc, wanted(errs))

	if st != STATUS_SUCCESS {
		if hm != nil {
			hm.refused++
		}
		e.checkUnchanged(fn.name, before)
		if e.calls != calls || e.callbacks != callbacks || len(e.held) != held {
			e.fatalf("%s refused but reached a target or completed", fn.name)
		}
		for _, m := range members {
			if !m.inflight {
				m.l.Next = nil
			}
		}
		return
	}

	// Success: the target got the call once, with the caller's arguments.
	if e.calls != calls+1 {
		e.fatalf("%s succeeded with %d target calls", fn.name, e.calls-calls)
	}
	if fi == wfFnVSwitch {
		if c := e.lastVS; c.head != head || c.count != len(walk) || c.port != port || c.nic != nic {
			e.fatalf("%s: the switch got %+v, want head, %d NBLs, port %d, NIC %d", fn.name, c, len(walk), port, nic)
		}
	} else {
		got := e.lastReq
		count := len(walk)
		if streamNil {
			count = 0
		}
		if got.Handle != h || got.NBLs != head || got.Count != count {
			e.fatalf("%s: request for handle %v, head %p, count %d; want %v, %p, %d", fn.name, got.Handle, got.NBLs, got.Count, h, head, count)
		}
		got.Handle, got.NBLs, got.Count = nil, nil, 0
		if !reflect.DeepEqual(got, want) {
			e.fatalf("%s: request\n got %+v\nwant %+v", fn.name, got, want)
		}
	}
	now := e.nowPath
	if fi == wfFnVSwitch {
		now = e.nowVSwitch
	}
	for _, m := range walk {
		if now && m.inflight {
			e.fatalf("%s: NBL %d not completed by a target that completes at once", fn.name, m.slot)
		}
	}
	// NBLs outside the walk are still the program's: unlink them.
	for _, m := range members {
		if !m.inflight && !m.freed && !wfContains(walk, m) {
			m.l.Next = nil
		}
	}
}

// ---- end of a program ----

func (e *wfEnv) finish() {
	e.flushHeld(-1, STATUS_SUCCESS)
	e.checkAll()
	for _, m := range e.slots {
		if m != nil && m.inflight {
			e.fatalf("NBL %d still in flight after the final flush", m.slot)
		}
	}
	for _, m := range e.slots {
		for m != nil && m.refs > 0 {
			e.expect("FwpsDereferenceNetBufferList0 (end)", FwpsDereferenceNetBufferList0(m.l, false), wfDocFree, wfSuccess)
			m.refs--
		}
	}
	for progress := true; progress; {
		progress = false
		for _, m := range e.slots {
			if m != nil && m.kind == wfClone && m.children == 0 {
				e.expect("FwpsFreeCloneNetBufferList0 (end)", FwpsFreeCloneNetBufferList0(m.l, 0), wfDocFree, wfSuccess)
				e.removeNBL(m)
				progress = true
			}
		}
	}
	for _, m := range e.slots {
		if m == nil {
			continue
		}
		if m.kind == wfClone || m.children != 0 {
			e.fatalf("NBL %d: clones left at the end", m.slot)
		}
		e.expectReturn = m
		e.expect("FwpsFreeNetBufferList0 (end)", FwpsFreeNetBufferList0(m.l), wfDocFree, wfSuccess)
		e.expectReturn = nil
		e.checkReturned(m)
		e.removeNBL(m)
	}
	for _, x := range e.mdls {
		if err := x.p.FreeMdl(x.m); err != nil {
			e.fatalf("FreeMdl: %v", err)
		}
	}
	e.mdls = nil
	for i, hm := range e.handles {
		if st := hm.h.Stats(); st.Pending != 0 || hm.pending != 0 {
			e.fatalf("handle %d: %d injections pending at the end (model %d)", i+1, st.Pending, hm.pending)
		}
		e.destroy(hm, STATUS_SUCCESS)
	}
	e.checkAll()
	for i, p := range e.pools {
		if !p.Full() {
			nbs, mdls := p.ExtraInUse()
			e.fatalf("pool %d not full at the end: %d descriptors, %d NetBuffers, %d MDLs in use", i, p.InUse(), nbs, mdls)
		}
	}
	if e.t.Failed() {
		e.fatalf("failed at the end of the program")
	}
	e.finished = true
}

// cleanup restores Default (targets, readiness) and, after a failure,
// completes what the targets hold and destroys the handles, bounded, so
// that the next input starts clean.
func (e *wfEnv) cleanup() {
	if !e.finished {
		e.quiet = true
		func() {
			defer func() { _ = recover() }()
			for _, l := range e.held {
				e.q.Complete(l, STATUS_REQUEST_ABORTED)
			}
			e.held = nil
			e.q.Flush()
		}()
		for _, hm := range e.handles {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = hm.h.DestroyContext(ctx)
			cancel()
		}
	}
	if e.regVS[0] {
		Default.UnregisterVSwitch(e.vsw[0].id)
	}
	for i, reg := range e.regPath[0] {
		if reg {
			Default.UnregisterDataPath(Path(i + 1))
		}
	}
	if e.stopped {
		Default.Start()
	}
	if e.finished {
		for _, p := range e.pools {
			_ = p.Close()
		}
	}
}

// ---- seed programs ----

// wfProg builds a program; the methods append one operation each.
type wfProg struct {
	name string
	b    []byte
}

func newProg(name string, header byte) *wfProg { return &wfProg{name: name, b: []byte{header}} }

func (p *wfProg) raw(bs ...byte) *wfProg { p.b = append(p.b, bs...); return p }

// Address family selectors.
const (
	wfAFInet   = 0
	wfAFInet6  = 1
	wfAFUnspec = 2
)

// create: af selector, types (low 6 bits), opt (bit0 nil out, bit1 other stack).
func (p *wfProg) create(af, types, opt byte) *wfProg { return p.raw(wfOpCreate, af, types, opt) }

// alloc: pool (0 A, 1 B), original, data length.
func (p *wfProg) alloc(pool byte, original bool, length byte) *wfProg {
	opt := pool
	if original {
		opt |= 2
	}
	return p.raw(wfOpAlloc, opt, 16, length)
}

// nblSel is the selector of the i-th NBL the program made.
func nblSel(i int) byte { return byte(i + 2) }

// inject with a straight chain of members, the opt bits and then the
// function's argument bytes (flags 0, reserved 0 for the two functions
// that take it).
func (p *wfProg) inject(fn, h byte, members []byte, opt byte, args ...byte) *wfProg {
	p.raw(wfOpInject, fn, h, byte(len(members)))
	p.raw(members...)
	p.raw(0, opt, 0)
	if fn == wfFnVSwitch || fn == wfFnTransportReceive {
		p.raw(0)
	}
	return p.raw(args...)
}

func (p *wfProg) flush(n, status byte) *wfProg { return p.raw(wfOpFlush, n, status) }

// Completion statuses (indexes into wfCompletionStatuses).
const (
	wfStSuccess  = 0
	wfStTooBig   = 1
	wfStAborted  = 2
	wfStOverflow = 3
)

// Argument bytes of the injection functions, after flags (and reserved).
var (
	wfArgsVSwitch   = []byte{0, 5, 2}                     // Default's switch, port, NIC
	wfArgsForward   = []byte{wfAFInet, 3, 4}              // AF_INET, compartment, interface
	wfArgsNetSend   = []byte{3}                           // compartment
	wfArgsNetRecv   = []byte{3, 4, 5}                     // compartment, interface, sub-interface
	wfArgsTSend0    = []byte{9, wfAFInet6, 3, 1, 2, 3}    // endpoint, AF_INET6, compartment, address, scope, control
	wfArgsTSend1    = []byte{9, wfAFInet6, 3, 1, 2, 3, 4} // and the header-include byte
	wfArgsTSendNil  = []byte{9, wfAFInet6, 3}             // with opt bit 4: no send args
	wfArgsTRecv     = []byte{wfAFInet, 3, 4, 5}           // family, compartment, interface, sub-interface
	wfArgsStreamTx  = []byte{7, 8, 1, 0, 64}              // flow, callout, STREAM_V6, SEND, data length
	wfArgsMacSend   = []byte{3, 4, 8}                     // OUTBOUND_MAC_FRAME_ETHERNET, interface, NDIS port
	wfArgsMacRecv   = []byte{4, 4, 8}                     // INBOUND_MAC_FRAME_NATIVE
	wfTypesL2       = byte(FWPS_INJECTION_TYPE_L2)
	wfTypesNetFwd   = byte(FWPS_INJECTION_TYPE_NETWORK | FWPS_INJECTION_TYPE_FORWARD)
	wfTypesStream   = byte(FWPS_INJECTION_TYPE_STREAM)
	wfTypesTransprt = byte(FWPS_INJECTION_TYPE_TRANSPORT)
)

// wfSeeds are the seed programs: each exercises one part of the API's
// contract, and the fuzzer mutates from there.
func wfSeeds() []*wfProg {
	n0, n1, n2, n3 := nblSel(0), nblSel(1), nblSel(2), nblSel(3)
	return []*wfProg{
		// One NBL into the vSwitch, held and then completed.
		newProg("vswitch-single", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).flush(0, wfStSuccess),
		// A chain of three completed inside the call; the completion frees each.
		newProg("vswitch-chain-complete-now", 1).create(wfAFUnspec, wfTypesL2, 0).
			alloc(0, false, 60).alloc(1, false, 61).alloc(0, false, 62).
			inject(wfFnVSwitch, 1, []byte{n0, n1, n2}, 2, wfArgsVSwitch...),
		// Loops built from link bytes: a->b->c->b, then a self-loop; both refused, nothing changes.
		newProg("vswitch-cycles", 0).create(wfAFUnspec, wfTypesL2, 0).
			alloc(0, false, 60).alloc(0, false, 60).alloc(0, false, 60).
			raw(wfOpInject, wfFnVSwitch, 1, 3, n0, n1, n2, 0x80, 1, 2, 1, 0, 0, 0).raw(wfArgsVSwitch...).
			raw(wfOpInject, wfFnVSwitch, 1, 1, n0, 0x80, 0, 0, 0, 0).raw(wfArgsVSwitch...),
		// Non-zero flags and reserved, unknown, short, nil and 17-byte IDs, and the other stack's ID.
		newProg("vswitch-bad-arguments", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).
			raw(wfOpInject, wfFnVSwitch, 1, 1, n0, 0, 0, 0xC1, 0).raw(wfArgsVSwitch...).
			raw(wfOpInject, wfFnVSwitch, 1, 1, n0, 0, 0, 0, 0xE0, 1, 0, 0, 0x80).raw(wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, 2, 5, 2).inject(wfFnVSwitch, 1, []byte{n0}, 0, 3, 15, 5, 2).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, 4, 5, 2).inject(wfFnVSwitch, 1, []byte{n0}, 0, 5, 5, 2).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, 1, 5, 2),
		// A flags-0 handle (transport, stream, forward) is stale for network and MAC injection.
		newProg("stale-handle", 0).create(wfAFUnspec, 0, 0).alloc(0, false, 60).
			inject(wfFnNetworkSend, 1, []byte{n0}, 0, wfArgsNetSend...).
			inject(wfFnMacSend, 1, []byte{n0}, 0, wfArgsMacSend...).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			inject(wfFnForward, 1, []byte{n0}, 0, wfArgsForward...).flush(0, wfStSuccess),
		// Destroy waits for two held injections; the handle then refuses with HANDLE_CLOSING.
		newProg("destroy-pending", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).alloc(0, false, 60).
			inject(wfFnVSwitch, 1, []byte{n0, n1}, 0, wfArgsVSwitch...).raw(wfOpDestroy, 1, wfStAborted).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).raw(wfOpDestroy, 1, 0).raw(wfOpDestroy, 0, 0),
		// Forward, network send (PRESERVE_IPID) and receive, held and completed with a failure.
		newProg("ip-network-forward", 0).create(wfAFInet, wfTypesNetFwd, 0).
			alloc(0, false, 60).alloc(0, false, 60).alloc(1, false, 60).
			inject(wfFnForward, 1, []byte{n0}, 0, wfArgsForward...).
			raw(wfOpInject, wfFnNetworkSend, 1, 1, n1, 0, 0, 0xC0).raw(wfArgsNetSend...).
			inject(wfFnNetworkReceive, 1, []byte{n2}, 0, wfArgsNetRecv...).flush(2, wfStTooBig).flush(0, wfStSuccess),
		// Transport send (versions 0 and 1, with and without send args) and receive, completed at once.
		newProg("transport", 2).create(wfAFUnspec, wfTypesTransprt, 0).alloc(0, false, 60).alloc(0, false, 60).
			inject(wfFnTransportSend0, 1, []byte{n0}, 0, wfArgsTSend0...).
			inject(wfFnTransportSend1, 1, []byte{n1}, 16, wfArgsTSendNil...).
			inject(wfFnTransportSend1, 1, []byte{n0, n1}, 0, wfArgsTSend1...).
			inject(wfFnTransportSend0, 1, []byte{n1}, 16, wfArgsTSendNil...).
			inject(wfFnTransportReceive, 1, []byte{n0}, 0, wfArgsTRecv...).
			raw(wfOpInject, wfFnTransportReceive, 1, 1, n0, 0, 0, 0, 0xC4).raw(wfArgsTRecv...),
		// Stream: data, a disconnect without data, NULL completion, DISCONNECT without its base, layer 21.
		newProg("stream", 0).create(wfAFInet, wfTypesStream, 0).alloc(0, false, 60).
			inject(wfFnStream, 1, []byte{n0}, 0, wfArgsStreamTx...).
			inject(wfFnStream, 1, nil, 0, 7, 8, 0, 2, 0).
			inject(wfFnStream, 1, []byte{n0}, 1, wfArgsStreamTx...).
			inject(wfFnStream, 1, []byte{n0}, 0, 7, 8, 1, 4, 0).
			inject(wfFnStream, 1, []byte{n0}, 0, 7, 8, 8, 21, 0, 0, 64).flush(0, wfStSuccess),
		// MAC send and receive at their layers and at the wrong ones.
		newProg("mac", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).alloc(0, false, 60).
			inject(wfFnMacSend, 1, []byte{n1}, 0, wfArgsMacRecv...).
			inject(wfFnMacReceive, 1, []byte{n1}, 0, 6, 4, 8).
			inject(wfFnMacSend, 1, []byte{n0}, 0, wfArgsMacSend...).
			inject(wfFnMacReceive, 1, []byte{n1}, 0, wfArgsMacRecv...).flush(1, wfStAborted).flush(0, wfStSuccess),
		// The inspect sequence: reference an original, clone, inject the clone, free it in the completion, dereference.
		newProg("inspect-sequence", 0).create(wfAFUnspec, wfTypesTransprt, 0).alloc(0, true, 60).
			raw(wfOpRef, n0, 1).raw(wfOpClone, n0, 0, 0).
			inject(wfFnTransportSend1, 1, []byte{n1}, 2, wfArgsTSend1...).flush(0, wfStSuccess).raw(wfOpDeref, n0, 0),
		// NULL completion: accepted for a referenced original, refused for a clone, a created NBL and an unreferenced original.
		newProg("null-completion", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, true, 60).alloc(0, false, 60).alloc(0, true, 60).
			raw(wfOpRef, n0, 0).raw(wfOpClone, n0, 0, 0).
			inject(wfFnVSwitch, 1, []byte{nblSel(3)}, 1, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n1}, 1, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n2}, 1, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n0}, 1, wfArgsVSwitch...).flush(0, wfStSuccess),
		// Injection states: by self, by other, previously by self after a clone is injected by another handle.
		newProg("query-states", 0).create(wfAFUnspec, wfTypesL2, 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).
			raw(wfOpQuery, 1, n0, 0).inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			raw(wfOpQuery, 1, n0, 0).raw(wfOpQuery, 2, n0, 0).raw(wfOpQuery, 0, n0, 0).raw(wfOpQuery, 1, 1, 0).
			flush(0, wfStSuccess).raw(wfOpClone, n0, 0, 0).
			inject(wfFnVSwitch, 2, []byte{n1}, 0, wfArgsVSwitch...).
			raw(wfOpQuery, 1, n1, 0).raw(wfOpQuery, 2, n1, 1).raw(wfOpQuery, 1, n0, 1).flush(0, wfStSuccess),
		// FwpsAllocateNetBufferAndNetBufferList0: good calls over one and two MDLs, and every bad argument.
		newProg("allocate-arguments", 0).
			raw(wfOpFwpsAlloc, 1, 2, 1, 2, 40, 40, 10, 60).
			raw(wfOpFwpsAlloc, 2, 1, 0, 1, 30, 0, 30).
			raw(wfOpFwpsAlloc, 0, 0, 0, 0, 0, 0).
			raw(wfOpFwpsAlloc, 1, 6, 0, 0, 0, 0).
			raw(wfOpFwpsAlloc, 1, 4, 2, 0, 0, 0).
			raw(wfOpFwpsAlloc, 1, 0, 0, 0, 5, 0).
			raw(wfOpFwpsAlloc, 1, 0, 0, 1, 10, 5, 6).
			raw(wfOpFwpsAlloc, 0x82, 0, 0, 1, 10, 0, 0).
			raw(wfOpFwpsAlloc, 0x22, 0, 0, 0, 0, 0).
			raw(wfOpClone, n0, 2, 0).raw(wfOpClone, n1, 0, 0),
		// Clone arguments: flags, a NetBuffer pool that is not the NBL pool, nil out, foreign; clones of clones and free order.
		newProg("clone-arguments", 0).alloc(0, false, 60).
			raw(wfOpClone, n0, 0, 0xC3).raw(wfOpClone, n0, 7, 0).raw(wfOpClone, n0, 0x80, 0).raw(wfOpClone, 1, 0, 0).raw(wfOpClone, 0, 0, 0).
			raw(wfOpClone, n0, 4, 0).raw(wfOpClone, n1, 0, 0).
			raw(wfOpFreeClone, n1, 0).raw(wfOpFree, n1).raw(wfOpFreeClone, n0, 0).raw(wfOpFree, n0).
			raw(wfOpFreeClone, n2, 0xC0).raw(wfOpFreeClone, n2, 0).raw(wfOpFreeClone, n1, 0).raw(wfOpFree, n0),
		// References: a dereference without one (documented panic), foreign and nil NBLs, free while referenced.
		newProg("references", 0).alloc(0, false, 60).
			raw(wfOpDeref, n0, 0).raw(wfOpRef, 1, 0).raw(wfOpDeref, 0, 0).raw(wfOpFree, 1).raw(wfOpFreeClone, 0, 0).
			raw(wfOpRef, n0, 1).raw(wfOpRef, n0, 0).raw(wfOpFree, n0).raw(wfOpDeref, n0, 1).raw(wfOpDeref, n0, 0).
			raw(wfOpDeref, n0, 0).raw(wfOpFree, n0),
		// Pool B runs dry: allocation and clone into it fail with resources.
		newProg("exhaustion", 0).alloc(1, false, 1).alloc(1, false, 1).alloc(1, false, 1).
			alloc(1, false, 1).alloc(1, false, 1).alloc(1, false, 1).
			raw(wfOpFwpsAlloc, 2, 0, 0, 0, 0, 0).raw(wfOpClone, n0, 0, 0).raw(wfOpClone, n0, 1, 0).
			raw(wfOpFree, n3).raw(wfOpClone, n0, 2, 0).raw(wfOpClone, n0, 0, 0),
		// Targets unregistered and registered again: NOT_FOUND, TCPIP_NOT_READY, then success.
		newProg("unregistered-targets", 0).create(wfAFInet, wfTypesL2|wfTypesNetFwd, 0).alloc(0, false, 60).
			raw(wfOpToggle, 0).raw(wfOpToggle, 1).raw(wfOpToggle, 3).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			inject(wfFnForward, 1, []byte{n0}, 0, wfArgsForward...).
			inject(wfFnMacSend, 1, []byte{n0}, 0, wfArgsMacSend...).
			raw(wfOpToggle, 0).raw(wfOpToggle, 1).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).flush(0, wfStSuccess).
			inject(wfFnForward, 1, []byte{n0}, 0, wfArgsForward...).flush(0, wfStSuccess),
		// Create arguments: unknown bit, bad family, NETWORK without a family, nil out, the stack stopped.
		newProg("create-arguments", 0).create(wfAFInet6, byte(FWPS_INJECTION_TYPE_VSWITCH_TRANSPORT), 0).
			raw(wfOpCreate, 3, 7, wfTypesL2, 0).create(wfAFUnspec, byte(FWPS_INJECTION_TYPE_NETWORK), 0).
			create(wfAFInet, wfTypesL2, 1).raw(wfOpCreate, wfAFInet, 0xC0, 0x40, 0, 0, 0, 0).
			raw(wfOpStopStart).create(wfAFInet, wfTypesL2, 0).raw(wfOpStopStart).create(wfAFInet6, 0x3F, 0),
		// A handle of another stack: Default's switch is unknown to it, its own switch and IP path serve it, its MAC path is missing.
		newProg("other-stack", 0).create(wfAFInet, wfTypesL2|wfTypesNetFwd, 2).alloc(0, false, 60).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, 1, 5, 2).flush(0, wfStSuccess).
			inject(wfFnMacSend, 1, []byte{n0}, 0, wfArgsMacSend...).
			inject(wfFnForward, 1, []byte{n0}, 0, wfArgsForward...).raw(wfOpQuery, 1, n0, 0).raw(wfOpDestroy, 1, 0),
		// Injecting what is in flight: again, and behind an NBL the program holds.
		newProg("in-flight", 0).create(wfAFUnspec, wfTypesL2, 0).alloc(0, false, 60).alloc(0, false, 60).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n0}, 0, wfArgsVSwitch...).
			inject(wfFnVSwitch, 1, []byte{n1, n0}, 0, wfArgsVSwitch...).
			raw(wfOpFree, n0).raw(wfOpQuery, 1, n0, 0).flush(0, wfStOverflow).
			inject(wfFnVSwitch, 1, []byte{n1, n0}, 0, wfArgsVSwitch...).flush(0, wfStSuccess),
		// Every target completes at once with an informational status; completions free clones and created NBLs.
		newProg("complete-now-free", 3|wfStOverflow<<2).create(wfAFInet, wfTypesL2|wfTypesNetFwd|wfTypesTransprt|wfTypesStream, 0).
			alloc(0, false, 60).alloc(0, true, 60).raw(wfOpClone, n1, 0, 0).alloc(1, false, 60).
			inject(wfFnMacReceive, 1, []byte{n0}, 2, wfArgsMacRecv...).
			inject(wfFnStream, 1, []byte{n2}, 2, wfArgsStreamTx...).
			inject(wfFnNetworkReceive, 1, []byte{nblSel(3), n1}, 2, wfArgsNetRecv...),
	}
}

// TestWFPCallsSeedCorpus checks that testdata/fuzz/FuzzWFPCalls holds each
// seed program as wfSeeds encodes it (so the corpus cannot drift from the
// program encoding). NBLPIPE_WRITE_CORPUS=1 rewrites the files.
func TestWFPCallsSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzWFPCalls")
	write := os.Getenv("NBLPIPE_WRITE_CORPUS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for i, p := range wfSeeds() {
		if seen[p.name] {
			t.Fatalf("two seeds named %q", p.name)
		}
		seen[p.name] = true
		if len(p.b) > wfMaxInput {
			t.Fatalf("seed %q is %d bytes, over the %d the fuzzer runs", p.name, len(p.b), wfMaxInput)
		}
		file := filepath.Join(dir, fmt.Sprintf("seed-%02d-%s", i+1, p.name))
		want := []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", p.b))
		if write {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("seed %q: %v (NBLPIPE_WRITE_CORPUS=1 go test -run TestWFPCallsSeedCorpus ./inject/ writes it)", p.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s does not hold seed %q as wfSeeds encodes it (NBLPIPE_WRITE_CORPUS=1 rewrites it)", file, p.name)
		}
	}
}
