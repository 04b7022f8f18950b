package nbl_test

// A model-checking driver for NBL operations, shared by FuzzNBLOps
// (fuzz_test.go) and TestPropertyRandomOps. It decodes a byte string into a
// sequence of allocate / clone / reference / dereference / retreat / advance
// / copy-in / set-length / release / free / free-clone operations over a small pool, runs
// each on the real package and on a model, and after every operation checks
// that the two agree:
//
//   - every error is the one the model predicts (ErrResources exactly when
//     the pool is out of what the operation needs, ErrInvalidParameter
//     exactly for bad arguments), and a failed operation changes nothing;
//   - for every live NetBuffer, the MDL chain has the modelled segments,
//     DataOffset+DataLength <= ChainLength, and the bytes before CurrentMdl
//     plus CurrentMdlOffset equal DataOffset (conformance case 49);
//   - the data bytes match the model. The model tracks memory cell by cell,
//     and a clone's cells are its parent's, so a write through either must
//     show through both, and a write must show nowhere else;
//   - ChildRefCount, RefCount and Parent match, the pool's extra NetBuffers
//     and MDLs in use match, and the Originator (plain or batch) has been
//     told exactly once about each NBL that left, and never about one still
//     alive; the finisher of an NBL released with ReleaseTo ran exactly once
//     when it left.
//
// The bits above the opcode in an operation's first byte choose the burst
// forms: ReleaseBurst, FreeBurst and DereferenceBurst over several NBLs
// (0x10), ReleaseTo with a finisher (0x20, Release only).
//
// At the end everything is released in a valid order and the pool must be
// full.
//
// The driver stays inside the documented contract, with one deliberate
// limit: it passes freeMdl=true only for NBLs without live clones, because
// freeing a prepended MDL that a clone still mirrors hands memory the clone
// can see to the next retreat (see knownbugs_test.go,
// TestKnownBug_AdvanceFreeMdlUnderLiveClone).

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

const (
	fzNBLs      = 8
	fzExtraNBs  = 6
	fzExtraMdls = 12
	fzHBS       = 64  // HeaderBufferSize
	fzFrame     = 192 // a multiple of 64, so FrameSize is not rounded
	fzHeadroom  = 32
	fzCtx       = 64
	fzMaxOps    = 2000
)

// cell is one byte of packet memory in the model.
type cell struct {
	v     byte
	known bool
}

func newCells(n int, init func(i int) (byte, bool)) []*cell {
	cs := make([]cell, n)
	ps := make([]*cell, n)
	for i := range cs {
		if init != nil {
			cs[i].v, cs[i].known = init(i)
		}
		ps[i] = &cs[i]
	}
	return ps
}

// mseg models one MDL.
type mseg struct {
	cells  []*cell
	header bool // prepended by a retreat: Advance(freeMdl) may free it
	extra  bool // one of the pool's extra MDLs
}

// mnb models one NetBuffer.
type mnb struct {
	segs   []*mseg
	off, n int
	extra  bool // one of the pool's extra NetBuffers
}

func (nb *mnb) chainLen() int {
	t := 0
	for _, s := range nb.segs {
		t += len(s.cells)
	}
	return t
}

// data returns the cells of the data.
func (nb *mnb) data() []*cell {
	var all []*cell
	for _, s := range nb.segs {
		all = append(all, s.cells...)
	}
	return all[nb.off : nb.off+nb.n]
}

// mnbl models one NBL.
type mnbl struct {
	id         uint64
	finisher   bool // released with ReleaseTo
	finished   int  // the finisher's runs when it left
	l          *nbl.NetBufferList
	nbs        []*mnb
	parent     *mnbl
	clone      bool
	children   int
	refs       int
	released   bool       // the owner released it (or freed it)
	gone       bool       // it left: back in the pool
	user       []*nbl.Mdl // caller-owned MDLs to free once it leaves
	originator bool
}

// accessible reports whether someone may still operate on it: its owner,
// or a holder of a reference.
func (m *mnbl) accessible() bool { return !m.gone && (!m.released || m.refs > 0) }

type driver struct {
	tb   testing.TB
	p    *nbl.Pool
	c    *nbl.Cache
	o    *countingOriginator
	bo   *batchCountingOriginator // the same counts, told in runs
	f    *releasingFinisher
	all  []*mnbl // every NBL ever allocated, for the final originator check
	live []*mnbl
	left []*mnbl // NBLs that left since the last check
	id   uint64

	extraNBs, extraMdls int // extras in use according to the model

	src  []byte
	pos  int
	step int
	log  []string
}

