package nbl_test

// Conformance cases 40-52 of /work/shared/spec/wfp-semantics.md, as far as
// they concern package nbl. Each case has one test named after it.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// Case 42: a clone's Parent is the original, the original's ChildRefCount
// goes up by one, the clone has no context, the bytes are shared both ways,
// and FreeClone brings ChildRefCount back down.
func TestCase42_CloneSharesDataAndCountsChild(t *testing.T) {
	for _, front := range []string{"cache", "pool"} {
		t.Run(front, func(t *testing.T) {
			p := newPool(t, nbl.Config{NBLs: 16})
			c := newCache(t, p, 8)
			orig := mustAllocate(t, c, 128, 64)
			onb := orig.FirstNetBuffer()
			onb.CopyIn(0, pattern(1, 64))
			orig.SetFlag(nbl.NBL_FLAGS_IS_IPV4)
			orig.Info.Hash = 0x1234
			orig.SourceHandle = "port0"
			if orig.ChildRefCount() != 0 {
				t.Fatalf("fresh NBL ChildRefCount = %d, want 0", orig.ChildRefCount())
			}

			var clone *nbl.NetBufferList
			var err error
			if front == "pool" {
				clone, err = p.Clone(orig)
			} else {
				clone, err = c.Clone(orig)
			}
			must(t, err, "Clone")
			if clone == orig {
				t.Fatal("Clone returned the original")
			}
			if clone.Parent() != orig {
				t.Fatalf("clone.Parent() = %p, want orig %p", clone.Parent(), orig)
			}
			if !clone.IsClone() || orig.IsClone() {
				t.Fatalf("IsClone: clone %v, orig %v", clone.IsClone(), orig.IsClone())
			}
			if got := orig.ChildRefCount(); got != 1 {
				t.Fatalf("orig.ChildRefCount() = %d after Clone, want 1", got)
			}
			if clone.Context() != nil || nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(clone) != nil || nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(clone) != 0 {
				t.Fatal("the clone has a context; a clone gets none")
			}
			if orig.Context() == nil {
				t.Fatal("the original lost its context")
			}
			if clone.NblFlags != orig.NblFlags || clone.Info != orig.Info || clone.SourceHandle != orig.SourceHandle {
				t.Fatal("Clone did not copy NblFlags, Info and SourceHandle")
			}
			cnb := clone.FirstNetBuffer()
			if cnb.DataLength() != 64 || cnb.DataOffset() != 0 {
				t.Fatalf("clone DataOffset %d DataLength %d, want 0 and 64", cnb.DataOffset(), cnb.DataLength())
			}
			checkNB(t, cnb, "clone")
			if !bytes.Equal(dataOf(cnb), pattern(1, 64)) {
				t.Fatal("the clone does not see the original's bytes")
			}

			// A write through the clone is visible in the original, and the
			// other way round.
			if n := cnb.CopyIn(10, []byte{0xAA, 0xBB, 0xCC}); n != 3 {
				t.Fatalf("CopyIn through the clone wrote %d bytes", n)
			}
			if got := dataOf(onb)[10:13]; !bytes.Equal(got, []byte{0xAA, 0xBB, 0xCC}) {
				t.Fatalf("orig sees %x after a write through the clone, want aabbcc", got)
			}
			onb.CopyIn(63, []byte{0x5A})
			if got := dataOf(cnb)[63]; got != 0x5A {
				t.Fatalf("clone sees %#x after a write through orig, want 0x5a", got)
			}

			if front == "pool" {
				err = p.FreeClone(clone)
			} else {
				err = c.FreeClone(clone)
			}
			must(t, err, "FreeClone")
			if got := orig.ChildRefCount(); got != 0 {
				t.Fatalf("orig.ChildRefCount() = %d after FreeClone, want 0", got)
			}
			must(t, c.Free(orig), "Free")
			checkFull(t, p, c)
		})
	}
}

