package inject

import (
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

func FuzzParseGUID(f *testing.F) {
	for _, s := range []string{"6b29fc40-ca47-1067-b31d-00dd010662da", "{00000000-0000-0000-0000-000000000000}", "", "{", "x-y-z-w-v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGUID(s)
		if err != nil {
			return
		}
		str := g.String()
		if len(str) != 36 {
			t.Fatalf("String() = %q", str)
		}
		g2, err := ParseGUID(str)
		if err != nil || g2 != g {
			t.Fatalf("round trip of %q: %x -> %q -> %x, %v", s, g, str, g2, err)
		}
	})
}

// FuzzCreateHandle checks CreateHandle against its rules for any family
// and type bits.
func FuzzCreateHandle(f *testing.F) {
	f.Add(uint16(AF_INET), uint32(FWPS_INJECTION_TYPE_NETWORK))
	f.Add(uint16(AF_UNSPEC), uint32(0))
	f.Add(uint16(AF_UNSPEC), uint32(FWPS_INJECTION_TYPE_NETWORK))
	f.Add(uint16(AF_INET6), uint32(0x40))
	f.Add(uint16(7), uint32(FWPS_INJECTION_TYPE_L2))
	s := NewStack()
	s.Start()
	f.Fuzz(func(t *testing.T, af uint16, types uint32) {
		h, err := s.CreateHandle(ADDRESS_FAMILY(af), types)
		want := types
		if want == 0 {
			want = FWPS_INJECTION_TYPE_TRANSPORT | FWPS_INJECTION_TYPE_STREAM | FWPS_INJECTION_TYPE_FORWARD
		}
		family := ADDRESS_FAMILY(af)
		ok := types&^0x3F == 0 && (family == AF_UNSPEC || family == AF_INET || family == AF_INET6) &&
			!(want&FWPS_INJECTION_TYPE_NETWORK != 0 && family == AF_UNSPEC)
		if !ok {
			if h != nil || nbl.StatusOf(err) != STATUS_INVALID_PARAMETER {
				t.Fatalf("CreateHandle(%d, 0x%x) = %v, %v; want STATUS_INVALID_PARAMETER", af, types, h, err)
			}
			return
		}
		if err != nil || h == nil || h.Types() != want || h.Family() != family || h.ID() == 0 {
			t.Fatalf("CreateHandle(%d, 0x%x) = %v, %v", af, types, h, err)
		}
		if err := h.Destroy(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzChainShape builds chains of up to 16 NBLs whose Next links come from
// the input (so they may loop anywhere) and checks that an injection takes
// exactly the loop-free ones, with the right count, and refuses the others
// without touching them.
func FuzzChainShape(f *testing.F) {
	f.Add([]byte{1, 0})       // a->b->a
	f.Add([]byte{0})          // self-loop
	f.Add([]byte{1, 2, 3, 4}) // straight chain (4 is nil for n=4)
	f.Add([]byte{1, 2, 1})    // a->b->c->b
	f.Add([]byte{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0})
	const max = 16
	s := NewStack()
	s.Start()
	h, err := s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	if err != nil {
		f.Fatal(err)
	}
	p, err := nbl.NewPool(nbl.Config{NBLs: max})
	if err != nil {
		f.Fatal(err)
	}
	ls := make([]*nbl.NetBufferList, max)
	for i := range ls {
		if ls[i], err = p.Allocate(0, 60); err != nil {
			f.Fatal(err)
		}
	}
	hold := &holder{}
	sw := &fakeVSwitch{id: nextGUID(), deliver: hold.deliver}
	if err := s.RegisterVSwitch(sw); err != nil {
		f.Fatal(err)
	}
	q, _ := NewCompletionQueue(s, max)
	f.Cleanup(func() {
		for _, l := range ls {
			l.Next = nil
			if err := p.Free(l); err != nil {
				f.Error(err)
			}
		}
		checkFull(f, p)
		_ = p.Close()
		destroyBounded(f, h)
	})
	completed := 0
	keep := func(any, *nbl.NetBufferList, bool) { completed++ }
	f.Fuzz(func(t *testing.T, links []byte) {
		if len(links) == 0 || len(links) > max {
			return
		}
		n := len(links)
		for i := range n {
			if j := int(links[i]); j < n {
				ls[i].Next = ls[j]
			} else {
				ls[i].Next = nil
			}
		}
		// The expected walk from ls[0].
		seen := map[*nbl.NetBufferList]bool{}
		count, loops := 0, false
		for l := ls[0]; l != nil; l = l.Next {
			if seen[l] {
				loops = true
				break
			}
			seen[l] = true
			count++
		}
		before := make([]nblSnap, n)
		for i := range n {
			before[i] = snap(ls[i])
		}
		completed = 0
		err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, ls[0], nil, Done{Fn: keep})
		if loops {
			if nbl.StatusOf(err) != STATUS_INVALID_PARAMETER {
				t.Fatalf("looping chain %v: %v, want STATUS_INVALID_PARAMETER", links, err)
			}
			for i := range n {
				if snap(ls[i]) != before[i] {
					t.Fatalf("refused chain %v: NBL %d changed", links, i)
				}
			}
		} else {
			if err != nil {
				t.Fatalf("chain %v of %d: %v", links, count, err)
			}
			if c := sw.call(len(sw.calls) - 1); c.count != count {
				t.Fatalf("chain %v: count %d, want %d", links, c.count, count)
			}
			hold.complete(q, STATUS_SUCCESS, -1)
			if completed != count || h.Stats().Pending != 0 {
				t.Fatalf("chain %v: %d completions of %d", links, completed, count)
			}
		}
		for i := range max {
			ls[i].Next = nil
		}
	})
}
