package nbl_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
)

func TestNewPoolConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  nbl.Config
	}{
		{"no NBLs", nbl.Config{}},
		{"negative NBLs", nbl.Config{NBLs: -1}},
		{"headroom equals frame size", nbl.Config{NBLs: 4, FrameSize: 128, Headroom: 128}},
		{"headroom above frame size", nbl.Config{NBLs: 4, FrameSize: 256, Headroom: 300}},
		{"default headroom above a small frame", nbl.Config{NBLs: 4, FrameSize: 64}},
		{"negative frame size", nbl.Config{NBLs: 4, FrameSize: -1}},
		{"negative headroom", nbl.Config{NBLs: 4, Headroom: -1}},
		{"context size not a multiple of 16", nbl.Config{NBLs: 4, ContextSize: 17}},
		{"context size 8", nbl.Config{NBLs: 4, ContextSize: 8}},
		{"negative context size", nbl.Config{NBLs: 4, ContextSize: -16}},
		{"context size too big", nbl.Config{NBLs: 4, ContextSize: 0x10000}},
		{"negative extra NetBuffers", nbl.Config{NBLs: 4, ExtraNetBuffers: -1}},
		{"negative extra MDLs", nbl.Config{NBLs: 4, ExtraMdls: -1}},
		{"negative header buffer size", nbl.Config{NBLs: 4, HeaderBufferSize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := nbl.NewPool(tc.cfg)
			if err == nil {
				_ = p.Close()
				t.Fatalf("NewPool(%+v) succeeded", tc.cfg)
			}
			if p != nil {
				t.Fatal("NewPool returned a pool with its error")
			}
			if !errors.Is(err, nbl.ErrInvalidParameter) || nbl.StatusOf(err) != nbl.StatusInvalidParameter {
				t.Fatalf("error %v is not STATUS_INVALID_PARAMETER", err)
			}
		})
	}
}

func TestNewPoolDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   nbl.Config
		want nbl.Config
	}{
		{"defaults", nbl.Config{NBLs: 8},
			nbl.Config{NBLs: 8, FrameSize: 2048, Headroom: 128, ExtraNetBuffers: 16, ExtraMdls: 16, HeaderBufferSize: 256, ContextSize: 64}},
		{"large pool", nbl.Config{NBLs: 1024},
			nbl.Config{NBLs: 1024, FrameSize: 2048, Headroom: 128, ExtraNetBuffers: 128, ExtraMdls: 256, HeaderBufferSize: 256, ContextSize: 64}},
		{"frame size rounded to 64", nbl.Config{NBLs: 2, FrameSize: 100, Headroom: 32},
			nbl.Config{NBLs: 2, FrameSize: 128, Headroom: 32, ExtraNetBuffers: 16, ExtraMdls: 16, HeaderBufferSize: 256, ContextSize: 64}},
		{"explicit sizes", nbl.Config{NBLs: 2, FrameSize: 512, Headroom: 64, ExtraNetBuffers: 3, ExtraMdls: 5, HeaderBufferSize: 96, ContextSize: 128},
			nbl.Config{NBLs: 2, FrameSize: 512, Headroom: 64, ExtraNetBuffers: 3, ExtraMdls: 5, HeaderBufferSize: 96, ContextSize: 128}},
		{"no frames ignores headroom", nbl.Config{NBLs: 2, NoFrames: true, FrameSize: 64, Headroom: 128},
			nbl.Config{NBLs: 2, NoFrames: true, FrameSize: 64, Headroom: 128, ExtraNetBuffers: 16, ExtraMdls: 16, HeaderBufferSize: 256, ContextSize: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, tc.in)
			if got := p.Config(); got != tc.want {
				t.Fatalf("Config() = %+v, want %+v", got, tc.want)
			}
			if p.Cap() != tc.in.NBLs || p.InUse() != 0 || !p.Full() {
				t.Fatalf("Cap %d InUse %d Full %v", p.Cap(), p.InUse(), p.Full())
			}
			if (p.Frames() == nil) != tc.in.NoFrames {
				t.Fatalf("Frames() nil = %v with NoFrames %v", p.Frames() == nil, tc.in.NoFrames)
			}
			if _, err := p.NewCache(1); err == nil {
				t.Fatal("NewCache(1) succeeded")
			}
		})
	}
}

func TestAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, FrameSize: 256, Headroom: 64})
	c := newCache(t, p, 2)
	for _, tc := range []struct {
		off, n int
		ok     bool
	}{
		{64, 100, true}, {0, 0, true}, {0, 256, true}, {256, 0, true}, {255, 1, true}, {10, 246, true},
		{0, 257, false}, {257, 0, false}, {200, 57, false}, {-1, 10, false}, {10, -1, false},
	} {
		t.Run(fmt.Sprintf("%d+%d", tc.off, tc.n), func(t *testing.T) {
			for _, front := range []string{"cache", "pool"} {
				var l *nbl.NetBufferList
				var err error
				if front == "cache" {
					l, err = c.Allocate(tc.off, tc.n)
				} else {
					l, err = p.Allocate(tc.off, tc.n)
				}
				if !tc.ok {
					if l != nil || !errors.Is(err, nbl.ErrInvalidParameter) {
						t.Fatalf("%s: got %v, want ErrInvalidParameter", front, err)
					}
					continue
				}
				must(t, err, front+" Allocate")
				nb := l.FirstNetBuffer()
				if nb.DataOffset() != tc.off || nb.DataLength() != tc.n || nb.CurrentMdlOffset() != tc.off {
					t.Fatalf("DataOffset %d DataLength %d CurrentMdlOffset %d", nb.DataOffset(), nb.DataLength(), nb.CurrentMdlOffset())
				}
				if nb.MdlChain() == nil || nb.CurrentMdl() != nb.MdlChain() || nb.MdlChain().Next() != nil || nb.ChainLength() != 256 {
					t.Fatal("a fresh NBL must have one MDL over its 256-byte frame")
				}
				if nb.Next != nil || nb.NetBufferList() != l || l.NetBufferCount() != 1 || nbl.NET_BUFFER_LIST_FIRST_NB(l) != nb {
					t.Fatal("a fresh NBL must hold exactly one NetBuffer")
				}
				if l.Next != nil || l.Parent() != nil || l.IsClone() || l.ChildRefCount() != 0 || l.RefCount() != 0 || l.Status != nbl.StatusSuccess {
					t.Fatal("a fresh NBL must be unlinked, no clone, unheld, STATUS_SUCCESS")
				}
				if l.Context() == nil || nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 0 || l.Context().Size != 64 {
					t.Fatal("a fresh NBL must have an empty 64-byte context")
				}
				if l.Pool() != p || !p.Owns(l) || p.At(l.Index()) != l {
					t.Fatal("Pool, Owns, At and Index disagree")
				}
				checkNB(t, nb, "fresh")
				data, ok := nb.Data()
				if !ok || len(data) != tc.n || cap(data) != tc.n {
					t.Fatalf("Data() len %d cap %d ok %v, want %d", len(data), cap(data), ok, tc.n)
				}
				if front == "cache" {
					must(t, c.Free(l), "Free")
				} else {
					must(t, p.Free(l), "Free")
				}
			}
		})
	}
	checkFull(t, p, c)
}

// TestAllocateResetsState reuses one descriptor and checks that nothing of
// its previous life shows.
func TestAllocateResetsState(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 1})
	o := newCountingOriginator()
	l, err := p.Allocate(128, 10)
	must(t, err, "Allocate")
	other, err := p.AllocateAround(make([]byte, 8), 0, 8)
	if err == nil || other != nil {
		t.Fatal("second Allocate of a one-NBL pool succeeded")
	}
	l.Next = l
	l.Status = nbl.StatusFailure
	l.NblFlags = 0xFFFF
	l.Info = nbl.Info{Checksum: 1, Hash: 2, Timestamp: 3, Ieee8021Q: nbl.Ieee8021QInfo{VlanID: 5, Present: true},
		Switch: nbl.SwitchForwardingDetail{SourcePortID: 7, SourceNicIndex: 2, IsPacketDataSafe: true}}
	l.Scratch, l.SourceHandle = "scratch", "source"
	l.Completion = nbl.Completion{Context: "ctx", Owner: "owner"}
	l.Tag = nbl.InjectionTag{Handle: 7, Context: "c", HistoryLen: 1, Hops: 3}
	l.Originator, l.OriginatorContext = o, 99
	l.FirstNetBuffer().ChecksumBias = 4
	must(t, l.AllocateContext(32, 0), "AllocateContext")
	must(t, l.FirstNetBuffer().Retreat(200, 0), "Retreat")
	l.Next = nil
	must(t, p.Free(l), "Free")
	if o.count(99) != 1 {
		t.Fatalf("Free called the Originator %d times, want 1", o.count(99))
	}

	l2, err := p.Allocate(64, 20)
	must(t, err, "Allocate")
	if l2 != l {
		t.Fatal("a one-NBL pool handed out another descriptor")
	}
	if l2.Next != nil || l2.Status != nbl.StatusSuccess || l2.NblFlags != 0 || l2.Info != (nbl.Info{}) ||
		l2.Scratch != nil || l2.SourceHandle != nil || l2.Completion.Context != nil || l2.Completion.Owner != nil ||
		l2.Tag.Handle != 0 || l2.Tag.Context != nil || l2.Tag.HistoryLen != 0 || l2.Tag.Hops != 0 ||
		l2.Originator != nil || l2.OriginatorContext != 0 {
		t.Fatalf("reallocated NBL kept state: %+v", l2)
	}
	nb := l2.FirstNetBuffer()
	if nb.ChecksumBias != 0 || nb.MdlChain().Next() != nil || nb.DataOffset() != 64 || nb.DataLength() != 20 {
		t.Fatal("reallocated NetBuffer kept state")
	}
	if nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l2) != 0 {
		t.Fatal("reallocated NBL kept its context")
	}
	must(t, p.Free(l2), "Free")
	checkFull(t, p)
}

