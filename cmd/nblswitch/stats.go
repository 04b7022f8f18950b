//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nblpipe/nblpipe/vswitch"
)

// portCounters are one port's switch counters and its back end's.
type portCounters struct {
	Name      string            `json:"name"`
	ID        uint32            `json:"id"`
	Backend   string            `json:"backend,omitempty"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	Injected  uint64            `json:"injected"`
	Absorbed  uint64            `json:"absorbed"`
	Dropped   uint64            `json:"dropped"`
	Drops     map[string]uint64 `json:"drops"` // by reason, non-zero ones
	Kernel    *backendStats     `json:"backend_stats,omitempty"`
}

// balance is the switch's accounting identity (vswitch.Stats): everything
// that entered (received, injected, flood copies made) left (transmitted,
// dropped with a reason, absorbed by a callout).
type balance struct {
	In       uint64 `json:"in"`  // received + injected + flood copies
	Out      uint64 `json:"out"` // transmitted + dropped + absorbed
	Balanced bool   `json:"balanced"`
}

// inFlight is what was not finished when the snapshot was taken.
type inFlight struct {
	// InjectionsPending is the callout's injections not completed.
	InjectionsPending int64 `json:"injections_pending"`
	// DescriptorsHeld sums the ports' descriptors out of their pools.
	DescriptorsHeld int `json:"descriptors_held"`
	// CopyPoolInUse is the switch's flood-copy NBLs out of its pool.
	CopyPoolInUse int `json:"copy_pool_in_use"`
	// XDPTxInFlight sums the AF_XDP ports' frames posted for transmission
	// and not completed by the kernel.
	XDPTxInFlight uint64 `json:"xdp_tx_in_flight"`
}

// snapshot is the daemon's statistics at one moment; at exit it is the
// final report (-stats-json).
type snapshot struct {
	Backend         string         `json:"backend"`
	Callout         calloutStats   `json:"callout"`
	Workers         int            `json:"workers"`
	UptimeSeconds   float64        `json:"uptime_seconds"`
	Ports           []portCounters `json:"ports"`
	Unknown         portCounters   `json:"unknown_source"`
	Flooded         uint64         `json:"flooded"`
	FloodCopies     uint64         `json:"flood_copies"`
	FDBTableFull    uint64         `json:"fdb_table_full"`
	FDBPortLimit    uint64         `json:"fdb_port_limit"`
	Rights          uint64         `json:"rights_violations"`
	InjectNoFilter  uint64         `json:"injected_without_filter"`
	Balance         balance        `json:"balance"`
	InFlight        inFlight       `json:"in_flight"`
	CapsDropped     bool           `json:"caps_dropped"`
	Closed          bool           `json:"closed"`
	CloseError      string         `json:"close_error,omitempty"`
	ShutdownSeconds float64        `json:"shutdown_seconds,omitempty"`
}

// daemonPort is a port as the daemon keeps it.
type daemonPort struct {
	name    string
	id      uint32
	backend string
	stats   portStats
	ifindex int // of the interface, for AF_XDP ports (the detach check)
}

func counters(name string, id uint32, ps vswitch.PortStats) portCounters {
	c := portCounters{Name: name, ID: id, RxPackets: ps.RxPackets, RxBytes: ps.RxBytes, TxPackets: ps.TxPackets, TxBytes: ps.TxBytes,
		Injected: ps.Injected, Absorbed: ps.Absorbed, Dropped: ps.Dropped(), Drops: map[string]uint64{}}
	for r, n := range ps.Drops {
		if n != 0 {
			c.Drops[vswitch.DropReason(r).String()] = n
		}
	}
	return c
}

// balanceOf computes the accounting identity over the ports and the
// unknown-source slot.
func balanceOf(st vswitch.Stats) balance {
	var b balance
	for _, ps := range append(st.Ports, st.Unknown) {
		b.In += ps.RxPackets + ps.Injected
		b.Out += ps.TxPackets + ps.Dropped() + ps.Absorbed
	}
	b.In += st.FloodCopies
	b.Balanced = b.In == b.Out
	return b
}

// takeSnapshot reads every counter. It allocates: it runs at the -stats
// interval and at exit, never per frame.
func takeSnapshot(sw *vswitch.Switch, ports []daemonPort, cs *calloutSet, backend string, workers int, since time.Time) snapshot {
	st := sw.Stats()
	s := snapshot{Backend: backend, Callout: cs.stats(), Workers: workers, UptimeSeconds: time.Since(since).Seconds(),
		Unknown: counters("unknown", 0, st.Unknown), Flooded: st.Flooded, FloodCopies: st.FloodCopies,
		FDBTableFull: st.FDBTableFull, FDBPortLimit: st.FDBPortLimit, Rights: st.RightsViolations, InjectNoFilter: st.InjectedWithoutFilter,
		Balance: balanceOf(st)}
	for i, p := range ports {
		c := counters(p.name, p.id, st.Ports[i])
		c.Backend = p.backend
		bs := p.stats()
		c.Kernel = &bs
		s.InFlight.DescriptorsHeld += bs.DescriptorsHeld
		if bs.XDP != nil {
			s.InFlight.XDPTxInFlight += bs.XDP.TxInFlight
		}
		s.Ports = append(s.Ports, c)
	}
	s.InFlight.InjectionsPending = cs.inFlight()
	s.InFlight.CopyPoolInUse = sw.CopyPool().InUse()
	return s
}

// dropsText renders drops by reason as "reason=n ..." ("none" if none).
func dropsText(d map[string]uint64) string {
	if len(d) == 0 {
		return "none"
	}
	var b strings.Builder
	for r := vswitch.DropReason(0); r < vswitch.NumDropReasons; r++ {
		if n := d[r.String()]; n != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%d", r, n)
		}
	}
	return b.String()
}

// logSnapshot logs one line per port and one for the switch; prev, if not
// nil, gives rates over the interval since it.
func logSnapshot(log *slog.Logger, msg string, s, prev *snapshot) {
	for i, p := range s.Ports {
		attrs := []any{"port", p.Name, "rx_packets", p.RxPackets, "rx_bytes", p.RxBytes, "tx_packets", p.TxPackets, "tx_bytes", p.TxBytes,
			"injected", p.Injected, "absorbed", p.Absorbed, "dropped", p.Dropped, "drops", dropsText(p.Drops)}
		if prev != nil && i < len(prev.Ports) {
			if dt := s.UptimeSeconds - prev.UptimeSeconds; dt > 0 {
				attrs = append(attrs,
					"rx_pps", fmt.Sprintf("%.0f", float64(p.RxPackets-prev.Ports[i].RxPackets)/dt),
					"tx_pps", fmt.Sprintf("%.0f", float64(p.TxPackets-prev.Ports[i].TxPackets)/dt))
			}
		}
		switch k := p.Kernel; {
		case k != nil && k.XDP != nil:
			x := k.XDP
			attrs = append(attrs, "xdp_mode", x.Mode, "xdp_attach", x.Attach,
				"rx_dropped", x.RxDropped, "rx_invalid_descs", x.RxInvalidDescs, "tx_invalid_descs", x.TxInvalidDescs,
				"rx_ring_full", x.RxRingFull, "fill_ring_empty", x.FillRingEmpty, "tx_ring_empty", x.TxRingEmpty,
				"pool_empty", k.PoolEmpty, "tx_errors", k.TxErrors, "tx_refused", x.TxRefused, "tx_in_flight", x.TxInFlight,
				"rx_checksum_fixed", x.RxChecksumFixed, "descriptors_held", k.DescriptorsHeld)
		case k != nil:
			attrs = append(attrs, "kernel_packets", k.KernelPackets, "kernel_drops", k.KernelDrops, "kernel_freezes", k.KernelFreezes,
				"pool_empty", k.PoolEmpty, "tx_errors", k.TxErrors, "descriptors_held", k.DescriptorsHeld,
				"copied_out", k.CopiedOut, "copy_pages_in_use", k.CopyPagesInUse)
		}
		log.Info(msg, attrs...)
	}
	attrs := []any{"flooded", s.Flooded, "flood_copies", s.FloodCopies, "unknown_source_drops", s.Unknown.Dropped,
		"in", s.Balance.In, "out", s.Balance.Out, "injections_pending", s.InFlight.InjectionsPending,
		"descriptors_held", s.InFlight.DescriptorsHeld, "copy_pool_in_use", s.InFlight.CopyPoolInUse}
	if strings.Contains(s.Backend, backendAFXDP) {
		attrs = append(attrs, "xdp_tx_in_flight", s.InFlight.XDPTxInFlight)
	}
	c := s.Callout
	switch c.Name {
	case calloutCount:
		attrs = append(attrs, "callout", c.Name, "ingress_frames", c.IngressFrames, "egress_frames", c.EgressFrames)
	case calloutReinject, calloutInspect:
		attrs = append(attrs, "callout", c.Name, "injected", c.Injected, "completed", c.Completed, "failed", c.Failed+c.CloneFailed,
			"clones_held", c.ClonesHeld)
	}
	log.Info(msg+": switch", attrs...)
}
