//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// Back-end names, as -backend takes them.
const (
	backendAFPacket = "afpacket"
	backendAFXDP    = "afxdp"
)

// backends lists the -backend values, the default first.
var backends = []string{backendAFPacket, backendAFXDP}

// errAFXDPUnavailable is wrapped by openPort's error for -backend afxdp
// when AF_XDP cannot be used on the interface (afxdp.ErrUnsupported: the
// kernel lacks it, or the process lacks a capability or locked memory);
// the error also carries afxdp's reason. The caller falls back to
// AF_PACKET.
var errAFXDPUnavailable = errors.New("AF_XDP cannot be used")

// backendStats are a port back end's own counters, beside the switch's.
// Fields a back end does not have stay zero.
type backendStats struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxErrors  uint64 `json:"tx_errors"`
	// Kernel counters of the socket (AF_PACKET: PACKET_STATISTICS, summed
	// across reads).
	KernelPackets uint64 `json:"kernel_packets"`
	KernelDrops   uint64 `json:"kernel_drops"`
	KernelFreezes uint64 `json:"kernel_freezes"`
	// PoolEmpty counts receive calls cut short for want of a descriptor.
	PoolEmpty uint64 `json:"pool_empty"`
	// AF_PACKET copy-out of frames held for long: ring blocks given back
	// early, the frames copied out of them, copy-outs that failed, and the
	// copy pool's pages holding frames now.
	CopiedOut      uint64 `json:"copied_out"`
	CopiedFrames   uint64 `json:"copied_frames"`
	CopyOutFailed  uint64 `json:"copy_out_failed"`
	CopyPagesInUse int    `json:"copy_pages_in_use"`
	// DescriptorsHeld is the number of the port's NBL descriptors not in
	// its pool's shared ring: frames in the switch, and descriptors kept in
	// per-worker caches. After the switch closed it must be 0.
	DescriptorsHeld int `json:"descriptors_held"`
	// XDP holds an AF_XDP port's own figures; nil for AF_PACKET.
	XDP *xdpStats `json:"xdp,omitempty"`
}

// xdpStats are the figures only an AF_XDP port has (afxdp.Stats).
type xdpStats struct {
	// Mode is how the sockets are bound: "copy" or "zero-copy". Attach is
	// where the XDP program runs: "driver" (native XDP) or "generic".
	Mode   string `json:"mode"`
	Attach string `json:"attach"`
	// Queues is the number of sockets, one per receive queue.
	Queues int `json:"queues"`
	// The kernel's XDP_STATISTICS, summed over the sockets: frames
	// dropped on receive (most often for want of a fill-ring entry),
	// invalid RX and TX descriptors, frames that met a full RX ring, an
	// empty fill ring, and wakeups that found the TX ring empty.
	RxDropped      uint64 `json:"rx_dropped"`
	RxInvalidDescs uint64 `json:"rx_invalid_descs"`
	TxInvalidDescs uint64 `json:"tx_invalid_descs"`
	RxRingFull     uint64 `json:"rx_ring_full"`
	FillRingEmpty  uint64 `json:"fill_ring_empty"`
	TxRingEmpty    uint64 `json:"tx_ring_empty"`
	// The port's own: partial checksums completed on receive, frames sent
	// from their UMEM frame or copied first, completions, frames posted
	// and not completed, frames refused (too long: the switch counts them
	// as tx-error drops), wakeup system calls, and descriptors from the
	// kernel that name no frame (never expected).
	RxChecksumFixed uint64 `json:"rx_checksum_fixed"`
	TxZeroCopy      uint64 `json:"tx_zero_copy"`
	TxCopied        uint64 `json:"tx_copied"`
	TxCompleted     uint64 `json:"tx_completed"`
	TxInFlight      uint64 `json:"tx_in_flight"`
	TxRefused       uint64 `json:"tx_refused"`
	TxWakeups       uint64 `json:"tx_wakeups"`
	RxWakeups       uint64 `json:"rx_wakeups"`
	BadDescs        uint64 `json:"bad_descs"`
}

// afxdpBackendStats maps an AF_XDP port's counters, with held descriptors
// out of its pool, into backendStats.
func afxdpBackendStats(s afxdp.Stats, held int) backendStats {
	mode, attach := afxdp.Copy, afxdp.AttachGeneric
	if s.ZeroCopy {
		mode = afxdp.ZeroCopy
	}
	if s.DriverMode {
		attach = afxdp.AttachDriver
	}
	return backendStats{
		RxPackets: s.RxPackets, RxBytes: s.RxBytes, TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxErrors: s.TxErrors,
		PoolEmpty: s.PoolEmpty, DescriptorsHeld: held,
		XDP: &xdpStats{
			Mode: mode.String(), Attach: attach.String(), Queues: s.Queues,
			RxDropped: s.KernelRxDropped, RxInvalidDescs: s.KernelRxInvalid, TxInvalidDescs: s.KernelTxInvalid,
			RxRingFull: s.KernelRxRingFull, FillRingEmpty: s.KernelFillEmpty, TxRingEmpty: s.KernelTxEmpty,
			RxChecksumFixed: s.RxChecksumFixed, TxZeroCopy: s.TxZeroCopy, TxCopied: s.TxCopied,
			TxCompleted: s.TxCompleted, TxInFlight: s.TxInFlight, TxRefused: s.TxRefused,
			TxWakeups: s.TxWakeups, RxWakeups: s.RxWakeups, BadDescs: s.Bad,
		},
	}
}

