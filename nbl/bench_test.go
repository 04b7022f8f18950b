package nbl_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// reportPerPacket adds ns/pkt and Mpps for pkts packets per iteration.
// Call it after the b.Loop loop.
func reportPerPacket(b *testing.B, pkts int) {
	if b.N == 0 {
		return
	}
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*pkts)
	b.ReportMetric(ns, "ns/pkt")
	if ns > 0 {
		b.ReportMetric(1e3/ns, "Mpps")
	}
}

func benchPool(b *testing.B) (*nbl.Pool, *nbl.Cache) {
	p := newPool(b, nbl.Config{NBLs: 4096})
	return p, newCache(b, p, 256)
}

// BenchmarkAllocateBurst32FreeBurst is the receive path's descriptor cost:
// 32 NBLs around fresh frames from a per-worker cache, and back.
func BenchmarkAllocateBurst32FreeBurst(b *testing.B) {
	p, c := benchPool(b)
	out := make([]*nbl.NetBufferList, 32)
	b.ReportAllocs()
	for b.Loop() {
		if c.AllocateBurst(out, 60) != 32 {
			b.Fatal("short burst")
		}
		if n, err := c.FreeBurst(out); n != 32 || err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b, 32)
	checkFull(b, p, c)
}

func BenchmarkAllocateFree(b *testing.B) {
	p, c := benchPool(b)
	b.ReportAllocs()
	for b.Loop() {
		l, err := c.Allocate(128, 60)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Free(l); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b, 1)
	checkFull(b, p, c)
}

func BenchmarkCloneFreeClone(b *testing.B) {
	p, c := benchPool(b)
	orig := mustAllocate(b, c, 128, 60)
	b.ReportAllocs()
	for b.Loop() {
		cl, err := c.Clone(orig)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.FreeClone(cl); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b, 1)
	must(b, c.Free(orig), "Free")
	checkFull(b, p, c)
}

// BenchmarkRetreatAdvance prepends and strips an Ethernet header inside the
// backfill.
func BenchmarkRetreatAdvance(b *testing.B) {
	p, c := benchPool(b)
	l := mustAllocate(b, c, 128, 60)
	nb := l.FirstNetBuffer()
	b.ReportAllocs()
	for b.Loop() {
		if err := nb.Retreat(14, 0); err != nil {
			b.Fatal(err)
		}
		if err := nb.Advance(14, false); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b, 1)
	must(b, c.Free(l), "Free")
	checkFull(b, p, c)
}

func BenchmarkReferenceDereference(b *testing.B) {
	p, c := benchPool(b)
	l := mustAllocate(b, c, 128, 60)
	b.ReportAllocs()
	for b.Loop() {
		l.Reference()
		l.Dereference()
	}
	reportPerPacket(b, 1)
	must(b, c.Free(l), "Free")
	checkFull(b, p, c)
}

func BenchmarkDecodeEthIPv4UDP(b *testing.B) {
	p, c := benchPool(b)
	frame := udpFrame(b, make([]byte, 18))
	l, err := c.AllocateCopy(frame)
	must(b, err, "AllocateCopy")
	nb := l.FirstNetBuffer()
	d := nbl.NewDecoder(2048)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(nb); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b, 1)
	must(b, c.Free(l), "Free")
	checkFull(b, p, c)
}

// The baseline: the same descriptor-plus-buffer round trip through
// sync.Pool, the standard library's answer.

type poolPacket struct {
	off, length uint32
	next        *poolPacket
	flags       uint32
	buf         *[2048]byte
}

var packetPool = sync.Pool{New: func() any { return &poolPacket{buf: new([2048]byte)} }}

func BenchmarkSyncPoolBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		pk := packetPool.Get().(*poolPacket)
		pk.off, pk.length = 128, 60
		packetPool.Put(pk)
	}
	reportPerPacket(b, 1)
}

