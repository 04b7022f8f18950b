// Package vswitch is a virtual Ethernet switch with the Windows Filtering
// Platform's vSwitch layers: ports with NICs, a bounded MAC learning table,
// 802.1Q VLANs, flooding, and a filter engine at the ingress and egress
// Ethernet layers (72 and 73) whose callouts classify, block, absorb and
// reinject frames.
//
// # The path of a frame
//
//	port.Receive ─► ingress layer ─► learn source, look up destination ─►
//	  egress layer (per destination port) ─► VLAN tag for the port ─►
//	  port's transmit ring ─► port.Send ─► port.Reclaim ─► completion
//
// Each worker goroutine runs that path to completion over a burst (32 frames
// by default) for the ports it serves, then transmits on them and flushes
// its completions in one batch. A frame for a port another worker serves
// crosses through that port's transmit ring, a burst at a time. Nothing on
// the path allocates, locks or blocks.
//
// # Classification
//
// Filters (AddFilter) have conditions over the incoming values of their
// layer, a weight, and an action: PERMIT, BLOCK, or a callout
// (RegisterCallout). From the highest weight down, the first terminating
// verdict decides; a callout that returns FWP_ACTION_CONTINUE passes on; a
// BLOCK is honoured even after the write right was cleared, a PERMIT is
// not. Filters and callouts may be added and removed while traffic flows:
// workers read an immutable snapshot that the change replaces atomically.
// Traffic from port 0, the trusted default port, is not filtered.
//
// # Absorb and reinject
//
// A callout that returns FWP_ACTION_BLOCK with FWPS_CLASSIFY_OUT_FLAG_ABSORB
// takes the frame out of the switch's hands. The switch releases it at once,
// so a callout that wants it afterwards takes a reference first
// (NetBufferList.Reference, or FwpsReferenceNetBufferList0). It may then
// clone it, change the clone, and inject the clone with
// FwpsInjectvSwitchEthernetIngressAsync0 (or inject.Handle.InjectVSwitchIngress):
// the clone enters the ingress path again, tagged with the handle, and when
// the callout sees it it queries FwpsQueryPacketInjectionState0, finds
// FWPS_PACKET_INJECTED_BY_SELF and permits it. The clone's completion runs
// once, in a batch, after it was transmitted; it frees the clone and
// dereferences the original, which then goes back to its port. An original
// injected with no completion function hands the injector's reference over:
// it is dropped when the injection completes.
//
// Beyond WFP, the injection tag counts hops: a frame injected more than
// Config.HopLimit times is dropped (DropHopLimit), so callouts that reinject
// each other's frames cannot loop forever.
//
// # Accounting
//
// Every frame is transmitted, absorbed, or dropped under a DropReason, per
// port (Stats). Close stops the workers after their burst, completes what is
// still queued (DropClosed), closes the ports, and checks that the switch's
// own pool is full again.
package vswitch