func TestAllocateBurst(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 40, Headroom: 96})
	c := newCache(t, p, 256)
	out := make([]*nbl.NetBufferList, 32)
	if n := c.AllocateBurst(out, 60); n != 32 {
		t.Fatalf("AllocateBurst(32) = %d", n)
	}
	seen := map[*nbl.NetBufferList]bool{}
	for _, l := range out {
		if seen[l] {
			t.Fatal("AllocateBurst handed out a descriptor twice")
		}
		seen[l] = true
		nb := l.FirstNetBuffer()
		if nb.DataOffset() != 96 || nb.DataLength() != 60 || l.NetBufferCount() != 1 {
			t.Fatalf("DataOffset %d DataLength %d", nb.DataOffset(), nb.DataLength())
		}
		checkNB(t, nb, "burst")
	}
	// Only 8 are left: the next burst returns 8, the one after 0; neither blocks.
	out2 := make([]*nbl.NetBufferList, 32)
	if n := c.AllocateBurst(out2, 60); n != 8 {
		t.Fatalf("AllocateBurst on a pool with 8 left = %d, want 8", n)
	}
	for _, l := range out2[:8] {
		if seen[l] {
			t.Fatal("a descriptor was handed out twice")
		}
	}
	if n := c.AllocateBurst(make([]*nbl.NetBufferList, 4), 60); n != 0 {
		t.Fatalf("AllocateBurst on an empty pool = %d", n)
	}
	if _, err := c.Allocate(0, 0); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("Allocate on an empty pool: %v, want ErrResources", err)
	}
	if n, err := c.FreeBurst(out2[:8]); n != 8 || err != nil {
		t.Fatalf("FreeBurst = %d, %v", n, err)
	}
	if n, err := c.FreeBurst(out); n != 32 || err != nil {
		t.Fatalf("FreeBurst = %d, %v", n, err)
	}
	// Data that does not fit behind the headroom gives nothing.
	if n := c.AllocateBurst(out, 2048-96+1); n != 0 {
		t.Fatalf("AllocateBurst of oversize data = %d", n)
	}
	if n := c.AllocateBurst(out, -1); n != 0 {
		t.Fatalf("AllocateBurst of negative data = %d", n)
	}
	if n := c.AllocateBurst(out[:0], 10); n != 0 {
		t.Fatalf("AllocateBurst of nothing = %d", n)
	}
	// Bursts bigger than the cache go to the pool.
	c.Flush()
	small := newCache(t, p, 4)
	if n := small.AllocateBurst(out, 10); n != 32 {
		t.Fatalf("AllocateBurst through a 4-slot cache = %d", n)
	}
	if n, err := small.FreeBurst(out); n != 32 || err != nil {
		t.Fatalf("FreeBurst = %d, %v", n, err)
	}
	// FreeBurst stops at the first NBL it refuses.
	if n := c.AllocateBurst(out[:3], 10); n != 3 {
		t.Fatal("AllocateBurst(3)")
	}
	bad := []*nbl.NetBufferList{out[0], nil, out[1]}
	if n, err := c.FreeBurst(bad); n != 1 || !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeBurst with a nil = %d, %v; want 1 and ErrInvalidParameter", n, err)
	}
	if out[1].FirstNetBuffer().DataLength() != 10 {
		t.Fatal("FreeBurst touched the NBLs after the refused one")
	}
	if n, err := c.FreeBurst(out[1:3]); n != 2 || err != nil {
		t.Fatalf("FreeBurst = %d, %v", n, err)
	}
	checkFull(t, p, c, small)
}

func TestAllocateAround(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	buf := pattern(0, 100)
	for _, tc := range []struct {
		buf    []byte
		off, n int
		ok     bool
	}{
		{buf, 10, 50, true}, {buf, 0, 100, true}, {buf, 100, 0, true}, {nil, 0, 0, true}, {buf[:0], 0, 0, true},
		{buf, 0, 101, false}, {buf, 60, 41, false}, {nil, 0, 1, false}, {nil, 1, 0, false}, {buf, -1, 1, false}, {buf, 1, -1, false},
	} {
		l, err := c.AllocateAround(tc.buf, tc.off, tc.n)
		if !tc.ok {
			if l != nil || !errors.Is(err, nbl.ErrInvalidParameter) {
				t.Fatalf("AllocateAround(len %d, %d, %d) = %v, want ErrInvalidParameter", len(tc.buf), tc.off, tc.n, err)
			}
			continue
		}
		must(t, err, "AllocateAround")
		nb := l.FirstNetBuffer()
		if nb.DataOffset() != tc.off || nb.DataLength() != tc.n || nb.ChainLength() != len(tc.buf) {
			t.Fatalf("DataOffset %d DataLength %d ChainLength %d", nb.DataOffset(), nb.DataLength(), nb.ChainLength())
		}
		checkNB(t, nb, "AllocateAround")
		data, ok := nb.Data()
		if !ok || !bytes.Equal(data, tc.buf[tc.off:tc.off+tc.n]) {
			t.Fatal("Data() does not show the lent memory")
		}
		if tc.n > 0 && &data[0] != &tc.buf[tc.off] {
			t.Fatal("Data() does not alias the lent memory")
		}
		if tc.buf == nil && nb.MdlChain() != nil {
			t.Fatal("AllocateAround(nil) must have no MDL")
		}
		must(t, c.Free(l), "Free")
	}
	if !bytes.Equal(buf, pattern(0, 100)) {
		t.Fatal("the lent memory changed")
	}
	checkFull(t, p, c)
}

func TestAllocateCopy(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, FrameSize: 512, Headroom: 64})
	c := newCache(t, p, 2)
	frame := udpFrame(t, []byte("hello"))
	l, err := c.AllocateCopy(frame)
	must(t, err, "AllocateCopy")
	nb := l.FirstNetBuffer()
	if nb.DataOffset() != 64 || !bytes.Equal(dataOf(nb), frame) {
		t.Fatal("AllocateCopy did not copy the frame behind the headroom")
	}
	frame[0] ^= 0xFF
	if dataOf(nb)[0] == frame[0] {
		t.Fatal("AllocateCopy aliases its argument")
	}
	if _, err := c.AllocateCopy(make([]byte, 512-64+1)); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("oversize AllocateCopy: %v", err)
	}
	l2, err := c.AllocateCopy(make([]byte, 512-64))
	must(t, err, "AllocateCopy of a full frame")
	if _, err := c.AllocateCopy(nil); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("AllocateCopy on an empty pool: %v", err)
	}
	must(t, c.Free(l), "Free")
	must(t, c.Free(l2), "Free")
	checkFull(t, p, c)
}

// TestExhaustion: every allocation function returns ErrResources at once
// when the pool is empty; nothing blocks, and freeing makes room again.
func TestExhaustion(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	var ls []*nbl.NetBufferList
	for range 4 {
		ls = append(ls, mustAllocate(t, c, 0, 0))
	}
	chain, free := userChain(t, p, make([]byte, 4))
	for name, f := range map[string]func() (*nbl.NetBufferList, error){
		"Cache.Allocate":       func() (*nbl.NetBufferList, error) { return c.Allocate(0, 10) },
		"Pool.Allocate":        func() (*nbl.NetBufferList, error) { return p.Allocate(0, 10) },
		"Cache.AllocateAround": func() (*nbl.NetBufferList, error) { return c.AllocateAround(make([]byte, 4), 0, 4) },
		"Pool.AllocateAround":  func() (*nbl.NetBufferList, error) { return p.AllocateAround(make([]byte, 4), 0, 4) },
		"AllocateCopy":         func() (*nbl.NetBufferList, error) { return c.AllocateCopy([]byte{1}) },
		"Cache.Clone":          func() (*nbl.NetBufferList, error) { return c.Clone(ls[0]) },
		"Pool.Clone":           func() (*nbl.NetBufferList, error) { return p.Clone(ls[0]) },
		"AllocateNetBufferAndNetBufferList": func() (*nbl.NetBufferList, error) {
			return c.AllocateNetBufferAndNetBufferList(0, 0, chain, 0, 4)
		},
	} {
		l, err := f()
		if l != nil || !errors.Is(err, nbl.ErrResources) || nbl.StatusOf(err) != nbl.StatusResources {
			t.Fatalf("%s on an empty pool: %v, want NDIS_STATUS_RESOURCES", name, err)
		}
	}
	if ls[0].ChildRefCount() != 0 {
		t.Fatal("a failed Clone counted a child")
	}
	must(t, c.Free(ls[3]), "Free")
	l, err := p.Allocate(0, 0) // the freed one sits in the cache, not the shared ring
	if err == nil {
		t.Fatal("Pool.Allocate found a descriptor parked in a cache")
	}
	c.Flush()
	l, err = p.Allocate(0, 0)
	must(t, err, "Pool.Allocate after Flush")
	ls[3] = l
	for _, l := range ls {
		must(t, c.Free(l), "Free")
	}
	free()
	checkFull(t, p, c)
}