// Case 45: a clone taken after the original was retreated by N covers the N
// header bytes, and advancing the original afterwards changes neither the
// clone's DataLength nor its bytes.
func TestCase45_CloneAfterRetreatIncludesHeader(t *testing.T) {
	const n = 14
	for _, tc := range []struct {
		name       string
		dataOffset int // the original's backfill: >= n retreats in place, < n prepends an MDL
	}{
		{"in backfill", 128},
		{"exact backfill", n},
		{"prepended MDL", 4},
		{"no backfill", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, nbl.Config{NBLs: 16})
			c := newCache(t, p, 8)
			orig := mustAllocate(t, c, tc.dataOffset, 50)
			onb := orig.FirstNetBuffer()
			onb.CopyIn(0, pattern(100, 50))

			must(t, onb.Retreat(n, 0), "Retreat")
			hdr := pattern(200, n)
			onb.CopyIn(0, hdr)
			lenAtClone := onb.DataLength()
			want := append(append([]byte{}, hdr...), pattern(100, 50)...)

			clone := mustClone(t, c, orig)
			cnb := clone.FirstNetBuffer()
			if cnb.DataLength() != lenAtClone || cnb.DataLength() != 50+n {
				t.Fatalf("clone DataLength = %d, want orig's %d at clone time", cnb.DataLength(), lenAtClone)
			}
			if got := dataOf(cnb); !bytes.Equal(got, want) {
				t.Fatalf("clone bytes\n got %x\nwant %x", got, want)
			}

			must(t, onb.Advance(n, false), "Advance")
			if onb.DataLength() != 50 {
				t.Fatalf("orig DataLength %d after Advance, want 50", onb.DataLength())
			}
			if cnb.DataLength() != 50+n {
				t.Fatalf("clone DataLength changed to %d when orig advanced", cnb.DataLength())
			}
			if got := dataOf(cnb); !bytes.Equal(got, want) {
				t.Fatalf("clone bytes changed when orig advanced\n got %x\nwant %x", got, want)
			}
			checkNB(t, onb, "orig")
			checkNB(t, cnb, "clone")

			must(t, c.FreeClone(clone), "FreeClone")
			must(t, c.Free(orig), "Free")
			checkFull(t, p, c)
		})
	}
}

// Case 46: a retreat that fits the backfill moves DataOffset and DataLength
// and leaves the MDL chain alone.
func TestCase46_RetreatWithinBackfill(t *testing.T) {
	for _, d := range []int{0, 1, 14, 40, 127, 128} {
		for _, ndis := range []bool{false, true} {
			t.Run(fmt.Sprintf("d=%d/ndis=%v", d, ndis), func(t *testing.T) {
				p := newPool(t, nbl.Config{NBLs: 4})
				c := newCache(t, p, 2)
				l := mustAllocate(t, c, 128, 100)
				nb := l.FirstNetBuffer()
				nb.CopyIn(0, pattern(7, 100))
				before := stateOf(nb)
				nbs0, mdls0 := p.ExtraInUse()

				if ndis {
					if s := nbl.NdisRetreatNetBufferDataStart(nb, uint32(d), 0, 0); s != nbl.StatusSuccess {
						t.Fatalf("NdisRetreatNetBufferDataStart = %v, want STATUS_SUCCESS", s)
					}
				} else {
					must(t, nb.Retreat(d, 64), "Retreat")
				}
				if nb.DataOffset() != 128-d || nb.DataLength() != 100+d {
					t.Fatalf("DataOffset %d DataLength %d, want %d and %d", nb.DataOffset(), nb.DataLength(), 128-d, 100+d)
				}
				after := stateOf(nb)
				if len(after.mdls) != len(before.mdls) || after.mdlChain != before.mdlChain || after.mdls[0] != before.mdls[0] {
					t.Fatal("the MDL chain changed")
				}
				if after.currentMdl != before.currentMdl || nb.CurrentMdlOffset() != 128-d {
					t.Fatalf("CurrentMdl changed or CurrentMdlOffset %d != %d", nb.CurrentMdlOffset(), 128-d)
				}
				if nbs, mdls := p.ExtraInUse(); nbs != nbs0 || mdls != mdls0 {
					t.Fatalf("extra NetBuffers/MDLs in use went from %d/%d to %d/%d", nbs0, mdls0, nbs, mdls)
				}
				if got := dataOf(nb)[d:]; !bytes.Equal(got, pattern(7, 100)) {
					t.Fatal("the old data moved")
				}
				checkNB(t, nb, "after Retreat")
				must(t, c.Free(l), "Free")
				checkFull(t, p, c)
			})
		}
	}
}

