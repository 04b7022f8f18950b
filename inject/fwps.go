package inject

// This file holds the WFP-named API: the names, parameter order and status
// codes of fwpsk.h, for code ported from a callout driver. Each function is a
// thin wrapper over the idiomatic method it names, and uses the Default
// stack where WFP has no stack argument. Where the WDK function returns
// nothing, this one returns a Status anyway, so that bad input is reported
// rather than ignored; callers may drop it.

import (
	"github.com/nblpipe/nblpipe/nbl"
)

// WDK scalar types used in the signatures.
type (
	COMPARTMENT_ID        = uint32
	IF_INDEX              = uint32
	NDIS_PORT_NUMBER      = uint32
	NDIS_SWITCH_PORT_ID   = uint32
	NDIS_SWITCH_NIC_INDEX = uint16
)

// NDIS_SWITCH_DEFAULT_PORT_ID is the trusted default port of a switch.
const NDIS_SWITCH_DEFAULT_PORT_ID NDIS_SWITCH_PORT_ID = 0

// FWPS_INJECT_COMPLETE0 is the completion function of the injection
// functions: it runs once per injected NBL with the completionContext given
// to the injection, the NBL (its Status holds the outcome), and whether it
// runs at DISPATCH_LEVEL (on a packet-path worker).
type FWPS_INJECT_COMPLETE0 = nbl.CompletionFunc

// FWPS_TRANSPORT_SEND_PARAMS0 is the version-0 form of the transport send
// arguments.
type FWPS_TRANSPORT_SEND_PARAMS0 struct {
	RemoteAddress []byte
	RemoteScopeID uint32
	ControlData   []byte
}

// FwpsInjectionHandleCreate0 creates an injection handle on the Default
// stack and stores it in *injectionHandle.
func FwpsInjectionHandleCreate0(addressFamily ADDRESS_FAMILY, flags uint32, injectionHandle **Handle) Status {
	if injectionHandle == nil {
		return STATUS_INVALID_PARAMETER
	}
	h, err := Default.CreateHandle(addressFamily, flags)
	if err != nil {
		return nbl.StatusOf(err)
	}
	*injectionHandle = h
	return STATUS_SUCCESS
}

// FwpsInjectionHandleDestroy0 destroys a handle, waiting for every pending
// injection to complete.
func FwpsInjectionHandleDestroy0(injectionHandle *Handle) Status {
	if injectionHandle == nil {
		return STATUS_INVALID_PARAMETER
	}
	return nbl.StatusOf(injectionHandle.Destroy())
}

// FwpsQueryPacketInjectionState0 tells how netBufferList relates to the
// handle's injections and, when injectionContext is not nil, stores the
// injection context there (nil unless the state is BY_SELF or
// PREVIOUSLY_BY_SELF).
func FwpsQueryPacketInjectionState0(injectionHandle *Handle, netBufferList *nbl.NetBufferList, injectionContext *any) FWPS_PACKET_INJECTION_STATE {
	st, ctx := injectionHandle.QueryState(netBufferList)
	if injectionContext != nil {
		*injectionContext = ctx
	}
	return st
}

// FwpsAllocateNetBufferAndNetBufferList0 allocates an NBL from poolHandle
// over mdlChain (see nbl.Cache.AllocateNetBufferAndNetBufferList for the
// parameter rules). Free it with FwpsFreeNetBufferList0, normally in the
// completion function of its injection.
func FwpsAllocateNetBufferAndNetBufferList0(poolHandle *nbl.Pool, contextSize, contextBackFill uint16, mdlChain *nbl.Mdl, dataOffset uint32, dataLength uint64, netBufferList **nbl.NetBufferList) Status {
	if poolHandle == nil || netBufferList == nil || dataLength > 0xFFFFFFFF {
		return STATUS_INVALID_PARAMETER
	}
	l, err := poolHandle.AllocateNetBufferAndNetBufferList(int(contextSize), int(contextBackFill), mdlChain, int(dataOffset), int(dataLength))
	if err != nil {
		return nbl.StatusOf(err)
	}
	*netBufferList = l
	return STATUS_SUCCESS
}

// FwpsFreeNetBufferList0 frees an NBL allocated with
// FwpsAllocateNetBufferAndNetBufferList0. The MDLs stay the caller's.
func FwpsFreeNetBufferList0(netBufferList *nbl.NetBufferList) Status {
	if netBufferList == nil || netBufferList.Pool() == nil {
		return STATUS_INVALID_PARAMETER
	}
	return nbl.StatusOf(netBufferList.Pool().Free(netBufferList))
}