// portStats reads a port's back-end counters; it may be called from any
// goroutine, also after the port closed.
type portStats func() backendStats

// portOptions are the back-end settings -port ports share.
type portOptions struct {
	// AF_PACKET ring: blocks and block size (0: the package defaults).
	Blocks, BlockSize int
	// AF_XDP socket binding and XDP attach modes (-afxdp-mode,
	// -afxdp-attach; the zero values are Auto).
	XDPMode   afxdp.Mode
	XDPAttach afxdp.AttachMode
}

// asAFXDPUnavailable returns err wrapping errAFXDPUnavailable if it says
// AF_XDP cannot be used at all (afxdp.ErrUnsupported), else err as it is.
func asAFXDPUnavailable(ifname string, err error) error {
	if errors.Is(err, afxdp.ErrUnsupported) {
		return fmt.Errorf("port %s: %w: %w", ifname, errAFXDPUnavailable, err)
	}
	return err
}

// openPort opens the interface ifname as a switch port with the named back
// end. For afxdp where AF_XDP cannot be used, it returns an error wrapping
// errAFXDPUnavailable, having touched nothing on the interface.
func openPort(backend, ifname string, opt portOptions) (vswitch.Port, portStats, error) {
	switch backend {
	case backendAFPacket:
		p, err := afpacket.New(afpacket.Config{Interface: ifname, Blocks: opt.Blocks, BlockSize: opt.BlockSize})
		if err != nil {
			return nil, nil, err
		}
		stats := func() backendStats {
			s := p.Stats()
			return backendStats{
				RxPackets: s.RxPackets, RxBytes: s.RxBytes, TxPackets: s.TxPackets, TxBytes: s.TxBytes, TxErrors: s.TxErrors,
				KernelPackets: s.KernelPackets, KernelDrops: s.KernelDrops, KernelFreezes: s.KernelFreezes,
				PoolEmpty: s.PoolEmpty, DescriptorsHeld: p.Pool().InUse(),
				CopiedOut: s.CopiedOut, CopiedFrames: s.CopiedFrames, CopyOutFailed: s.CopyOutFailed, CopyPagesInUse: s.CopyPagesInUse,
			}
		}
		return p, stats, nil
	case backendAFXDP:
		// Available checks the capabilities (CAP_NET_ADMIN, CAP_NET_RAW,
		// CAP_BPF or CAP_SYS_ADMIN), the locked-memory limit for the UMEM
		// (or CAP_IPC_LOCK), AF_XDP sockets and the program's load, and
		// says which is missing; New's own failures of that kind wrap
		// ErrUnsupported too.
		if err := afxdp.Available(ifname); err != nil {
			return nil, nil, asAFXDPUnavailable(ifname, err)
		}
		p, err := afxdp.New(afxdp.Config{Interface: ifname, Mode: opt.XDPMode, Attach: opt.XDPAttach})
		if err != nil {
			return nil, nil, asAFXDPUnavailable(ifname, err)
		}
		stats := func() backendStats { return afxdpBackendStats(p.Stats(), p.Pool().InUse()) }
		return p, stats, nil
	}
	return nil, nil, fmt.Errorf("unknown back end %q (want one of %v)", backend, backends)
}

// openWithFallback is openPort that, when AF_XDP cannot be used on ifname,
// logs why and opens the port with AF_PACKET instead (the design's
// fallback). It logs the port it opened, for AF_XDP with the socket and
// attach modes, and returns the back end the port got.
func openWithFallback(log *slog.Logger, backend, ifname string, opt portOptions) (vswitch.Port, portStats, string, error) {
	p, st, err := openPort(backend, ifname, opt)
	if err != nil && backend == backendAFXDP && errors.Is(err, errAFXDPUnavailable) {
		log.Warn("AF_XDP back end unavailable, falling back to AF_PACKET", "port", ifname, "reason", unavailableReason(err), "err", err)
		backend = backendAFPacket
		p, st, err = openPort(backend, ifname, opt)
	}
	if err != nil {
		return nil, nil, backend, err
	}
	attrs := []any{"port", ifname, "backend", backend}
	if x, ok := p.(*afxdp.Port); ok {
		attrs = append(attrs, "xdp_mode", x.Mode().String(), "xdp_attach", x.AttachMode().String(), "queues", len(x.Queues()))
	}
	log.Info("port opened", attrs...)
	return p, st, backend, nil
}

// unavailableReason is afxdp's sentence on why AF_XDP cannot be used, or
// the whole error if it has none.
func unavailableReason(err error) string {
	var ue *afxdp.UnsupportedError
	if errors.As(err, &ue) {
		return ue.Reason
	}
	return err.Error()
}

// requiredCaps lists the capabilities the daemon cannot start without for
// a back end, and what for. Both need CAP_NET_RAW: AF_PACKET for its
// sockets, AF_XDP for its own and for the fallback. What AF_XDP needs
// beyond it (CAP_NET_ADMIN, CAP_BPF or CAP_SYS_ADMIN, locked memory) is
// afxdp.Available's to check, per port: without it the port falls back
// to AF_PACKET, which is not a reason to refuse to start.
func requiredCaps(backend string) []capNeed {
	switch backend {
	case backendAFXDP:
		return []capNeed{{capNetRaw, "to create AF_XDP sockets, and AF_PACKET ones for the fallback"}}
	default:
		return []capNeed{{capNetRaw, "to open the AF_PACKET sockets of the ports"}}
	}
}