// Case 47: a retreat beyond the backfill prepends an MDL of at least
// delta+backfill bytes, or fails with NDIS_STATUS_RESOURCES and changes
// nothing.
func TestCase47_RetreatBeyondBackfillPrependsMdl(t *testing.T) {
	t.Run("prepends", func(t *testing.T) {
		for _, tc := range []struct{ dataOffset, d, backfill int }{
			{10, 30, 32}, {0, 1, 0}, {0, 14, 0}, {127, 128, 0}, {10, 30, 226}, {0, 256, 0},
		} {
			t.Run(fmt.Sprintf("%+v", tc), func(t *testing.T) {
				p := newPool(t, nbl.Config{NBLs: 4, HeaderBufferSize: 256})
				c := newCache(t, p, 2)
				l := mustAllocate(t, c, tc.dataOffset, 100)
				nb := l.FirstNetBuffer()
				nb.CopyIn(0, pattern(3, 100))
				oldHead := nb.MdlChain()
				_, mdls0 := p.ExtraInUse()

				if s := nbl.NdisRetreatNetBufferDataStart(nb, uint32(tc.d), uint32(tc.backfill), 0); s != nbl.StatusSuccess {
					t.Fatalf("NdisRetreatNetBufferDataStart = %v, want STATUS_SUCCESS", s)
				}
				head := nb.MdlChain()
				if head == oldHead || head.Next() != oldHead {
					t.Fatal("no new MDL at the head of the chain")
				}
				if head.ByteCount() < tc.d+tc.backfill {
					t.Fatalf("new MDL has %d bytes, want >= %d", head.ByteCount(), tc.d+tc.backfill)
				}
				if nb.DataLength() != 100+tc.d {
					t.Fatalf("DataLength %d, want %d", nb.DataLength(), 100+tc.d)
				}
				if _, mdls := p.ExtraInUse(); mdls != mdls0+1 {
					t.Fatalf("extra MDLs in use %d, want %d", mdls, mdls0+1)
				}
				if nb.DataOffset() < tc.backfill {
					t.Fatalf("DataOffset %d leaves less than the %d bytes of backfill asked for", nb.DataOffset(), tc.backfill)
				}
				checkNB(t, nb, "after Retreat")
				if got := dataOf(nb)[tc.d:]; !bytes.Equal(got, pattern(3, 100)) {
					t.Fatal("the old data is not behind the new header")
				}
				hdr := pattern(0xE0, tc.d)
				if n := nb.CopyIn(0, hdr); n != tc.d {
					t.Fatalf("CopyIn of the header wrote %d bytes", n)
				}
				if got := dataOf(nb); !bytes.Equal(got[:tc.d], hdr) || !bytes.Equal(got[tc.d:], pattern(3, 100)) {
					t.Fatal("writing the header changed the data behind it")
				}
				must(t, c.Free(l), "Free") // the prepended MDL goes back too
				checkFull(t, p, c)
			})
		}
	})

	resources := func(t *testing.T, p *nbl.Pool, c *nbl.Cache, nb *nbl.NetBuffer, d, backfill int) {
		t.Helper()
		before := stateOf(nb)
		data := dataOf(nb)
		nbs0, mdls0 := p.ExtraInUse()
		err := nb.Retreat(d, backfill)
		if !errors.Is(err, nbl.ErrResources) || nbl.StatusOf(err) != nbl.StatusResources {
			t.Fatalf("Retreat(%d, %d) = %v, want NDIS_STATUS_RESOURCES", d, backfill, err)
		}
		if s := nbl.NdisRetreatNetBufferDataStart(nb, uint32(d), uint32(backfill), 0); s != nbl.StatusResources || uint32(s) != 0xC000009A {
			t.Fatalf("NdisRetreatNetBufferDataStart = %v, want NDIS_STATUS_RESOURCES", s)
		}
		if !stateOf(nb).equal(before) || !bytes.Equal(dataOf(nb), data) {
			t.Fatal("a failed Retreat changed the NetBuffer")
		}
		if nbs, mdls := p.ExtraInUse(); nbs != nbs0 || mdls != mdls0 {
			t.Fatal("a failed Retreat took an extra NetBuffer or MDL")
		}
	}

	t.Run("no MDL left", func(t *testing.T) {
		p := newPool(t, nbl.Config{NBLs: 4, ExtraMdls: 2})
		c := newCache(t, p, 2)
		l := mustAllocate(t, c, 10, 100)
		nb := l.FirstNetBuffer()
		_, free := userChain(t, p, make([]byte, 8), make([]byte, 8)) // takes both extra MDLs
		resources(t, p, c, nb, 30, 0)
		resources(t, p, c, nb, 11, 0)
		must(t, nb.Retreat(10, 0), "Retreat within the backfill needs no MDL")
		free()
		must(t, nb.Retreat(30, 0), "Retreat once an MDL is free")
		must(t, c.Free(l), "Free")
		checkFull(t, p, c)
	})

	t.Run("larger than a header buffer", func(t *testing.T) {
		p := newPool(t, nbl.Config{NBLs: 4, HeaderBufferSize: 64})
		c := newCache(t, p, 2)
		l := mustAllocate(t, c, 10, 100)
		nb := l.FirstNetBuffer()
		resources(t, p, c, nb, 30, 35) // 65 > 64
		resources(t, p, c, nb, 65, 0)
		must(t, nb.Retreat(30, 34), "Retreat of exactly HeaderBufferSize")
		must(t, c.Free(l), "Free")
		checkFull(t, p, c)
	})
}

