package vswitch

import (
	"fmt"

	"github.com/nblpipe/nblpipe/nbl"
)

// Port is a switch port's back end: an in-memory generator or sink
// (package vswitch/memport), an AF_PACKET or AF_XDP socket. The switch
// calls each Port from one worker goroutine only, but for the transmit
// queues of a QueuedSender.
type Port interface {
	// Receive fills the front of out with frames that arrived and returns
	// how many. Each NBL holds one frame starting at its Ethernet header;
	// the port stays its originator (nbl.NetBufferList.Originator) and gets
	// it back when the switch is done with it. A non-nil error is counted
	// (PortStats.RxErrors) and the frames returned with it are processed;
	// an error that is io.EOF (errors.Is) ends the port's input: the switch
	// stops calling Receive and goes on sending to the port.
	Receive(out []*nbl.NetBufferList) (int, error)
	// Send transmits the frames of in, in order, and returns how many it
	// took; the rest stay the caller's (they are dropped and counted). A
	// taken NBL belongs to the port until Reclaim returns it.
	Send(in []*nbl.NetBufferList) (int, error)
	// Reclaim moves NBLs whose transmission has finished into out and
	// returns how many; the switch completes them.
	Reclaim(out []*nbl.NetBufferList) int
	// Close releases the port's resources. The switch calls it once, after
	// its workers stopped and every NBL was reclaimed or completed.
	Close() error
}

// QueuedSender is an optional interface of a Port whose transmit side has
// a queue for each worker of the switch, as a NIC has a transmit queue per
// core. Every worker then sends the frames it switched to the port itself,
// through its own queue, and reclaims them from it: a frame and its
// descriptor stay on the worker that received them (run to completion),
// instead of crossing to the port's worker through a ring, which on two
// cores costs several cache-line transfers per frame. Send and Reclaim are
// not used for transmission then; Receive still runs on the port's own
// worker.
type QueuedSender interface {
	// TxQueues is called once, when the switch starts, with its number
	// of workers; true makes the switch send through SendQueue and
	// ReclaimQueue, with queues 0 to workers-1.
	TxQueues(workers int) bool
	// SendQueue is Send through queue q. Calls with different queues may
	// run at once; calls with one queue never do.
	SendQueue(q int, in []*nbl.NetBufferList) (int, error)
	// ReclaimQueue is Reclaim for the frames sent through queue q, from
	// the goroutine that sends through q.
	ReclaimQueue(q int, out []*nbl.NetBufferList) int
}

// VLANMode is a port's 802.1Q mode.
type VLANMode uint8

const (
	// Access ports carry one VLAN, untagged on the wire. A tagged frame
	// arriving on one is accepted only with a priority tag (VLAN 0) or its
	// own VLAN.
	Access VLANMode = iota
	// Trunk ports carry the allowed VLANs tagged, and the native VLAN
	// untagged.
	Trunk
)

// PortConfig describes a port of the switch.
type PortConfig struct {
	// ID is the NDIS_SWITCH_PORT_ID. Port 0 is the switch's trusted default
	// port: its traffic is not filtered. IDs must be unique.
	ID uint32
	// NicIndex is the NDIS_SWITCH_NIC_INDEX of the port's NIC.
	NicIndex uint16
	// Name identifies the port in statistics and logs, and is the
	// VSWITCH_SOURCE_INTERFACE_ID value.
	Name string
	// Mode, VLAN and Allowed set the port's VLANs. VLAN is the access VLAN
	// (default 1) or the trunk's native VLAN (0: untagged frames are
	// dropped). Allowed lists the trunk's tagged VLANs.
	Mode    VLANMode
	VLAN    uint16
	Allowed []uint16
	// MaxFDBEntries bounds the MAC addresses learnt on this port (0: the
	// switch's default).
	MaxFDBEntries int
	// StormLimit bounds the frames from this port that the switch floods
	// (broadcast, multicast and unknown unicast) per second of its clock;
	// the rest are dropped as DropStorm, so a loop between ports (two
	// links bridged twice outside the switch) cannot multiply a broadcast
	// without end. 0 takes Config.StormLimit; a negative value turns the
	// limit off for this port.
	StormLimit int
}

func (c *PortConfig) validate() error {
	if c.VLAN > 4094 {
		return fmt.Errorf("vswitch: port %d: VLAN %d out of 0-4094", c.ID, c.VLAN)
	}
	for _, v := range c.Allowed {
		if v < 1 || v > 4094 {
			return fmt.Errorf("vswitch: port %d: allowed VLAN %d out of 1-4094", c.ID, v)
		}
	}
	if c.Mode == Access && c.VLAN == 0 {
		c.VLAN = 1
	}
	if c.StormLimit > 1<<30 {
		return fmt.Errorf("vswitch: port %d: StormLimit %d above 2^30", c.ID, c.StormLimit)
	}
	if c.Mode != Access && c.Mode != Trunk {
		return fmt.Errorf("vswitch: port %d: unknown VLAN mode %d", c.ID, c.Mode)
	}
	return nil
}

// DropReason says why the switch dropped a frame.
type DropReason uint8

// Drop reasons; every frame the switch does not deliver is counted under
// one of them.
const (
	DropFilterBlock   DropReason = iota // a static BLOCK filter
	DropCalloutBlock                    // a callout returned BLOCK (without ABSORB)
	DropVLANMismatch                    // the frame's VLAN is not the port's
	DropPoolEmpty                       // no NBL or MDL for a copy or a tag
	DropRingFull                        // a port's transmit ring or the injection ring was full
	DropHopLimit                        // injected more often than Config.HopLimit
	DropClosed                          // the switch closed while the frame was in flight
	DropMalformed                       // shorter than an Ethernet header, or a truncated tag
	DropOversize                        // longer than Config.MaxFrameSize
	DropTxError                         // the port refused or failed to send it
	DropNoDestination                   // no port to deliver to (or only the one it came from)
	DropCalloutPanic                    // a callout panicked while classifying it
	DropStorm                           // flooded beyond the source port's StormLimit this second
	NumDropReasons
)

var dropNames = [...]string{
	DropFilterBlock: "filter-block", DropCalloutBlock: "callout-block", DropVLANMismatch: "vlan-mismatch",
	DropPoolEmpty: "pool-empty", DropRingFull: "ring-full", DropHopLimit: "hop-limit", DropClosed: "closed",
	DropMalformed: "malformed", DropOversize: "oversize", DropTxError: "tx-error", DropNoDestination: "no-destination",
	DropCalloutPanic: "callout-panic", DropStorm: "storm",
}

func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// PortStats are a port's monotonic counters.
type PortStats struct {
	RxPackets, RxBytes uint64 // received from the port
	TxPackets, TxBytes uint64 // transmitted on the port
	Injected           uint64 // frames injected with this port as their source
	Absorbed           uint64 // frames from this port absorbed by a callout
	RxErrors           uint64 // Receive calls that returned an error
	Drops              [NumDropReasons]uint64
}

// Dropped returns the sum of the drops.
func (s PortStats) Dropped() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// counter indices of the per-worker, per-port counters.
const (
	cRxPackets = iota
	cRxBytes
	cTxPackets
	cTxBytes
	cInjected
	cAbsorbed
	cRxErrors
	cDrop0
	nCounters = cDrop0 + int(NumDropReasons)
)