func BenchmarkSyncPoolBaselineBurst32(b *testing.B) {
	var out [32]*poolPacket
	b.ReportAllocs()
	for b.Loop() {
		for i := range out {
			pk := packetPool.Get().(*poolPacket)
			pk.off, pk.length = 128, 60
			out[i] = pk
		}
		for _, pk := range out {
			packetPool.Put(pk)
		}
	}
	reportPerPacket(b, 32)
}

// benchOrig is a BatchOriginator that counts what comes back, as a port
// does.
type benchOrig struct{ n int }

func (o *benchOrig) ReturnNetBufferList(*nbl.NetBufferList)       { o.n++ }
func (o *benchOrig) ReturnNetBufferLists(ls []*nbl.NetBufferList) { o.n += len(ls) }

// BenchmarkAllocateBurst32ReleaseBurst is a switch worker's descriptor
// cost for frames it forwards: 32 NBLs allocated by a port (its
// BatchOriginator set), released in one burst.
func BenchmarkAllocateBurst32ReleaseBurst(b *testing.B) {
	p, c := benchPool(b)
	o := &benchOrig{}
	out := make([]*nbl.NetBufferList, 32)
	b.ReportAllocs()
	for b.Loop() {
		if c.AllocateBurst(out, 60) != 32 {
			b.Fatal("short burst")
		}
		for _, l := range out {
			l.Originator = o
		}
		c.ReleaseBurst(out)
	}
	reportPerPacket(b, 32)
	if o.n != b.N*32 {
		b.Fatalf("originator told of %d NBLs, want %d", o.n, b.N*32)
	}
	checkFull(b, p, c)
}

// BenchmarkHeldReleaseDereferenceBurst32 is the inspect pattern's
// descriptor cost: each of 32 NBLs is referenced (a callout keeps it),
// released by its owner while held, and the burst's references are then
// dropped at once, which sends every NBL back.
func BenchmarkHeldReleaseDereferenceBurst32(b *testing.B) {
	p, c := benchPool(b)
	o := &benchOrig{}
	out := make([]*nbl.NetBufferList, 32)
	b.ReportAllocs()
	for b.Loop() {
		if c.AllocateBurst(out, 60) != 32 {
			b.Fatal("short burst")
		}
		for _, l := range out {
			l.Originator = o
			l.Reference()
		}
		for _, l := range out {
			c.Release(l)
		}
		c.DereferenceBurst(out)
	}
	reportPerPacket(b, 32)
	if o.n != b.N*32 {
		b.Fatalf("originator told of %d NBLs, want %d", o.n, b.N*32)
	}
	checkFull(b, p, c)
}

// BenchmarkCloneReinjectBurst32 is the descriptor cost of a callout that
// clones each frame of a burst and reinjects the clone, as a switch worker
// runs it: the callout references the original and clones it through the
// worker's cache; the switch releases the absorbed original (still held);
// the clone's completion function, which knows only the pool, frees the
// clone and drops the reference through the pool-level methods, which
// take the worker's cache lent to the pool; the last drop sends the
// original back to its originator.
func BenchmarkCloneReinjectBurst32(b *testing.B) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		b.Skip("no cheap goroutine identity on " + runtime.GOARCH)
	}
	p, c := benchPool(b)
	if !c.Lend() {
		b.Fatal("Lend refused")
	}
	o := &benchOrig{}
	out := make([]*nbl.NetBufferList, 32)
	clones := make([]*nbl.NetBufferList, 32)
	b.ReportAllocs()
	for b.Loop() {
		if c.AllocateBurst(out, 60) != 32 {
			b.Fatal("short burst")
		}
		for i, l := range out {
			l.Originator = o
			l.Reference()
			cl, err := c.Clone(l)
			if err != nil {
				b.Fatal(err)
			}
			clones[i] = cl
			c.Release(l)
		}
		for _, cl := range clones {
			orig := cl.Parent()
			if err := cl.Pool().FreeClone(cl); err != nil {
				b.Fatal(err)
			}
			orig.Dereference()
		}
	}
	reportPerPacket(b, 32)
	c.Unlend()
	if o.n != b.N*32 {
		b.Fatalf("originator told of %d NBLs, want %d", o.n, b.N*32)
	}
	checkFull(b, p, c)
}
