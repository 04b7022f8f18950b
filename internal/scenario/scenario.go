// Package scenario builds and runs the pipeline scenarios that the bench
// program reports and the bench package's benchmarks measure: a switch with
// two in-memory ports that send to each other, with or without a callout,
// driven on one core (a manual switch stepped by the caller) or by worker
// goroutines. Everything goes through the same exported API users call.
package scenario

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// Kind names a scenario.
type Kind string

// The scenarios.
const (
	// Forward: parse, learn, look up, transmit.
	Forward Kind = "forward"
	// Inspect: a callout at the ingress layer queries the injection state
	// of every frame, references and absorbs the frames it has not seen,
	// and reinjects each original; the reinjected frame shows
	// INJECTED_BY_SELF and passes (the WFP inspect pattern).
	Inspect Kind = "inspect"
	// Clone: the callout clones every new frame, injects the clone with a
	// completion that frees it and dereferences the original, and absorbs
	// the original.
	Clone Kind = "clone-reinject"
	// Block: a BLOCK filter at the ingress layer drops every frame.
	Block Kind = "block"
)

// Kinds lists the scenarios in report order.
var Kinds = []Kind{Forward, Inspect, Clone, Block}

// Config describes one run.
type Config struct {
	Kind      Kind
	FrameSize int // bytes, Ethernet header included (64 or 1500)
	Burst     int
	Workers   int // 0: one manual worker stepped on the calling goroutine
	// Handoff gives the in-memory ports no per-worker transmit queues
	// (memport.Config.TxQueues): a frame for a port another worker
	// serves crosses to that worker through the port's ring, as it does
	// for AF_PACKET and AF_XDP ports. By default every worker sends to
	// every port through its own queue.
	Handoff  bool
	Duration time.Duration
	Warmup   time.Duration
	// Progress, if set, is called about ten times a second during the
	// measured interval with the packets so far and the time elapsed (it
	// reads the counters, which costs a small allocation each time).
	Progress func(packets uint64, elapsed time.Duration)
}

// Result is what a run measured.
type Result struct {
	Packets   uint64 // frames delivered to a sink, or blocked in Block
	Bytes     uint64
	Elapsed   time.Duration
	Allocs    uint64 // heap allocations during the measured interval
	GCCycles  uint64 // garbage collections the runtime started on its own
	Latencies []int64
	Drops     uint64 // drops during the measurement, other than the scenario's blocks
	DropsBy   [vswitch.NumDropReasons]uint64
	Leaked    error // accounting failures found at Close
}

// Mpps returns million packets per second.
func (r Result) Mpps() float64 { return float64(r.Packets) / r.Elapsed.Seconds() / 1e6 }

// NsPerPkt returns nanoseconds per packet.
func (r Result) NsPerPkt() float64 { return float64(r.Elapsed.Nanoseconds()) / float64(r.Packets) }

// Gbps returns the throughput in Gbit/s of frame bytes.
func (r Result) Gbps() float64 { return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e9 }

// AllocsPerPkt returns heap allocations per packet.
func (r Result) AllocsPerPkt() float64 { return float64(r.Allocs) / float64(r.Packets) }

// Percentile returns the q-quantile (0..1) of the latencies in ns, or -1.
func (r Result) Percentile(q float64) float64 {
	if len(r.Latencies) == 0 {
		return -1
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))])
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// Frame builds an Ethernet/IPv4/UDP frame of size bytes from src to dst.
func Frame(src, dst net.HardwareAddr, size int) ([]byte, error) {
	if size < 60 {
		size = 60
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1024, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	return nbl.BuildFrame(&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(make([]byte, size-14-20-8)))
}

var guidSeq atomic.Uint32

// Setup is a built scenario: a switch, its two ports and its stack.
type Setup struct {
	Switch *vswitch.Switch
	Ports  [2]*memport.Port
	Stack  *inject.Stack
	Handle *inject.Handle
	cfg    Config
	// frameLen is the length of the frames the ports generate.
	frameLen int
}

// Build makes the switch for cfg (not started).
func Build(cfg Config) (*Setup, error) {
	if cfg.Burst == 0 {
		cfg.Burst = 32
	}
	st := inject.NewStack()
	st.Start()
	var id inject.GUID
	id[0], id[15] = 0x5c, byte(guidSeq.Add(1))
	id[14] = byte(guidSeq.Load() >> 8)
	workers := max(cfg.Workers, 1)
	sw, err := vswitch.New(vswitch.Config{ID: id, Stack: st, Burst: cfg.Burst, Workers: workers, Manual: cfg.Workers == 0,
		ProfileLabels: []string{"scenario", string(cfg.Kind), "frame", fmt.Sprint(cfg.FrameSize), "burst", fmt.Sprint(cfg.Burst)}})
	if err != nil {
		return nil, err
	}
	s := &Setup{Switch: sw, Stack: st, cfg: cfg}
	fa, err := Frame(macA, macB, cfg.FrameSize)
	if err != nil {
		return nil, err
	}
	fb, err := Frame(macB, macA, cfg.FrameSize)
	if err != nil {
		return nil, err
	}
	s.frameLen = len(fa)
	for i, f := range [][]byte{fa, fb} {
		p, err := memport.New(memport.Config{Frames: [][]byte{f}, StampEvery: 61, PoolSize: 4096, MaxInFlight: 1024, TxQueues: !cfg.Handoff})
		if err != nil {
			return nil, err
		}
		s.Ports[i] = p
		if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), NicIndex: uint16(i), Name: fmt.Sprintf("mem%d", i)}); err != nil {
			return nil, err
		}
	}
	h, err := Install(sw, st, id, cfg.Kind)
	if err != nil {
		return nil, err
	}
	s.Handle = h
	return s, nil
}