// Case 48: Advance(d, false) moves the offsets only; Retreat(d) followed by
// Advance(d, true) restores the NetBuffer exactly, whether the retreat fit
// the backfill or prepended an MDL, and the MDL goes back to the pool.
func TestCase48_AdvanceAndRestore(t *testing.T) {
	t.Run("advance without free", func(t *testing.T) {
		p := newPool(t, nbl.Config{NBLs: 4})
		c := newCache(t, p, 2)
		l := mustAllocate(t, c, 128, 100)
		nb := l.FirstNetBuffer()
		nb.CopyIn(0, pattern(9, 100))
		head := nb.MdlChain()
		for _, d := range []int{0, 20, 30, 50} {
			off, n := nb.DataOffset(), nb.DataLength()
			must(t, nb.Advance(d, false), "Advance")
			if nb.DataOffset() != off+d || nb.DataLength() != n-d {
				t.Fatalf("Advance(%d): DataOffset %d DataLength %d, want %d and %d", d, nb.DataOffset(), nb.DataLength(), off+d, n-d)
			}
			if nb.MdlChain() != head || head.Next() != nil {
				t.Fatal("Advance changed the MDL chain")
			}
			checkNB(t, nb, "after Advance")
		}
		if nb.DataLength() != 0 {
			t.Fatalf("DataLength %d, want 0", nb.DataLength())
		}
		// Advance(false) over a prepended MDL keeps it in the chain.
		must(t, nb.Retreat(250, 0), "Retreat")
		head = nb.MdlChain()
		_, mdls := p.ExtraInUse()
		must(t, nb.Advance(250, false), "Advance")
		if nb.MdlChain() != head {
			t.Fatal("Advance with freeMdl false dropped the prepended MDL")
		}
		if _, m := p.ExtraInUse(); m != mdls {
			t.Fatal("Advance with freeMdl false freed an MDL")
		}
		checkNB(t, nb, "after Advance over the prepended MDL")
		must(t, c.Free(l), "Free")
		checkFull(t, p, c)
	})

	for _, tc := range []struct {
		name                    string
		dataOffset, d, backfill int
		prepends                bool
	}{
		{"in backfill", 128, 14, 0, false},
		{"all of the backfill", 128, 128, 0, false},
		{"prepend", 10, 30, 16, true},
		{"prepend, no backfill", 0, 14, 0, true},
		{"prepend, big backfill", 100, 120, 100, true},
		{"zero", 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, nbl.Config{NBLs: 4})
			c := newCache(t, p, 2)
			l := mustAllocate(t, c, tc.dataOffset, 100)
			nb := l.FirstNetBuffer()
			nb.CopyIn(0, pattern(5, 100))
			before := stateOf(nb)
			nbs0, mdls0 := p.ExtraInUse()

			must(t, nb.Retreat(tc.d, tc.backfill), "Retreat")
			if _, mdls := p.ExtraInUse(); (mdls == mdls0+1) != tc.prepends {
				t.Fatalf("extra MDLs in use %d -> %d; prepend expected: %v", mdls0, mdls, tc.prepends)
			}
			if (nb.MdlChain() != before.mdlChain) != tc.prepends {
				t.Fatalf("MDL chain head changed: %v, prepend expected: %v", nb.MdlChain() != before.mdlChain, tc.prepends)
			}
			checkNB(t, nb, "after Retreat")
			must(t, nb.Advance(tc.d, true), "Advance")
			if after := stateOf(nb); !after.equal(before) {
				t.Fatalf("Retreat+Advance(true) did not restore the NetBuffer:\nbefore %+v\nafter  %+v", before, after)
			}
			if nbs, mdls := p.ExtraInUse(); nbs != nbs0 || mdls != mdls0 {
				t.Fatalf("extra NetBuffers/MDLs in use %d/%d, want %d/%d: the MDL did not go back", nbs, mdls, nbs0, mdls0)
			}
			if !bytes.Equal(dataOf(nb), pattern(5, 100)) {
				t.Fatal("the data changed")
			}
			must(t, c.Free(l), "Free")
			checkFull(t, p, c)
		})
	}

	t.Run("two retreats, one advance", func(t *testing.T) {
		p := newPool(t, nbl.Config{NBLs: 4})
		c := newCache(t, p, 2)
		l := mustAllocate(t, c, 10, 100)
		nb := l.FirstNetBuffer()
		before := stateOf(nb)
		must(t, nb.Retreat(30, 16), "Retreat (prepends)")
		must(t, nb.Retreat(10, 0), "Retreat (in the new MDL's backfill)")
		must(t, nb.Retreat(40, 8), "Retreat (prepends again)")
		if _, mdls := p.ExtraInUse(); mdls != 2 {
			t.Fatalf("%d extra MDLs in use, want 2", mdls)
		}
		must(t, nb.Advance(80, true), "Advance")
		if !stateOf(nb).equal(before) {
			t.Fatal("not restored")
		}
		must(t, c.Free(l), "Free")
		checkFull(t, p, c)
	})

	t.Run("multi-MDL chain", func(t *testing.T) {
		p := newPool(t, nbl.Config{NBLs: 4})
		c := newCache(t, p, 2)
		chain, free := userChain(t, p, make([]byte, 10), make([]byte, 10), make([]byte, 30))
		for off := 0; off <= 20; off++ {
			for _, d := range []int{0, 1, off, off + 1, off + 25} {
				l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, off, 50-off)
				must(t, err, "AllocateNetBufferAndNetBufferList")
				nb := l.FirstNetBuffer()
				before := stateOf(nb)
				must(t, nb.Retreat(d, 8), "Retreat")
				checkNB(t, nb, "after Retreat")
				must(t, nb.Advance(d, true), "Advance")
				if !stateOf(nb).equal(before) {
					t.Fatalf("off %d d %d: not restored: before %+v after %+v", off, d, before, stateOf(nb))
				}
				must(t, c.Free(l), "Free")
			}
		}
		free()
		checkFull(t, p, c)
	})
}

