package nbl_test

import (
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

type countOrig struct{ got []*nbl.NetBufferList }

func (o *countOrig) ReturnNetBufferList(l *nbl.NetBufferList) { o.got = append(o.got, l) }

type batchOrig struct {
	countOrig
	runs []int
}

func (o *batchOrig) ReturnNetBufferLists(ls []*nbl.NetBufferList) {
	o.runs = append(o.runs, len(ls))
	o.got = append(o.got, ls...)
}

// TestReleaseBurstBatchOriginator: ReleaseBurst tells a BatchOriginator
// each run of its NBLs in one call, a plain Originator each NBL, and every
// NBL goes back to the pool exactly once.
func TestReleaseBurstBatchOriginator(t *testing.T) {
	p, err := nbl.NewPool(nbl.Config{NBLs: 64, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.NewCache(16)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &batchOrig{}, &batchOrig{}
	plain := &countOrig{}
	// a a a b plain plain a nil b b
	owners := []nbl.Originator{a, a, a, b, plain, plain, a, nil, b, b}
	var ls []*nbl.NetBufferList
	for _, o := range owners {
		l, err := c.Allocate(0, 64)
		if err != nil {
			t.Fatal(err)
		}
		l.Originator = o
		ls = append(ls, l)
	}
	want := map[nbl.Originator][]*nbl.NetBufferList{}
	for i, o := range owners {
		if o != nil {
			want[o] = append(want[o], ls[i])
		}
	}
	c.ReleaseBurst(ls)
	c.Flush()
	check := func(name string, got, want []*nbl.NetBufferList) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s got %d NBLs, want %d", name, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: NBL %d differs", name, i)
			}
		}
	}
	check("a", a.got, want[a])
	check("b", b.got, want[b])
	check("plain", plain.got, want[plain])
	if len(a.runs) != 2 || a.runs[0] != 3 || a.runs[1] != 1 {
		t.Errorf("a's runs %v, want [3 1]", a.runs)
	}
	if len(b.runs) != 2 || b.runs[0] != 1 || b.runs[1] != 2 {
		t.Errorf("b's runs %v, want [1 2]", b.runs)
	}
	if !p.Full() {
		t.Errorf("%d NBLs not back in the pool", p.InUse())
	}
}

// TestDereferenceBurst: each NBL loses one reference; those whose owner had
// released them and that held no other leave, their BatchOriginator told
// once per run; the others stay until their last hold goes.
func TestDereferenceBurst(t *testing.T) {
	p, err := nbl.NewPool(nbl.Config{NBLs: 64, FrameSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := p.NewCache(16)
	o := &batchOrig{}
	var ls []*nbl.NetBufferList
	for range 6 {
		l, err := c.Allocate(0, 64)
		if err != nil {
			t.Fatal(err)
		}
		l.Originator = o
		l.Reference()
		ls = append(ls, l)
	}
	ls[2].Reference() // a second reference: it stays
	for _, l := range ls[:5] {
		c.Release(l) // ls[5] is not released by its owner: it stays
	}
	c.DereferenceBurst(ls)
	// The four that leave form one run of the burst's leavers.
	if len(o.got) != 4 || len(o.runs) != 1 || o.runs[0] != 4 {
		t.Fatalf("originator got %d NBLs in runs %v, want 4 in [4]", len(o.got), o.runs)
	}
	if got := ls[2].RefCount(); got != 1 {
		t.Errorf("the twice-referenced NBL has %d references left, want 1", got)
	}
	ls[2].Dereference()
	c.Release(ls[5]) // its only reference went in the burst: it leaves now
	if len(o.got) != 6 {
		t.Errorf("originator got %d NBLs, want 6", len(o.got))
	}
	c.Flush()
	if !p.Full() {
		t.Errorf("%d NBLs in use", p.InUse())
	}
	l, _ := c.Allocate(0, 64)
	defer func() {
		if recover() == nil {
			t.Error("DereferenceBurst of an NBL without a reference did not panic")
		}
		c.Free(l)
	}()
	c.DereferenceBurst([]*nbl.NetBufferList{l})
}

// TestBurstPathsAllocs: ReleaseBurst and DereferenceBurst, with a
// BatchOriginator, allocate nothing.
func TestBurstPathsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p, _ := nbl.NewPool(nbl.Config{NBLs: 256, FrameSize: 512})
	c, _ := p.NewCache(128)
	o := &countingBatch{}
	ls := make([]*nbl.NetBufferList, 32)
	if a := testing.AllocsPerRun(100, func() {
		n := c.AllocateBurst(ls, 64)
		for _, l := range ls[:n] {
			l.Originator = o
			l.Reference()
		}
		for _, l := range ls[:n] {
			c.Release(l)
		}
		c.DereferenceBurst(ls[:n])
		n = c.AllocateBurst(ls, 64)
		for _, l := range ls[:n] {
			l.Originator = o
		}
		c.ReleaseBurst(ls[:n])
	}); a != 0 {
		t.Errorf("%v allocations per run", a)
	}
	if o.n == 0 {
		t.Error("the originator was never told")
	}
}

type countingBatch struct{ n int }

func (o *countingBatch) ReturnNetBufferList(*nbl.NetBufferList)       { o.n++ }
func (o *countingBatch) ReturnNetBufferLists(ls []*nbl.NetBufferList) { o.n += len(ls) }

// valueOrig is a BatchOriginator of a comparable value type: two interface
// values holding equal values are the same originator, though their data
// words differ.
type valueOrig struct {
	port int
	runs *[]int
}

func (o valueOrig) ReturnNetBufferList(*nbl.NetBufferList) { *o.runs = append(*o.runs, 1) }
func (o valueOrig) ReturnNetBufferLists(ls []*nbl.NetBufferList) {
	*o.runs = append(*o.runs, len(ls))
}

// TestReleaseBurstValueOriginator: runs are found by comparing the
// Originator values, not their words.
func TestReleaseBurstValueOriginator(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 16, FrameSize: 512})
	c := newCache(t, p, 8)
	var runs []int
	ls := make([]*nbl.NetBufferList, 6)
	if c.AllocateBurst(ls, 64) != len(ls) {
		t.Fatal("short burst")
	}
	for i, l := range ls {
		// A fresh interface value each time: port 1 for the first four,
		// port 2 for the last two.
		l.Originator = valueOrig{port: 1 + i/4, runs: &runs}
	}
	c.ReleaseBurst(ls)
	if len(runs) != 2 || runs[0] != 4 || runs[1] != 2 {
		t.Fatalf("runs %v, want [4 2]", runs)
	}
	checkFull(t, p, c)
}

