package inject

import (
	"fmt"

	"github.com/nblpipe/nblpipe/nbl"
)

// Kind names an injection function.
type Kind uint8

// Injection kinds, one per FwpsInject* function.
const (
	KindForward Kind = iota + 1
	KindNetworkSend
	KindNetworkReceive
	KindTransportSend
	KindTransportReceive
	KindStream
	KindMacSend
	KindMacReceive
)

var kindNames = map[Kind]string{
	KindForward: "forward", KindNetworkSend: "network send", KindNetworkReceive: "network receive",
	KindTransportSend: "transport send", KindTransportReceive: "transport receive", KindStream: "stream",
	KindMacSend: "MAC send", KindMacReceive: "MAC receive",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Path names a data path that can register as a target.
type Path uint8

// Data paths besides the virtual switches (which register by GUID).
const (
	PathIP     Path = iota + 1 // forward, network and transport injection
	PathStream                 // stream injection
	PathMAC                    // MAC send and receive injection
)

func (k Kind) path() Path {
	switch k {
	case KindStream:
		return PathStream
	case KindMacSend, KindMacReceive:
		return PathMAC
	}
	return PathIP
}

// Request is one validated injection handed to a DataPath. The fields
// beyond Kind, Handle, NBLs and Count are those of the function named by
// Kind; the others are zero.
type Request struct {
	Kind   Kind
	Handle *Handle
	NBLs   *nbl.NetBufferList // tagged; nil only for a stream disconnect without data
	Count  int

	Flags             uint32
	AddressFamily     ADDRESS_FAMILY
	CompartmentID     uint32
	InterfaceIndex    uint32
	SubInterfaceIndex uint32
	EndpointHandle    uint64
	SendArgs          *FWPS_TRANSPORT_SEND_PARAMS1
	FlowID            uint64
	CalloutID         uint32
	LayerID           uint16
	StreamFlags       uint32
	DataLength        uint64
	NdisPort          uint32
}

// DataPath is an IP, stream or MAC data path that accepts injections. As for
// VSwitchTarget, it owns the NBLs of a Request and completes each exactly
// once through a CompletionQueue. Until one registers for a path, the
// injection functions of that path return STATUS_FWP_TCPIP_NOT_READY after
// validating their arguments.
type DataPath interface {
	Inject(r Request)
}

// RegisterDataPath makes dp the target of the injection functions of path p.
// It fails if one is registered already.
func (s *Stack) RegisterDataPath(p Path, dp DataPath) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p < PathIP || p > PathMAC {
		return fmt.Errorf("%w: unknown data path %d", ErrInvalidParameter, p)
	}
	if s.paths[p-1].Load() != nil {
		return fmt.Errorf("%w: a data path is registered for %d already", ErrInvalidParameter, p)
	}
	s.paths[p-1].Store(&dp)
	return nil
}

// UnregisterDataPath removes the target of path p.
func (s *Stack) UnregisterDataPath(p Path) {
	if p >= PathIP && p <= PathMAC {
		s.paths[p-1].Store(nil)
	}
}

func (s *Stack) dataPath(p Path) DataPath {
	if dp := s.paths[p-1].Load(); dp != nil {
		return *dp
	}
	return nil
}

// Stream injection flags (FWPS_STREAM_FLAG_*).
const (
	FWPS_STREAM_FLAG_RECEIVE            uint32 = 0x00000001
	FWPS_STREAM_FLAG_RECEIVE_EXPEDITED  uint32 = 0x00000002
	FWPS_STREAM_FLAG_RECEIVE_DISCONNECT uint32 = 0x00000004
	FWPS_STREAM_FLAG_RECEIVE_ABORT      uint32 = 0x00000008
	FWPS_STREAM_FLAG_RECEIVE_PUSH       uint32 = 0x00000010
	FWPS_STREAM_FLAG_SEND               uint32 = 0x00010000
	FWPS_STREAM_FLAG_SEND_EXPEDITED     uint32 = 0x00020000
	FWPS_STREAM_FLAG_SEND_NODELAY       uint32 = 0x00040000
	FWPS_STREAM_FLAG_SEND_DISCONNECT    uint32 = 0x00080000
	FWPS_STREAM_FLAG_SEND_ABORT         uint32 = 0x00100000

	knownStreamFlags = 0x1F | 0x1F0000
)

// Layer IDs the injection functions check.
const (
	FWPS_LAYER_STREAM_V4                   uint16 = 20
	FWPS_LAYER_STREAM_V6                   uint16 = 22
	FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET  uint16 = 56
	FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET uint16 = 57
	FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE    uint16 = 58
	FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE   uint16 = 59
	FWPS_LAYER_INGRESS_VSWITCH_ETHERNET    uint16 = 72
	FWPS_LAYER_EGRESS_VSWITCH_ETHERNET     uint16 = 73
)