// FwpsAllocateCloneNetBufferList0 clones originalNetBufferList. A nil pool
// handle means the original's pool; the NetBuffer pool is the NBL pool's.
// allocateCloneFlags must be 0 (case 43).
func FwpsAllocateCloneNetBufferList0(originalNetBufferList *nbl.NetBufferList, netBufferListPoolHandle, netBufferPoolHandle *nbl.Pool, allocateCloneFlags uint32, netBufferList **nbl.NetBufferList) Status {
	if originalNetBufferList == nil || netBufferList == nil || allocateCloneFlags != 0 || originalNetBufferList.Pool() == nil {
		return STATUS_INVALID_PARAMETER
	}
	if netBufferPoolHandle != nil && netBufferPoolHandle != netBufferListPoolHandle {
		return STATUS_INVALID_PARAMETER
	}
	p := netBufferListPoolHandle
	if p == nil {
		p = originalNetBufferList.Pool()
	}
	cl, err := p.Clone(originalNetBufferList)
	if err != nil {
		return nbl.StatusOf(err)
	}
	*netBufferList = cl
	return STATUS_SUCCESS
}

// FwpsFreeCloneNetBufferList0 frees a clone; freeCloneFlags must be 0.
func FwpsFreeCloneNetBufferList0(netBufferList *nbl.NetBufferList, freeCloneFlags uint32) Status {
	if netBufferList == nil || freeCloneFlags != 0 || netBufferList.Pool() == nil {
		return STATUS_INVALID_PARAMETER
	}
	return nbl.StatusOf(netBufferList.Pool().FreeClone(netBufferList))
}

// FwpsReferenceNetBufferList0 takes a reference on an NBL so it outlives
// the classify that indicated it. intendToModify is recorded by the caller's
// contract only (the callout must clear FWPS_RIGHT_ACTION_WRITE).
func FwpsReferenceNetBufferList0(netBufferList *nbl.NetBufferList, intendToModify bool) Status {
	if netBufferList == nil || netBufferList.Pool() == nil {
		return STATUS_INVALID_PARAMETER
	}
	netBufferList.Reference()
	return STATUS_SUCCESS
}

// FwpsDereferenceNetBufferList0 drops a reference; without a matching
// reference it panics, as the contract violation it is (case 51).
func FwpsDereferenceNetBufferList0(netBufferList *nbl.NetBufferList, dispatchLevel bool) Status {
	if netBufferList == nil || netBufferList.Pool() == nil {
		return STATUS_INVALID_PARAMETER
	}
	netBufferList.Dereference()
	return STATUS_SUCCESS
}