func TestNoFramesPool(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, NoFrames: true})
	c := newCache(t, p, 2)
	if p.Frames() != nil {
		t.Fatal("NoFrames pool has a slab")
	}
	if _, err := c.Allocate(0, 0); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("Allocate on a NoFrames pool: %v", err)
	}
	if _, err := p.Allocate(0, 0); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("Pool.Allocate on a NoFrames pool: %v", err)
	}
	if _, err := c.AllocateCopy([]byte{1}); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("AllocateCopy on a NoFrames pool: %v", err)
	}
	if n := c.AllocateBurst(make([]*nbl.NetBufferList, 2), 0); n != 0 {
		t.Fatalf("AllocateBurst on a NoFrames pool = %d", n)
	}
	ring := pattern(0, 64)
	l, err := c.AllocateAround(ring, 8, 40)
	must(t, err, "AllocateAround")
	cl := mustClone(t, c, l)
	if !bytes.Equal(dataOf(cl.FirstNetBuffer()), ring[8:48]) {
		t.Fatal("clone of lent memory shows other bytes")
	}
	must(t, c.FreeClone(cl), "FreeClone")
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestChainNextAndLen(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8})
	c := newCache(t, p, 4)
	var ls []*nbl.NetBufferList
	for i := range 5 {
		l := mustAllocate(t, c, 0, i)
		if i > 0 {
			ls[i-1].Next = l
		}
		ls = append(ls, l)
	}
	head := ls[0]
	for _, tc := range []struct {
		limit, n int
		ok       bool
	}{{10, 5, true}, {5, 5, true}, {4, 4, false}, {0, 0, false}, {1, 1, false}} {
		if n, ok := head.Len(tc.limit); n != tc.n || ok != tc.ok {
			t.Fatalf("Len(%d) = %d, %v; want %d, %v", tc.limit, n, ok, tc.n, tc.ok)
		}
	}
	var nilList *nbl.NetBufferList
	if n, ok := nilList.Len(3); n != 0 || !ok {
		t.Fatalf("nil.Len = %d, %v", n, ok)
	}
	i := 0
	for l := head; l != nil; l = nbl.NET_BUFFER_LIST_NEXT_NBL(l) {
		if l != ls[i] || l.FirstNetBuffer().DataLength() != i {
			t.Fatal("chain order broken")
		}
		i++
	}
	// A cycle is cut off at the limit.
	ls[4].Next = ls[2]
	if n, ok := head.Len(100); n != 100 || ok {
		t.Fatalf("Len on a cycle = %d, %v; want 100, false", n, ok)
	}
	ls[4].Next = nil
	// Freeing the head frees only the head.
	must(t, c.Free(head), "Free")
	if ls[1].FirstNetBuffer().DataLength() != 1 || ls[1].Next != ls[2] {
		t.Fatal("freeing the head touched the rest of the chain")
	}
	for _, l := range ls[1:] {
		must(t, c.Free(l), "Free")
	}
	checkFull(t, p, c)
}

func TestMultiNetBuffer(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, ExtraNetBuffers: 3, ExtraMdls: 6})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 20)
	bufs := [][]byte{pattern(10, 30), pattern(50, 40), pattern(90, 50)}
	for i, b := range bufs {
		nb, err := c.AppendNetBuffer(l, b, i, 20+i)
		must(t, err, "AppendNetBuffer")
		if nb.NetBufferList() != l || nb.DataOffset() != i || nb.DataLength() != 20+i || nb.Next != nil {
			t.Fatal("appended NetBuffer has the wrong layout")
		}
		checkNB(t, nb, "appended")
		if !bytes.Equal(dataOf(nb), b[i:i+20+i]) {
			t.Fatal("appended NetBuffer shows the wrong bytes")
		}
	}
	if l.NetBufferCount() != 4 {
		t.Fatalf("NetBufferCount = %d, want 4", l.NetBufferCount())
	}
	nb := nbl.NET_BUFFER_LIST_FIRST_NB(l)
	for i := 0; i < 3; i++ {
		nb = nbl.NET_BUFFER_NEXT_NB(nb)
		if nb.DataLength() != 20+i {
			t.Fatal("NetBuffers out of order")
		}
	}
	if nbs, mdls := p.ExtraInUse(); nbs != 3 || mdls != 3 {
		t.Fatalf("ExtraInUse = %d, %d; want 3, 3", nbs, mdls)
	}
	// Out of extra NetBuffers: ErrResources and nothing taken.
	if _, err := c.AppendNetBuffer(l, make([]byte, 4), 0, 4); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("AppendNetBuffer with no NetBuffer left: %v", err)
	}
	if l.NetBufferCount() != 4 {
		t.Fatal("a failed AppendNetBuffer changed the list")
	}
	// Bad arguments.
	for name, f := range map[string]func() error{
		"nil NBL":      func() error { _, err := c.AppendNetBuffer(nil, make([]byte, 4), 0, 4); return err },
		"out of range": func() error { _, err := c.AppendNetBuffer(l, make([]byte, 4), 1, 4); return err },
		"negative":     func() error { _, err := c.AppendNetBuffer(l, make([]byte, 4), -1, 4); return err },
	} {
		if err := f(); !errors.Is(err, nbl.ErrInvalidParameter) {
			t.Fatalf("AppendNetBuffer %s: %v", name, err)
		}
	}

	// NBL-wide retreat and advance reach every NetBuffer.
	must(t, l.RetreatDataStart(4, 0), "RetreatDataStart")
	for nb := l.FirstNetBuffer(); nb != nil; nb = nb.Next {
		checkNB(t, nb, "after RetreatDataStart")
	}
	if l.FirstNetBuffer().DataLength() != 24 || l.FirstNetBuffer().Next.DataLength() != 24 {
		t.Fatal("RetreatDataStart missed a NetBuffer")
	}
	if _, mdls := p.ExtraInUse(); mdls != 6 { // the three appended NetBuffers had too little backfill
		t.Fatalf("extra MDLs in use: %d, want 6", mdls)
	}
	if err := l.RetreatDataStart(200, 0); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("RetreatDataStart with no MDL left = %v", err)
	}
	must(t, c.Free(l), "Free")
	if nbs, mdls := p.ExtraInUse(); nbs != 0 || mdls != 0 {
		t.Fatalf("Free left %d extra NetBuffers and %d MDLs in use", nbs, mdls)
	}
	for i, b := range bufs {
		if !bytes.Equal(b, pattern(byte(10+40*i), len(b))) {
			t.Fatal("Free or the retreat wrote into lent memory outside the data")
		}
	}
	checkFull(t, p, c)
}

// TestMultiNetBufferMdlShortage: AppendNetBuffer gives its NetBuffer back
// when no MDL is left.
func TestMultiNetBufferMdlShortage(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, ExtraNetBuffers: 4, ExtraMdls: 1})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 0, 10)
	_, free := userChain(t, p, make([]byte, 1)) // the only MDL
	if _, err := c.AppendNetBuffer(l, make([]byte, 4), 0, 4); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("AppendNetBuffer with no MDL left: %v", err)
	}
	if nbs, _ := p.ExtraInUse(); nbs != 0 {
		t.Fatalf("failed AppendNetBuffer kept %d NetBuffers", nbs)
	}
	free()
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

