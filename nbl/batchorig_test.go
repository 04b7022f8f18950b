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