// Case 49: after every retreat and advance, CurrentMdl and CurrentMdlOffset
// point at byte DataOffset of the chain.
func TestCase49_CurrentMdlConsistent(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, ExtraMdls: 64, HeaderBufferSize: 64})
	c := newCache(t, p, 2)
	sizes := []int{7, 1, 13, 20, 5}
	var bufs [][]byte
	var flat []byte
	for i, n := range sizes {
		b := pattern(byte(40*i), n)
		bufs = append(bufs, b)
		flat = append(flat, b...)
	}
	chain, free := userChain(t, p, bufs...)
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 9, 25)
	must(t, err, "AllocateNetBufferAndNetBufferList")
	nb := l.FirstNetBuffer()
	checkNB(t, nb, "fresh")

	// Walk the data start across every MDL boundary, one byte at a time and
	// back, checking the bytes against the flat view.
	for nb.DataLength() > 0 {
		must(t, nb.Advance(1, false), "Advance")
		checkNB(t, nb, fmt.Sprintf("Advance to %d", nb.DataOffset()))
		if got, want := dataOf(nb), flat[nb.DataOffset():9+25]; !bytes.Equal(got, want) {
			t.Fatalf("DataOffset %d: data %x, want %x", nb.DataOffset(), got, want)
		}
	}
	for nb.DataOffset() > 0 {
		must(t, nb.Retreat(1, 0), "Retreat")
		checkNB(t, nb, fmt.Sprintf("Retreat to %d", nb.DataOffset()))
		if got, want := dataOf(nb), flat[nb.DataOffset():9+25]; !bytes.Equal(got, want) {
			t.Fatalf("DataOffset %d: data %x, want %x", nb.DataOffset(), got, want)
		}
	}

	// Random retreats (some prepending) and advances (some freeing MDLs).
	r := rand.New(rand.NewPCG(49, 49))
	for i := 0; i < 2000; i++ {
		var what string
		switch {
		case r.IntN(2) == 0:
			d, bf := r.IntN(24), r.IntN(3)*8
			err := nb.Retreat(d, bf)
			what = fmt.Sprintf("step %d Retreat(%d, %d) = %v", i, d, bf, err)
			if err != nil && !errors.Is(err, nbl.ErrResources) {
				t.Fatal(what)
			}
		case nb.DataLength() > 0:
			d, freeMdl := r.IntN(nb.DataLength()+1), r.IntN(2) == 0
			must(t, nb.Advance(d, freeMdl), "Advance")
			what = fmt.Sprintf("step %d Advance(%d, %v)", i, d, freeMdl)
		default:
			nb.AdjustCurrentMdl()
			what = "AdjustCurrentMdl"
		}
		checkNB(t, nb, what)
		if nb.DataLength() > 200 {
			must(t, nb.Advance(nb.DataLength()-10, true), "Advance")
			checkNB(t, nb, "trim")
		}
	}
	must(t, c.Free(l), "Free")
	free()
	checkFull(t, p, c)
}

