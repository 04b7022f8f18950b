package nbl_test

// Regression tests for bugs found while writing the test suite; each failed
// before its fix.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

// noPanic runs f and turns a panic into a test error, so that one bug does
// not hide the others.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// The size checks of Allocate, AllocateAround, AllocateBurst and
// AppendNetBuffer add two ints and compare: a sum that overflows passes, and
// the NetBuffer gets DataOffset/DataLength of uint32(MaxInt) = 0xFFFFFFFF
// over a 2048-byte (or 10-byte) chain, breaking DataOffset+DataLength <=
// ChainLength. (AllocateNetBufferAndNetBufferList does it right with
// uint64.) Bytes() on such an NBL tries to allocate 4 GiB.
func TestRegression_AllocateSizeOverflow(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 8})
	c := newCache(t, p, 4)
	buf := make([]byte, 10)
	check := func(what string, l *nbl.NetBufferList, err error) {
		t.Helper()
		if err == nil {
			nb := l.FirstNetBuffer()
			t.Errorf("%s accepted: DataOffset %d DataLength %d over a %d-byte chain", what, nb.DataOffset(), nb.DataLength(), nb.ChainLength())
			must(t, c.Free(l), "Free")
		} else if !errors.Is(err, nbl.ErrInvalidParameter) {
			t.Errorf("%s: %v, want ErrInvalidParameter", what, err)
		}
	}
	l, err := c.Allocate(math.MaxInt, math.MaxInt)
	check("Allocate(MaxInt, MaxInt)", l, err)
	l, err = c.Allocate(math.MaxInt-10, 100)
	check("Allocate(MaxInt-10, 100)", l, err)
	l, err = c.AllocateAround(buf, math.MaxInt, 2)
	check("AllocateAround(10 bytes, MaxInt, 2)", l, err)

	out := make([]*nbl.NetBufferList, 2)
	if n := c.AllocateBurst(out, math.MaxInt); n != 0 {
		t.Errorf("AllocateBurst(MaxInt) allocated %d NBLs with DataLength %d", n, out[0].FirstNetBuffer().DataLength())
		_, _ = c.FreeBurst(out[:n])
	}

	l = mustAllocate(t, c, 0, 10)
	nb, err := c.AppendNetBuffer(l, buf, math.MaxInt, 2)
	if err == nil {
		t.Errorf("AppendNetBuffer(10 bytes, MaxInt, 2) accepted: DataOffset %d DataLength %d ChainLength %d",
			nb.DataOffset(), nb.DataLength(), nb.ChainLength())
	}
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

// Retreat computes size := delta + backfill in int; a huge backfill wraps it
// negative, the "size > HeaderBufferSize" check passes, an MDL is taken from
// the pool, and slicing the header buffer with the negative size panics
// (slice bounds out of range), leaking the MDL. It should return
// ErrResources (or ErrInvalidParameter) and change nothing. The NDIS form
// takes uint32 and cannot reach it.
func TestRegression_RetreatHugeBackfillPanics(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 0, 10)
	nb := l.FirstNetBuffer()
	before := stateOf(nb)
	noPanic(t, "Retreat(20, MaxInt-5)", func() {
		if err := nb.Retreat(20, math.MaxInt-5); err == nil {
			t.Errorf("Retreat(20, MaxInt-5) succeeded")
		}
	})
	if !stateOf(nb).equal(before) {
		t.Errorf("the refused Retreat changed the NetBuffer")
	}
	if _, mdls := p.ExtraInUse(); mdls != 0 {
		t.Errorf("the refused Retreat leaked %d extra MDLs", mdls)
	}
	must(t, c.Free(l), "Free")
	c.Flush()
	if !p.Full() {
		t.Errorf("pool not full")
	}
}

