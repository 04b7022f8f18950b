package inject

// A table test over every idiomatic injection method and every WFP-named
// injection function: each bad argument gives its documented status and
// changes nothing (no NBL field, no target call, no completion, no pending
// count), and the good call passes every argument through to the target.

import (
	"reflect"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// Distinctive argument values, checked on the Request the target receives.
const (
	vCompartment COMPARTMENT_ID = 3
	vIf          IF_INDEX       = 4
	vSubIf       IF_INDEX       = 5
	vEndpoint    uint64         = 0xE0E0
	vFlow        uint64         = 0xF10F
	vCallout     uint32         = 77
	vNdisPort    uint32         = 8
	vPort        uint32         = 6
	vNic         uint16         = 2
	vDataLen     uint64         = 64
)

var (
	vRemote      = []byte{192, 0, 2, 1}
	vControl     = []byte{1, 2, 3}
	vSendArgs1   = &FWPS_TRANSPORT_SEND_PARAMS1{RemoteAddress: vRemote, RemoteScopeID: 9, ControlData: vControl}
	vSendArgs0   = &FWPS_TRANSPORT_SEND_PARAMS0{RemoteAddress: vRemote, RemoteScopeID: 9, ControlData: vControl}
	vSendArgs0As = &FWPS_TRANSPORT_SEND_PARAMS1{RemoteAddress: vRemote, RemoteScopeID: 9, ControlData: vControl}
)

// callArgs are the arguments a table case may vary.
type callArgs struct {
	flags       uint32
	reserved    uintptr
	af          ADDRESS_FAMILY
	layer       uint16
	streamFlags uint32
	id          string // "registered", "unknown", "short", "nil"
	nilFn       bool
}

type valEnv struct {
	s     *Stack
	sw    *fakeVSwitch
	hold  *holder
	paths map[Path]*fakePath
	rec   *recorder
	cctx  *testCtx // completion context
	ictx  *testCtx // injection context
}

func (e *valEnv) vSwitchID(a callArgs) []byte {
	switch a.id {
	case "unknown":
		g := GUID{0xde, 0xad}
		return g.Bytes()
	case "short":
		return e.sw.id.Bytes()[:15]
	case "nil":
		return nil
	}
	return e.sw.id.Bytes()
}

func (e *valEnv) fn(a callArgs) nbl.CompletionFunc {
	if a.nilFn {
		return nil
	}
	return e.rec.fn
}

func (e *valEnv) done(a callArgs) Done { return Done{Fn: e.fn(a), Context: e.cctx} }

func (e *valEnv) targetCalls() int {
	n := e.sw.numCalls()
	for _, p := range e.paths {
		n += p.numReqs()
	}
	return n
}

type badArg struct {
	name string
	mod  func(*callArgs)
	want Status
}

type injector struct {
	name   string
	fwps   bool
	types  uint32
	family ADDRESS_FAMILY
	path   Path // 0 for the vSwitch
	def    callArgs
	call   func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status
	// want is the Request the data path must receive for the good call
	// (Handle, NBLs and Count are filled in); nil for the vSwitch.
	want func() Request
	bad  []badArg
	// noCompletion is the status of a clone injected without completion.
	noCompletion Status
}

func flagsArg(v uint32) func(*callArgs)       { return func(a *callArgs) { a.flags = v } }
func reservedArg(v uintptr) func(*callArgs)   { return func(a *callArgs) { a.reserved = v } }
func afArg(v ADDRESS_FAMILY) func(*callArgs)  { return func(a *callArgs) { a.af = v } }
func layerArg(v uint16) func(*callArgs)       { return func(a *callArgs) { a.layer = v } }
func streamFlagsArg(v uint32) func(*callArgs) { return func(a *callArgs) { a.streamFlags = v } }
func idArg(v string) func(*callArgs)          { return func(a *callArgs) { a.id = v } }
func nilFnArg() func(*callArgs)               { return func(a *callArgs) { a.nilFn = true } }
func badFlags(want Status, vs ...uint32) []badArg {
	var out []badArg
	for _, v := range vs {
		out = append(out, badArg{"flags", flagsArg(v), want})
	}
	return out
}

func injectors() []injector {
	st := nbl.StatusOf
	vswitchBad := []badArg{
		{"unknown vSwitch", idArg("unknown"), STATUS_NOT_FOUND},
		{"15-byte vSwitch ID", idArg("short"), STATUS_INVALID_PARAMETER},
		{"nil vSwitch ID", idArg("nil"), STATUS_INVALID_PARAMETER},
	}
	afBad := []badArg{
		{"AF_UNSPEC", afArg(AF_UNSPEC), STATUS_INVALID_PARAMETER},
		{"unknown family", afArg(99), STATUS_INVALID_PARAMETER},
	}
	macSendBad := []badArg{
		{"inbound MAC layer", layerArg(FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET), STATUS_INVALID_PARAMETER},
		{"inbound native layer", layerArg(FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE), STATUS_INVALID_PARAMETER},
		{"vSwitch layer", layerArg(FWPS_LAYER_EGRESS_VSWITCH_ETHERNET), STATUS_INVALID_PARAMETER},
		{"layer 0", layerArg(0), STATUS_INVALID_PARAMETER},
		{"flags", flagsArg(1), STATUS_INVALID_PARAMETER},
	}
	macReceiveBad := []badArg{
		{"outbound MAC layer", layerArg(FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET), STATUS_INVALID_PARAMETER},
		{"outbound native layer", layerArg(FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE), STATUS_INVALID_PARAMETER},
		{"vSwitch layer", layerArg(FWPS_LAYER_INGRESS_VSWITCH_ETHERNET), STATUS_INVALID_PARAMETER},
		{"stream layer", layerArg(FWPS_LAYER_STREAM_V4), STATUS_INVALID_PARAMETER},
		{"flags", flagsArg(0x10), STATUS_INVALID_PARAMETER},
	}
	streamBad := []badArg{
		{"flags", flagsArg(1), STATUS_INVALID_PARAMETER},
		{"layer 21", layerArg(21), STATUS_INVALID_PARAMETER},
		{"MAC layer", layerArg(FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET), STATUS_INVALID_PARAMETER},
		{"SEND_DISCONNECT without SEND", streamFlagsArg(FWPS_STREAM_FLAG_SEND_DISCONNECT), STATUS_FWP_INVALID_PARAMETER},
		{"RECEIVE_DISCONNECT without RECEIVE", streamFlagsArg(FWPS_STREAM_FLAG_RECEIVE_DISCONNECT), STATUS_FWP_INVALID_PARAMETER},
		{"undefined stream flag", streamFlagsArg(FWPS_STREAM_FLAG_SEND | 0x200000), STATUS_FWP_INVALID_PARAMETER},
		{"NULL completion", nilFnArg(), STATUS_FWP_NULL_POINTER},
	}
	ip := func(k Kind, af ADDRESS_FAMILY, f func(r *Request)) func() Request {
		return func() Request {
			r := Request{Kind: k, AddressFamily: af}
			f(&r)
			return r
		}
	}
	def := callArgs{af: AF_INET, id: "registered"}
	macSendDef, macRecvDef, streamDef := def, def, def
	macSendDef.layer = FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET
	macRecvDef.layer = FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE
	streamDef.layer, streamDef.streamFlags = FWPS_LAYER_STREAM_V6, FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_NODELAY
	streamReq := func() Request {
		return Request{Kind: KindStream, FlowID: vFlow, CalloutID: vCallout, LayerID: FWPS_LAYER_STREAM_V6,
			StreamFlags: FWPS_STREAM_FLAG_SEND | FWPS_STREAM_FLAG_SEND_NODELAY, DataLength: vDataLen}
	}
	macReq := func(k Kind, layer uint16) func() Request {
		return func() Request { return Request{Kind: k, LayerID: layer, InterfaceIndex: vIf, NdisPort: vNdisPort} }
	}
	forwardReq := ip(KindForward, AF_INET, func(r *Request) { r.CompartmentID, r.InterfaceIndex = vCompartment, vIf })
	nsendReq := ip(KindNetworkSend, 0, func(r *Request) { r.CompartmentID = vCompartment })
	nrecvReq := ip(KindNetworkReceive, 0, func(r *Request) { r.CompartmentID, r.InterfaceIndex, r.SubInterfaceIndex = vCompartment, vIf, vSubIf })
	tsendReq := func(args *FWPS_TRANSPORT_SEND_PARAMS1) func() Request {
		return ip(KindTransportSend, AF_INET, func(r *Request) { r.EndpointHandle, r.SendArgs, r.CompartmentID = vEndpoint, args, vCompartment })
	}
	trecvReq := ip(KindTransportReceive, AF_INET, func(r *Request) { r.CompartmentID, r.InterfaceIndex, r.SubInterfaceIndex = vCompartment, vIf, vSubIf })

	return []injector{
		{name: "InjectVSwitchIngress", types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, def: def, bad: vswitchBad, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectVSwitchIngress(e.vSwitchID(a), vPort, vNic, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectvSwitchEthernetIngressAsync0", fwps: true, types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, def: def, noCompletion: STATUS_INVALID_PARAMETER,
			bad: append(append(badFlags(STATUS_INVALID_PARAMETER, 1, 0x80000000), badArg{"reserved", reservedArg(1), STATUS_INVALID_PARAMETER}), vswitchBad...),
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectvSwitchEthernetIngressAsync0(h, e.ictx, a.flags, a.reserved, e.vSwitchID(a), vPort, vNic, l, e.fn(a), e.cctx)
			}},
		{name: "InjectForward", types: FWPS_INJECTION_TYPE_FORWARD, family: AF_UNSPEC, path: PathIP, def: def, bad: afBad, want: forwardReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectForward(a.af, vCompartment, vIf, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectForwardAsync0", fwps: true, types: FWPS_INJECTION_TYPE_FORWARD, family: AF_UNSPEC, path: PathIP, def: def,
			bad: append(badFlags(STATUS_INVALID_PARAMETER, 1), afBad...), want: forwardReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectForwardAsync0(h, e.ictx, a.flags, a.af, vCompartment, vIf, l, e.fn(a), e.cctx)
			}},
		{name: "InjectNetworkSend", types: FWPS_INJECTION_TYPE_NETWORK, family: AF_INET, path: PathIP, def: def,
			bad: badFlags(STATUS_INVALID_PARAMETER, 2, 3, 0x100), want: nsendReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectNetworkSend(a.flags, vCompartment, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectNetworkSendAsync0", fwps: true, types: FWPS_INJECTION_TYPE_NETWORK, family: AF_INET6, path: PathIP, def: def,
			bad: badFlags(STATUS_INVALID_PARAMETER, 2, 3), want: nsendReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectNetworkSendAsync0(h, e.ictx, a.flags, vCompartment, l, e.fn(a), e.cctx)
			}},
		{name: "InjectNetworkReceive", types: FWPS_INJECTION_TYPE_NETWORK, family: AF_INET, path: PathIP, def: def,
			bad: badFlags(STATUS_INVALID_PARAMETER, 1, 2), want: nrecvReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectNetworkReceive(a.flags, vCompartment, vIf, vSubIf, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectNetworkReceiveAsync0", fwps: true, types: FWPS_INJECTION_TYPE_NETWORK, family: AF_INET, path: PathIP, def: def,
			bad: badFlags(STATUS_INVALID_PARAMETER, 1), want: nrecvReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectNetworkReceiveAsync0(h, e.ictx, a.flags, vCompartment, vIf, vSubIf, l, e.fn(a), e.cctx)
			}},
		{name: "InjectTransportSend", types: FWPS_INJECTION_TYPE_TRANSPORT, family: AF_UNSPEC, path: PathIP, def: def,
			bad: append(badFlags(STATUS_INVALID_PARAMETER, 1), afBad...), want: tsendReq(vSendArgs1), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectTransportSend(vEndpoint, a.flags, vSendArgs1, a.af, vCompartment, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectTransportSendAsync1", fwps: true, types: FWPS_INJECTION_TYPE_TRANSPORT, family: AF_UNSPEC, path: PathIP, def: def,
			bad: append(badFlags(STATUS_INVALID_PARAMETER, 1), afBad...), want: tsendReq(vSendArgs1), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectTransportSendAsync1(h, e.ictx, vEndpoint, a.flags, vSendArgs1, a.af, vCompartment, l, e.fn(a), e.cctx)
			}},
		{name: "FwpsInjectTransportSendAsync0", fwps: true, types: FWPS_INJECTION_TYPE_TRANSPORT, family: AF_UNSPEC, path: PathIP, def: def,
			bad: append(badFlags(STATUS_INVALID_PARAMETER, 4), afBad...), want: tsendReq(vSendArgs0As), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectTransportSendAsync0(h, e.ictx, vEndpoint, a.flags, vSendArgs0, a.af, vCompartment, l, e.fn(a), e.cctx)
			}},
		{name: "InjectTransportReceive", types: FWPS_INJECTION_TYPE_TRANSPORT, family: AF_UNSPEC, path: PathIP, def: def,
			bad: append(badFlags(STATUS_INVALID_PARAMETER, 1), afBad...), want: trecvReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectTransportReceive(a.flags, a.af, vCompartment, vIf, vSubIf, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectTransportReceiveAsync0", fwps: true, types: FWPS_INJECTION_TYPE_TRANSPORT, family: AF_UNSPEC, path: PathIP, def: def,
			bad:  append(append(badFlags(STATUS_INVALID_PARAMETER, 1), badArg{"reserved", reservedArg(0x1000), STATUS_INVALID_PARAMETER}), afBad...),
			want: trecvReq, noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectTransportReceiveAsync0(h, e.ictx, a.reserved, a.flags, a.af, vCompartment, vIf, vSubIf, l, e.fn(a), e.cctx)
			}},
		{name: "InjectStream", types: FWPS_INJECTION_TYPE_STREAM, family: AF_UNSPEC, path: PathStream, def: streamDef, bad: streamBad, want: streamReq,
			noCompletion: STATUS_FWP_NULL_POINTER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectStream(a.flags, vFlow, vCallout, a.layer, a.streamFlags, l, vDataLen, e.ictx, e.done(a)))
			}},
		{name: "FwpsStreamInjectAsync0", fwps: true, types: FWPS_INJECTION_TYPE_STREAM, family: AF_INET, path: PathStream, def: streamDef, bad: streamBad, want: streamReq,
			noCompletion: STATUS_FWP_NULL_POINTER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsStreamInjectAsync0(h, e.ictx, a.flags, vFlow, vCallout, a.layer, a.streamFlags, l, vDataLen, e.fn(a), e.cctx)
			}},
		{name: "InjectMacSend", types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, path: PathMAC, def: macSendDef, bad: macSendBad,
			want: macReq(KindMacSend, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectMacSend(a.flags, a.layer, vIf, vNdisPort, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectMacSendAsync0", fwps: true, types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, path: PathMAC, def: macSendDef, bad: macSendBad,
			want: macReq(KindMacSend, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectMacSendAsync0(h, e.ictx, a.flags, a.layer, vIf, vNdisPort, l, e.fn(a), e.cctx)
			}},
		{name: "InjectMacReceive", types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, path: PathMAC, def: macRecvDef, bad: macReceiveBad,
			want: macReq(KindMacReceive, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return st(h.InjectMacReceive(a.flags, a.layer, vIf, vNdisPort, l, e.ictx, e.done(a)))
			}},
		{name: "FwpsInjectMacReceiveAsync0", fwps: true, types: FWPS_INJECTION_TYPE_L2, family: AF_UNSPEC, path: PathMAC, def: macRecvDef, bad: macReceiveBad,
			want: macReq(KindMacReceive, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE), noCompletion: STATUS_INVALID_PARAMETER,
			call: func(e *valEnv, a callArgs, h *Handle, l *nbl.NetBufferList) Status {
				return FwpsInjectMacReceiveAsync0(h, e.ictx, a.flags, a.layer, vIf, vNdisPort, l, e.fn(a), e.cctx)
			}},
	}
}