// TestRetreatDataStartRollback: when one NetBuffer cannot retreat, those
// already retreated are put back exactly.
func TestRetreatDataStartRollback(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, ExtraNetBuffers: 4, ExtraMdls: 8, HeaderBufferSize: 64})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 10)                        // retreats in place
	_, err := c.AppendNetBuffer(l, make([]byte, 20), 0, 20) // prepends
	must(t, err, "AppendNetBuffer")
	_, err = c.AppendNetBuffer(l, make([]byte, 20), 2, 10) // prepends
	must(t, err, "AppendNetBuffer")
	var before []nbState
	for nb := l.FirstNetBuffer(); nb != nil; nb = nb.Next {
		before = append(before, stateOf(nb))
	}
	nbs0, mdls0 := p.ExtraInUse()
	check := func(what string) {
		t.Helper()
		i := 0
		for nb := l.FirstNetBuffer(); nb != nil; nb = nb.Next {
			if !stateOf(nb).equal(before[i]) {
				t.Fatalf("%s: NetBuffer %d changed", what, i)
			}
			i++
		}
		if nbs, mdls := p.ExtraInUse(); nbs != nbs0 || mdls != mdls0 {
			t.Fatalf("%s: extras in use %d/%d, want %d/%d", what, nbs, mdls, nbs0, mdls0)
		}
	}
	// 30+40 > 64 for the NetBuffers that must prepend.
	if err := l.RetreatDataStart(30, 40); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("RetreatDataStart = %v, want ErrResources", err)
	}
	check("failed RetreatDataStart")
	if s := nbl.NdisRetreatNetBufferListDataStart(l, 30, 40, 0, 0); s != nbl.StatusResources {
		t.Fatalf("NdisRetreatNetBufferListDataStart = %v", s)
	}
	check("failed NdisRetreatNetBufferListDataStart")
	if s := nbl.NdisRetreatNetBufferListDataStart(l, 3, 0, 1, 0); s != nbl.StatusInvalidParameter {
		t.Fatalf("NdisRetreatNetBufferListDataStart with a handler = %v", s)
	}
	check("refused NdisRetreatNetBufferListDataStart")
	// AdvanceDataStart checks every NetBuffer before changing any.
	if err := l.AdvanceDataStart(11, false); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("AdvanceDataStart beyond one NetBuffer's data = %v", err)
	}
	check("failed AdvanceDataStart")
	if s := nbl.NdisAdvanceNetBufferListDataStart(l, 11, false, 0); s != nbl.StatusInvalidParameter {
		t.Fatalf("NdisAdvanceNetBufferListDataStart = %v", s)
	}
	check("failed NdisAdvanceNetBufferListDataStart")
	// A retreat that works, undone.
	if s := nbl.NdisRetreatNetBufferListDataStart(l, 30, 8, 0, 0); s != nbl.StatusSuccess {
		t.Fatalf("NdisRetreatNetBufferListDataStart = %v", s)
	}
	if s := nbl.NdisAdvanceNetBufferListDataStart(l, 30, true, 0); s != nbl.StatusSuccess {
		t.Fatalf("NdisAdvanceNetBufferListDataStart = %v", s)
	}
	check("retreat then advance")
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestRetreatAdvanceInvalid(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 10)
	nb := l.FirstNetBuffer()
	before := stateOf(nb)
	for name, err := range map[string]error{
		"Retreat(-1)":        nb.Retreat(-1, 0),
		"Retreat(1, -1)":     nb.Retreat(1, -1),
		"Advance(-1)":        nb.Advance(-1, false),
		"Advance(11)":        nb.Advance(11, false),
		"Advance(11, true)":  nb.Advance(11, true),
		"Retreat(2^32-1)":    nb.Retreat(1<<32-1, 0),
		"AdvanceDataStart":   l.AdvanceDataStart(-1, false),
		"RetreatDataStart -": l.RetreatDataStart(-1, 0),
	} {
		if !errors.Is(err, nbl.ErrInvalidParameter) {
			t.Fatalf("%s = %v, want ErrInvalidParameter", name, err)
		}
	}
	if !stateOf(nb).equal(before) {
		t.Fatal("a refused call changed the NetBuffer")
	}
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestCloneMultiNetBufferAndMdl(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, ExtraNetBuffers: 4, ExtraMdls: 16})
	c := newCache(t, p, 4)
	chain, free := userChain(t, p, pattern(0, 10), pattern(10, 10), pattern(20, 10))
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 5, 22)
	must(t, err, "AllocateNetBufferAndNetBufferList")
	_, err = c.AppendNetBuffer(l, pattern(100, 30), 3, 20)
	must(t, err, "AppendNetBuffer")
	_, mdls0 := p.ExtraInUse()

	cl := mustClone(t, c, l)
	if cl.NetBufferCount() != 2 {
		t.Fatalf("clone has %d NetBuffers, want 2", cl.NetBufferCount())
	}
	onb, cnb := l.FirstNetBuffer(), cl.FirstNetBuffer()
	for ; onb != nil; onb, cnb = onb.Next, cnb.Next {
		if cnb.DataLength() != onb.DataLength() || cnb.DataOffset() != 0 || cnb.NetBufferList() != cl {
			t.Fatal("clone NetBuffer layout")
		}
		if !bytes.Equal(dataOf(cnb), dataOf(onb)) {
			t.Fatal("clone shows other bytes")
		}
		checkNB(t, cnb, "clone")
	}
	// The first clone NetBuffer spans three MDLs (two from the pool), the
	// second one MDL from the pool; plus one extra NetBuffer.
	if nbs, mdls := p.ExtraInUse(); nbs != 2 || mdls != mdls0+3 {
		t.Fatalf("ExtraInUse after Clone = %d, %d; want 2, %d", nbs, mdls, mdls0+3)
	}
	// A clone of the clone.
	cl2 := mustClone(t, c, cl)
	if cl2.Parent() != cl || cl.ChildRefCount() != 1 || l.ChildRefCount() != 1 {
		t.Fatal("clone of a clone: parent links or counts wrong")
	}
	cl2.FirstNetBuffer().CopyIn(4, []byte{0xEE})
	if dataOf(l.FirstNetBuffer())[4] != 0xEE {
		t.Fatal("a write through the grandchild is not visible in the original")
	}
	// A retreat on a clone prepends an MDL, which FreeClone returns.
	must(t, cl2.FirstNetBuffer().Retreat(14, 0), "Retreat on a clone")
	if dataOf(l.FirstNetBuffer())[0] != 5 {
		t.Fatal("a retreat on a clone wrote into the original")
	}
	must(t, c.FreeClone(cl2), "FreeClone")
	must(t, c.FreeClone(cl), "FreeClone")
	if nbs, mdls := p.ExtraInUse(); nbs != 1 || mdls != mdls0 {
		t.Fatalf("ExtraInUse after FreeClone = %d, %d; want 1, %d", nbs, mdls, mdls0)
	}
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}

// TestCloneResources: Clone fails with ErrResources, and changes nothing,
// when the extra NetBuffers or MDLs it needs are gone.
func TestCloneResources(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8, ExtraNetBuffers: 1, ExtraMdls: 3})
	c := newCache(t, p, 4)
	chain, free := userChain(t, p, pattern(0, 10), pattern(10, 10)) // 2 of the 3 MDLs
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 5, 10)
	must(t, err, "AllocateNetBufferAndNetBufferList")
	_, err = c.AppendNetBuffer(l, make([]byte, 8), 0, 8) // the last MDL and the only NetBuffer
	must(t, err, "AppendNetBuffer")
	inUse := p.InUse()
	if _, err := c.Clone(l); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("Clone with no MDL left: %v", err)
	}
	if l.ChildRefCount() != 0 {
		t.Fatal("a failed Clone counted a child")
	}
	if nbs, mdls := p.ExtraInUse(); nbs != 1 || mdls != 3 {
		t.Fatalf("a failed Clone kept extras: %d, %d", nbs, mdls)
	}
	c.Flush()
	if p.InUse() > inUse {
		t.Fatal("a failed Clone kept a descriptor")
	}
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}

// TestCloneTree: the original is released only after every descendant is
// freed, and exactly once.
func TestCloneTree(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 16})
	c := newCache(t, p, 4)
	o := newCountingOriginator()
	orig := mustAllocate(t, c, 128, 64)
	orig.Originator, orig.OriginatorContext = o, 1
	a := mustClone(t, c, orig)
	b := mustClone(t, c, orig)
	a1 := mustClone(t, c, a)
	a2 := mustClone(t, c, a)
	a11 := mustClone(t, c, a1)
	if orig.ChildRefCount() != 2 || a.ChildRefCount() != 2 || a1.ChildRefCount() != 1 || a11.ChildRefCount() != 0 {
		t.Fatal("ChildRefCounts wrong")
	}
	if a11.Parent() != a1 || a1.Parent() != a || a.Parent() != orig || b.Parent() != orig {
		t.Fatal("Parent links wrong")
	}
	a1.Originator, a1.OriginatorContext = o, 2 // a clone may have an Originator too
	c.Release(orig)
	for _, step := range []struct {
		clone *nbl.NetBufferList
		name  string
	}{{a2, "a2"}, {b, "b"}, {a11, "a11"}, {a1, "a1"}} {
		must(t, c.FreeClone(step.clone), "FreeClone "+step.name)
		if o.count(1) != 0 {
			t.Fatalf("orig released after freeing %s, with descendants alive", step.name)
		}
	}
	if o.count(2) != 1 {
		t.Fatalf("FreeClone told the clone's Originator %d times, want 1", o.count(2))
	}
	if a.ChildRefCount() != 0 || orig.ChildRefCount() != 1 {
		t.Fatal("ChildRefCounts wrong")
	}
	must(t, c.FreeClone(a), "FreeClone a")
	if o.count(1) != 1 {
		t.Fatalf("orig released %d times, want 1", o.count(1))
	}
	checkFull(t, p, c)
}