// FWPS_SEND_INJECT_PRESERVE_IPID is the one flag FwpsInjectNetworkSendAsync0
// accepts (Windows 8 and later).
const FWPS_SEND_INJECT_PRESERVE_IPID uint32 = 0x00000001

// FWPS_TRANSPORT_SEND_PARAMS1 carries the arguments of a transport send
// (version 1 adds the header-include fields).
type FWPS_TRANSPORT_SEND_PARAMS1 struct {
	RemoteAddress             []byte
	RemoteScopeID             uint32
	ControlData               []byte
	HeaderIncludeHeader       []byte
	HeaderIncludeHeaderLength uint32
}

// injectPath is the common body of the IP, stream and MAC injections: the
// handle type, the chain and the closing check, then the registered data
// path, or STATUS_FWP_TCPIP_NOT_READY without one (nothing changed then).
func (h *Handle) injectPath(need uint32, r Request, injectionContext any, done Done) error {
	if h == nil {
		return ErrInvalidParameter
	}
	if !h.Has(need) {
		return h.refuse(ErrHandleStale)
	}
	dp := h.stack.dataPath(r.Kind.path())
	if r.NBLs == nil && r.Kind == KindStream {
		// A disconnect without data: nothing to complete (case 25).
		if dp == nil {
			return h.refuse(ErrNotReady)
		}
		if h.closing.Load() {
			return h.refuse(ErrHandleClosing)
		}
		r.Handle = h
		dp.Inject(r)
		return nil
	}
	if _, err := checkChain(r.NBLs, done); err != nil {
		return h.refuse(err)
	}
	if dp == nil {
		return h.refuse(ErrNotReady)
	}
	n, err := h.start(r.NBLs, done)
	if err != nil {
		return h.refuse(err)
	}
	h.commit(r.NBLs, injectionContext, done)
	r.Handle, r.Count = h, n
	dp.Inject(r)
	return nil
}

func needFamily(af ADDRESS_FAMILY) error {
	if af != AF_INET && af != AF_INET6 {
		return fmt.Errorf("%w: address family %d, want AF_INET or AF_INET6", ErrInvalidParameter, af)
	}
	return nil
}

func needZeroFlags(flags uint32) error {
	if flags != 0 {
		return fmt.Errorf("%w: flags 0x%x are reserved and must be 0", ErrInvalidParameter, flags)
	}
	return nil
}

// InjectForward injects IP packets for forwarding out of interfaceIndex
// (FwpsInjectForwardAsync0). It needs a FORWARD handle.
func (h *Handle) InjectForward(af ADDRESS_FAMILY, compartmentID, interfaceIndex uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if err := needFamily(af); err != nil {
		return h.refuse(err)
	}
	return h.injectPath(FWPS_INJECTION_TYPE_FORWARD, Request{Kind: KindForward, NBLs: nbls, AddressFamily: af,
		CompartmentID: compartmentID, InterfaceIndex: interfaceIndex}, injectionContext, done)
}

// InjectNetworkSend injects IP packets on the send path
// (FwpsInjectNetworkSendAsync0). flags may be 0 or
// FWPS_SEND_INJECT_PRESERVE_IPID (case 16). It needs a NETWORK handle.
func (h *Handle) InjectNetworkSend(flags, compartmentID uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if flags&^FWPS_SEND_INJECT_PRESERVE_IPID != 0 {
		return h.refuse(fmt.Errorf("%w: network send flags 0x%x", ErrInvalidParameter, flags))
	}
	return h.injectPath(FWPS_INJECTION_TYPE_NETWORK, Request{Kind: KindNetworkSend, NBLs: nbls, Flags: flags,
		CompartmentID: compartmentID}, injectionContext, done)
}

// InjectNetworkReceive injects IP packets on the receive path
// (FwpsInjectNetworkReceiveAsync0). It needs a NETWORK handle.
func (h *Handle) InjectNetworkReceive(flags, compartmentID, interfaceIndex, subInterfaceIndex uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if err := needZeroFlags(flags); err != nil {
		return h.refuse(err)
	}
	return h.injectPath(FWPS_INJECTION_TYPE_NETWORK, Request{Kind: KindNetworkReceive, NBLs: nbls,
		CompartmentID: compartmentID, InterfaceIndex: interfaceIndex, SubInterfaceIndex: subInterfaceIndex}, injectionContext, done)
}

// InjectTransportSend injects transport data on the send path of an
// endpoint (FwpsInjectTransportSendAsync1). It needs a TRANSPORT handle.
func (h *Handle) InjectTransportSend(endpointHandle uint64, flags uint32, sendArgs *FWPS_TRANSPORT_SEND_PARAMS1, af ADDRESS_FAMILY, compartmentID uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if err := needZeroFlags(flags); err != nil {
		return h.refuse(err)
	}
	if err := needFamily(af); err != nil {
		return h.refuse(err)
	}
	return h.injectPath(FWPS_INJECTION_TYPE_TRANSPORT, Request{Kind: KindTransportSend, NBLs: nbls, EndpointHandle: endpointHandle,
		SendArgs: sendArgs, AddressFamily: af, CompartmentID: compartmentID}, injectionContext, done)
}