// TestLongBursts: bursts longer than the cache and than one bulk put, with
// NBLs that do not leave scattered through them, return every NBL once,
// tell the originator of each, leave the caller's slice as it was and
// allocate nothing.
func TestLongBursts(t *testing.T) {
	p := newPool(t, nbl.Config{NBLs: 512, FrameSize: 256})
	c := newCache(t, p, 32)
	o := &batchOrig{}
	ls := make([]*nbl.NetBufferList, 200)
	if c.AllocateBurst(ls, 64) != len(ls) {
		t.Fatal("short burst")
	}
	for _, l := range ls {
		l.Originator = o
		l.Reference()
	}
	for i, l := range ls {
		if i%3 != 1 || i > 150 {
			c.Release(l) // the others stay with their owner: they do not leave
		}
	}
	saved := append([]*nbl.NetBufferList(nil), ls...)
	c.DereferenceBurst(ls)
	for i := range ls {
		if ls[i] != saved[i] {
			t.Fatalf("DereferenceBurst changed the caller's slice at %d", i)
		}
	}
	var stay []*nbl.NetBufferList
	for i, l := range ls {
		if i%3 == 1 && i <= 150 {
			stay = append(stay, l)
		}
	}
	if want := len(ls) - len(stay); len(o.got) != want {
		t.Fatalf("the originator got %d NBLs, want %d", len(o.got), want)
	}
	sum := 0
	for _, n := range o.runs {
		sum += n
	}
	if sum != len(o.got) {
		t.Fatalf("runs %v add up to %d, want %d", o.runs, sum, len(o.got))
	}
	c.ReleaseBurst(stay)
	if len(o.got) != len(ls) {
		t.Fatalf("the originator got %d NBLs, want %d", len(o.got), len(ls))
	}
	seen := map[*nbl.NetBufferList]bool{}
	for _, l := range o.got {
		if seen[l] {
			t.Fatal("an NBL came back twice")
		}
		seen[l] = true
	}
	checkFull(t, p, c)

	if raceEnabled {
		return // the race detector allocates
	}
	on := &countingBatch{}
	if a := testing.AllocsPerRun(20, func() {
		n := c.AllocateBurst(ls, 64)
		for _, l := range ls[:n] {
			l.Originator = on
			l.Reference()
		}
		for i, l := range ls[:n] {
			if i%3 != 1 {
				c.Release(l)
			}
		}
		c.DereferenceBurst(ls[:n])
		for i, l := range ls[:n] {
			if i%3 == 1 {
				c.Release(l)
			}
		}
		n = c.AllocateBurst(ls, 64)
		c.ReleaseBurst(ls[:n])
	}); a != 0 {
		t.Errorf("%v allocations per run", a)
	}
	if on.n == 0 {
		t.Error("the originator was never told")
	}
	checkFull(t, p, c)
}
