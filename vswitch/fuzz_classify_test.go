package vswitch_test

// FuzzClassify feeds arbitrary frames (runts, oversize frames, truncated
// and double VLAN tags, any EtherType) into a manual switch with access
// ports, trunks and the trusted default port, static filters on several
// conditions at both layers and a callout that permits, blocks, absorbs,
// holds, reinjects and clones, and injects some of them through a handle.
// Nothing may panic or hang, and every frame must be accounted for:
// transmitted, dropped under a reason or absorbed (the switch's balance),
// every NBL back in its pool, every injection completed, no goroutine
// left (internal/ledger).

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// feedPort receives the frames it was given, whatever they hold (even
// shorter than an Ethernet header, which memport refuses), and takes every
// frame the switch sends it.
type feedPort struct {
	pool   *nbl.Pool
	frames [][]byte
	next   int
	txq    []*nbl.NetBufferList

	generated, returned, sent, reclaimed atomic.Uint64
}

func newFeedPort(t testing.TB, frames [][]byte) *feedPort {
	t.Helper()
	// 128 NBLs: more than the frames of an input (48) plus what the
	// workers' caches may keep of them (two of 32 at Burst 8).
	p, err := nbl.NewPool(nbl.Config{NBLs: 128, FrameSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return &feedPort{pool: p, frames: frames}
}

func (p *feedPort) Pool() *nbl.Pool { return p.pool }

func (p *feedPort) Books() ledger.Books {
	return ledger.Books{Generated: p.generated.Load(), Returned: p.returned.Load(), Sent: p.sent.Load(), Reclaimed: p.reclaimed.Load()}
}

func (p *feedPort) ReturnNetBufferList(*nbl.NetBufferList) { p.returned.Add(1) }

func (p *feedPort) Receive(out []*nbl.NetBufferList) (int, error) {
	n := 0
	for n < len(out) && p.next < len(p.frames) {
		f := p.frames[p.next]
		l, err := p.pool.Allocate(p.pool.Config().Headroom, len(f))
		if err != nil {
			break // the pool is empty for now
		}
		l.FirstNetBuffer().CopyIn(0, f)
		l.Originator = p
		out[n] = l
		n++
		p.next++
	}
	p.generated.Add(uint64(n))
	return n, nil
}

func (p *feedPort) Send(in []*nbl.NetBufferList) (int, error) {
	p.txq = append(p.txq, in...)
	p.sent.Add(uint64(len(in)))
	return len(in), nil
}

func (p *feedPort) Reclaim(out []*nbl.NetBufferList) int {
	n := copy(out, p.txq)
	rest := copy(p.txq, p.txq[n:])
	clear(p.txq[rest:])
	p.txq = p.txq[:rest]
	p.reclaimed.Add(uint64(n))
	return n
}

func (p *feedPort) Close() error {
	if len(p.txq) > 0 {
		return errors.New("feedPort: closed with frames not reclaimed")
	}
	return nil
}

func (p *feedPort) done() bool { return p.next == len(p.frames) }

// fuzzCallout acts on each frame by its last byte.
type fuzzCallout struct {
	h        *inject.Handle
	swID     []byte
	held     []*nbl.NetBufferList
	done     inject.Done
	injected int // accepted injections, for the ledger
	clones   atomic.Int64
	// injectErrs counts injections refused (none should be); cloneErrs
	// counts clones that found the pool empty (the frame is blocked).
	injectErrs, cloneErrs int
}

const (
	actPermit = iota
	actBlock
	actContinue
	actAbsorb      // absorb without a reference: the switch lets it go at once
	actHold        // reference, absorb, keep until the end
	actReinject    // reference, absorb, inject the original again (ingress)
	actClone       // reference, absorb, inject a clone (ingress)
	actClearRights // permit without keeping the write right
	numActs
)

func (c *fuzzCallout) classify(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	nb := l.FirstNetBuffer()
	var last [1]byte
	if nb.DataLength() > 0 {
		nb.CopyOut(last[:], nb.DataLength()-1)
	}
	act := int(last[0]) % numActs
	if in.LayerID == vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET && (act == actReinject || act == actClone) {
		act = actHold
	}
	if st, _ := c.h.QueryState(l); act == actReinject && st != inject.FWPS_PACKET_NOT_INJECTED {
		// An injected frame is still in flight: it may be cloned, not
		// injected again. Loops of clones end at the hop limit.
		act = actClone
	}
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 && act != actBlock {
		return // without the right only a veto is possible
	}
	switch act {
	case actPermit:
		out.ActionType = vswitch.FWP_ACTION_PERMIT
	case actBlock:
		out.ActionType = vswitch.FWP_ACTION_BLOCK
	case actContinue:
	case actAbsorb:
		absorb(out)
	case actHold:
		l.Reference()
		c.held = append(c.held, l)
		absorb(out)
	case actReinject:
		l.Reference()
		if err := c.h.InjectVSwitchIngress(c.swID, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, l, nil, inject.Done{}); err != nil {
			c.injectErrs++
			l.Dereference()
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		c.injected++
		absorb(out)
	case actClone:
		l.Reference()
		// The worker's cache for the frame's pool, or, for a pool it has
		// none of (an injector's), the pool's shared ring.
		clone, free := l.Pool().Clone, l.Pool().FreeClone
		if meta.Cache != nil {
			clone, free = meta.Cache.Clone, meta.Cache.FreeClone
		}
		cl, err := clone(l)
		if err != nil {
			c.cloneErrs++
			l.Dereference()
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		if err := c.h.InjectVSwitchIngress(c.swID, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, cl, nil, c.done); err != nil {
			c.injectErrs++
			_ = free(cl)
			l.Dereference()
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		c.injected++
		c.clones.Add(1)
		absorb(out)
	case actClearRights:
		out.ActionType = vswitch.FWP_ACTION_PERMIT
		out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
	}
}

// completeClone frees an injected clone and drops its reference on the
// original.
func (c *fuzzCallout) completeClone(_ any, cl *nbl.NetBufferList, _ bool) {
	orig := cl.Parent()
	if err := cl.Pool().FreeClone(cl); err != nil {
		panic(err)
	}
	orig.Dereference()
	c.clones.Add(-1)
}

// fuzzPorts are the switch's ports: access ports of VLANs 1 and 10, a
// trunk with native VLAN 1, a trunk without a native VLAN, and the trusted
// default port 0.
var fuzzPorts = []vswitch.PortConfig{
	{ID: 1, Name: "p1", Mode: vswitch.Access, VLAN: 1},
	{ID: 2, Name: "p2", Mode: vswitch.Access, VLAN: 10},
	{ID: 3, Name: "p3", Mode: vswitch.Trunk, VLAN: 1, Allowed: []uint16{10, 20}},
	{ID: 4, Name: "p4", Mode: vswitch.Trunk, VLAN: 0, Allowed: []uint16{20, 4094}},
	{ID: 0, Name: "p0", Mode: vswitch.Access, VLAN: 1},
}

// fuzzRecord is a frame of the input: its source, and for injected ones
// how they are injected.
type fuzzRecord struct {
	sel   byte // 0-4: received on that port; 5-7: injected
	frame []byte
}

// parseFuzz splits the input into frames: each record is a selector byte,
// whose low 3 bits say where the frame enters and whose top 3 bits add
// 64-byte units to the length byte that follows, then that many bytes (or
// what is left). At most 48 frames.
func parseFuzz(data []byte) (workers int, recs []fuzzRecord) {
	workers = 1
	if len(data) > 0 {
		workers = 1 + int(data[0]&1)
		data = data[1:]
	}
	for len(data) >= 2 && len(recs) < 48 {
		sel, n := data[0], int(data[1])+64*int(data[0]>>5)
		data = data[2:]
		n = min(n, len(data))
		recs = append(recs, fuzzRecord{sel: sel & 7, frame: data[:n]})
		data = data[n:]
	}
	return workers, recs
}

func FuzzClassify(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		workers, recs := parseFuzz(data)
		runClassify(t, workers, recs)
	})
}

func runClassify(t *testing.T, workers int, recs []fuzzRecord) {
	ledger.Goroutines(t)
	stack := newStack()
	id := newGUID()
	sw, err := vswitch.New(vswitch.Config{ID: id, Stack: stack, Manual: true, Workers: workers, Burst: 8,
		MaxFrameSize: 256, CopyPoolSize: 64, FDBSize: 64, HopLimit: 3, InjectRingSize: 64, TxRingSize: 64, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	defer sw.CloseContext(ctx)
	var byPort [5][][]byte
	var injected []fuzzRecord
	for _, r := range recs {
		if r.sel < 5 {
			byPort[r.sel] = append(byPort[r.sel], r.frame)
		} else {
			injected = append(injected, r)
		}
	}
	ports := make([]ledger.Port, len(fuzzPorts))
	feeds := make([]*feedPort, len(fuzzPorts))
	for i, pc := range fuzzPorts {
		feeds[i] = newFeedPort(t, byPort[i])
		defer feeds[i].pool.Close()
		ports[i] = feeds[i]
		if err := sw.AddPort(feeds[i], pc); err != nil {
			t.Fatal(err)
		}
	}
	h, err := stack.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	defer h.DestroyContext(ctx)
	c := &fuzzCallout{h: h, swID: id.Bytes()}
	c.done = inject.Done{Fn: c.completeClone}
	callouts := []*vswitch.Callout{{Key: "in", Classify: c.classify, InjectionHandle: h}, {Key: "out", Classify: c.classify}}
	for _, co := range callouts {
		if err := sw.RegisterCallout(co); err != nil {
			t.Fatal(err)
		}
	}
	for _, fl := range []*vswitch.Filter{
		{Key: "block-88b6", LayerID: ingress, Weight: 100, Action: vswitch.FWP_ACTION_BLOCK,
			Conditions: []vswitch.Condition{{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_ETHER_TYPE, Match: vswitch.FWP_MATCH_EQUAL, Uint: 0x88B6}}},
		{Key: "multicast-src", LayerID: ingress, Weight: 60, Action: vswitch.FWP_ACTION_PERMIT, Flags: vswitch.FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT,
			Conditions: []vswitch.Condition{{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAC_SOURCE_ADDRESS_TYPE, Match: vswitch.FWP_MATCH_NOT_EQUAL, Uint: uint64(vswitch.DlUnicast)}}},
		{Key: "in", LayerID: ingress, Weight: 50, Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "in",
			Conditions: []vswitch.Condition{{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_VLAN_ID, Match: vswitch.FWP_MATCH_RANGE, Uint: 1, High: 30}}},
		{Key: "arp-to-p4", LayerID: egress, Weight: 100, Action: vswitch.FWP_ACTION_BLOCK,
			Conditions: []vswitch.Condition{
				{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_ETHER_TYPE, Match: vswitch.FWP_MATCH_EQUAL, Uint: 0x0806},
				{Field: vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID, Bytes: []byte("p4")}}},
		{Key: "out", LayerID: egress, Weight: 50, Action: vswitch.FWP_ACTION_CALLOUT_INSPECTION, CalloutKey: "out",
			Conditions: []vswitch.Condition{{Field: vswitch.FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAC_DESTINATION_ADDRESS_TYPE, Match: vswitch.FWP_MATCH_NOT_EQUAL, Uint: uint64(vswitch.DlUnicast)}}},
	} {
		if _, err := sw.AddFilter(fl); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	l := ledger.New(t)
	l.SwitchPorts(sw, ports...)
	ha := l.Handle(h)
	injPool, err := nbl.NewPool(nbl.Config{NBLs: 64, FrameSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer injPool.Close()
	l.Pool("injector", injPool)
	fr := &freer{pool: injPool}

	// Injected frames: from the trunk with an out-of-band tag of VLAN 20,
	// from a port the switch does not have, and from port 1.
	for _, r := range injected {
		nl, err := injPool.Allocate(injPool.Config().Headroom, len(r.frame))
		if err != nil {
			t.Fatal(err)
		}
		nl.FirstNetBuffer().CopyIn(0, r.frame)
		src := uint32(1)
		switch r.sel {
		case 5:
			src = 3
			nl.Info.Ieee8021Q = nbl.Ieee8021QInfo{Present: true, VlanID: 20, TPID: 0x8100}
		case 6:
			src = 99
		}
		if err := h.InjectVSwitchIngress(id.Bytes(), src, 0, nl, nil, inject.Done{Fn: fr.fn}); err != nil {
			t.Fatalf("injection refused: %v", err)
		}
		ha.Accepted(1)
	}
	step := func(what string, cond func() bool) {
		t.Helper()
		idle := 0
		for i := 0; idle < 4 || !cond(); i++ {
			if i == maxSteps || ctx.Err() != nil {
				t.Fatalf("the switch still moves frames, or never %s, after %d steps", what, i)
			}
			if sw.Step() {
				idle = 0
			} else {
				idle++
			}
			if i%256 == 0 && !l.Check() {
				t.FailNow()
			}
		}
	}
	step("received every frame", func() bool {
		for _, p := range feeds {
			if !p.done() {
				return false
			}
		}
		return true
	})
	for _, nl := range c.held {
		nl.Dereference()
	}
	c.held = nil
	step("completed every injection", func() bool { return fr.count() == len(injected) && c.clones.Load() == 0 })
	if err := sw.CloseContext(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := h.DestroyContext(ctx); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	ha.Accepted(c.injected)
	l.CheckClosed()
	st := sw.Stats()
	t.Logf("%d frames, %d injected by the callout, %d clone failures: %v; flood copies %d", len(recs), c.injected, c.cloneErrs, ledger.Sum(st), st.FloodCopies)
	for _, co := range callouts {
		if co.Panics() != 0 {
			t.Errorf("callout %q panicked", co.Key)
		}
	}
	if c.injectErrs != 0 {
		t.Errorf("%d injections by the callout refused", c.injectErrs)
	}
}

// fuzzSeeds are inputs that reach each kind of frame: plain, broadcast,
// multicast, tagged, double-tagged, truncated tags, runts, oversize, the
// blocked EtherTypes, and injected ones, each with every callout action.
func fuzzSeeds() [][]byte {
	eth := func(dst, src byte, rest ...byte) []byte {
		f := []byte{dst, 0, 0, 0, 0, dst & 0xfe, 2, 0, 0, 0, 0, src}
		if dst == 0xff {
			f = append(f[:0], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, src)
		}
		return append(f, rest...)
	}
	pad := func(f []byte, n int, last byte) []byte {
		for len(f) < n-1 {
			f = append(f, byte(len(f)))
		}
		return append(f, last)
	}
	rec := func(sel byte, f []byte) []byte {
		hi := len(f) / 64
		if hi > 7 {
			hi = 7
		}
		return append([]byte{sel | byte(hi)<<5, byte(len(f) - 64*hi)}, f...)
	}
	var seeds [][]byte
	for act := range byte(numActs) {
		for _, workers := range []byte{0, 1} {
			s := []byte{workers}
			s = append(s, rec(0, pad(eth(2, 1, 0x08, 0x00), 64, act))...)                                                    // unicast, unknown
			s = append(s, rec(1, pad(eth(0xff, 2, 0x08, 0x06), 60, act))...)                                                 // ARP broadcast
			s = append(s, rec(2, pad(eth(1, 3, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00), 80, act))...)                            // VLAN 10 tag
			s = append(s, rec(3, pad(eth(0x01, 4, 0x81, 0x00, 0x00, 0x14, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00), 90, act))...) // QinQ
			s = append(s, rec(4, pad(eth(2, 5, 0x88, 0xa8, 0x00, 0x01, 0x81, 0x00), 70, act))...)                            // S-tag, trusted port
			s = append(s, rec(0, eth(2, 1, 0x81, 0x00, 0x00))...)                                                            // truncated tag
			s = append(s, rec(1, []byte{1, 2, 3})...)                                                                        // runt
			s = append(s, rec(2, pad(eth(2, 3, 0x88, 0xb6), 300, act))...)                                                   // oversize
			s = append(s, rec(3, pad(eth(2, 4, 0x88, 0xb6), 64, act))...)                                                    // blocked EtherType
			s = append(s, rec(5, pad(eth(0xff, 6, 0x08, 0x06), 60, act))...)                                                 // injected, VLAN 20
			s = append(s, rec(6, pad(eth(2, 7, 0x81, 0x00, 0x0f, 0xff, 0x08, 0x00), 64, act))...)                            // injected, unknown port
			s = append(s, rec(7, pad(eth(1, 8, 0x08, 0x00), 64, act))...)                                                    // injected from p1
			seeds = append(seeds, s)
		}
	}
	return seeds
}