// FwpsInjectvSwitchEthernetIngressAsync0 injects NBLs into a virtual
// switch's ingress path. flags and reserved must be 0 (case 17); see
// Handle.InjectVSwitchIngress for the rest.
func FwpsInjectvSwitchEthernetIngressAsync0(injectionHandle *Handle, injectionContext any, flags uint32, reserved uintptr,
	vSwitchId []byte, vSwitchSourcePortId NDIS_SWITCH_PORT_ID, vSwitchSourceNicIndex NDIS_SWITCH_NIC_INDEX,
	netBufferLists *nbl.NetBufferList, completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	if flags != 0 || reserved != 0 {
		return injectionHandle.refusal(STATUS_INVALID_PARAMETER)
	}
	return statusOf(injectionHandle.injectVSwitch(injectionContext, vSwitchId, vSwitchSourcePortId, vSwitchSourceNicIndex,
		netBufferLists, &Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectForwardAsync0 injects IP packets to be forwarded.
func FwpsInjectForwardAsync0(injectionHandle *Handle, injectionContext any, flags uint32, addressFamily ADDRESS_FAMILY,
	compartmentId COMPARTMENT_ID, interfaceIndex IF_INDEX, netBufferList *nbl.NetBufferList,
	completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	if flags != 0 {
		return injectionHandle.refusal(STATUS_INVALID_PARAMETER)
	}
	return statusOf(injectionHandle.InjectForward(addressFamily, compartmentId, interfaceIndex, netBufferList,
		injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectNetworkSendAsync0 injects IP packets on the send path.
func FwpsInjectNetworkSendAsync0(injectionHandle *Handle, injectionContext any, flags uint32, compartmentId COMPARTMENT_ID,
	netBufferList *nbl.NetBufferList, completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectNetworkSend(flags, compartmentId, netBufferList, injectionContext,
		Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectNetworkReceiveAsync0 injects IP packets on the receive path.
func FwpsInjectNetworkReceiveAsync0(injectionHandle *Handle, injectionContext any, flags uint32, compartmentId COMPARTMENT_ID,
	interfaceIndex, subInterfaceIndex IF_INDEX, netBufferList *nbl.NetBufferList,
	completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectNetworkReceive(flags, compartmentId, interfaceIndex, subInterfaceIndex,
		netBufferList, injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectTransportSendAsync1 injects transport data on an endpoint's send
// path.
func FwpsInjectTransportSendAsync1(injectionHandle *Handle, injectionContext any, endpointHandle uint64, flags uint32,
	sendArgs *FWPS_TRANSPORT_SEND_PARAMS1, addressFamily ADDRESS_FAMILY, compartmentId COMPARTMENT_ID,
	netBufferList *nbl.NetBufferList, completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectTransportSend(endpointHandle, flags, sendArgs, addressFamily, compartmentId,
		netBufferList, injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectTransportSendAsync0 is FwpsInjectTransportSendAsync1 with the
// version-0 arguments.
func FwpsInjectTransportSendAsync0(injectionHandle *Handle, injectionContext any, endpointHandle uint64, flags uint32,
	sendArgs *FWPS_TRANSPORT_SEND_PARAMS0, addressFamily ADDRESS_FAMILY, compartmentId COMPARTMENT_ID,
	netBufferList *nbl.NetBufferList, completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	var args *FWPS_TRANSPORT_SEND_PARAMS1
	if sendArgs != nil {
		args = &FWPS_TRANSPORT_SEND_PARAMS1{RemoteAddress: sendArgs.RemoteAddress, RemoteScopeID: sendArgs.RemoteScopeID, ControlData: sendArgs.ControlData}
	}
	return FwpsInjectTransportSendAsync1(injectionHandle, injectionContext, endpointHandle, flags, args, addressFamily,
		compartmentId, netBufferList, completionFn, completionContext)
}

// FwpsInjectTransportReceiveAsync0 injects packets on the receive path at
// the transport layer; reserved must be 0.
func FwpsInjectTransportReceiveAsync0(injectionHandle *Handle, injectionContext any, reserved uintptr, flags uint32,
	addressFamily ADDRESS_FAMILY, compartmentId COMPARTMENT_ID, interfaceIndex, subInterfaceIndex IF_INDEX,
	netBufferList *nbl.NetBufferList, completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	if reserved != 0 {
		return injectionHandle.refusal(STATUS_INVALID_PARAMETER)
	}
	return statusOf(injectionHandle.InjectTransportReceive(flags, addressFamily, compartmentId, interfaceIndex,
		subInterfaceIndex, netBufferList, injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsStreamInjectAsync0 injects data into a TCP stream.
func FwpsStreamInjectAsync0(injectionHandle *Handle, injectionContext any, flags uint32, flowId uint64, calloutId uint32,
	layerId uint16, streamFlags uint32, netBufferList *nbl.NetBufferList, dataLength uint64,
	completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectStream(flags, flowId, calloutId, layerId, streamFlags, netBufferList,
		dataLength, injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectMacReceiveAsync0 injects frames on a MAC layer's receive path.
func FwpsInjectMacReceiveAsync0(injectionHandle *Handle, injectionContext any, flags uint32, layerId uint16,
	interfaceIndex IF_INDEX, ndisPortNumber NDIS_PORT_NUMBER, netBufferLists *nbl.NetBufferList,
	completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectMacReceive(flags, layerId, interfaceIndex, ndisPortNumber, netBufferLists,
		injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// FwpsInjectMacSendAsync0 injects frames on a MAC layer's send path.
func FwpsInjectMacSendAsync0(injectionHandle *Handle, injectionContext any, flags uint32, layerId uint16,
	interfaceIndex IF_INDEX, ndisPortNumber NDIS_PORT_NUMBER, netBufferLists *nbl.NetBufferList,
	completionFn FWPS_INJECT_COMPLETE0, completionContext any) Status {
	return statusOf(injectionHandle.InjectMacSend(flags, layerId, interfaceIndex, ndisPortNumber, netBufferLists,
		injectionContext, Done{Fn: completionFn, Context: completionContext}))
}

// refusal counts a refused call on h (if any) and returns s.
func (h *Handle) refusal(s Status) Status {
	if h != nil {
		h.refused.Add(1)
	}
	return s
}

// statusOf is nbl.StatusOf with the success case inline: an injection that
// is accepted returns without a call.
func statusOf(err error) Status {
	if err == nil {
		return STATUS_SUCCESS
	}
	return nbl.StatusOf(err)
}