func newDriver(tb testing.TB, src []byte) *driver {
	p := newPool(tb, nbl.Config{
		NBLs: fzNBLs, FrameSize: fzFrame, Headroom: fzHeadroom,
		ExtraNetBuffers: fzExtraNBs, ExtraMdls: fzExtraMdls, HeaderBufferSize: fzHBS, ContextSize: fzCtx,
	})
	d := &driver{tb: tb, p: p, c: newCache(tb, p, 4), o: newCountingOriginator(), src: src}
	d.bo = &batchCountingOriginator{countingOriginator: d.o}
	d.f = &releasingFinisher{c: d.c, calls: make(map[*nbl.NetBufferList]int)}
	return d
}

// batchCountingOriginator counts into a countingOriginator, one run at a
// time, and counts the NBLs of a run that it did not originate.
type batchCountingOriginator struct {
	*countingOriginator
	foreign int
}

func (o *batchCountingOriginator) ReturnNetBufferLists(ls []*nbl.NetBufferList) {
	for _, l := range ls {
		if l.Originator != nbl.Originator(o) {
			o.foreign++
		}
		o.ReturnNetBufferList(l)
	}
}

// releasingFinisher counts the NBLs it takes over and releases each at once,
// as a completion would.
type releasingFinisher struct {
	c     *nbl.Cache
	calls map[*nbl.NetBufferList]int
}

func (f *releasingFinisher) FinishNetBufferList(l *nbl.NetBufferList) {
	f.calls[l]++
	f.c.Release(l)
}

// pickN picks up to n distinct NBLs of ms.
func (d *driver) pickN(ms []*mnbl, n int) []*mnbl {
	var out []*mnbl
	for len(ms) > 0 && len(out) < n {
		i := d.b() % len(ms)
		out = append(out, ms[i])
		ms = append(ms[:i:i], ms[i+1:]...)
	}
	return out
}

func nblsOf(ms []*mnbl) []*nbl.NetBufferList {
	ls := make([]*nbl.NetBufferList, len(ms))
	for i, m := range ms {
		ls[i] = m.l
	}
	return ls
}

func (d *driver) more() bool { return d.pos < len(d.src) && d.step < fzMaxOps }

func (d *driver) b() int {
	if d.pos >= len(d.src) {
		return 0
	}
	d.pos++
	return int(d.src[d.pos-1])
}

func (d *driver) logf(format string, args ...any) {
	d.log = append(d.log, fmt.Sprintf("%d: ", d.step)+fmt.Sprintf(format, args...))
}

func (d *driver) fatalf(format string, args ...any) {
	d.tb.Helper()
	from := max(0, len(d.log)-25)
	d.tb.Fatalf("step %d: %s\nlast operations:\n%s", d.step, fmt.Sprintf(format, args...), strings.Join(d.log[from:], "\n"))
}

// run executes the whole byte string, then drains and checks the pool.
func (d *driver) run() {
	d.tb.Helper()
	for d.more() {
		d.op()
		d.check()
		d.step++
	}
	d.drain()
}

func (d *driver) pick(ms []*mnbl) *mnbl {
	if len(ms) == 0 {
		return nil
	}
	return ms[d.b()%len(ms)]
}

func (d *driver) filter(f func(*mnbl) bool) []*mnbl {
	var out []*mnbl
	for _, m := range d.live {
		if f(m) {
			out = append(out, m)
		}
	}
	return out
}

func (d *driver) freeMdlsLeft() int { return fzExtraMdls - d.extraMdls }
func (d *driver) freeNBsLeft() int  { return fzExtraNBs - d.extraNBs }

// descriptorFree reports whether an allocation through the cache (true) or
// the pool's shared front (false) finds a descriptor.
func (d *driver) descriptorFree(cache bool) bool {
	if cache {
		return len(d.live) < fzNBLs
	}
	return d.p.InUse() < fzNBLs
}