// Case 50: the parameter rules of FwpsAllocateNetBufferAndNetBufferList0.
func TestCase50_AllocateParameterRules(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, ContextSize: 64})
	c := newCache(t, p, 2)
	chain, free := userChain(t, p, make([]byte, 10), make([]byte, 20))
	for _, tc := range []struct {
		name                         string
		contextSize, contextBackFill int
		chain                        *nbl.Mdl
		dataOffset, dataLength       int
		ok                           bool
	}{
		{"nil chain, zero sizes", 0, 0, nil, 0, 0, true},
		{"nil chain with offset", 0, 0, nil, 1, 0, false},
		{"nil chain with length", 0, 0, nil, 0, 1, false},
		{"nil chain with both", 0, 0, nil, 16, 100, false},
		{"contextSize 8", 8, 0, nil, 0, 0, false},
		{"contextSize 24", 24, 0, chain, 0, 10, false},
		{"contextBackFill 8", 16, 8, nil, 0, 0, false},
		{"negative contextSize", -16, 0, nil, 0, 0, false},
		{"negative contextBackFill", 16, -16, nil, 0, 0, false},
		{"context exceeds the pool's", 48, 32, nil, 0, 0, false},
		{"context exactly the pool's", 32, 32, nil, 0, 0, true},
		{"contextSize alone too big", 80, 0, nil, 0, 0, false},
		{"all of the chain", 16, 0, chain, 10, 20, true},
		{"offset at the end", 0, 0, chain, 30, 0, true},
		{"one byte past the chain", 0, 0, chain, 11, 20, false},
		{"length past the chain", 0, 0, chain, 0, 31, false},
		{"offset past the chain", 0, 0, chain, 31, 0, false},
		{"negative offset", 0, 0, chain, -1, 5, false},
		{"negative length", 0, 0, chain, 0, -1, false},
		{"inside the second MDL", 64, 0, chain, 15, 7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := c.AllocateNetBufferAndNetBufferList(tc.contextSize, tc.contextBackFill, tc.chain, tc.dataOffset, tc.dataLength)
			if !tc.ok {
				if err == nil || l != nil {
					t.Fatalf("accepted; want ErrInvalidParameter")
				}
				if !errors.Is(err, nbl.ErrInvalidParameter) || nbl.StatusOf(err) != nbl.StatusInvalidParameter {
					t.Fatalf("error %v is not STATUS_INVALID_PARAMETER", err)
				}
				return
			}
			must(t, err, "AllocateNetBufferAndNetBufferList")
			nb := l.FirstNetBuffer()
			if nb.DataOffset() != tc.dataOffset || nb.DataLength() != tc.dataLength || nb.MdlChain() != tc.chain {
				t.Fatalf("DataOffset %d DataLength %d MdlChain %p", nb.DataOffset(), nb.DataLength(), nb.MdlChain())
			}
			if got := nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l); got != tc.contextSize {
				t.Fatalf("context data size %d, want %d", got, tc.contextSize)
			}
			if len(nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l)) != tc.contextSize {
				t.Fatal("context data start has the wrong length")
			}
			// The context backfill asked for is really free.
			if tc.contextBackFill > 0 {
				must(t, l.AllocateContext(tc.contextBackFill, 0), "AllocateContext in the backfill")
			}
			checkNB(t, nb, "fresh")
			must(t, c.Free(l), "Free")
		})
	}

	// An exhausted pool is NDIS_STATUS_RESOURCES, not a parameter error.
	var held []*nbl.NetBufferList
	for range p.Cap() {
		l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 0, 30)
		must(t, err, "AllocateNetBufferAndNetBufferList")
		held = append(held, l)
	}
	l, err := c.AllocateNetBufferAndNetBufferList(0, 0, chain, 0, 30)
	if l != nil || !errors.Is(err, nbl.ErrResources) || nbl.StatusOf(err) != nbl.StatusResources {
		t.Fatalf("exhausted pool: %v, want NDIS_STATUS_RESOURCES", err)
	}
	// Parameters are checked before resources.
	if _, err := c.AllocateNetBufferAndNetBufferList(8, 0, chain, 0, 30); !errors.Is(err, nbl.ErrInvalidParameter) {
		t.Fatalf("bad parameters on an exhausted pool: %v, want STATUS_INVALID_PARAMETER", err)
	}
	for _, l := range held {
		must(t, c.Free(l), "Free")
	}
	free()
	checkFull(t, p, c)
}