// TestFreeWrongKind: FreeClone refuses an NBL that is not a clone, Free
// refuses a clone, and both refuse nil and foreign NBLs; nothing changes.
func TestFreeWrongKind(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	other := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	orig := mustAllocate(t, c, 128, 10)
	clone := mustClone(t, c, orig)
	foreign, err := other.Allocate(0, 10)
	must(t, err, "Allocate")
	foreignClone, err := other.Clone(foreign)
	must(t, err, "Clone")
	for name, err := range map[string]error{
		"FreeClone(orig)":          c.FreeClone(orig),
		"Pool.FreeClone(orig)":     p.FreeClone(orig),
		"Free(clone)":              c.Free(clone),
		"Pool.Free(clone)":         p.Free(clone),
		"Free(nil)":                c.Free(nil),
		"FreeClone(nil)":           c.FreeClone(nil),
		"Free(foreign)":            c.Free(foreign),
		"FreeClone(foreign clone)": c.FreeClone(foreignClone),
	} {
		if !errors.Is(err, nbl.ErrInvalidParameter) || nbl.StatusOf(err) != nbl.StatusInvalidParameter {
			t.Fatalf("%s = %v, want STATUS_INVALID_PARAMETER", name, err)
		}
	}
	if _, err := c.Clone(nil); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("Clone(nil) = %v", err)
	}
	if n, err := c.FreeBurst([]*nbl.NetBufferList{clone}); n != 0 || !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeBurst of a clone = %d, %v", n, err)
	}
	if orig.ChildRefCount() != 1 || clone.Parent() != orig || clone.FirstNetBuffer().DataLength() != 10 {
		t.Fatal("a refused free changed something")
	}
	must(t, c.FreeClone(clone), "FreeClone")
	must(t, c.Free(orig), "Free")
	must(t, other.FreeClone(foreignClone), "FreeClone")
	must(t, other.Free(foreign), "Free")
	checkFull(t, p, c)
	checkFull(t, other)
}

func TestReleaseAndReferences(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8})
	c := newCache(t, p, 4)
	o := newCountingOriginator()
	alloc := func(id uint64) *nbl.NetBufferList {
		l := mustAllocate(t, c, 0, 10)
		l.Originator, l.OriginatorContext = o, id
		return l
	}

	// No holds: the NBL leaves at once.
	l := alloc(1)
	c.Release(l)
	if o.count(1) != 1 {
		t.Fatalf("Release without holds returned it %d times", o.count(1))
	}

	// Two references: deferred until the second Dereference.
	l = alloc(2)
	l.Reference()
	l.Reference()
	if l.RefCount() != 2 {
		t.Fatalf("RefCount %d", l.RefCount())
	}
	c.Release(l)
	l.Dereference()
	if o.count(2) != 0 {
		t.Fatal("released with a reference left")
	}
	l.Dereference()
	if o.count(2) != 1 {
		t.Fatalf("returned %d times", o.count(2))
	}

	// References dropped before the owner releases: Release finishes it.
	l = alloc(3)
	l.Reference()
	l.Dereference()
	if o.count(3) != 0 {
		t.Fatal("Dereference released an NBL its owner still holds")
	}
	c.Release(l)
	if o.count(3) != 1 {
		t.Fatalf("returned %d times", o.count(3))
	}

	// ReleaseBurst, with and without an Originator.
	ls := []*nbl.NetBufferList{alloc(4), alloc(5), mustAllocate(t, c, 0, 0)}
	ls[1].Reference()
	c.ReleaseBurst(ls)
	if o.count(4) != 1 || o.count(5) != 0 {
		t.Fatal("ReleaseBurst")
	}
	ls[1].Dereference()
	if o.count(5) != 1 {
		t.Fatal("deferred release after ReleaseBurst")
	}

	// Free calls the Originator too.
	l = alloc(6)
	must(t, c.Free(l), "Free")
	if o.count(6) != 1 {
		t.Fatal("Free did not call the Originator")
	}
	checkFull(t, p, c)
	for id := uint64(1); id <= 6; id++ {
		if o.count(id) != 1 {
			t.Fatalf("NBL %d returned %d times", id, o.count(id))
		}
	}
}

// TestConcurrentFreeClone frees many clones of one parent from several
// goroutines, each with its own cache, while the owner releases the parent
// and reference holders dereference it: the parent is returned exactly once
// per round. Run with -race.
func TestConcurrentFreeClone(t *testing.T) {
	const workers, clones, refs = 4, 48, 4
	rounds := 200
	if testing.Short() || raceEnabled {
		rounds = 40
	}
	p := newPool(t, nbl.Config{NBLs: clones + 8})
	owner := newCache(t, p, 16)
	caches := make([]*nbl.Cache, workers)
	for i := range caches {
		caches[i] = newCache(t, p, 16)
	}
	o := newCountingOriginator()
	for round := range rounds {
		id := uint64(round + 1)
		parent := mustAllocate(t, owner, 128, 64)
		parent.Originator, parent.OriginatorContext = o, id
		parent.FirstNetBuffer().CopyIn(0, pattern(byte(round), 64))
		cl := make([]*nbl.NetBufferList, clones)
		for i := range cl {
			cl[i] = mustClone(t, owner, parent)
		}
		for range refs {
			parent.Reference()
		}
		var wg sync.WaitGroup
		var bad atomic.Int32
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				<-start
				for i := w; i < clones; i += workers {
					if dataOf(cl[i].FirstNetBuffer())[0] != byte(round) {
						bad.Add(1)
					}
					if err := caches[w].FreeClone(cl[i]); err != nil {
						bad.Add(1)
					}
				}
				if w < refs {
					parent.Dereference()
				}
			}(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			owner.Release(parent)
		}()
		close(start)
		wg.Wait()
		for _, wc := range caches {
			wc.Flush()
		}
		if bad.Load() != 0 {
			t.Fatalf("round %d: %d clone checks or FreeClones failed", round, bad.Load())
		}
		if n := o.count(id); n != 1 {
			t.Fatalf("round %d: parent returned %d times, want 1", round, n)
		}
	}
	checkFull(t, p, append(caches, owner)...)
}

func TestContext(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, ContextSize: 64})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 0, 0)
	if nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 0 || len(nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l)) != 0 {
		t.Fatal("fresh context not empty")
	}
	must(t, l.AllocateContext(16, 0), "AllocateContext")
	d := nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l)
	if len(d) != 16 || nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 16 || !bytes.Equal(d, make([]byte, 16)) {
		t.Fatal("AllocateContext(16): wrong size or not zeroed")
	}
	copy(d, pattern(1, 16))
	// Freed and allocated again, the bytes are zeroed again.
	must(t, l.FreeContext(16), "FreeContext")
	must(t, l.AllocateContext(16, 0), "AllocateContext")
	if d := nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l); !bytes.Equal(d, make([]byte, 16)) {
		t.Fatalf("AllocateContext returned stale bytes %x", d)
	}
	copy(d, pattern(1, 16))
	must(t, l.AllocateContext(32, 16), "AllocateContext(32, 16)")
	d = nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l)
	if len(d) != 48 || !bytes.Equal(d[32:], pattern(1, 16)) || !bytes.Equal(d[:32], make([]byte, 32)) {
		t.Fatal("AllocateContext must add zeroed bytes in front of the data in use")
	}
	if err := l.AllocateContext(16, 16); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("AllocateContext beyond the area = %v", err)
	}
	for _, args := range [][2]int{{8, 0}, {16, 8}, {-16, 0}, {0, -16}} {
		if err := l.AllocateContext(args[0], args[1]); !errors.Is(err, nbl.ErrInvalidParameter) {
			t.Fatalf("AllocateContext(%d, %d) = %v", args[0], args[1], err)
		}
	}
	if s := nbl.NdisAllocateNetBufferListContext(l, 16, 0, 0); s != nbl.StatusSuccess {
		t.Fatalf("NdisAllocateNetBufferListContext = %v", s)
	}
	if s := nbl.NdisAllocateNetBufferListContext(l, 16, 0, 0); s != nbl.StatusResources {
		t.Fatalf("NdisAllocateNetBufferListContext on a full area = %v", s)
	}
	if s := nbl.NdisAllocateNetBufferListContext(nil, 16, 0, 0); s != nbl.StatusInvalidParameter {
		t.Fatalf("NdisAllocateNetBufferListContext(nil) = %v", s)
	}
	if nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 64 {
		t.Fatal("context size")
	}
	if s := nbl.NdisFreeNetBufferListContext(l, 16); s != nbl.StatusSuccess {
		t.Fatalf("NdisFreeNetBufferListContext = %v", s)
	}
	must(t, l.FreeContext(32), "FreeContext")
	if d := nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l); !bytes.Equal(d, pattern(1, 16)) {
		t.Fatal("FreeContext freed the wrong end")
	}
	if err := l.FreeContext(32); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeContext beyond the data in use = %v", err)
	}
	if s := nbl.NdisFreeNetBufferListContext(l, 17); s != nbl.StatusInvalidParameter {
		t.Fatalf("NdisFreeNetBufferListContext(17) = %v", s)
	}
	if s := nbl.NdisFreeNetBufferListContext(nil, 0); s != nbl.StatusInvalidParameter {
		t.Fatalf("NdisFreeNetBufferListContext(nil) = %v", s)
	}
	must(t, l.FreeContext(16), "FreeContext")
	if nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 0 {
		t.Fatal("context not empty")
	}
	if ctx := l.Context(); ctx.Size != 64 || ctx.Offset != 64 || len(ctx.Data()) != 0 {
		t.Fatalf("Context() = %+v", *ctx)
	}
	// A clone has no context.
	cl := mustClone(t, c, l)
	if err := cl.AllocateContext(16, 0); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("AllocateContext on a clone = %v", err)
	}
	if err := cl.FreeContext(0); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeContext on a clone = %v", err)
	}
	must(t, c.FreeClone(cl), "FreeClone")
	// Each descriptor's area is its own.
	l2 := mustAllocate(t, c, 0, 0)
	must(t, l.AllocateContext(64, 0), "AllocateContext")
	must(t, l2.AllocateContext(64, 0), "AllocateContext")
	copy(nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l), bytes.Repeat([]byte{0xFF}, 64))
	if !bytes.Equal(nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l2), make([]byte, 64)) {
		t.Fatal("context areas overlap")
	}
	must(t, c.Free(l), "Free")
	must(t, c.Free(l2), "Free")
	checkFull(t, p, c)
}

