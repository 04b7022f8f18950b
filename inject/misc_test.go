package inject

import (
	"errors"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
)

func TestParseGUID(t *testing.T) {
	const s = "6b29fc40-ca47-1067-b31d-00dd010662da"
	want := GUID{0x40, 0xfc, 0x29, 0x6b, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1d, 0x00, 0xdd, 0x01, 0x06, 0x62, 0xda}
	for _, in := range []string{s, "{" + s + "}", strings.ToUpper(s)} {
		g, err := ParseGUID(in)
		if err != nil || g != want {
			t.Fatalf("ParseGUID(%q) = %x, %v; want %x", in, g, err, want)
		}
		if g.String() != s {
			t.Fatalf("String() = %q, want %q", g.String(), s)
		}
	}
	g, _ := ParseGUID(s)
	b := g.Bytes()
	b[0] = 0xff
	if g[0] != 0x40 || len(b) != 16 {
		t.Fatal("Bytes aliases the GUID")
	}
	for _, bad := range []string{"", "xyz", s[:len(s)-1], s + "0", "6b29fc4g-ca47-1067-b31d-00dd010662da",
		"6b29fc40ca47-1067-b31d-00dd010662da-", "6b29fc40-ca47-1067-b31d00-dd010662da"} {
		if _, err := ParseGUID(bad); !errors.Is(err, ErrInvalidParameter) {
			t.Fatalf("ParseGUID(%q): %v, want ErrInvalidParameter", bad, err)
		}
	}
}

func TestStatusesAndErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		st   Status
		name string
	}{
		{ErrNotReady, STATUS_FWP_TCPIP_NOT_READY, "STATUS_FWP_TCPIP_NOT_READY (0xC0220100)"},
		{ErrHandleClosing, STATUS_FWP_INJECT_HANDLE_CLOSING, "STATUS_FWP_INJECT_HANDLE_CLOSING (0xC0220101)"},
		{ErrHandleStale, STATUS_FWP_INJECT_HANDLE_STALE, "STATUS_FWP_INJECT_HANDLE_STALE (0xC0220102)"},
		{ErrInvalidParameter, STATUS_INVALID_PARAMETER, "STATUS_INVALID_PARAMETER (0xC000000D)"},
		{ErrNullPointer, STATUS_FWP_NULL_POINTER, "STATUS_FWP_NULL_POINTER (0xC022001C)"},
		{ErrNotFound, STATUS_NOT_FOUND, "STATUS_NOT_FOUND (0xC0000225)"},
	} {
		if !errors.Is(c.err, c.st) || nbl.StatusOf(c.err) != c.st || c.err.Error() != c.name {
			t.Fatalf("%v: Is %v, StatusOf %v, Error %q; want %q", c.st, errors.Is(c.err, c.st), nbl.StatusOf(c.err), c.err.Error(), c.name)
		}
		if NT_SUCCESS(c.st) {
			t.Fatalf("NT_SUCCESS(%v) is true", c.st)
		}
	}
	if !NT_SUCCESS(STATUS_SUCCESS) || !NT_SUCCESS(STATUS_PENDING) || NT_SUCCESS(NDIS_STATUS_PAUSED) {
		t.Fatal("NT_SUCCESS is wrong")
	}
	if KindMacSend.String() != "MAC send" || Kind(99).String() != "Kind(99)" {
		t.Fatalf("Kind strings %q %q", KindMacSend.String(), Kind(99).String())
	}
}

func TestRegisterVSwitch(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 4)
	q := newQueue(t, s, 4, nil)
	sw := newVSwitch(t, s, completeNow(q, STATUS_SUCCESS))
	if err := s.RegisterVSwitch(&fakeVSwitch{id: sw.id}); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("second switch with the same GUID: %v", err)
	}
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	rec := newRecorder(t, true)
	l := alloc(t, p)
	s.UnregisterVSwitch(sw.id)
	s.UnregisterVSwitch(sw.id) // twice is harmless
	wantErr(t, "inject into an unregistered switch", h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, nil, Done{Fn: rec.fn}), STATUS_NOT_FOUND)
	// Another stack's switch is not found either.
	other := newStack(t)
	newVSwitch(t, other, nil)
	if err := s.RegisterVSwitch(sw); err != nil {
		t.Fatalf("re-register: %v", err)
	}
	if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, nil, Done{Fn: rec.fn}); err != nil || rec.count() != 1 {
		t.Fatalf("inject after re-registering: %v, %d completions", err, rec.count())
	}
	checkFull(t, p)
}

func TestRegisterDataPath(t *testing.T) {
	s := newStack(t)
	for _, bad := range []Path{0, 4, 200} {
		if err := s.RegisterDataPath(bad, &fakePath{}); !errors.Is(err, ErrInvalidParameter) {
			t.Fatalf("RegisterDataPath(%d): %v", bad, err)
		}
		s.UnregisterDataPath(bad) // no panic
	}
	fp := newPath(t, s, PathMAC, nil)
	if err := s.RegisterDataPath(PathMAC, &fakePath{}); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("second MAC path: %v", err)
	}
	// Each kind goes to its own path.
	p := newPool(t, 4)
	q := newQueue(t, s, 4, nil)
	fp.deliver = completeNow(q, STATUS_SUCCESS)
	h := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_L2|FWPS_INJECTION_TYPE_NETWORK)
	rec := newRecorder(t, true)
	l := alloc(t, p)
	wantErr(t, "network send without an IP path", h.InjectNetworkSend(0, 0, l, nil, Done{Fn: rec.fn}), STATUS_FWP_TCPIP_NOT_READY)
	if err := h.InjectMacReceive(0, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, 1, 0, l, nil, Done{Fn: rec.fn}); err != nil || fp.numReqs() != 1 {
		t.Fatalf("MAC receive: %v, %d requests", err, fp.numReqs())
	}
	s.UnregisterDataPath(PathMAC)
	l = alloc(t, p)
	wantErr(t, "MAC send after unregistering", h.InjectMacSend(0, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, 1, 0, l, nil, Done{Fn: rec.fn}), STATUS_FWP_TCPIP_NOT_READY)
	freeNBL(t, l)
	checkFull(t, p)
}