// InjectTransportReceive injects packets on the receive path at the
// transport layer (FwpsInjectTransportReceiveAsync0). It needs a TRANSPORT
// handle.
func (h *Handle) InjectTransportReceive(flags uint32, af ADDRESS_FAMILY, compartmentID, interfaceIndex, subInterfaceIndex uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if err := needZeroFlags(flags); err != nil {
		return h.refuse(err)
	}
	if err := needFamily(af); err != nil {
		return h.refuse(err)
	}
	return h.injectPath(FWPS_INJECTION_TYPE_TRANSPORT, Request{Kind: KindTransportReceive, NBLs: nbls, AddressFamily: af,
		CompartmentID: compartmentID, InterfaceIndex: interfaceIndex, SubInterfaceIndex: subInterfaceIndex}, injectionContext, done)
}

// InjectStream injects data into a TCP stream (FwpsStreamInjectAsync0). It
// needs a STREAM handle and a completion function (STATUS_FWP_NULL_POINTER
// otherwise, case 23); layerID must be FWPS_LAYER_STREAM_V4 or _V6 (case
// 26); a DISCONNECT flag needs its base flag (STATUS_FWP_INVALID_PARAMETER,
// case 24); nbls may be nil only with a DISCONNECT flag, and then no
// completion runs (case 25).
func (h *Handle) InjectStream(flags uint32, flowID uint64, calloutID uint32, layerID uint16, streamFlags uint32, nbls *nbl.NetBufferList, dataLength uint64, injectionContext any, done Done) error {
	if err := needZeroFlags(flags); err != nil {
		return h.refuse(err)
	}
	if done.empty() {
		return h.refuse(ErrNullPointer)
	}
	if layerID != FWPS_LAYER_STREAM_V4 && layerID != FWPS_LAYER_STREAM_V6 {
		return h.refuse(fmt.Errorf("%w: stream injection at layer %d, want 20 or 22", ErrInvalidParameter, layerID))
	}
	if streamFlags&^knownStreamFlags != 0 ||
		(streamFlags&FWPS_STREAM_FLAG_SEND_DISCONNECT != 0 && streamFlags&FWPS_STREAM_FLAG_SEND == 0) ||
		(streamFlags&FWPS_STREAM_FLAG_RECEIVE_DISCONNECT != 0 && streamFlags&FWPS_STREAM_FLAG_RECEIVE == 0) {
		return h.refuse(STATUS_FWP_INVALID_PARAMETER)
	}
	disconnect := streamFlags&(FWPS_STREAM_FLAG_SEND_DISCONNECT|FWPS_STREAM_FLAG_RECEIVE_DISCONNECT) != 0
	if nbls == nil && !disconnect {
		return h.refuse(fmt.Errorf("%w: stream injection without data needs a DISCONNECT flag", ErrInvalidParameter))
	}
	return h.injectPath(FWPS_INJECTION_TYPE_STREAM, Request{Kind: KindStream, NBLs: nbls, FlowID: flowID, CalloutID: calloutID,
		LayerID: layerID, StreamFlags: streamFlags, DataLength: dataLength}, injectionContext, done)
}

// InjectMacSend injects frames on the send path of a MAC layer
// (FwpsInjectMacSendAsync0); InjectMacReceive on the receive path
// (FwpsInjectMacReceiveAsync0). Both need an L2 handle (case 5).
func (h *Handle) InjectMacSend(flags uint32, layerID uint16, interfaceIndex, ndisPort uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	return h.injectMac(KindMacSend, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE, flags, layerID, interfaceIndex, ndisPort, nbls, injectionContext, done)
}

// InjectMacReceive: see InjectMacSend.
func (h *Handle) InjectMacReceive(flags uint32, layerID uint16, interfaceIndex, ndisPort uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	return h.injectMac(KindMacReceive, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE, flags, layerID, interfaceIndex, ndisPort, nbls, injectionContext, done)
}

func (h *Handle) injectMac(k Kind, eth, native uint16, flags uint32, layerID uint16, interfaceIndex, ndisPort uint32, nbls *nbl.NetBufferList, injectionContext any, done Done) error {
	if err := needZeroFlags(flags); err != nil {
		return h.refuse(err)
	}
	if layerID != eth && layerID != native {
		return h.refuse(fmt.Errorf("%w: %v injection at layer %d, want %d or %d", ErrInvalidParameter, k, layerID, eth, native))
	}
	return h.injectPath(FWPS_INJECTION_TYPE_L2, Request{Kind: k, NBLs: nbls, Flags: flags, LayerID: layerID,
		InterfaceIndex: interfaceIndex, NdisPort: ndisPort}, injectionContext, done)
}