func (d *driver) wantErr(what string, err, want error) {
	d.tb.Helper()
	if want == nil {
		if err != nil {
			d.fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) || nbl.StatusOf(err) != nbl.StatusOf(want) {
		d.fatalf("%s: error %v, want %v", what, err, want)
	}
}

func (d *driver) op() {
	d.tb.Helper()
	code := d.b()
	burst := code&0x10 != 0
	switch op := code % 16; op {
	case 0, 1:
		d.opAllocate(op == 0)
	case 2:
		d.opAllocateBurst()
	case 3:
		d.opAllocateAround()
	case 4:
		d.opAllocateUserChain()
	case 5:
		d.opClone()
	case 6:
		if m := d.pick(d.filter((*mnbl).accessible)); m != nil {
			d.logf("Reference(#%d)", m.id)
			m.l.Reference()
			m.refs++
		}
	case 7:
		if burst {
			d.opDereferenceBurst()
		} else {
			d.opDereference()
		}
	case 8:
		d.opRetreat()
	case 9:
		d.opAdvance()
	case 10:
		d.opCopyIn()
	case 11:
		switch {
		case code&0x20 != 0:
			d.opReleaseTo()
		case burst:
			d.opReleaseBurst()
		default:
			d.opRelease()
		}
	case 12:
		if burst {
			d.opFreeBurst()
		} else {
			d.opFree()
		}
	case 13:
		d.opFreeClone()
	case 14:
		d.opAppend()
	case 15:
		d.opListRetreatAdvance()
	}
}

func (d *driver) newNBL(l *nbl.NetBufferList, nbs []*mnb) *mnbl {
	d.id++
	m := &mnbl{id: d.id, l: l, nbs: nbs}
	if v := d.b(); v&1 == 1 && !l.IsClone() {
		l.Originator, l.OriginatorContext = d.o, m.id
		if v&2 != 0 {
			l.Originator = d.bo
		}
		m.originator = true
	}
	d.live = append(d.live, m)
	d.all = append(d.all, m)
	return m
}

func (d *driver) opAllocate(cache bool) {
	off, n := d.b()%80, d.b()%(fzFrame+16)
	free := d.descriptorFree(cache)
	var l *nbl.NetBufferList
	var err error
	if cache {
		l, err = d.c.Allocate(off, n)
	} else {
		l, err = d.p.Allocate(off, n)
	}
	d.logf("Allocate(%d, %d) cache=%v", off, n, cache)
	switch {
	case off+n > fzFrame:
		d.wantErr("Allocate", err, nbl.ErrInvalidParameter)
	case !free:
		d.wantErr("Allocate", err, nbl.ErrResources)
	default:
		d.wantErr("Allocate", err, nil)
		d.newNBL(l, []*mnb{{segs: []*mseg{{cells: newCells(fzFrame, nil)}}, off: off, n: n}})
	}
}

func (d *driver) opAllocateBurst() {
	k, n := 1+d.b()%4, d.b()%(fzFrame-fzHeadroom+8)
	out := make([]*nbl.NetBufferList, k)
	got := d.c.AllocateBurst(out, n)
	d.logf("AllocateBurst(%d, %d) = %d", k, n, got)
	want := min(k, fzNBLs-len(d.live))
	if n > fzFrame-fzHeadroom {
		want = 0
	}
	if got != want {
		d.fatalf("AllocateBurst(%d) = %d, want %d", k, got, want)
	}
	for _, l := range out[:got] {
		d.newNBL(l, []*mnb{{segs: []*mseg{{cells: newCells(fzFrame, nil)}}, off: fzHeadroom, n: n}})
	}
}

func (d *driver) opAllocateAround() {
	size, off, n := d.b()%64, d.b()%66, d.b()%66
	var buf []byte
	if size > 0 || d.step%2 == 0 {
		buf = make([]byte, size)
		for i := range buf {
			buf[i] = byte(d.step*31 + i)
		}
	}
	cache := d.b()&1 == 0
	free := d.descriptorFree(cache)
	var l *nbl.NetBufferList
	var err error
	if cache {
		l, err = d.c.AllocateAround(buf, off, n)
	} else {
		l, err = d.p.AllocateAround(buf, off, n)
	}
	d.logf("AllocateAround(len %d nil %v, %d, %d)", size, buf == nil, off, n)
	switch {
	case off+n > size:
		d.wantErr("AllocateAround", err, nbl.ErrInvalidParameter)
	case !free:
		d.wantErr("AllocateAround", err, nbl.ErrResources)
	default:
		d.wantErr("AllocateAround", err, nil)
		nb := &mnb{off: off, n: n}
		if buf != nil {
			nb.segs = []*mseg{{cells: newCells(size, func(i int) (byte, bool) { return buf[i], true })}}
		}
		d.newNBL(l, []*mnb{nb})
	}
}

func (d *driver) opAllocateUserChain() {
	k := 1 + d.b()%3
	var mdls []*nbl.Mdl
	var segs []*mseg
	total := 0
	for i := range k {
		size := d.b() % 24 // empty MDLs included
		buf := make([]byte, size)
		for j := range buf {
			buf[j] = byte(d.step*13 + i*50 + j)
		}
		m, err := d.p.AllocateMdl(buf)
		if d.freeMdlsLeft() == 0 {
			d.wantErr("AllocateMdl", err, nbl.ErrResources)
			break
		}
		d.wantErr("AllocateMdl", err, nil)
		d.extraMdls++
		if len(mdls) > 0 {
			if err := mdls[len(mdls)-1].SetNext(m); err != nil {
				d.fatalf("SetNext: %v", err)
			}
		}
		mdls = append(mdls, m)
		segs = append(segs, &mseg{cells: newCells(size, func(j int) (byte, bool) { return buf[j], true })})
		total += size
	}
	freeUser := func() {
		for _, m := range mdls {
			if err := d.p.FreeMdl(m); err != nil {
				d.fatalf("FreeMdl: %v", err)
			}
			d.extraMdls--
		}
	}
	if len(mdls) < k {
		d.logf("AllocateMdl x%d: out of MDLs", k)
		freeUser()
		return
	}
	ctx, bf := 16*(d.b()%3), 16*(d.b()%3)
	off := d.b() % (total + 2)
	n := d.b() % (total + 2)
	l, err := d.c.AllocateNetBufferAndNetBufferList(ctx, bf, mdls[0], off, n)
	d.logf("AllocateNetBufferAndNetBufferList(%d, %d, %d MDLs of %d bytes, %d, %d)", ctx, bf, k, total, off, n)
	switch {
	case ctx+bf > fzCtx || off+n > total:
		d.wantErr("AllocateNetBufferAndNetBufferList", err, nbl.ErrInvalidParameter)
		freeUser()
	case len(d.live) == fzNBLs:
		d.wantErr("AllocateNetBufferAndNetBufferList", err, nbl.ErrResources)
		freeUser()
	default:
		d.wantErr("AllocateNetBufferAndNetBufferList", err, nil)
		if got := nbl.NET_BUFFER_LIST_CONTEXT_DATA_SIZE(l); got != ctx {
			d.fatalf("context data size %d, want %d", got, ctx)
		}
		m := d.newNBL(l, []*mnb{{segs: segs, off: off, n: n}})
		m.user = mdls
	}
}

// mirror predicts the segments of a clone of src, starting from src's real
// CurrentMdl (whose position check() has verified): one segment per MDL
// the data touches, the first one even when empty.
func mirror(src *mnb, real *nbl.NetBuffer) []*mseg {
	if real.CurrentMdl() == nil {
		return nil
	}
	k := 0
	for m := real.MdlChain(); m != real.CurrentMdl(); m = m.Next() {
		k++
	}
	var segs []*mseg
	left := src.n
	for i := k; i < len(src.segs) && (left > 0 || len(segs) == 0); i++ {
		cs := src.segs[i].cells
		if i == k {
			cs = cs[real.CurrentMdlOffset():]
		}
		if len(cs) > left {
			cs = cs[:left]
		}
		if len(cs) > 0 || len(segs) == 0 {
			segs = append(segs, &mseg{cells: cs, extra: true})
			left -= len(cs)
		}
	}
	return segs
}

func (d *driver) opClone() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	cache := d.b()&1 == 0
	var nbs []*mnb
	needNBs, needMdls := 0, 0
	real := m.l.FirstNetBuffer()
	for i, src := range m.nbs {
		nb := &mnb{segs: mirror(src, real), n: src.n, extra: i > 0}
		if i == 0 && len(nb.segs) > 0 {
			nb.segs[0].extra = false // the clone's built-in MDL
		}
		if nb.extra {
			needNBs++
		}
		for _, s := range nb.segs {
			if s.extra {
				needMdls++
			}
		}
		nbs = append(nbs, nb)
		real = real.Next
	}
	free := d.descriptorFree(cache)
	var cl *nbl.NetBufferList
	var err error
	if cache {
		cl, err = d.c.Clone(m.l)
	} else {
		cl, err = d.p.Clone(m.l)
	}
	d.logf("Clone(#%d) cache=%v", m.id, cache)
	if !free || needNBs > d.freeNBsLeft() || needMdls > d.freeMdlsLeft() {
		if cl != nil {
			d.fatalf("Clone succeeded; the model expected ErrResources (need %d NBs %d MDLs, have %d %d)", needNBs, needMdls, d.freeNBsLeft(), d.freeMdlsLeft())
		}
		d.wantErr("Clone", err, nbl.ErrResources)
		return
	}
	d.wantErr("Clone", err, nil)
	d.extraNBs += needNBs
	d.extraMdls += needMdls
	c := d.newNBL(cl, nbs)
	c.clone = true
	c.parent = m
	m.children++
}

