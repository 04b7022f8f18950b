package nbl_test

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
)

// newPool makes a pool for one test and closes it when the test ends.
func newPool(tb testing.TB, cfg nbl.Config) *nbl.Pool {
	tb.Helper()
	p, err := nbl.NewPool(cfg)
	if err != nil {
		tb.Fatalf("NewPool(%+v): %v", cfg, err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// newCache makes a cache in front of p.
func newCache(tb testing.TB, p *nbl.Pool, size int) *nbl.Cache {
	tb.Helper()
	c, err := p.NewCache(size)
	if err != nil {
		tb.Fatalf("NewCache(%d): %v", size, err)
	}
	return c
}

// checkFull flushes the caches and fails the test unless every descriptor,
// extra NetBuffer and extra MDL is back in p.
func checkFull(tb testing.TB, p *nbl.Pool, caches ...*nbl.Cache) {
	tb.Helper()
	for _, c := range caches {
		c.Flush()
	}
	if !p.Full() {
		nbs, mdls := p.ExtraInUse()
		tb.Fatalf("pool not full: %d descriptors, %d extra NetBuffers and %d extra MDLs in use", p.InUse(), nbs, mdls)
	}
}

// mustAllocate allocates an NBL around a fresh frame.
func mustAllocate(tb testing.TB, c *nbl.Cache, dataOffset, dataLength int) *nbl.NetBufferList {
	tb.Helper()
	l, err := c.Allocate(dataOffset, dataLength)
	if err != nil {
		tb.Fatalf("Allocate(%d, %d): %v", dataOffset, dataLength, err)
	}
	return l
}

// mustClone clones orig.
func mustClone(tb testing.TB, c *nbl.Cache, orig *nbl.NetBufferList) *nbl.NetBufferList {
	tb.Helper()
	cl, err := c.Clone(orig)
	if err != nil {
		tb.Fatalf("Clone: %v", err)
	}
	return cl
}

// must fails the test on a non-nil error.
func must(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// pattern returns n bytes that start at seed and count up.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// dataOf returns a copy of nb's data.
func dataOf(nb *nbl.NetBuffer) []byte {
	b := make([]byte, nb.DataLength())
	if n := nb.CopyOut(b, 0); n != len(b) {
		panic("CopyOut returned short")
	}
	return b
}

// mdlPrefix returns the bytes the MDLs before nb's CurrentMdl describe, and
// whether CurrentMdl was found in the chain at all.
func mdlPrefix(nb *nbl.NetBuffer) (int, bool) {
	sum := 0
	for m := nb.MdlChain(); m != nil; m = m.Next() {
		if m == nb.CurrentMdl() {
			return sum, true
		}
		sum += m.ByteCount()
	}
	return sum, nb.CurrentMdl() == nil
}

// checkNB fails unless nb satisfies the consistency rules of conformance
// case 49 and of the NET_BUFFER layout: CurrentMdl is in the chain, the bytes
// before it plus CurrentMdlOffset are DataOffset, CurrentMdlOffset lies inside
// CurrentMdl, which holds the first data byte when there is data, and
// DataOffset+DataLength fits the chain.
func checkNB(tb testing.TB, nb *nbl.NetBuffer, what string) {
	tb.Helper()
	if err := nbConsistency(nb); err != "" {
		tb.Fatalf("%s: %s", what, err)
	}
}

func nbConsistency(nb *nbl.NetBuffer) string {
	prefix, found := mdlPrefix(nb)
	switch {
	case !found:
		return "CurrentMdl is not in the MDL chain"
	case prefix+nb.CurrentMdlOffset() != nb.DataOffset():
		return fmt.Sprintf("bytes before CurrentMdl %d + CurrentMdlOffset %d != DataOffset %d", prefix, nb.CurrentMdlOffset(), nb.DataOffset())
	case nb.CurrentMdl() != nil && nb.CurrentMdlOffset() > nb.CurrentMdl().ByteCount():
		return fmt.Sprintf("CurrentMdlOffset %d beyond CurrentMdl's %d bytes", nb.CurrentMdlOffset(), nb.CurrentMdl().ByteCount())
	case nb.DataLength() > 0 && (nb.CurrentMdl() == nil || nb.CurrentMdlOffset() >= nb.CurrentMdl().ByteCount()):
		// CurrentMdl must hold the byte at DataOffset, the first of the data.
		return fmt.Sprintf("CurrentMdl does not hold the first data byte (CurrentMdlOffset %d)", nb.CurrentMdlOffset())
	case nb.DataOffset()+nb.DataLength() > nb.ChainLength():
		return fmt.Sprintf("DataOffset %d + DataLength %d > ChainLength %d", nb.DataOffset(), nb.DataLength(), nb.ChainLength())
	}
	return ""
}

// nbState is a NetBuffer's visible layout, for "nothing changed" checks.
type nbState struct {
	dataOffset, dataLength, currentMdlOffset int
	mdlChain, currentMdl                     *nbl.Mdl
	mdls                                     []*nbl.Mdl
}

func stateOf(nb *nbl.NetBuffer) nbState {
	s := nbState{
		dataOffset:       nb.DataOffset(),
		dataLength:       nb.DataLength(),
		currentMdlOffset: nb.CurrentMdlOffset(),
		mdlChain:         nb.MdlChain(),
		currentMdl:       nb.CurrentMdl(),
	}
	for m := nb.MdlChain(); m != nil; m = m.Next() {
		s.mdls = append(s.mdls, m)
	}
	return s
}

func (s nbState) equal(o nbState) bool {
	if s.dataOffset != o.dataOffset || s.dataLength != o.dataLength || s.currentMdlOffset != o.currentMdlOffset ||
		s.mdlChain != o.mdlChain || s.currentMdl != o.currentMdl || len(s.mdls) != len(o.mdls) {
		return false
	}
	for i := range s.mdls {
		if s.mdls[i] != o.mdls[i] {
			return false
		}
	}
	return true
}

// userChain makes a chain of caller-owned MDLs (AllocateMdl + SetNext) over
// the given buffers and a function that frees them.
func userChain(tb testing.TB, p *nbl.Pool, bufs ...[]byte) (*nbl.Mdl, func()) {
	tb.Helper()
	mdls := make([]*nbl.Mdl, len(bufs))
	for i, b := range bufs {
		m, err := p.AllocateMdl(b)
		must(tb, err, "AllocateMdl")
		mdls[i] = m
		if i > 0 {
			must(tb, mdls[i-1].SetNext(m), "SetNext")
		}
	}
	return mdls[0], func() {
		for _, m := range mdls {
			must(tb, p.FreeMdl(m), "FreeMdl")
		}
	}
}

// countingOriginator counts ReturnNetBufferList calls by OriginatorContext.
type countingOriginator struct {
	mu    sync.Mutex
	calls map[uint64]int
}

func newCountingOriginator() *countingOriginator {
	return &countingOriginator{calls: make(map[uint64]int)}
}

func (o *countingOriginator) ReturnNetBufferList(l *nbl.NetBufferList) {
	o.mu.Lock()
	o.calls[l.OriginatorContext]++
	o.mu.Unlock()
}

func (o *countingOriginator) count(id uint64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[id]
}

var _ nbl.Originator = (*countingOriginator)(nil)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ipA  = net.IP{10, 0, 0, 1}
	ipB  = net.IP{10, 0, 0, 2}
)

// udpFrame builds an Ethernet/IPv4/UDP frame with the given payload.
func udpFrame(tb testing.TB, payload []byte) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	must(tb, udp.SetNetworkLayerForChecksum(ip), "SetNetworkLayerForChecksum")
	f, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(payload))
	must(tb, err, "BuildFrame")
	return f
}

// tcpFrame builds an Ethernet/IPv4/TCP frame with the given payload.
func tcpFrame(tb testing.TB, payload []byte) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ipA, DstIP: ipB}
	tcp := &layers.TCP{SrcPort: 40001, DstPort: 8080, Seq: 1000, Ack: 2000, ACK: true, PSH: true, Window: 65535}
	must(tb, tcp.SetNetworkLayerForChecksum(ip), "SetNetworkLayerForChecksum")
	f, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		ip, tcp, gopacket.Payload(payload))
	must(tb, err, "BuildFrame")
	return f
}