// Conformance case 45 says advancing the original after cloning does not
// change the clone. When the original's retreat had prepended a header MDL
// and the original then advances with freeMdl=true, the header buffer goes
// back to the pool although the clone's mirror MDL still points into it;
// the next retreat anywhere in the pool gets the same buffer and its writes
// show up in the clone's data. Advance(freeMdl) should not free an MDL
// while the NBL has live clones (or FreeClone should hold it), or the
// package should document the hazard. The same applies to the rollback of a
// failed RetreatDataStart, which advances with freeMdl=true.
func TestRegression_AdvanceFreeMdlUnderLiveClone(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 4, ExtraMdls: 2})
	c := newCache(t, p, 2)
	orig := mustAllocate(t, c, 0, 10) // no backfill: the retreat prepends
	onb := orig.FirstNetBuffer()
	must(t, onb.Retreat(14, 0), "Retreat")
	onb.CopyIn(0, bytes.Repeat([]byte{0xAA}, 14))
	clone := mustClone(t, c, orig) // mirrors the header MDL and the frame: one extra MDL
	want := dataOf(clone.FirstNetBuffer())

	must(t, onb.Advance(14, true), "Advance(14, freeMdl=true)") // must not free the header buffer the clone uses
	other := mustAllocate(t, c, 0, 10)
	// With the buffer kept, the pool has no MDL left for this retreat; had
	// it been freed, the retreat would reuse it and overwrite the clone.
	if err := other.FirstNetBuffer().Retreat(14, 0); err == nil {
		other.FirstNetBuffer().CopyIn(0, bytes.Repeat([]byte{0x55}, 14))
	} else if !errors.Is(err, nbl.ErrResources) {
		t.Fatalf("Retreat of another NBL: %v", err)
	}

	if got := dataOf(clone.FirstNetBuffer()); !bytes.Equal(got, want) {
		t.Errorf("the clone's bytes changed after the original advanced with freeMdl and another NBL retreated:\n got %x\nwant %x", got, want)
	}
	must(t, c.Free(other), "Free")
	must(t, c.FreeClone(clone), "FreeClone")
	must(t, c.Free(orig), "Free")
	checkFull(t, p, c)
}

// The NDIS forms promise status codes without allocation ("Returning a
// Status never allocates"), and ErrResources is preallocated so that an
// exhausted pool costs nothing. But toStatus/StatusOf call errors.As(err,
// &s), which makes s escape: every NDIS_STATUS_RESOURCES from
// NdisRetreatNetBufferDataStart (and every StatusOf of a non-nil error)
// allocates, exactly when the system is under pressure. A type switch on
// Status before errors.As would avoid it.
func TestRegression_NdisStatusOnFailureAllocates(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 2, HeaderBufferSize: 64})
	c := newCache(t, p, 2)
	l := mustAllocate(t, c, 0, 10)
	nb := l.FirstNetBuffer()
	for name, f := range map[string]func(){
		"NdisRetreatNetBufferDataStart -> NDIS_STATUS_RESOURCES": func() {
			if s := nbl.NdisRetreatNetBufferDataStart(nb, 100, 0, 0); s != nbl.StatusResources {
				panic(fmt.Sprint(s))
			}
		},
		"StatusOf(ErrResources)": func() {
			if nbl.StatusOf(nbl.ErrResources) != nbl.StatusResources {
				panic("status")
			}
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
	must(t, c.Free(l), "Free")
	checkFull(t, p, c)
}

// Suspected (depends on the intended contract): AllocateContext zeroes the
// context bytes it hands out, but AllocateNetBufferAndNetBufferList with
// contextSize > 0 hands out the descriptor's context area as the previous
// owner left it, so one owner's per-packet state (a callout's pended-packet
// record, say) shows through to the next. The two ways of getting context
// should agree; zeroing is the safe choice.
func TestRegression_AllocateNetBufferAndNetBufferListStaleContext(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 1, ContextSize: 64})
	l, err := p.Allocate(0, 0)
	must(t, err, "Allocate")
	must(t, l.AllocateContext(64, 0), "AllocateContext")
	copy(nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l), bytes.Repeat([]byte{0xFF}, 64))
	must(t, p.Free(l), "Free")
	l, err = p.AllocateNetBufferAndNetBufferList(64, 0, nil, 0, 0) // the same descriptor
	must(t, err, "AllocateNetBufferAndNetBufferList")
	if got := nbl.NET_BUFFER_LIST_CONTEXT_DATA_START(l); !bytes.Equal(got, make([]byte, 64)) {
		t.Errorf("fresh context holds the previous owner's bytes: %x", got)
	}
	must(t, p.Free(l), "Free")
	checkFull(t, p)
}