func (d *driver) opDereference() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	d.logf("Dereference(#%d) refs=%d", m.id, m.refs)
	if m.refs == 0 {
		func() {
			defer func() {
				if recover() == nil {
					d.fatalf("Dereference without Reference did not panic")
				}
			}()
			m.l.Dereference()
		}()
		if m.l.RefCount() != 0 {
			d.fatalf("a refused Dereference left RefCount %d", m.l.RefCount())
		}
		return
	}
	m.l.Dereference()
	m.refs--
	d.maybeLeave(m)
}

func (d *driver) opDereferenceBurst() {
	// Up to 4 references, an NBL as often as it has references.
	var slots []*mnbl
	for _, m := range d.filter((*mnbl).accessible) {
		for range min(m.refs, 2) {
			slots = append(slots, m)
		}
	}
	ms := d.pickN(slots, 1+d.b()%4)
	if len(ms) == 0 {
		return
	}
	d.logf("DereferenceBurst(%s)", ids(ms))
	d.c.DereferenceBurst(nblsOf(ms))
	for _, m := range ms {
		m.refs--
	}
	for _, m := range ms {
		d.maybeLeave(m)
	}
}

func ids(ms []*mnbl) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "#%d", m.id)
	}
	return b.String()
}

func (d *driver) pickNB(m *mnbl) (*mnb, *nbl.NetBuffer) {
	i := d.b() % len(m.nbs)
	nb := m.l.FirstNetBuffer()
	for range i {
		nb = nb.Next
	}
	return m.nbs[i], nb
}