// valNBLs builds the NBLs of one case: the head to inject, the NBLs to watch
// for changes, and a cleanup that gives back what the caller owns.
type valNBLs struct {
	head    *nbl.NetBufferList
	watch   []*nbl.NetBufferList
	cleanup func()
}

func TestInjectValidation(t *testing.T) {
	for _, inj := range injectors() {
		t.Run(inj.name, func(t *testing.T) {
			s := Default
			if !inj.fwps {
				s = newStack(t)
			}
			p := newPool(t, 64)
			o := newOriginator(p.Cap())
			e := &valEnv{s: s, hold: &holder{}, paths: map[Path]*fakePath{}, rec: newRecorder(t, true), cctx: newCtx("completion"), ictx: newCtx("injection")}
			e.sw = newVSwitch(t, s, e.hold.deliver)
			for _, path := range []Path{PathIP, PathStream, PathMAC} {
				e.paths[path] = newPath(t, s, path, e.hold.deliver)
			}
			mk := func(af ADDRESS_FAMILY, types uint32) *Handle {
				if inj.fwps {
					return fwpsHandle(t, af, types)
				}
				return newHandle(t, s, af, types)
			}
			good := mk(inj.family, inj.types)
			stale := mk(AF_INET, knownTypes&^inj.types)
			closing := mk(inj.family, inj.types)
			destroyBounded(t, closing)

			single := func() valNBLs {
				a := alloc(t, p)
				return valNBLs{a, []*nbl.NetBufferList{a}, func() { freeNBL(t, a) }}
			}
			unlinkFree := func(ls ...*nbl.NetBufferList) func() {
				return func() {
					for _, l := range ls {
						l.Next = nil
					}
					for _, l := range ls {
						freeNBL(t, l)
					}
				}
			}
			// inflight injects an NBL successfully (the switch or path holds
			// it), for the cases that inject it again.
			inflight := func() *nbl.NetBufferList {
				a := alloc(t, p)
				if st := inj.call(e, inj.def, good, a); st != STATUS_SUCCESS {
					t.Fatalf("setup injection: %v", st)
				}
				return a
			}
			type valCase struct {
				name   string
				handle *Handle
				mod    func(*callArgs)
				nbls   func() valNBLs
				want   Status
				setup  func() (undo func())
			}
			cases := []valCase{
				{name: "nil handle", nbls: single, want: STATUS_INVALID_PARAMETER},
				{name: "handle without the type (stale)", handle: stale, nbls: single, want: STATUS_FWP_INJECT_HANDLE_STALE},
				{name: "closing handle", handle: closing, nbls: single, want: STATUS_FWP_INJECT_HANDLE_CLOSING},
				{name: "nil NBL", handle: good, nbls: func() valNBLs { return valNBLs{cleanup: func() {}} }, want: STATUS_INVALID_PARAMETER},
				{name: "cycle a->b->a", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					a, b := alloc(t, p), alloc(t, p)
					a.Next, b.Next = b, a
					return valNBLs{a, []*nbl.NetBufferList{a, b}, unlinkFree(a, b)}
				}},
				{name: "cycle a->b->c->b", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					a, b, c := alloc(t, p), alloc(t, p), alloc(t, p)
					a.Next, b.Next, c.Next = b, c, b
					return valNBLs{a, []*nbl.NetBufferList{a, b, c}, unlinkFree(a, b, c)}
				}},
				{name: "self-loop", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					a := alloc(t, p)
					a.Next = a
					return valNBLs{a, []*nbl.NetBufferList{a}, unlinkFree(a)}
				}},
				{name: "NBL already in flight", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					a := inflight()
					return valNBLs{a, []*nbl.NetBufferList{a}, func() {}}
				}},
				{name: "chain whose second NBL is in flight", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					b, a := alloc(t, p), inflight()
					b.Next = a
					return valNBLs{b, []*nbl.NetBufferList{b, a}, func() { b.Next = nil; freeNBL(t, b) }}
				}},
				{name: "NBL not from a pool", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					z := &nbl.NetBufferList{}
					return valNBLs{z, []*nbl.NetBufferList{z}, func() {}}
				}},
				{name: "chain with an NBL not from a pool", handle: good, want: STATUS_INVALID_PARAMETER, nbls: func() valNBLs {
					a, z := alloc(t, p), &nbl.NetBufferList{}
					a.Next = z
					return valNBLs{a, []*nbl.NetBufferList{a, z}, unlinkFree(a)}
				}},
				{name: "clone without completion", handle: good, mod: nilFnArg(), want: inj.noCompletion, nbls: func() valNBLs {
					orig := allocOriginal(t, p, o)
					orig.Reference()
					cl := mustClone(t, p, orig)
					return valNBLs{cl, []*nbl.NetBufferList{cl, orig}, func() { freeNBL(t, cl); orig.Dereference(); freeNBL(t, orig) }}
				}},
				{name: "created NBL without completion", handle: good, mod: nilFnArg(), want: inj.noCompletion, nbls: single},
				{name: "unreferenced original without completion", handle: good, mod: nilFnArg(), want: inj.noCompletion, nbls: func() valNBLs {
					orig := allocOriginal(t, p, o)
					return valNBLs{orig, []*nbl.NetBufferList{orig}, func() { freeNBL(t, orig) }}
				}},
			}
			if inj.path != 0 {
				cases = append(cases, valCase{name: "no data path registered", handle: good, nbls: single, want: STATUS_FWP_TCPIP_NOT_READY,
					setup: func() func() {
						s.UnregisterDataPath(inj.path)
						return func() {
							if err := s.RegisterDataPath(inj.path, e.paths[inj.path]); err != nil {
								t.Fatal(err)
							}
						}
					}})
			}
			for _, b := range inj.bad {
				cases = append(cases, valCase{name: b.name, handle: good, mod: b.mod, nbls: single, want: b.want})
			}

			for _, c := range cases {
				a := inj.def
				if c.mod != nil {
					c.mod(&a)
				}
				ls := c.nbls()
				undo := func() {}
				if c.setup != nil {
					undo = c.setup()
				}
				before := make([]nblSnap, len(ls.watch))
				for i, l := range ls.watch {
					before[i] = snap(l)
				}
				calls, completions := e.targetCalls(), e.rec.count()
				var hs HandleStats
				if c.handle != nil {
					hs = c.handle.Stats()
				}
				got := inj.call(e, a, c.handle, ls.head)
				if got != c.want {
					t.Fatalf("%s: status %v, want %v", c.name, got, c.want)
				}
				for i, l := range ls.watch {
					if snap(l) != before[i] {
						t.Fatalf("%s: NBL %d changed:\n got %+v\nwant %+v", c.name, i, snap(l), before[i])
					}
				}
				if e.targetCalls() != calls || e.rec.count() != completions {
					t.Fatalf("%s: the refused call reached a target or completed", c.name)
				}
				if c.handle != nil {
					after := c.handle.Stats()
					if after.Injected != hs.Injected || after.Pending != hs.Pending || after.Refused != hs.Refused+1 {
						t.Fatalf("%s: handle stats %+v -> %+v; want only Refused +1", c.name, hs, after)
					}
				}
				undo()
				ls.cleanup()
			}

			// The good call passes every argument through.
			l := alloc(t, p)
			reqsBefore := 0
			if inj.path != 0 {
				reqsBefore = e.paths[inj.path].numReqs()
			}
			swBefore := e.sw.numCalls()
			if got := inj.call(e, inj.def, good, l); got != STATUS_SUCCESS {
				t.Fatalf("good call: %v", got)
			}
			if l.Tag.Handle != good.ID() || l.Tag.Context != any(e.ictx) {
				t.Fatalf("tag %+v, want handle %d and the injection context", l.Tag, good.ID())
			}
			if inj.path != 0 {
				fp := e.paths[inj.path]
				if fp.numReqs() != reqsBefore+1 {
					t.Fatalf("%d requests, want %d", fp.numReqs(), reqsBefore+1)
				}
				want := inj.want()
				want.Handle, want.NBLs, want.Count = good, l, 1
				if got := fp.req(fp.numReqs() - 1); !reflect.DeepEqual(got, want) {
					t.Fatalf("request\n got %+v\nwant %+v", got, want)
				}
			} else {
				if e.sw.numCalls() != swBefore+1 {
					t.Fatalf("%d switch calls", e.sw.numCalls())
				}
				if c := e.sw.call(e.sw.numCalls() - 1); c.count != 1 || c.port != vPort || c.nic != vNic || c.nbls[0] != l {
					t.Fatalf("switch call %+v", c)
				}
			}
			// Complete everything still held (the in-flight NBLs and the
			// good one): each completes once, with the completion context.
			held := e.hold.held()
			e.hold.complete(newQueue(t, s, 8, nil), STATUS_SUCCESS, -1)
			evs := e.rec.all()
			if len(evs) != held {
				t.Fatalf("%d completions for %d held NBLs", len(evs), held)
			}
			for _, c := range evs {
				if c.ctx != any(e.cctx) {
					t.Fatalf("completion context %v", c.ctx)
				}
			}
			if st := good.Stats(); st.Pending != 0 || st.Injected != st.Completed || st.Injected != uint64(held) {
				t.Fatalf("good handle stats %+v, %d held", st, held)
			}
			if o.badHolds.Load() != 0 {
				t.Fatal("an original left with holds")
			}
			checkFull(t, p)
		})
	}
}