// Install gives a switch the filters and callout of scenario kind k: none
// for Forward, a BLOCK filter at the ingress layer for Block, and the
// inspect Callout (reinjecting originals, or clones for Clone) for Inspect
// and Clone, with an injection handle made on st for it. It returns that
// handle (nil for Forward and Block), for the caller to destroy after the
// switch closes. The bench program installs the same on real ports.
func Install(sw *vswitch.Switch, st *inject.Stack, id inject.GUID, k Kind) (*inject.Handle, error) {
	switch k {
	case Forward:
		return nil, nil
	case Block:
		_, err := sw.AddFilter(&vswitch.Filter{Key: "block-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, Action: vswitch.FWP_ACTION_BLOCK})
		return nil, err
	case Inspect, Clone:
	default:
		return nil, fmt.Errorf("scenario: unknown kind %q", k)
	}
	h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		return nil, err
	}
	c := &Callout{Handle: h, VSwitchID: id.Bytes(), Clone: k == Clone}
	err = sw.RegisterCallout(c.VSwitchCallout("inspect"))
	if err == nil {
		_, err = sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
			Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"})
	}
	if err != nil {
		_ = h.Destroy()
		return nil, err
	}
	return h, nil
}

// Callout is the inspect callout of the Inspect and Clone scenarios: the
// WFP inspect pattern on the vSwitch ingress layer. It absorbs every frame
// it did not inject itself (by the injection-state query) and reinjects
// it: the original, referenced, with no completion function (the
// injection takes the reference over); or, with Clone, a clone whose
// completion frees it and drops the reference on the original. Set
// Handle, VSwitchID and Clone and register Classify; the zero value of the
// counters is ready.
type Callout struct {
	Handle    *inject.Handle
	VSwitchID []byte
	Clone     bool

	// Failed counts frames it could not clone or inject (it blocked them);
	// what it injected the injection handle counts (Handle.Stats).
	Failed atomic.Uint64
}

// Classify is the callout's classify function, for a registration made by
// hand; VSwitchCallout registers ClassifyInspect itself, which saves a call.
func (c *Callout) Classify(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, f *vswitch.Filter, flowContext uint64, out *vswitch.ClassifyOut) {
	ClassifyInspect(in, meta, l, c, f, flowContext, out)
}

// VSwitchCallout returns the registration of c under key: ClassifyInspect as the
// classify function with c as its context, and c's injection handle.
func (c *Callout) VSwitchCallout(key string) *vswitch.Callout {
	return &vswitch.Callout{Key: key, Classify: ClassifyInspect, Context: c, InjectionHandle: c.Handle}
}

// ClassifyInspect is the classify function of a Callout registered with the
// Callout as its context (VSwitchCallout): a plain function rather than a
// method value, so the switch calls it with no wrapper in between.
func ClassifyInspect(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, classifyContext any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	c := classifyContext.(*Callout)
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 {
		return
	}
	if st, _ := c.Handle.QueryState(l); st.SelfInjected() {
		out.ActionType = vswitch.FWP_ACTION_PERMIT
		return
	}
	l.Reference()
	var err error
	if c.Clone {
		var cl *nbl.NetBufferList
		if meta.Cache != nil {
			cl, err = meta.Cache.Clone(l)
		} else {
			cl, err = l.Pool().Clone(l)
		}
		if err == nil {
			err = c.Handle.InjectVSwitchIngress(c.VSwitchID, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, cl, nil, cloneDone)
			if err != nil {
				_ = cl.Pool().FreeClone(cl)
			}
		}
		if err != nil {
			l.Dereference()
		}
	} else {
		// The injection takes our reference over.
		err = c.Handle.InjectVSwitchIngress(c.VSwitchID, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, l, nil, inject.Done{})
		if err != nil {
			l.Dereference()
		}
	}
	if err != nil {
		c.Failed.Add(1)
		out.ActionType = vswitch.FWP_ACTION_BLOCK
		return
	}
	out.ActionType = vswitch.FWP_ACTION_BLOCK
	out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
	out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
}

// cloneDone completes the clones the callout injects.
var cloneDone = inject.Done{Fn: completeClone}

// completeClone frees an injected clone and drops the reference on its
// original.
func completeClone(_ any, cl *nbl.NetBufferList, _ bool) {
	orig := cl.Parent()
	_ = cl.Pool().FreeClone(cl)
	orig.Dereference()
}

func (s *Setup) delivered() (pkts, bytes uint64) {
	for _, p := range s.Ports {
		st := p.Stats()
		pkts += st.Sent
		bytes += st.SentBytes
	}
	if s.cfg.Kind == Block {
		// Every frame that comes back to its generator was blocked (none
		// is sent): the ports' own counters are exact at any moment, where
		// the switch publishes its counters every few bursts.
		for _, p := range s.Ports {
			pkts += p.Stats().Returned
		}
		bytes = pkts * uint64(s.frameLen)
	}
	return pkts, bytes
}

// drops sums the switch's drop counters by reason.
func (s *Setup) drops() (d [vswitch.NumDropReasons]uint64) {
	ss := s.Switch.Stats()
	for _, ps := range append(ss.Ports, ss.Unknown) {
		for i, n := range ps.Drops {
			d[i] += n
		}
	}
	return d
}

func automaticGCs() uint64 {
	m := []metrics.Sample{{Name: "/gc/cycles/automatic:gc-cycles"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return m[0].Value.Uint64()
}

// Run builds, runs and closes a scenario, measuring after a warm-up.
func Run(cfg Config) (Result, error) {
	s, err := Build(cfg)
	if err != nil {
		return Result{}, err
	}
	return s.Run(cfg.Warmup, cfg.Duration)
}

// Run starts the switch, warms up, measures for d, and closes it.
func (s *Setup) Run(warmup, d time.Duration) (Result, error) {
	return s.run(warmup, d, 0)
}

// RunPackets is Run that measures until n packets were delivered (for go
// test benchmarks, with n = b.N), instead of for a duration.
func (s *Setup) RunPackets(warmup time.Duration, n uint64) (Result, error) {
	return s.run(warmup, 0, n)
}

func (s *Setup) run(warmup, d time.Duration, n uint64) (Result, error) {
	var r Result
	if err := s.Switch.Start(); err != nil {
		return r, err
	}
	manual := s.cfg.Workers == 0
	step := func(until time.Time) {
		for time.Now().Before(until) {
			for range 64 {
				s.Switch.Step()
			}
		}
	}
	if manual {
		step(time.Now().Add(warmup))
	} else {
		time.Sleep(warmup)
	}
	// Stats are published by workers every few bursts: flush the manual
	// worker's by reading after a Step, the goroutine workers' lag is
	// bounded by their publishing period, far below the measured interval.
	p0, b0 := s.delivered()
	d0 := s.drops()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a0, g0 := ms.Mallocs, automaticGCs()
	t0 := time.Now()
	switch {
	case n > 0 && manual:
		for {
			for range 16 {
				s.Switch.Step()
			}
			if p, _ := s.delivered(); p-p0 >= n {
				break
			}
		}
	case n > 0:
		for {
			time.Sleep(100 * time.Microsecond)
			if p, _ := s.delivered(); p-p0 >= n {
				break
			}
		}
	case manual && s.cfg.Progress == nil:
		step(t0.Add(d))
	case s.cfg.Progress == nil:
		time.Sleep(d)
	default:
		for end := t0.Add(d); time.Now().Before(end); {
			next := time.Now().Add(100 * time.Millisecond)
			if next.After(end) {
				next = end
			}
			if manual {
				step(next)
			} else {
				time.Sleep(time.Until(next))
			}
			p, _ := s.delivered()
			s.cfg.Progress(p-p0, time.Since(t0))
		}
	}
	if n == 0 {
		// A window so short (or a machine so loaded) that the workers
		// delivered nothing yet measures nothing: wait for the first
		// packet, at most 5 s more; Elapsed is the real interval.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			if p, _ := s.delivered(); p > p0 {
				break
			}
			if manual {
				step(time.Now().Add(time.Millisecond))
			} else {
				time.Sleep(time.Millisecond)
			}
		}
	}
	r.Elapsed = time.Since(t0)
	p1, b1 := s.delivered()
	d1 := s.drops()
	for i := range d1 {
		r.DropsBy[i] = d1[i] - d0[i]
		if i != int(vswitch.DropFilterBlock) {
			r.Drops += r.DropsBy[i]
		}
	}
	runtime.ReadMemStats(&ms)
	r.Allocs, r.GCCycles = ms.Mallocs-a0, automaticGCs()-g0
	r.Packets, r.Bytes = p1-p0, b1-b0
	closeErr := s.Switch.Close()
	if s.Handle != nil {
		if err := s.Handle.Destroy(); err != nil {
			closeErr = errors.Join(closeErr, err)
		}
	}
	for _, p := range s.Ports {
		r.Latencies = append(r.Latencies, p.Latencies()...)
		st := p.Stats()
		if st.Generated != st.Returned {
			closeErr = errors.Join(closeErr, fmt.Errorf("scenario: a port generated %d frames and got %d back", st.Generated, st.Returned))
		}
	}
	r.Leaked = closeErr
	if r.Packets == 0 {
		return r, fmt.Errorf("scenario %s: no packet delivered", s.cfg.Kind)
	}
	return r, nil
}