// retreat applies a retreat to the model and returns the error the package
// must return.
func (d *driver) retreat(nb *mnb, delta, backfill int) error {
	if delta <= nb.off {
		nb.off -= delta
		nb.n += delta
		return nil
	}
	if delta+backfill > fzHBS || d.freeMdlsLeft() == 0 {
		return nbl.ErrResources
	}
	size := delta + backfill
	nb.segs = append([]*mseg{{cells: newCells(size, nil), header: true, extra: true}}, nb.segs...)
	d.extraMdls++
	nb.off = size + nb.off - delta
	nb.n += delta
	return nil
}

// advance applies an advance to the model.
func (d *driver) advance(nb *mnb, delta int, freeMdl bool) error {
	if delta > nb.n {
		return nbl.ErrInvalidParameter
	}
	nb.off += delta
	nb.n -= delta
	for freeMdl && len(nb.segs) > 0 && nb.segs[0].header && len(nb.segs[0].cells) <= nb.off {
		nb.off -= len(nb.segs[0].cells)
		nb.segs = nb.segs[1:]
		d.extraMdls--
	}
	return nil
}

func (d *driver) opRetreat() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	mnb, nb := d.pickNB(m)
	delta, backfill := d.b()%48, 8*(d.b()%4)
	d.logf("Retreat(#%d, %d, %d) off=%d", m.id, delta, backfill, mnb.off)
	want := d.retreat(mnb, delta, backfill)
	if d.b()&1 == 0 {
		d.wantErr("Retreat", nb.Retreat(delta, backfill), want)
	} else if s := nbl.NdisRetreatNetBufferDataStart(nb, uint32(delta), uint32(backfill), 0); s != nbl.StatusOf(want) {
		d.fatalf("NdisRetreatNetBufferDataStart = %v, want %v", s, nbl.StatusOf(want))
	}
}

func (d *driver) opAdvance() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	mnb, nb := d.pickNB(m)
	delta := d.b() % (mnb.n + 3)
	freeMdl := d.b()&1 == 1 && m.children == 0
	d.logf("Advance(#%d, %d, %v) n=%d", m.id, delta, freeMdl, mnb.n)
	want := d.advance(mnb, delta, freeMdl)
	if d.b()&1 == 0 {
		d.wantErr("Advance", nb.Advance(delta, freeMdl), want)
	} else if s := nbl.NdisAdvanceNetBufferDataStart(nb, uint32(delta), freeMdl, 0); s != nbl.StatusOf(want) {
		d.fatalf("NdisAdvanceNetBufferDataStart = %v, want %v", s, nbl.StatusOf(want))
	}
}

func (d *driver) opListRetreatAdvance() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	switch d.b() % 4 {
	case 0:
		if m.children > 0 {
			return // a failed retreat advances back with freeMdl
		}
		delta, backfill := d.b()%48, 8*(d.b()%4)
		d.logf("RetreatDataStart(#%d, %d, %d)", m.id, delta, backfill)
		var want error
		for i, nb := range m.nbs {
			if want = d.retreat(nb, delta, backfill); want != nil {
				for _, u := range m.nbs[:i] {
					if err := d.advance(u, delta, true); err != nil {
						d.fatalf("model: %v", err)
					}
				}
				break
			}
		}
		d.wantErr("RetreatDataStart", m.l.RetreatDataStart(delta, backfill), want)
	case 1:
		delta := d.b() % 40
		freeMdl := d.b()&1 == 1 && m.children == 0
		d.logf("AdvanceDataStart(#%d, %d, %v)", m.id, delta, freeMdl)
		var want error
		for _, nb := range m.nbs {
			if delta > nb.n {
				want = nbl.ErrInvalidParameter
			}
		}
		if want == nil {
			for _, nb := range m.nbs {
				_ = d.advance(nb, delta, freeMdl)
			}
		}
		d.wantErr("AdvanceDataStart", m.l.AdvanceDataStart(delta, freeMdl), want)
	case 2:
		mnb, nb := d.pickNB(m)
		n := d.b() % (mnb.chainLen() - mnb.off + 3)
		d.logf("SetDataLength(#%d, %d) off=%d chain=%d", m.id, n, mnb.off, mnb.chainLen())
		var want error
		if mnb.off+n > mnb.chainLen() {
			want = nbl.ErrInvalidParameter
		} else {
			mnb.n = n
		}
		d.wantErr("SetDataLength", nb.SetDataLength(n), want)
	default:
		_, nb := d.pickNB(m)
		d.logf("AdjustCurrentMdl(#%d)", m.id)
		nb.AdjustCurrentMdl()
	}
}