func TestCopyOutCopyInAcrossMdls(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2})
	c := newCache(t, p, 2)
	bufs := [][]byte{make([]byte, 5), make([]byte, 7), make([]byte, 11)}
	chain, free := userChain(t, p, bufs...)
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 3, 17) // bytes 3..19 of 23
	must(t, err, "AllocateNetBufferAndNetBufferList")
	nb := l.FirstNetBuffer()
	flat := func() []byte { return append(append(append([]byte{}, bufs[0]...), bufs[1]...), bufs[2]...) }

	if n := nb.CopyIn(0, pattern(1, 17)); n != 17 {
		t.Fatalf("CopyIn = %d", n)
	}
	if got := flat()[3:20]; !bytes.Equal(got, pattern(1, 17)) {
		t.Fatalf("CopyIn wrote %x", got)
	}
	if f := flat(); !bytes.Equal(f[:3], make([]byte, 3)) || !bytes.Equal(f[20:], make([]byte, 3)) {
		t.Fatal("CopyIn wrote outside the data")
	}
	for _, tc := range []struct{ offset, n, want int }{
		{0, 17, 17}, {0, 100, 17}, {1, 3, 3}, {2, 5, 5}, {8, 9, 9}, {16, 4, 1}, {17, 1, 0}, {-1, 1, 0}, {5, 0, 0},
	} {
		dst := make([]byte, tc.n)
		if got := nb.CopyOut(dst, tc.offset); got != tc.want {
			t.Fatalf("CopyOut(%d bytes at %d) = %d, want %d", tc.n, tc.offset, got, tc.want)
		}
		if tc.want > 0 && !bytes.Equal(dst[:tc.want], pattern(1, 17)[tc.offset:tc.offset+tc.want]) {
			t.Fatalf("CopyOut at %d = %x", tc.offset, dst[:tc.want])
		}
		src := pattern(0x80, tc.n)
		if got := nb.CopyIn(tc.offset, src); got != tc.want {
			t.Fatalf("CopyIn(%d bytes at %d) = %d, want %d", tc.n, tc.offset, got, tc.want)
		}
		if tc.want > 0 && !bytes.Equal(flat()[3+tc.offset:3+tc.offset+tc.want], src[:tc.want]) {
			t.Fatal("CopyIn wrote the wrong place")
		}
		nb.CopyIn(0, pattern(1, 17))
	}
	// Not contiguous: Data fails, Bytes copies into the scratch it is given.
	if _, ok := nb.Data(); ok {
		t.Fatal("Data() of a three-MDL NetBuffer succeeded")
	}
	scratch := make([]byte, 0, 64)
	b := nb.Bytes(scratch)
	if !bytes.Equal(b, pattern(1, 17)) || &b[:1][0] != &scratch[:1][0] {
		t.Fatal("Bytes did not copy into the scratch buffer")
	}
	if b := nb.Bytes(nil); !bytes.Equal(b, pattern(1, 17)) {
		t.Fatal("Bytes(nil) of non-contiguous data")
	}
	if b := nb.Bytes(make([]byte, 4)); !bytes.Equal(b, pattern(1, 17)) {
		t.Fatal("Bytes with a short scratch")
	}
	// Advance into the last MDL: contiguous again, and Bytes aliases it.
	must(t, nb.Advance(10, false), "Advance")
	d, ok := nb.Data()
	if !ok || !bytes.Equal(d, pattern(11, 7)) || &d[0] != &bufs[2][1] {
		t.Fatal("Data() after advancing into the last MDL")
	}
	if b := nb.Bytes(scratch); &b[0] != &bufs[2][1] {
		t.Fatal("Bytes of contiguous data must alias the packet memory")
	}
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}

func TestNdisGetDataBuffer(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2})
	c := newCache(t, p, 2)
	bufs := [][]byte{pattern(0, 8), pattern(8, 8)}
	chain, free := userChain(t, p, bufs...)
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 2, 12)
	must(t, err, "AllocateNetBufferAndNetBufferList")
	nb := l.FirstNetBuffer()

	// Inside the first MDL: the packet memory itself, storage untouched.
	storage := make([]byte, 16)
	got := nbl.NdisGetDataBuffer(nb, 6, storage, 1, 0)
	if !bytes.Equal(got, pattern(2, 6)) || &got[0] != &bufs[0][2] {
		t.Fatal("contiguous NdisGetDataBuffer must alias the packet")
	}
	if got := nbl.NdisGetDataBuffer(nb, 6, nil, 1, 0); got == nil || &got[0] != &bufs[0][2] {
		t.Fatal("contiguous NdisGetDataBuffer needs no storage")
	}
	// Across the boundary: a copy in storage, or nil without storage.
	got = nbl.NdisGetDataBuffer(nb, 10, storage, 1, 0)
	if !bytes.Equal(got, pattern(2, 10)) || &got[0] != &storage[0] {
		t.Fatal("non-contiguous NdisGetDataBuffer must copy into storage")
	}
	if got := nbl.NdisGetDataBuffer(nb, 10, nil, 1, 0); got != nil {
		t.Fatal("non-contiguous NdisGetDataBuffer without storage must return nil")
	}
	if got := nbl.NdisGetDataBuffer(nb, 10, make([]byte, 9), 1, 0); got != nil {
		t.Fatal("NdisGetDataBuffer with short storage must return nil")
	}
	if got := nbl.NdisGetDataBuffer(nb, 13, storage, 1, 0); got != nil {
		t.Fatal("NdisGetDataBuffer beyond DataLength must return nil")
	}
	if got := nbl.NdisGetDataBuffer(nil, 1, storage, 1, 0); got != nil {
		t.Fatal("NdisGetDataBuffer(nil) must return nil")
	}
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}