// Case 51: Dereference without a matching Reference is a contract violation
// and panics.
func TestCase51_DereferenceWithoutReferencePanics(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 128, 60)

	expectPanic := func(what string) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s did not panic", what)
			}
		}()
		l.Dereference()
	}
	expectPanic("Dereference of a fresh NBL")
	if l.RefCount() != 0 {
		t.Fatalf("RefCount %d after the refused Dereference, want 0", l.RefCount())
	}

	l.Reference()
	l.Reference()
	l.Dereference()
	l.Dereference()
	expectPanic("a third Dereference after two References")
	if l.RefCount() != 0 {
		t.Fatalf("RefCount %d, want 0", l.RefCount())
	}
	// The failed Dereference left nothing behind: Free works.
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

// Case 52: NdisTestNblFlag is true when any bit of the mask is set,
// NdisTestNblFlags only when all are.
func TestCase52_TestFlagAnyVsAll(t *testing.T) {
	if nbl.NBL_FLAGS_IS_IPV4 != 0x200 || nbl.NBL_FLAGS_IS_TCP != 0x800 {
		t.Fatalf("flag values: IS_IPV4 %#x IS_TCP %#x", nbl.NBL_FLAGS_IS_IPV4, nbl.NBL_FLAGS_IS_TCP)
	}
	p := newPool(t, nbl.Config{NBLs: 4})
	l, err := p.Allocate(0, 0)
	must(t, err, "Allocate")
	const mask = 0x200 | 0x800

	l.SetFlag(0x200)
	if !l.TestFlag(mask) || !nbl.NdisTestNblFlag(l, mask) {
		t.Fatal("TestFlag(0x200|0x800) with 0x200 set = false, want true")
	}
	if l.TestFlags(mask) || nbl.NdisTestNblFlags(l, mask) {
		t.Fatal("TestFlags(0x200|0x800) with only 0x200 set = true, want false")
	}

	nbl.NdisSetNblFlag(l, 0x800)
	if !l.TestFlags(mask) || !nbl.NdisTestNblFlags(l, mask) || !nbl.NdisTestNblFlag(l, mask) {
		t.Fatal("with both bits set, TestFlags and TestFlag must be true")
	}
	if nbl.NET_BUFFER_LIST_FLAGS(l) != mask {
		t.Fatalf("NET_BUFFER_LIST_FLAGS = %#x", nbl.NET_BUFFER_LIST_FLAGS(l))
	}

	nbl.NdisClearNblFlag(l, 0x200)
	l.ClearFlag(0x800)
	if l.TestFlag(mask) || nbl.NdisTestNblFlag(l, mask) || l.TestFlags(mask) {
		t.Fatal("with no bit set, TestFlag and TestFlags must be false")
	}
	// An empty mask: no bit is set (any = false), and all of none are (true).
	if l.TestFlag(0) || !l.TestFlags(0) {
		t.Fatal("empty mask: TestFlag must be false and TestFlags true")
	}
	must(t, p.Free(l), "Free")
	checkFull(t, p)
}