func (d *driver) opCopyIn() {
	m := d.pick(d.filter((*mnbl).accessible))
	if m == nil {
		return
	}
	mnb, nb := d.pickNB(m)
	off, n := d.b()%(mnb.n+2), d.b()%40
	src := make([]byte, n)
	for i := range src {
		src[i] = byte(d.step*7 + i*3)
	}
	want := 0
	if off < mnb.n {
		want = min(n, mnb.n-off)
	}
	d.logf("CopyIn(#%d, %d, %d bytes) n=%d", m.id, off, n, mnb.n)
	if got := nb.CopyIn(off, src); got != want {
		d.fatalf("CopyIn wrote %d bytes, want %d", got, want)
	}
	if want > 0 {
		cells := mnb.data()
		for i := range want {
			cells[off+i].v, cells[off+i].known = src[i], true
		}
	}
}

func (d *driver) opRelease() {
	m := d.pick(d.filter(func(m *mnbl) bool { return !m.released && !m.clone }))
	if m == nil {
		return
	}
	d.logf("Release(#%d) refs=%d children=%d", m.id, m.refs, m.children)
	d.c.Release(m.l)
	m.released = true
	d.maybeLeave(m)
}

func (d *driver) opReleaseTo() {
	m := d.pick(d.filter(func(m *mnbl) bool { return !m.released && !m.clone }))
	if m == nil {
		return
	}
	d.logf("ReleaseTo(#%d) refs=%d children=%d", m.id, m.refs, m.children)
	d.c.ReleaseTo(m.l, d.f)
	m.released = true
	m.finisher = true
	d.maybeLeave(m)
}

func (d *driver) opReleaseBurst() {
	ms := d.pickN(d.filter(func(m *mnbl) bool { return !m.released && !m.clone }), 1+d.b()%5)
	if len(ms) == 0 {
		return
	}
	d.logf("ReleaseBurst(%s)", ids(ms))
	d.c.ReleaseBurst(nblsOf(ms))
	for _, m := range ms {
		m.released = true
		d.maybeLeave(m)
	}
}

func (d *driver) opFreeBurst() {
	ms := d.pickN(d.filter(func(m *mnbl) bool { return !m.released && !m.clone && m.refs == 0 && m.children == 0 }), 1+d.b()%5)
	if len(ms) == 0 {
		return
	}
	d.logf("FreeBurst(%s)", ids(ms))
	if n, err := d.c.FreeBurst(nblsOf(ms)); n != len(ms) || err != nil {
		d.fatalf("FreeBurst = %d, %v; want %d, nil", n, err, len(ms))
	}
	for _, m := range ms {
		m.released = true
		d.maybeLeave(m)
	}
}

func (d *driver) opFree() {
	m := d.pick(d.filter(func(m *mnbl) bool { return !m.released }))
	if m == nil {
		return
	}
	cache := d.b()&1 == 0
	free := func() error {
		if cache {
			return d.c.Free(m.l)
		}
		return d.p.Free(m.l)
	}
	switch {
	case m.clone:
		d.logf("Free(clone #%d)", m.id)
		d.wantErr("Free of a clone", free(), nbl.ErrInvalidParameter)
	case m.refs > 0 || m.children > 0:
		if nbl.DebugChecks {
			return // debug builds panic here instead (debug_test.go)
		}
		d.logf("Free(held #%d)", m.id)
		d.wantErr("Free of a held NBL", free(), nbl.ErrInvalidParameter)
	default:
		d.logf("Free(#%d) cache=%v", m.id, cache)
		d.wantErr("Free", free(), nil)
		m.released = true
		d.maybeLeave(m)
	}
}

func (d *driver) opFreeClone() {
	m := d.pick(d.filter(func(m *mnbl) bool { return !m.released }))
	if m == nil {
		return
	}
	cache := d.b()&1 == 0
	freeClone := func() error {
		if cache {
			return d.c.FreeClone(m.l)
		}
		return d.p.FreeClone(m.l)
	}
	switch {
	case !m.clone:
		d.logf("FreeClone(not a clone #%d)", m.id)
		d.wantErr("FreeClone of an NBL that is not a clone", freeClone(), nbl.ErrInvalidParameter)
	case m.refs > 0 || m.children > 0:
		if nbl.DebugChecks {
			return
		}
		d.logf("FreeClone(held #%d)", m.id)
		d.wantErr("FreeClone of a held clone", freeClone(), nbl.ErrInvalidParameter)
	default:
		d.logf("FreeClone(#%d) cache=%v", m.id, cache)
		d.wantErr("FreeClone", freeClone(), nil)
		m.released = true
		d.maybeLeave(m)
	}
}