func TestNdisWrappers(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, HeaderBufferSize: 64})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 16, 40)
	nb := l.FirstNetBuffer()
	l.Status = nbl.StatusPending
	if nbl.NET_BUFFER_LIST_STATUS(l) != nbl.StatusPending || nbl.NET_BUFFER_LIST_NEXT_NBL(l) != nil {
		t.Fatal("NBL accessors")
	}
	if nbl.NET_BUFFER_DATA_LENGTH(nb) != 40 || nbl.NET_BUFFER_DATA_OFFSET(nb) != 16 || nbl.NET_BUFFER_CURRENT_MDL_OFFSET(nb) != 16 ||
		nbl.NET_BUFFER_CURRENT_MDL(nb) != nb.CurrentMdl() || nbl.NET_BUFFER_FIRST_MDL(nb) != nb.MdlChain() || nbl.NET_BUFFER_NEXT_NB(nb) != nil ||
		nbl.NDIS_MDL_LINKAGE(nb.MdlChain()) != nil {
		t.Fatal("NET_BUFFER accessors")
	}
	va, n := nbl.NdisQueryMdl(nb.MdlChain())
	if int(n) != nb.MdlChain().ByteCount() || len(va) != int(n) || &va[0] != &nb.MdlChain().Bytes()[0] {
		t.Fatal("NdisQueryMdl")
	}

	before := stateOf(nb)
	for name, s := range map[string]nbl.Status{
		"retreat with a handler":    nbl.NdisRetreatNetBufferDataStart(nb, 4, 0, 1),
		"retreat of nil":            nbl.NdisRetreatNetBufferDataStart(nil, 4, 0, 0),
		"advance with a handler":    nbl.NdisAdvanceNetBufferDataStart(nb, 4, false, 1),
		"advance of nil":            nbl.NdisAdvanceNetBufferDataStart(nil, 4, false, 0),
		"advance beyond DataLength": nbl.NdisAdvanceNetBufferDataStart(nb, 41, true, 0),
		"retreat overflowing":       nbl.NdisRetreatNetBufferDataStart(nb, 0xFFFFFFFF, 0, 0),
		"list retreat of nil":       nbl.NdisRetreatNetBufferListDataStart(nil, 1, 0, 0, 0),
		"list retreat, free hdlr":   nbl.NdisRetreatNetBufferListDataStart(l, 1, 0, 0, 1),
		"list advance of nil":       nbl.NdisAdvanceNetBufferListDataStart(nil, 1, false, 0),
		"list advance with handler": nbl.NdisAdvanceNetBufferListDataStart(l, 1, false, 1),
		"adjust of nil":             nbl.NdisAdjustNetBufferCurrentMdl(nil),
	} {
		if s != nbl.StatusInvalidParameter {
			t.Fatalf("%s = %v, want STATUS_INVALID_PARAMETER", name, s)
		}
	}
	if !stateOf(nb).equal(before) {
		t.Fatal("a refused NDIS call changed the NetBuffer")
	}
	if s := nbl.NdisRetreatNetBufferDataStart(nb, 16, 0, 0); s != nbl.StatusSuccess {
		t.Fatalf("retreat in the backfill = %v", s)
	}
	if s := nbl.NdisRetreatNetBufferDataStart(nb, 60, 10, 0); s != nbl.StatusResources {
		t.Fatalf("retreat beyond HeaderBufferSize = %v", s)
	}
	if s := nbl.NdisRetreatNetBufferDataStart(nb, 50, 14, 0); s != nbl.StatusSuccess {
		t.Fatalf("retreat with a new MDL = %v", s)
	}
	if s := nbl.NdisAdvanceNetBufferDataStart(nb, 66, true, 0); s != nbl.StatusSuccess {
		t.Fatalf("advance = %v", s)
	}
	if !stateOf(nb).equal(before) {
		t.Fatal("NDIS retreat+advance did not restore the NetBuffer")
	}
	if s := nbl.NdisAdvanceNetBufferDataStart(nb, 40, false, 0); s != nbl.StatusSuccess || nb.DataLength() != 0 {
		t.Fatalf("advance of all the data = %v", s)
	}
	if s := nbl.NdisAdjustNetBufferCurrentMdl(nb); s != nbl.StatusSuccess {
		t.Fatal("NdisAdjustNetBufferCurrentMdl")
	}
	checkNB(t, nb, "after NDIS calls")
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		s     nbl.Status
		text  string
		ntOK  bool
		value uint32
	}{
		{nbl.StatusSuccess, "STATUS_SUCCESS (0x00000000)", true, 0},
		{nbl.StatusPending, "STATUS_PENDING (0x00000103)", true, 0x103},
		{nbl.StatusResources, "NDIS_STATUS_RESOURCES (0xC000009A)", false, 0xC000009A},
		{nbl.StatusInvalidParameter, "STATUS_INVALID_PARAMETER (0xC000000D)", false, 0xC000000D},
		{nbl.StatusFailure, "NDIS_STATUS_FAILURE (0xC0000001)", false, 0xC0000001},
		{nbl.StatusBufferOverflow, "NDIS_STATUS_BUFFER_OVERFLOW (0x80000005)", false, 0x80000005},
		{nbl.StatusInvalidBufferSize, "STATUS_INVALID_BUFFER_SIZE (0xC0000206)", false, 0xC0000206},
		{nbl.Status(0x12345678), "status 0x12345678", true, 0x12345678},
		{nbl.Status(0xC0FFEE00), "status 0xC0FFEE00", false, 0xC0FFEE00},
	} {
		if uint32(tc.s) != tc.value {
			t.Fatalf("%v has value %#x, want %#x", tc.s, uint32(tc.s), tc.value)
		}
		if tc.s.Error() != tc.text || tc.s.String() != tc.text {
			t.Fatalf("Error() = %q, want %q", tc.s.Error(), tc.text)
		}
		if nbl.NT_SUCCESS(tc.s) != tc.ntOK || tc.s.OK() != tc.ntOK {
			t.Fatalf("NT_SUCCESS(%v) = %v, want %v", tc.s, nbl.NT_SUCCESS(tc.s), tc.ntOK)
		}
	}
	if nbl.StatusOf(nil) != nbl.StatusSuccess {
		t.Fatal("StatusOf(nil)")
	}
	if nbl.StatusOf(fmt.Errorf("wrapped: %w", nbl.ErrResources)) != nbl.StatusResources {
		t.Fatal("StatusOf of a wrapped ErrResources")
	}
	if nbl.StatusOf(errors.New("other")) != nbl.StatusFailure {
		t.Fatal("StatusOf of a foreign error")
	}
	if !errors.Is(nbl.ErrResources, nbl.StatusResources) || !errors.Is(nbl.ErrInvalidParameter, nbl.StatusInvalidParameter) ||
		!errors.Is(nbl.ErrBufferTooSmall, nbl.StatusBufferTooSmall) || errors.Is(nbl.ErrResources, nbl.StatusInvalidParameter) {
		t.Fatal("the Err* variables must match their Status")
	}
	if nbl.ErrResources.Error() != "NDIS_STATUS_RESOURCES (0xC000009A)" {
		t.Fatalf("ErrResources.Error() = %q", nbl.ErrResources.Error())
	}
	nbl.RegisterStatusName(nbl.Status(0xC0DE0001), "TEST_STATUS")
	if got := nbl.Status(0xC0DE0001).Error(); got != "TEST_STATUS (0xC0DE0001)" {
		t.Fatalf("registered name: %q", got)
	}
}

func TestIeee8021QTCI(t *testing.T) {
	for _, tc := range []struct {
		q    nbl.Ieee8021QInfo
		want uint16
	}{
		{nbl.Ieee8021QInfo{}, 0},
		{nbl.Ieee8021QInfo{VlanID: 100}, 100},
		{nbl.Ieee8021QInfo{VlanID: 0xFFFF}, 0x0FFF},
		{nbl.Ieee8021QInfo{Priority: 7}, 0xE000},
		{nbl.Ieee8021QInfo{Priority: 0xFF, CFI: true, VlanID: 1}, 0xF001},
		{nbl.Ieee8021QInfo{CFI: true}, 0x1000},
	} {
		if got := tc.q.TCI(); got != tc.want {
			t.Fatalf("TCI(%+v) = %#x, want %#x", tc.q, got, tc.want)
		}
	}
}