func TestDispatchMarks(t *testing.T) {
	s1, s2 := NewStack(), NewStack()
	if s1.AtDispatch() {
		t.Fatal("marked before EnterDispatch")
	}
	s1.EnterDispatch()
	if !s1.AtDispatch() || s2.AtDispatch() {
		t.Fatal("the mark is per stack")
	}
	other := make(chan bool)
	go func() { other <- s1.AtDispatch() }()
	if <-other {
		t.Fatal("the mark is per goroutine")
	}
	s1.LeaveDispatch()
	if s1.AtDispatch() {
		t.Fatal("still marked after LeaveDispatch")
	}
}

// TestTagHistory: each injection through another handle pushes the previous
// injector into the history, which keeps the MaxInjectionHistory most
// recent; an injector that fell off is "other" again.
func TestTagHistory(t *testing.T) {
	e := newQueryEnv(t)
	n := nbl.MaxInjectionHistory + 2
	hs := make([]*Handle, n)
	ctxs := make([]*testCtx, n)
	for i := range hs {
		hs[i] = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
		ctxs[i] = newCtx("ctx")
	}
	o := newOriginator(e.p.Cap())
	l := allocOriginal(t, e.p, o)
	keep := newRecorder(t, false)
	for i, h := range hs {
		if err := h.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, l, ctxs[i], Done{Fn: keep.fn}); err != nil {
			t.Fatal(err)
		}
		if i == 2 { // the same handle twice in a row: no history entry
			if err := h.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, l, ctxs[i], Done{Fn: keep.fn}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if l.Tag.Hops != uint16(n+1) || l.Tag.HistoryLen != nbl.MaxInjectionHistory {
		t.Fatalf("tag %+v", l.Tag)
	}
	for i, h := range hs {
		st, ctx := h.QueryState(l)
		var want FWPS_PACKET_INJECTION_STATE
		switch {
		case i == n-1:
			want = FWPS_PACKET_INJECTED_BY_SELF
		case i >= n-1-nbl.MaxInjectionHistory:
			want = FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF
		default:
			want = FWPS_PACKET_INJECTED_BY_OTHER
		}
		if st != want {
			t.Fatalf("handle %d: %v, want %v", i, st, want)
		}
		if want.SelfInjected() && ctx != any(ctxs[i]) || !want.SelfInjected() && ctx != nil {
			t.Fatalf("handle %d: context %v", i, ctx)
		}
	}
	// A clone carries the whole tag.
	cl := mustClone(t, e.p, l)
	if cl.Tag != l.Tag {
		t.Fatal("the clone's tag differs from its parent's")
	}
	freeNBL(t, cl)
	freeNBL(t, l)
	checkFull(t, e.p)
}

// TestMaxChain: a chain of MaxChain NBLs is accepted and completes; one
// more is refused without touching the chain.
func TestMaxChain(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 65537 descriptors")
	}
	s := newStack(t)
	p, err := nbl.NewPool(nbl.Config{NBLs: MaxChain + 1, NoFrames: true, ContextSize: 16, ExtraMdls: 1, ExtraNetBuffers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ls := make([]*nbl.NetBufferList, MaxChain+1)
	for i := range ls {
		if ls[i], err = p.AllocateAround(nil, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	hold := &holder{}
	sw := newVSwitch(t, s, hold.deliver)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	completed := 0
	B := &nbl.BatchCompletion{Fn: func(_ any, done []*nbl.NetBufferList) {
		for _, l := range done {
			completed++
			if err := p.Free(l); err != nil {
				t.Error(err)
			}
		}
	}}
	head := link(ls...)
	first, last := snap(ls[0]), snap(ls[MaxChain])
	wantErr(t, "chain of MaxChain+1", h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, head, nil, Done{Batch: B}), STATUS_INVALID_PARAMETER)
	if snap(ls[0]) != first || snap(ls[MaxChain]) != last || hold.held() != 0 {
		t.Fatal("the refused chain was changed or delivered")
	}
	ls[MaxChain-1].Next = nil
	if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, head, nil, Done{Batch: B}); err != nil {
		t.Fatalf("chain of MaxChain: %v", err)
	}
	if c := sw.call(0); c.count != MaxChain {
		t.Fatalf("count %d", c.count)
	}
	hold.complete(newQueue(t, s, 1024, nil), STATUS_SUCCESS, -1)
	if completed != MaxChain || h.Stats().Pending != 0 {
		t.Fatalf("%d completions, stats %+v", completed, h.Stats())
	}
	if err := p.Free(ls[MaxChain]); err != nil {
		t.Fatal(err)
	}
	checkFull(t, p)
}