func (d *driver) opAppend() {
	m := d.pick(d.filter(func(m *mnbl) bool { return m.accessible() && !m.clone }))
	if m == nil {
		return
	}
	size, off, n := d.b()%40, d.b()%42, d.b()%42
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(d.step*5 + i)
	}
	nb, err := d.c.AppendNetBuffer(m.l, buf, off, n)
	d.logf("AppendNetBuffer(#%d, len %d, %d, %d)", m.id, size, off, n)
	switch {
	case off+n > size:
		d.wantErr("AppendNetBuffer", err, nbl.ErrInvalidParameter)
	case d.freeNBsLeft() == 0 || d.freeMdlsLeft() == 0:
		d.wantErr("AppendNetBuffer", err, nbl.ErrResources)
	default:
		d.wantErr("AppendNetBuffer", err, nil)
		if nb.NetBufferList() != m.l {
			d.fatalf("appended NetBuffer belongs to another NBL")
		}
		d.extraNBs++
		d.extraMdls++
		m.nbs = append(m.nbs, &mnb{
			segs:  []*mseg{{cells: newCells(size, func(i int) (byte, bool) { return buf[i], true }), extra: true}},
			off:   off,
			n:     n,
			extra: true,
		})
	}
}

// maybeLeave retires m in the model if its owner released it and nothing
// holds it, and then its parent, if that was the parent's last hold.
func (d *driver) maybeLeave(m *mnbl) {
	if m.gone || !m.released || m.refs > 0 || m.children > 0 {
		return
	}
	m.gone = true
	if m.finisher {
		// The descriptor may come back as another NBL: its count moves here.
		m.finished = d.f.calls[m.l]
		delete(d.f.calls, m.l)
	}
	d.left = append(d.left, m)
	for _, nb := range m.nbs {
		if nb.extra {
			d.extraNBs--
		}
		for _, s := range nb.segs {
			if s.extra {
				d.extraMdls--
			}
		}
	}
	for i, x := range d.live {
		if x == m {
			d.live = append(d.live[:i], d.live[i+1:]...)
			break
		}
	}
	for _, u := range m.user {
		if err := d.p.FreeMdl(u); err != nil {
			d.fatalf("FreeMdl after the NBL left: %v", err)
		}
		d.extraMdls--
	}
	if m.parent != nil {
		m.parent.children--
		d.maybeLeave(m.parent)
	}
}

// check compares every live NBL, the pool's extras and the originator's
// calls with the model.
func (d *driver) check() {
	d.tb.Helper()
	for _, m := range d.live {
		l := m.l
		if l.IsClone() != m.clone || (l.Context() == nil) != m.clone {
			d.fatalf("#%d: IsClone %v, Context nil %v; clone %v", m.id, l.IsClone(), l.Context() == nil, m.clone)
		}
		var parent *nbl.NetBufferList
		if m.parent != nil {
			parent = m.parent.l
		}
		if l.Parent() != parent {
			d.fatalf("#%d: wrong Parent", m.id)
		}
		if int(l.ChildRefCount()) != m.children || int(l.RefCount()) != m.refs {
			d.fatalf("#%d: ChildRefCount %d RefCount %d, want %d and %d", m.id, l.ChildRefCount(), l.RefCount(), m.children, m.refs)
		}
		if l.NetBufferCount() != len(m.nbs) {
			d.fatalf("#%d: %d NetBuffers, want %d", m.id, l.NetBufferCount(), len(m.nbs))
		}
		nb := l.FirstNetBuffer()
		for i, mb := range m.nbs {
			d.checkNB(m, i, mb, nb)
			nb = nb.Next
		}
	}
	nbs, mdls := d.p.ExtraInUse()
	if nbs != d.extraNBs || mdls != d.extraMdls {
		d.fatalf("extras in use: %d NetBuffers, %d MDLs; the model says %d and %d", nbs, mdls, d.extraNBs, d.extraMdls)
	}
	if d.bo.foreign != 0 {
		d.fatalf("the batch originator was handed %d NBLs it did not originate", d.bo.foreign)
	}
	d.checkOriginator(d.live)
	d.checkOriginator(d.left)
	d.left = d.left[:0]
}