func TestDecoder(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	d := nbl.NewDecoder(256)

	udp := udpFrame(t, []byte("hello"))
	l, err := c.AllocateCopy(udp)
	must(t, err, "AllocateCopy")
	must(t, d.Decode(l.FirstNetBuffer()), "Decode UDP")
	if !d.Has(layers.LayerTypeEthernet) || !d.Has(layers.LayerTypeIPv4) || !d.Has(layers.LayerTypeUDP) || d.Has(layers.LayerTypeTCP) {
		t.Fatalf("Decoded = %v", d.Decoded)
	}
	if !d.IPv4.DstIP.Equal(ipB) || d.UDP.SrcPort != 40000 || d.UDP.DstPort != 9999 || string(d.UDP.Payload) != "hello" || d.Truncated {
		t.Fatal("UDP fields")
	}
	// The layers alias the packet: a write through the NBL shows.
	l.FirstNetBuffer().CopyIn(14+20+8, []byte("J"))
	if d.UDP.Payload[0] != 'J' {
		t.Fatal("the decoded payload does not alias the packet")
	}
	must(t, c.Free(l), "Free")

	tcp := tcpFrame(t, []byte("GET /"))
	l, err = c.AllocateCopy(tcp)
	must(t, err, "AllocateCopy")
	must(t, d.Decode(l.FirstNetBuffer()), "Decode TCP")
	if !d.Has(layers.LayerTypeTCP) || d.Has(layers.LayerTypeUDP) || d.TCP.DstPort != 8080 || !d.TCP.ACK || d.TCP.Seq != 1000 {
		t.Fatalf("TCP: Decoded %v", d.Decoded)
	}
	must(t, c.Free(l), "Free")

	// Not contiguous: decoded from the scratch copy.
	chain, free := userChain(t, p, append([]byte{}, udp[:20]...), append([]byte{}, udp[20:]...))
	l, err = c.AllocateNetBufferAndNetBufferList(0, 0, chain, 0, len(udp))
	must(t, err, "AllocateNetBufferAndNetBufferList")
	must(t, d.Decode(l.FirstNetBuffer()), "Decode split UDP")
	if !d.Has(layers.LayerTypeUDP) || string(d.UDP.Payload) != "hello" {
		t.Fatal("split frame decoded wrong")
	}
	// A scratch too small for the frame: decoding stops early.
	small := nbl.NewDecoder(20)
	if err := small.Decode(l.FirstNetBuffer()); err == nil && small.Has(layers.LayerTypeUDP) {
		t.Fatal("a 20-byte scratch decoded the UDP header")
	}
	must(t, c.Free(l), "Free")
	free()

	// Truncated frame: IPv4 header says more than is there.
	l, err = c.AllocateCopy(udp[:30])
	must(t, err, "AllocateCopy")
	_ = d.Decode(l.FirstNetBuffer())
	if d.Has(layers.LayerTypeUDP) {
		t.Fatal("decoded UDP from a truncated frame")
	}
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

// TestDescriptorLayout checks that descriptors sit in one array (Index and
// At rely on it), stay a bounded size, and take whole cache lines: in a
// pool large enough to be page-aligned, no line holds parts of two
// descriptors, which two workers could be using at once.
func TestDescriptorLayout(t *testing.T) {
	var l nbl.NetBufferList
	if unsafe.Sizeof(l) > 1024 || unsafe.Sizeof(l)%64 != 0 {
		t.Fatalf("NetBufferList is %d bytes, want a multiple of 64 up to 1024", unsafe.Sizeof(l))
	}
	p := newPool(t, nbl.Config{NBLs: 3})
	a, b := p.At(0), p.At(1)
	if uintptr(unsafe.Pointer(b))-uintptr(unsafe.Pointer(a)) != unsafe.Sizeof(l) {
		t.Fatal("descriptors are not laid out in one array")
	}
	checkFull(t, p)
	big := newPool(t, nbl.Config{NBLs: 4096, NoFrames: true})
	if addr := uintptr(unsafe.Pointer(big.At(0))); addr%64 != 0 {
		t.Fatalf("the descriptors of a pool of 4096 start at %#x, not on a cache line", addr)
	}
}

// TestCrossPoolClone clones an NBL of pool a into pool b (FWPS cloning
// takes the clone's pools as parameters). When FreeClone through b drops
// the last hold on the released parent, the parent must go back to a.
func TestCrossPoolClone(t *testing.T) {
	for _, front := range []string{"pool", "cache"} {
		t.Run(front, func(t *testing.T) {
			a := newPool(t, nbl.Config{NBLs: 4})
			b := newPool(t, nbl.Config{NBLs: 5})
			ca, cb := newCache(t, a, 2), newCache(t, b, 2)
			o := newCountingOriginator()
			orig := mustAllocate(t, ca, 128, 60)
			orig.Originator, orig.OriginatorContext = o, 1
			orig.FirstNetBuffer().CopyIn(0, pattern(0, 60))
			var cl *nbl.NetBufferList
			var err error
			if front == "pool" {
				cl, err = b.Clone(orig)
			} else {
				cl, err = cb.Clone(orig)
			}
			must(t, err, "Clone into another pool")
			if cl.Pool() != b || !b.Owns(cl) || cl.Parent() != orig || orig.ChildRefCount() != 1 {
				t.Fatal("the clone must come from pool b and count as orig's child")
			}
			if !bytes.Equal(dataOf(cl.FirstNetBuffer()), pattern(0, 60)) {
				t.Fatal("cross-pool clone shows other bytes")
			}
			// b refuses to Free or FreeClone what is not its own.
			if err := cb.Free(orig); !errors.Is(err, nbl.ErrInvalidParameter) {
				t.Fatalf("b.Free(a's NBL) = %v", err)
			}
			if err := ca.FreeClone(cl); !errors.Is(err, nbl.ErrInvalidParameter) {
				t.Fatalf("a.FreeClone(b's clone) = %v", err)
			}
			ca.Release(orig) // deferred: the clone holds it
			if o.count(1) != 0 {
				t.Fatal("released while its clone lives")
			}
			if front == "pool" {
				must(t, b.FreeClone(cl), "FreeClone")
			} else {
				must(t, cb.FreeClone(cl), "FreeClone")
			}
			if o.count(1) != 1 {
				t.Fatalf("orig returned %d times, want 1", o.count(1))
			}
			checkFull(t, a, ca)
			checkFull(t, b, cb)
			if b.InUse() != 0 || a.InUse() != 0 {
				t.Fatalf("InUse a %d b %d", a.InUse(), b.InUse())
			}
			// Every descriptor b hands out is b's own.
			var ls []*nbl.NetBufferList
			for range b.Cap() {
				l, err := b.Allocate(0, 0)
				must(t, err, "Allocate")
				if !b.Owns(l) {
					t.Fatal("pool b handed out a descriptor it does not own")
				}
				ls = append(ls, l)
			}
			for _, l := range ls {
				must(t, b.Free(l), "Free")
			}
			checkFull(t, b)
		})
	}
}

// TestReleaseThroughForeignCache: releasing an NBL through a cache of
// another pool returns it to its own pool.
func TestReleaseThroughForeignCache(t *testing.T) {
	a := newPool(t, nbl.Config{NBLs: 4})
	b := newPool(t, nbl.Config{NBLs: 5})
	cb := newCache(t, b, 2)
	o := newCountingOriginator()
	l, err := a.Allocate(0, 10)
	must(t, err, "Allocate")
	l.Originator, l.OriginatorContext = o, 1
	cb.Release(l)
	if o.count(1) != 1 {
		t.Fatal("not returned")
	}
	checkFull(t, a)
	checkFull(t, b, cb)
	if b.InUse() != 0 {
		t.Fatalf("pool b InUse %d: it took pool a's descriptor", b.InUse())
	}
	// Deferred release through a foreign cache, finished by Dereference.
	l, err = a.Allocate(0, 10)
	must(t, err, "Allocate")
	l.Originator, l.OriginatorContext = o, 2
	l.Reference()
	cb.Release(l)
	l.Dereference()
	if o.count(2) != 1 {
		t.Fatal("not returned")
	}
	checkFull(t, a)
	checkFull(t, b, cb)
}

// TestPoolFrontFunctions covers the Pool forms that go through the shared
// ring: Release and AllocateNetBufferAndNetBufferList.
func TestPoolFrontFunctions(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2})
	o := newCountingOriginator()
	l, err := p.Allocate(0, 10)
	must(t, err, "Allocate")
	l.Originator, l.OriginatorContext = o, 1
	l.Reference()
	p.Release(l)
	if o.count(1) != 0 {
		t.Fatal("Pool.Release did not defer while referenced")
	}
	l.Dereference()
	if o.count(1) != 1 {
		t.Fatal("not returned after Dereference")
	}
	chain, free := userChain(t, p, make([]byte, 10))
	l, err = p.AllocateNetBufferAndNetBufferList(16, 16, chain, 2, 8)
	must(t, err, "Pool.AllocateNetBufferAndNetBufferList")
	if l.FirstNetBuffer().DataOffset() != 2 || nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l) != 16 {
		t.Fatal("Pool.AllocateNetBufferAndNetBufferList layout")
	}
	if _, err := p.AllocateNetBufferAndNetBufferList(0, 0, nil, 1, 0); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("Pool.AllocateNetBufferAndNetBufferList(nil chain, offset 1) = %v", err)
	}
	p.Release(l)
	free()
	checkFull(t, p)
}

func TestSetDataLength(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, FrameSize: 256, Headroom: 64})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 64, 0)
	nb := l.FirstNetBuffer()
	for _, tc := range []struct {
		n  int
		ok bool
	}{{100, true}, {192, true}, {0, true}, {193, false}, {-1, false}} {
		before := stateOf(nb)
		err := nb.SetDataLength(tc.n)
		if tc.ok {
			must(t, err, "SetDataLength")
			if nb.DataLength() != tc.n || nb.DataOffset() != 64 {
				t.Fatalf("SetDataLength(%d): DataLength %d DataOffset %d", tc.n, nb.DataLength(), nb.DataOffset())
			}
			checkNB(t, nb, "after SetDataLength")
		} else {
			if !errors.Is(err, nbl.ErrInvalidParameter) {
				t.Fatalf("SetDataLength(%d) = %v, want ErrInvalidParameter", tc.n, err)
			}
			if !stateOf(nb).equal(before) {
				t.Fatal("a refused SetDataLength changed the NetBuffer")
			}
		}
	}
	// Over a prepended MDL and a multi-MDL chain, the limit is the chain.
	must(t, nb.Retreat(100, 0), "Retreat")
	if err := nb.SetDataLength(nb.ChainLength() - nb.DataOffset()); err != nil {
		t.Fatalf("SetDataLength to the end of the chain: %v", err)
	}
	if err := nb.SetDataLength(nb.ChainLength() - nb.DataOffset() + 1); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("SetDataLength past the chain: %v", err)
	}
	checkNB(t, nb, "after SetDataLength")
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestUserMdl(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, ExtraMdls: 2})
	other := newPool(t, nbl.Config{NBLs: 2})
	buf := pattern(0, 10)
	m, err := p.AllocateMdl(buf)
	must(t, err, "AllocateMdl")
	if m.ByteCount() != 10 || &m.Bytes()[0] != &buf[0] || m.Next() != nil {
		t.Fatal("AllocateMdl must describe the buffer")
	}
	m2, err := p.AllocateMdl(nil)
	must(t, err, "AllocateMdl(nil)")
	if m2.ByteCount() != 0 {
		t.Fatal("empty MDL")
	}
	if _, err := p.AllocateMdl(buf); !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("AllocateMdl with none left = %v", err)
	}
	must(t, m.SetNext(m2), "SetNext")
	if m.Next() != m2 || nbl.NDIS_MDL_LINKAGE(m) != m2 {
		t.Fatal("SetNext did not link")
	}
	l, err := p.Allocate(0, 10)
	must(t, err, "Allocate")
	if err := l.FirstNetBuffer().MdlChain().SetNext(m); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("SetNext on an NBL's own MDL = %v", err)
	}
	if err := p.FreeMdl(l.FirstNetBuffer().MdlChain()); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeMdl of an NBL's own MDL = %v", err)
	}
	if err := other.FreeMdl(m); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeMdl through another pool = %v", err)
	}
	if err := p.FreeMdl(nil); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("FreeMdl(nil) = %v", err)
	}
	must(t, p.Free(l), "Free")
	// An NBL over the chain leaves the caller's MDLs alone when freed.
	l, err = p.AllocateNetBufferAndNetBufferList(0, 0, m, 2, 8)
	must(t, err, "AllocateNetBufferAndNetBufferList")
	must(t, p.Free(l), "Free")
	if m.Next() != m2 || m.ByteCount() != 10 {
		t.Fatal("Free touched the caller's MDLs")
	}
	if _, mdls := p.ExtraInUse(); mdls != 2 {
		t.Fatalf("caller MDLs in use %d, want 2", mdls)
	}
	must(t, p.FreeMdl(m), "FreeMdl")
	must(t, p.FreeMdl(m2), "FreeMdl")
	if err := p.FreeMdl(m); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("second FreeMdl = %v", err)
	}
	checkFull(t, p)
	must(t, p.Close(), "Close")
	must(t, p.Close(), "second Close")
}
