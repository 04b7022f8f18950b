package nbl_test

import (
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// The packet path must not allocate: each hot operation is checked with
// testing.AllocsPerRun.

func allocs(t *testing.T, name string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Fatalf("%s allocates %v times per run, want 0", name, n)
	}
}

func TestAllocateFreeDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 512})
	c := newCache(t, p, 256)
	allocs(t, "Cache.Allocate+Free", func() {
		l, err := c.Allocate(128, 60)
		if err != nil {
			panic(err)
		}
		if err := c.Free(l); err != nil {
			panic(err)
		}
	})
	checkFull(t, p, c)
}

func TestAllocateBurstDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 512})
	c := newCache(t, p, 256)
	out := make([]*nbl.NetBufferList, 32)
	allocs(t, "AllocateBurst(32)+FreeBurst", func() {
		if n := c.AllocateBurst(out, 60); n != 32 {
			panic("short burst")
		}
		if n, err := c.FreeBurst(out); n != 32 || err != nil {
			panic(err)
		}
	})
	checkFull(t, p, c)
}

func TestCloneDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 512})
	c := newCache(t, p, 256)
	orig := mustAllocate(t, c, 128, 60)
	allocs(t, "Clone+FreeClone", func() {
		cl, err := c.Clone(orig)
		if err != nil {
			panic(err)
		}
		if err := c.FreeClone(cl); err != nil {
			panic(err)
		}
	})
	must(t, c.Free(orig), "Free")
	checkFull(t, p, c)
}

func TestRetreatAdvanceDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 60)
	nb := l.FirstNetBuffer()
	allocs(t, "Retreat+Advance within the backfill", func() {
		if err := nb.Retreat(14, 0); err != nil {
			panic(err)
		}
		if err := nb.Advance(14, false); err != nil {
			panic(err)
		}
	})
	// Prepending an MDL and freeing it does not allocate either.
	l2 := mustAllocate(t, c, 0, 60)
	nb2 := l2.FirstNetBuffer()
	allocs(t, "Retreat+Advance with a prepended MDL", func() {
		if err := nb2.Retreat(14, 16); err != nil {
			panic(err)
		}
		if err := nb2.Advance(14, true); err != nil {
			panic(err)
		}
	})
	// Nor do the NDIS forms. (Their NDIS_STATUS_RESOURCES path does:
	// knownbugs_test.go, TestKnownBug_NdisStatusOnFailureAllocates.)
	allocs(t, "NdisRetreatNetBufferDataStart+NdisAdvanceNetBufferDataStart", func() {
		if s := nbl.NdisRetreatNetBufferDataStart(nb, 14, 0, 0); s != nbl.StatusSuccess {
			panic(s)
		}
		if s := nbl.NdisAdvanceNetBufferDataStart(nb, 14, false, 0); s != nbl.StatusSuccess {
			panic(s)
		}
	})
	if nb.DataOffset() != 128 || nb2.DataOffset() != 0 {
		t.Fatal("offsets drifted")
	}
	must(t, c.Free(l), "Free")
	must(t, c.Free(l2), "Free")
	checkFull(t, p, c)
}

func TestReleaseDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 512})
	c := newCache(t, p, 256)
	o := newCountingOriginator()
	allocs(t, "Allocate+Release", func() {
		l, err := c.Allocate(128, 60)
		if err != nil {
			panic(err)
		}
		c.Release(l)
	})
	allocs(t, "Allocate+Reference+Release+Dereference", func() {
		l, err := c.Allocate(128, 60)
		if err != nil {
			panic(err)
		}
		l.Originator = o
		l.Reference()
		c.Release(l)
		l.Dereference()
	})
	checkFull(t, p, c)
}

func TestReferenceDereferenceDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 60)
	allocs(t, "Reference+Dereference", func() {
		l.Reference()
		l.Dereference()
	})
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	d := nbl.NewDecoder(2048)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"Ethernet/IPv4/UDP", udpFrame(t, []byte("payload"))},
		{"Ethernet/IPv4/TCP", tcpFrame(t, []byte("payload"))},
	} {
		l, err := c.AllocateCopy(tc.frame)
		must(t, err, "AllocateCopy")
		nb := l.FirstNetBuffer()
		must(t, d.Decode(nb), "Decode")
		if len(d.Decoded) < 3 {
			t.Fatalf("%s: decoded only %v", tc.name, d.Decoded)
		}
		allocs(t, "Decode "+tc.name, func() {
			if err := d.Decode(nb); err != nil {
				panic(err)
			}
		})
		must(t, c.Free(l), "Free")
	}
	// A frame split over two MDLs is decoded from the scratch buffer,
	// still without allocating.
	frame := udpFrame(t, []byte("payload"))
	chain, free := userChain(t, p, frame[:20], frame[20:])
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 0, len(frame))
	must(t, err, "AllocateNetBufferAndNetBufferList")
	allocs(t, "Decode of a split frame", func() {
		if err := d.Decode(l.FirstNetBuffer()); err != nil {
			panic(err)
		}
	})
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}