// checkOriginator checks that the Originator was told once about each NBL
// of ms that left and never about one still alive.
func (d *driver) checkOriginator(ms []*mnbl) {
	d.tb.Helper()
	for _, m := range ms {
		want := 0
		if m.gone && m.originator {
			want = 1
		}
		if got := d.o.count(m.id); got != want {
			d.fatalf("#%d (gone %v): Originator told %d times, want %d", m.id, m.gone, got, want)
		}
		if got := d.f.calls[m.l]; !m.gone && got != 0 {
			d.fatalf("#%d: finisher ran %d times while it is alive", m.id, got)
		}
		if m.finisher && m.gone && m.finished != 1 {
			d.fatalf("#%d: finisher ran %d times, want 1", m.id, m.finished)
		}
	}
}

func (d *driver) checkNB(m *mnbl, i int, mb *mnb, nb *nbl.NetBuffer) {
	d.tb.Helper()
	if nb.NetBufferList() != m.l {
		d.fatalf("#%d NB %d: belongs to another NBL", m.id, i)
	}
	if nb.DataOffset() != mb.off || nb.DataLength() != mb.n || nb.ChainLength() != mb.chainLen() {
		d.fatalf("#%d NB %d: DataOffset %d DataLength %d ChainLength %d; model %d %d %d",
			m.id, i, nb.DataOffset(), nb.DataLength(), nb.ChainLength(), mb.off, mb.n, mb.chainLen())
	}
	if msg := nbConsistency(nb); msg != "" {
		d.fatalf("#%d NB %d: %s", m.id, i, msg)
	}
	k := 0
	for md := nb.MdlChain(); md != nil; md = md.Next() {
		if k >= len(mb.segs) || md.ByteCount() != len(mb.segs[k].cells) {
			d.fatalf("#%d NB %d: MDL %d has %d bytes; the model has %d segments", m.id, i, k, md.ByteCount(), len(mb.segs))
		}
		if len(md.Bytes()) > 0 && &md.Bytes()[0] == nil {
			d.fatalf("unreachable")
		}
		k++
	}
	if k != len(mb.segs) {
		d.fatalf("#%d NB %d: %d MDLs, model %d", m.id, i, k, len(mb.segs))
	}
	got := make([]byte, mb.n)
	if n := nb.CopyOut(got, 0); n != mb.n {
		d.fatalf("#%d NB %d: CopyOut = %d, want %d", m.id, i, n, mb.n)
	}
	for j, c := range mb.data() {
		if c.known && got[j] != c.v {
			d.fatalf("#%d NB %d: data byte %d is %#x, model %#x", m.id, i, j, got[j], c.v)
		}
	}
	if data, ok := nb.Data(); ok && !bytes.Equal(data, got) {
		d.fatalf("#%d NB %d: Data() and CopyOut disagree", m.id, i)
	}
	if b := nb.Bytes(nil); !bytes.Equal(b, got) {
		d.fatalf("#%d NB %d: Bytes() and CopyOut disagree", m.id, i)
	}
}

// drain releases everything in a valid order and checks the pool is full.
func (d *driver) drain() {
	d.tb.Helper()
	d.logf("drain")
	for _, m := range append([]*mnbl(nil), d.live...) {
		for m.refs > 0 && !m.gone {
			m.l.Dereference()
			m.refs--
			d.maybeLeave(m)
			d.check()
		}
	}
	for progress := true; progress; {
		progress = false
		for _, m := range append([]*mnbl(nil), d.live...) {
			if m.gone || m.released || m.children > 0 {
				continue
			}
			var err error
			if m.clone {
				err = d.c.FreeClone(m.l)
			} else if m.id%2 == 0 {
				err = d.c.Free(m.l)
			} else {
				d.c.Release(m.l)
			}
			if err != nil {
				d.fatalf("drain #%d: %v", m.id, err)
			}
			m.released = true
			d.maybeLeave(m)
			d.check()
			progress = true
		}
	}
	if len(d.live) != 0 {
		d.fatalf("%d NBLs still alive after the drain", len(d.live))
	}
	d.checkOriginator(d.all)
	d.c.Flush()
	if !d.p.Full() {
		nbs, mdls := d.p.ExtraInUse()
		d.fatalf("pool not full after the drain: %d descriptors, %d NetBuffers, %d MDLs in use", d.p.InUse(), nbs, mdls)
	}
}

// TestPropertyRandomOps runs the driver over pseudo-random operation
// streams.
func TestPropertyRandomOps(t *testing.T) {
	seeds, steps := 16, fzMaxOps
	if testing.Short() || raceEnabled {
		seeds = 4
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 0x6e626c))
			src := make([]byte, steps*6)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			d := newDriver(t, src)
			d.run()
			if d.step < 1000 {
				t.Fatalf("only %d operations ran", d.step)
			}
			t.Logf("%d operations, %d NBLs allocated", d.step, len(d.all))
		})
	}
}