// Case 40, restricted to nbl: the inspect sample's lifecycle. The stack
// indicates orig; the callout references it, retreats to the IP header,
// clones, advances back, and the classify ends (the owner releases orig,
// deferred because it is held). Later the injection completes (FreeClone)
// and the pended-packet record is freed (Dereference), in either order. The
// original is released exactly once, after the last of them, and nothing
// leaks.
func TestCase40_InspectLifecycle(t *testing.T) {
	for _, derefFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("dereference first=%v", derefFirst), func(t *testing.T) {
			p := newPool(t, nbl.Config{NBLs: 8})
			stack := newCache(t, p, 4)  // the indicating path
			worker := newCache(t, p, 4) // the callout's worker
			o := newCountingOriginator()

			orig := mustAllocate(t, stack, 128, 60)
			orig.Originator, orig.OriginatorContext = o, 40
			nb := orig.FirstNetBuffer()
			nb.CopyIn(0, pattern(0, 60))

			// classifyFn
			orig.Reference()
			must(t, nb.Retreat(14, 0), "Retreat to the IP header")
			clone := mustClone(t, worker, orig)
			must(t, nb.Advance(14, false), "Advance back")
			if orig.ChildRefCount() != 1 || orig.RefCount() != 1 {
				t.Fatalf("ChildRefCount %d RefCount %d, want 1 and 1", orig.ChildRefCount(), orig.RefCount())
			}
			stack.Release(orig) // classify returned BLOCK|ABSORB; the path ends
			if n := o.count(40); n != 0 {
				t.Fatalf("orig returned %d times while held", n)
			}

			// Worker: inject the clone; the completion frees it; the record
			// is freed and dereferences orig.
			if clone.FirstNetBuffer().DataLength() != 74 {
				t.Fatalf("clone DataLength %d, want 74", clone.FirstNetBuffer().DataLength())
			}
			if derefFirst {
				orig.Dereference()
				if n := o.count(40); n != 0 {
					t.Fatalf("orig returned %d times while its clone lives", n)
				}
				if orig.RefCount() != 0 || orig.ChildRefCount() != 1 {
					t.Fatalf("RefCount %d ChildRefCount %d, want 0 and 1", orig.RefCount(), orig.ChildRefCount())
				}
				must(t, worker.FreeClone(clone), "FreeClone")
			} else {
				must(t, worker.FreeClone(clone), "FreeClone")
				if n := o.count(40); n != 0 {
					t.Fatalf("orig returned %d times while referenced", n)
				}
				if orig.RefCount() != 1 || orig.ChildRefCount() != 0 {
					t.Fatalf("RefCount %d ChildRefCount %d, want 1 and 0", orig.RefCount(), orig.ChildRefCount())
				}
				orig.Dereference()
			}
			if n := o.count(40); n != 1 {
				t.Fatalf("orig returned %d times, want exactly 1", n)
			}
			if orig.ChildRefCount() != 0 || orig.RefCount() != 0 {
				t.Fatalf("final ChildRefCount %d RefCount %d, want 0 and 0", orig.ChildRefCount(), orig.RefCount())
			}
			checkFull(t, p, stack, worker)
			if n := o.count(40); n != 1 {
				t.Fatalf("orig returned %d times, want exactly 1", n)
			}
		})
	}
}

// Case 41, restricted to nbl: the injection fails, so the caller frees the
// clone at once and then dereferences; the original is released once.
func TestCase41_InjectFailsFreeCloneThenDereference(t *testing.T) {
	for _, releasedEarly := range []bool{true, false} {
		t.Run(fmt.Sprintf("owner released before the failure=%v", releasedEarly), func(t *testing.T) {
			p := newPool(t, nbl.Config{NBLs: 8})
			c := newCache(t, p, 4)
			o := newCountingOriginator()
			orig := mustAllocate(t, c, 128, 60)
			orig.Originator, orig.OriginatorContext = o, 41

			orig.Reference()
			clone := mustClone(t, c, orig)
			if releasedEarly {
				c.Release(orig) // classify returned; the worker's inject fails later
			}
			must(t, c.FreeClone(clone), "FreeClone") // inject failed: no completion
			if n := o.count(41); n != 0 {
				t.Fatalf("orig returned %d times while referenced", n)
			}
			orig.Dereference()
			if releasedEarly {
				if n := o.count(41); n != 1 {
					t.Fatalf("orig returned %d times after the last Dereference, want 1", n)
				}
			} else {
				if n := o.count(41); n != 0 {
					t.Fatalf("orig returned %d times before its owner released it", n)
				}
				c.Release(orig)
			}
			if n := o.count(41); n != 1 {
				t.Fatalf("orig returned %d times, want exactly 1", n)
			}
			checkFull(t, p, c)
		})
	}
}
