package inject

// One test per conformance case of spec/wfp-semantics.md that concerns the
// injection engine (cases 1-34; 40 and 41 are in inspect_test.go). Tests of
// the WFP-named functions use the Default stack, started in TestMain; none
// of the tests run in parallel.

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
)

// stillBlocked fails the test if done delivers within a short bounded wait.
// It is only ever used to check that something has NOT happened yet; a
// slow machine can only make it pass, never fail wrongly.
func stillBlocked[T any](t *testing.T, done <-chan T, what string) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("%s returned early", what)
	case <-time.After(20 * time.Millisecond):
	}
}

// await waits (bounded) for done to deliver.
func await[T any](t *testing.T, done <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("%s did not return within %v", what, testTimeout)
		panic("unreachable")
	}
}

func TestCase01_CreateInetNetwork(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_NETWORK)
	if h.ID() == 0 || h.Family() != AF_INET || h.Types() != FWPS_INJECTION_TYPE_NETWORK || h.Stack() != s || h.Closing() {
		t.Fatalf("handle: id %d family %d types 0x%x stack ok %v closing %v", h.ID(), h.Family(), h.Types(), h.Stack() == s, h.Closing())
	}
	if n := s.Handles(); n != 1 {
		t.Fatalf("Handles() = %d, want 1", n)
	}

	before := Default.Handles()
	var fh *Handle
	wantStatus(t, "FwpsInjectionHandleCreate0(AF_INET, NETWORK)", FwpsInjectionHandleCreate0(AF_INET, FWPS_INJECTION_TYPE_NETWORK, &fh), STATUS_SUCCESS)
	if fh == nil || fh.Stack() != Default || !fh.Has(FWPS_INJECTION_TYPE_NETWORK) {
		t.Fatalf("FwpsInjectionHandleCreate0 stored %v", fh)
	}
	if n := Default.Handles(); n != before+1 {
		t.Fatalf("Default.Handles() = %d, want %d", n, before+1)
	}
	wantStatus(t, "FwpsInjectionHandleDestroy0", FwpsInjectionHandleDestroy0(fh), STATUS_SUCCESS)
	if n := Default.Handles(); n != before {
		t.Fatalf("Default.Handles() after destroy = %d, want %d", n, before)
	}
}

func TestCase02_CreateUnspecTransport(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	if !h.Has(FWPS_INJECTION_TYPE_TRANSPORT) || h.Has(FWPS_INJECTION_TYPE_NETWORK) || h.Family() != AF_UNSPEC {
		t.Fatalf("types 0x%x family %d", h.Types(), h.Family())
	}
	fh := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	if fh.Types() != FWPS_INJECTION_TYPE_TRANSPORT {
		t.Fatalf("types 0x%x", fh.Types())
	}
	// The out-pointer is required.
	wantStatus(t, "FwpsInjectionHandleCreate0(nil out)", FwpsInjectionHandleCreate0(AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT, nil), STATUS_INVALID_PARAMETER)
	wantStatus(t, "FwpsInjectionHandleDestroy0(nil)", FwpsInjectionHandleDestroy0(nil), STATUS_INVALID_PARAMETER)
}

func TestCase03_FlagsZeroIsTransportStreamForward(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 16)
	q := newQueue(t, s, 16, nil)
	ip := newPath(t, s, PathIP, completeNow(q, STATUS_SUCCESS))
	stream := newPath(t, s, PathStream, completeNow(q, STATUS_SUCCESS))
	h := newHandle(t, s, AF_UNSPEC, 0)
	if want := FWPS_INJECTION_TYPE_TRANSPORT | FWPS_INJECTION_TYPE_STREAM | FWPS_INJECTION_TYPE_FORWARD; h.Types() != want {
		t.Fatalf("flags 0 gave types 0x%x, want 0x%x", h.Types(), want)
	}
	rec := newRecorder(t, true)
	done := Done{Fn: rec.fn}
	calls := []struct {
		name string
		f    func(l *nbl.NetBufferList) error
	}{
		{"TransportSend", func(l *nbl.NetBufferList) error {
			return h.InjectTransportSend(1, 0, &FWPS_TRANSPORT_SEND_PARAMS1{RemoteAddress: []byte{10, 0, 0, 1}}, AF_INET, 0, l, nil, done)
		}},
		{"TransportReceive", func(l *nbl.NetBufferList) error { return h.InjectTransportReceive(0, AF_INET6, 0, 3, 0, l, nil, done) }},
		{"StreamInject", func(l *nbl.NetBufferList) error {
			return h.InjectStream(0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND, l, 64, nil, done)
		}},
		{"Forward", func(l *nbl.NetBufferList) error { return h.InjectForward(AF_INET, 0, 4, l, nil, done) }},
	}
	for i, c := range calls {
		if err := c.f(alloc(t, p)); err != nil {
			t.Fatalf("%s with a flags-0 handle: %v", c.name, err)
		}
		if n := rec.count(); n != i+1 {
			t.Fatalf("%s: %d completions so far, want %d", c.name, n, i+1)
		}
	}
	if ip.numReqs() != 3 || stream.numReqs() != 1 {
		t.Fatalf("IP path got %d requests, stream path %d; want 3 and 1", ip.numReqs(), stream.numReqs())
	}
	if st := h.Stats(); st.Injected != 4 || st.Completed != 4 || st.Pending != 0 || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkFull(t, p)
}

func TestCase04_FlagsZeroHandleIsStaleForNetwork(t *testing.T) {
	check := func(t *testing.T, s *Stack, h *Handle, viaFwps bool) {
		p := newPool(t, 4)
		ip := newPath(t, s, PathIP, (&holder{}).deliver)
		rec := newRecorder(t, true)
		l := alloc(t, p)
		before := snap(l)
		var st Status
		if viaFwps {
			st = FwpsInjectNetworkSendAsync0(h, nil, 0, 0, l, rec.fn, nil)
		} else {
			st = nbl.StatusOf(h.InjectNetworkSend(0, 0, l, nil, Done{Fn: rec.fn}))
		}
		wantStatus(t, "NetworkSend with a flags-0 handle", st, STATUS_FWP_INJECT_HANDLE_STALE)
		var st2 Status
		if viaFwps {
			st2 = FwpsInjectNetworkReceiveAsync0(h, nil, 0, 0, 1, 0, l, rec.fn, nil)
		} else {
			st2 = nbl.StatusOf(h.InjectNetworkReceive(0, 0, 1, 0, l, nil, Done{Fn: rec.fn}))
		}
		wantStatus(t, "NetworkReceive with a flags-0 handle", st2, STATUS_FWP_INJECT_HANDLE_STALE)
		if snap(l) != before || ip.numReqs() != 0 || rec.count() != 0 {
			t.Fatalf("refused injection changed the NBL (%v), reached the path (%d) or completed (%d)", snap(l) != before, ip.numReqs(), rec.count())
		}
		if hs := h.Stats(); hs.Refused != 2 || hs.Injected != 0 || hs.Pending != 0 {
			t.Fatalf("stats %+v", hs)
		}
		freeNBL(t, l)
		checkFull(t, p)
	}
	t.Run("idiomatic", func(t *testing.T) {
		s := newStack(t)
		check(t, s, newHandle(t, s, AF_UNSPEC, 0), false)
	})
	t.Run("fwps", func(t *testing.T) { check(t, Default, fwpsHandle(t, AF_UNSPEC, 0), true) })
}

func TestCase05_NoL2BitIsStaleForMac(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 4)
	mac := newPath(t, s, PathMAC, (&holder{}).deliver)
	sw := newVSwitch(t, s, (&holder{}).deliver)
	allButL2 := knownTypes &^ FWPS_INJECTION_TYPE_L2
	h := newHandle(t, s, AF_INET, allButL2)
	rec := newRecorder(t, true)
	l := alloc(t, p)
	before := snap(l)
	wantStatus(t, "MacReceive", FwpsInjectMacReceiveAsync0(h, nil, 0, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, 1, 0, l, rec.fn, nil), STATUS_FWP_INJECT_HANDLE_STALE)
	wantStatus(t, "MacSend", FwpsInjectMacSendAsync0(h, nil, 0, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, 1, 0, l, rec.fn, nil), STATUS_FWP_INJECT_HANDLE_STALE)
	wantErr(t, "InjectMacReceive", h.InjectMacReceive(0, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE, 1, 0, l, nil, Done{Fn: rec.fn}), STATUS_FWP_INJECT_HANDLE_STALE)
	wantErr(t, "InjectMacSend", h.InjectMacSend(0, FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE, 1, 0, l, nil, Done{Fn: rec.fn}), STATUS_FWP_INJECT_HANDLE_STALE)
	wantStatus(t, "vSwitchIngress", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, nil), STATUS_FWP_INJECT_HANDLE_STALE)
	if snap(l) != before || mac.numReqs() != 0 || sw.numCalls() != 0 || rec.count() != 0 {
		t.Fatal("a refused MAC/vSwitch injection changed the NBL, reached a target or completed")
	}
	if hs := h.Stats(); hs.Refused != 5 {
		t.Fatalf("Refused = %d, want 5", hs.Refused)
	}
	freeNBL(t, l)
	checkFull(t, p)
}

func TestCase06_OneL2HandleForMacAndVSwitch(t *testing.T) {
	if FWPS_INJECTION_TYPE_VSWITCH != FWPS_INJECTION_TYPE_L2 {
		t.Fatalf("FWPS_INJECTION_TYPE_VSWITCH = 0x%x, want the L2 bit", FWPS_INJECTION_TYPE_VSWITCH)
	}
	run := func(t *testing.T, s *Stack, h *Handle) {
		p := newPool(t, 16)
		q := newQueue(t, s, 16, nil)
		mac := newPath(t, s, PathMAC, completeNow(q, STATUS_SUCCESS))
		sw := newVSwitch(t, s, completeNow(q, STATUS_SUCCESS))
		rec := newRecorder(t, true)
		for _, layer := range []uint16{FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_OUTBOUND_MAC_FRAME_NATIVE} {
			wantStatus(t, "FwpsInjectMacSendAsync0", FwpsInjectMacSendAsync0(h, nil, 0, layer, 5, 1, alloc(t, p), rec.fn, nil), STATUS_SUCCESS)
		}
		for _, layer := range []uint16{FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE} {
			wantStatus(t, "FwpsInjectMacReceiveAsync0", FwpsInjectMacReceiveAsync0(h, nil, 0, layer, 5, 1, alloc(t, p), rec.fn, nil), STATUS_SUCCESS)
		}
		wantStatus(t, "vSwitchIngress", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 2, 3, alloc(t, p), rec.fn, nil), STATUS_SUCCESS)
		if mac.numReqs() != 4 || sw.numCalls() != 1 || rec.count() != 5 {
			t.Fatalf("MAC requests %d, switch calls %d, completions %d; want 4, 1, 5", mac.numReqs(), sw.numCalls(), rec.count())
		}
		kinds := []Kind{KindMacSend, KindMacSend, KindMacReceive, KindMacReceive}
		for i, k := range kinds {
			if r := mac.req(i); r.Kind != k || r.Handle != h || r.Count != 1 || r.InterfaceIndex != 5 || r.NdisPort != 1 {
				t.Fatalf("request %d: %+v", i, r)
			}
		}
		checkFull(t, p)
	}
	t.Run("idiomatic", func(t *testing.T) {
		s := newStack(t)
		run(t, s, newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2))
	})
	t.Run("fwps", func(t *testing.T) { run(t, Default, fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_VSWITCH)) })
	t.Run("any-family", func(t *testing.T) {
		// WFPSampler creates L2 handles for AF_INET and AF_INET6 too.
		s := newStack(t)
		for _, af := range []ADDRESS_FAMILY{AF_INET, AF_INET6} {
			if h := newHandle(t, s, af, FWPS_INJECTION_TYPE_L2); !h.Has(FWPS_INJECTION_TYPE_L2) {
				t.Fatalf("family %d: types 0x%x", af, h.Types())
			}
		}
	})
}

func TestCase07_CombinedBits(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 8)
	q := newQueue(t, s, 8, nil)
	newPath(t, s, PathIP, completeNow(q, STATUS_SUCCESS))
	h := newHandle(t, s, AF_INET6, FWPS_INJECTION_TYPE_NETWORK|FWPS_INJECTION_TYPE_FORWARD)
	if h.Types() != 0xC || h.Family() != AF_INET6 {
		t.Fatalf("types 0x%x family %d", h.Types(), h.Family())
	}
	rec := newRecorder(t, true)
	if err := h.InjectNetworkSend(0, 0, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil {
		t.Fatalf("NetworkSend: %v", err)
	}
	if err := h.InjectForward(AF_INET6, 0, 1, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	l := alloc(t, p)
	wantErr(t, "TransportSend on a NETWORK|FORWARD handle", h.InjectTransportSend(1, 0, nil, AF_INET6, 0, l, nil, Done{Fn: rec.fn}), STATUS_FWP_INJECT_HANDLE_STALE)
	freeNBL(t, l)
	if rec.count() != 2 {
		t.Fatalf("%d completions, want 2", rec.count())
	}
	checkFull(t, p)
}

func TestCase08_NotReady(t *testing.T) {
	s := NewStack() // not started
	h, err := s.CreateHandle(AF_INET, FWPS_INJECTION_TYPE_NETWORK)
	if h != nil || !errors.Is(err, ErrNotReady) || nbl.StatusOf(err) != 0xC0220100 {
		t.Fatalf("CreateHandle on a stack not started: %v, %v; want nil, STATUS_FWP_TCPIP_NOT_READY", h, err)
	}
	if s.Handles() != 0 || s.Ready() {
		t.Fatalf("Handles %d Ready %v", s.Handles(), s.Ready())
	}
	s.Start()
	h = newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_NETWORK)
	s.Stop()
	if h2, err := s.CreateHandle(AF_UNSPEC, 0); h2 != nil || !errors.Is(err, ErrNotReady) {
		t.Fatalf("CreateHandle after Stop: %v, %v", h2, err)
	}
	// Existing handles keep working after Stop.
	p := newPool(t, 2)
	q := newQueue(t, s, 4, nil)
	newPath(t, s, PathIP, completeNow(q, STATUS_SUCCESS))
	rec := newRecorder(t, true)
	if err := h.InjectNetworkSend(0, 0, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil || rec.count() != 1 {
		t.Fatalf("existing handle after Stop: %v, %d completions", err, rec.count())
	}
	checkFull(t, p)

	// The WFP name, on the Default stack.
	Default.Stop()
	defer Default.Start()
	before := Default.Handles()
	var fh *Handle
	wantStatus(t, "FwpsInjectionHandleCreate0 while not ready", FwpsInjectionHandleCreate0(AF_UNSPEC, FWPS_INJECTION_TYPE_L2, &fh), STATUS_FWP_TCPIP_NOT_READY)
	if fh != nil || Default.Handles() != before {
		t.Fatalf("a handle was made: %v, Handles %d -> %d", fh, before, Default.Handles())
	}
}

func TestCase09_UnknownBit(t *testing.T) {
	s := newStack(t)
	for _, bits := range []uint32{0x40, 0x80, 0x80000000, FWPS_INJECTION_TYPE_L2 | 0x40} {
		h, err := s.CreateHandle(AF_UNSPEC, bits)
		if h != nil || nbl.StatusOf(err) != STATUS_INVALID_PARAMETER || !errors.Is(err, ErrInvalidParameter) {
			t.Fatalf("CreateHandle(0x%x) = %v, %v; want STATUS_INVALID_PARAMETER", bits, h, err)
		}
		var fh *Handle
		wantStatus(t, "FwpsInjectionHandleCreate0 with an unknown bit", FwpsInjectionHandleCreate0(AF_UNSPEC, bits, &fh), STATUS_INVALID_PARAMETER)
		if fh != nil {
			t.Fatal("a handle was stored")
		}
	}
	if s.Handles() != 0 {
		t.Fatalf("Handles = %d", s.Handles())
	}
}

func TestCase10_NetworkNeedsFamily(t *testing.T) {
	s := newStack(t)
	for _, c := range []struct {
		af    ADDRESS_FAMILY
		types uint32
	}{
		{AF_UNSPEC, FWPS_INJECTION_TYPE_NETWORK},
		{AF_UNSPEC, FWPS_INJECTION_TYPE_NETWORK | FWPS_INJECTION_TYPE_FORWARD},
		{17, FWPS_INJECTION_TYPE_TRANSPORT}, // not a family at all
		{1, 0},
	} {
		h, err := s.CreateHandle(c.af, c.types)
		if h != nil || nbl.StatusOf(err) != STATUS_INVALID_PARAMETER {
			t.Fatalf("CreateHandle(%d, 0x%x) = %v, %v; want STATUS_INVALID_PARAMETER", c.af, c.types, h, err)
		}
		var fh *Handle
		wantStatus(t, "FwpsInjectionHandleCreate0", FwpsInjectionHandleCreate0(c.af, c.types, &fh), STATUS_INVALID_PARAMETER)
	}
	newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_NETWORK)
	newHandle(t, s, AF_INET6, FWPS_INJECTION_TYPE_NETWORK)
}

func TestCase11_TypeConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"STREAM", FWPS_INJECTION_TYPE_STREAM, 1},
		{"TRANSPORT", FWPS_INJECTION_TYPE_TRANSPORT, 2},
		{"NETWORK", FWPS_INJECTION_TYPE_NETWORK, 4},
		{"FORWARD", FWPS_INJECTION_TYPE_FORWARD, 8},
		{"L2", FWPS_INJECTION_TYPE_L2, 0x10},
		{"VSWITCH_TRANSPORT", FWPS_INJECTION_TYPE_VSWITCH_TRANSPORT, 0x20},
		{"VSWITCH (alias of L2)", FWPS_INJECTION_TYPE_VSWITCH, 0x10},
		{"FWPS_PACKET_NOT_INJECTED", uint32(FWPS_PACKET_NOT_INJECTED), 0},
		{"FWPS_PACKET_INJECTED_BY_SELF", uint32(FWPS_PACKET_INJECTED_BY_SELF), 1},
		{"FWPS_PACKET_INJECTED_BY_OTHER", uint32(FWPS_PACKET_INJECTED_BY_OTHER), 2},
		{"FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF", uint32(FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF), 3},
		{"FWPS_PACKET_INJECTION_STATE_MAX", uint32(FWPS_PACKET_INJECTION_STATE_MAX), 4},
		{"STATUS_FWP_TCPIP_NOT_READY", uint32(STATUS_FWP_TCPIP_NOT_READY), 0xC0220100},
		{"STATUS_FWP_INJECT_HANDLE_CLOSING", uint32(STATUS_FWP_INJECT_HANDLE_CLOSING), 0xC0220101},
		{"STATUS_FWP_INJECT_HANDLE_STALE", uint32(STATUS_FWP_INJECT_HANDLE_STALE), 0xC0220102},
		{"STATUS_FWP_NULL_POINTER", uint32(STATUS_FWP_NULL_POINTER), 0xC022001C},
		{"STATUS_FWP_INVALID_PARAMETER", uint32(STATUS_FWP_INVALID_PARAMETER), 0xC0220035},
		{"STATUS_INVALID_PARAMETER", uint32(STATUS_INVALID_PARAMETER), 0xC000000D},
		{"STATUS_INVALID_BUFFER_SIZE", uint32(STATUS_INVALID_BUFFER_SIZE), 0xC0000206},
		{"STATUS_HOPLIMIT_EXCEEDED", uint32(STATUS_HOPLIMIT_EXCEEDED), 0xC000A012},
		{"FWPS_SEND_INJECT_PRESERVE_IPID", FWPS_SEND_INJECT_PRESERVE_IPID, 1},
		{"AF_INET", uint32(AF_INET), 2},
		{"AF_INET6", uint32(AF_INET6), 23},
		{"FWPS_STREAM_FLAG_SEND_DISCONNECT", FWPS_STREAM_FLAG_SEND_DISCONNECT, 0x80000},
		{"FWPS_STREAM_FLAG_RECEIVE_DISCONNECT", FWPS_STREAM_FLAG_RECEIVE_DISCONNECT, 0x4},
		{"FWPS_LAYER_STREAM_V4", uint32(FWPS_LAYER_STREAM_V4), 20},
		{"FWPS_LAYER_STREAM_V6", uint32(FWPS_LAYER_STREAM_V6), 22},
	} {
		if c.got != c.want {
			t.Errorf("%s = 0x%x, want 0x%x", c.name, c.got, c.want)
		}
	}
	// The bits are distinct, so they OR together.
	all := []uint32{FWPS_INJECTION_TYPE_STREAM, FWPS_INJECTION_TYPE_TRANSPORT, FWPS_INJECTION_TYPE_NETWORK,
		FWPS_INJECTION_TYPE_FORWARD, FWPS_INJECTION_TYPE_L2, FWPS_INJECTION_TYPE_VSWITCH_TRANSPORT}
	var or uint32
	for _, b := range all {
		if or&b != 0 {
			t.Fatalf("type bit 0x%x overlaps", b)
		}
		or |= b
	}
	s := newStack(t)
	if h := newHandle(t, s, AF_INET, or); h.Types() != 0x3F {
		t.Fatalf("a handle with every type has types 0x%x", h.Types())
	}
	if got := FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF.String(); got != "FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF" {
		t.Fatalf("String() = %q", got)
	}
	if got := FWPS_PACKET_INJECTION_STATE(9).String(); got != "FWPS_PACKET_INJECTION_STATE_MAX" {
		t.Fatalf("String() of 9 = %q", got)
	}
	if !FWPS_PACKET_INJECTED_BY_SELF.SelfInjected() || !FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF.SelfInjected() ||
		FWPS_PACKET_INJECTED_BY_OTHER.SelfInjected() || FWPS_PACKET_NOT_INJECTED.SelfInjected() {
		t.Fatal("SelfInjected is wrong")
	}
}

func TestCase12_DestroyIdle(t *testing.T) {
	s := newStack(t)
	h, err := s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- h.Destroy() }()
	if err := await(t, errc, "Destroy with nothing pending"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if !h.Closing() || s.Handles() != 0 {
		t.Fatalf("Closing %v Handles %d", h.Closing(), s.Handles())
	}
	// Twice is safe, and the count does not go down twice.
	if err := h.Destroy(); err != nil || s.Handles() != 0 {
		t.Fatalf("second Destroy: %v, Handles %d", err, s.Handles())
	}

	// After injections that all completed, Destroy returns at once too.
	p := newPool(t, 4)
	q := newQueue(t, s, 4, nil)
	sw := newVSwitch(t, s, completeNow(q, STATUS_SUCCESS))
	h2 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	rec := newRecorder(t, true)
	for range 3 {
		if err := h2.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil {
			t.Fatal(err)
		}
	}
	go func() { errc <- h2.Destroy() }()
	if err := await(t, errc, "Destroy after every completion ran"); err != nil {
		t.Fatal(err)
	}
	checkFull(t, p)

	// The WFP name.
	var fh *Handle
	wantStatus(t, "create", FwpsInjectionHandleCreate0(AF_UNSPEC, 0, &fh), STATUS_SUCCESS)
	stc := make(chan Status, 1)
	go func() { stc <- FwpsInjectionHandleDestroy0(fh) }()
	wantStatus(t, "FwpsInjectionHandleDestroy0 with nothing pending", await(t, stc, "FwpsInjectionHandleDestroy0"), STATUS_SUCCESS)
}

// pendingThree injects three NBLs through h into a switch that holds them,
// with a completion that counts and frees them.
func pendingThree(t *testing.T, s *Stack, h *Handle, p *nbl.Pool) (*holder, *fakeVSwitch, *atomic.Int32, *recorder) {
	hold := &holder{}
	sw := newVSwitch(t, s, hold.deliver)
	rec := newRecorder(t, true)
	ran := new(atomic.Int32)
	rec.hook = func(completion) { ran.Add(1) }
	ctx := newCtx("pending")
	for range 3 {
		if st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, alloc(t, p), rec.fn, ctx); st != STATUS_SUCCESS {
			t.Fatalf("inject: %v", st)
		}
	}
	if st := h.Stats(); st.Pending != 3 || st.Injected != 3 || hold.held() != 3 {
		t.Fatalf("stats %+v, held %d", st, hold.held())
	}
	return hold, sw, ran, rec
}

func TestCase13_DestroyWaitsForPending(t *testing.T) {
	for _, api := range []string{"idiomatic", "fwps"} {
		t.Run(api, func(t *testing.T) {
			s := newStack(t)
			var h *Handle
			if api == "fwps" {
				s = Default
				h = fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			} else {
				h = newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			}
			p := newPool(t, 8)
			hold, _, ran, _ := pendingThree(t, s, h, p)

			type result struct {
				st  Status
				ran int32 // completions that had run when Destroy returned
			}
			res := make(chan result, 1)
			go func() {
				var st Status
				if api == "fwps" {
					st = FwpsInjectionHandleDestroy0(h)
				} else {
					st = nbl.StatusOf(h.Destroy())
				}
				res <- result{st, ran.Load()}
			}()
			waitFor(t, "Destroy to begin", h.Closing)
			stillBlocked(t, res, "Destroy with 3 completions pending")
			q := newQueue(t, s, 8, nil)
			for i := 1; i <= 3; i++ {
				if n := hold.complete(q, STATUS_SUCCESS, 1); n != 1 {
					t.Fatalf("completed %d", n)
				}
				if i < 3 {
					stillBlocked(t, res, "Destroy with completions pending")
				}
			}
			r := await(t, res, "Destroy after the last completion")
			if r.st != STATUS_SUCCESS || r.ran != 3 {
				t.Fatalf("Destroy returned %v with %d completions run, want STATUS_SUCCESS after 3", r.st, r.ran)
			}
			if st := h.Stats(); st.Pending != 0 || st.Injected != 3 || st.Completed != 3 {
				t.Fatalf("stats after Destroy %+v", st)
			}
			checkFull(t, p)
		})
	}
}

func TestCase14_InjectDuringDestroy(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_L2|FWPS_INJECTION_TYPE_NETWORK)
	p := newPool(t, 8)
	ip := newPath(t, s, PathIP, (&holder{}).deliver)
	hold, sw, _, rec := pendingThree(t, s, h, p)
	errc := make(chan error, 1)
	go func() { errc <- h.Destroy() }()
	waitFor(t, "Destroy to begin", h.Closing)

	l := alloc(t, p)
	before := snap(l)
	refused := h.Stats().Refused
	wantStatus(t, "vSwitch inject during destroy", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, nil), STATUS_FWP_INJECT_HANDLE_CLOSING)
	err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, l, nil, Done{Fn: rec.fn})
	if !errors.Is(err, ErrHandleClosing) {
		t.Fatalf("InjectVSwitchIngress during destroy: %v", err)
	}
	wantStatus(t, "network send during destroy", FwpsInjectNetworkSendAsync0(h, nil, 0, 0, l, rec.fn, nil), STATUS_FWP_INJECT_HANDLE_CLOSING)
	if snap(l) != before || sw.numCalls() != 3 || ip.numReqs() != 0 {
		t.Fatal("a refused injection changed the NBL or reached a target")
	}
	if st := h.Stats(); st.Pending != 3 || st.Injected != 3 || st.Refused != refused+3 {
		t.Fatalf("stats %+v", st)
	}
	stillBlocked(t, errc, "Destroy with 3 pending")
	// The caller still owns l: it can free it now.
	if err := p.Free(l); err != nil {
		t.Fatalf("Free of the refused NBL: %v", err)
	}
	hold.complete(newQueue(t, s, 8, nil), STATUS_SUCCESS, -1)
	if err := await(t, errc, "Destroy"); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 3 || rec.countFor(l) != 0 {
		t.Fatalf("%d completions (%d for the refused NBL), want 3 (none for it)", rec.count(), rec.countFor(l))
	}
	checkFull(t, p)
}

func TestCase15_DispatchLevelCreateDestroy(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	fh := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	type result struct {
		createErr, destroyErr, destroyCtxErr error
		created                              *Handle
		fwpsCreate, fwpsDestroy              Status
		fwpsCreated                          *Handle
		atDispatch, defaultAtDispatch        bool
		afterLeave                           error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		s.EnterDispatch()
		Default.EnterDispatch()
		r.atDispatch = s.AtDispatch()
		r.defaultAtDispatch = Default.AtDispatch()
		r.created, r.createErr = s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
		r.destroyErr = h.Destroy()
		r.destroyCtxErr = h.DestroyContext(t.Context())
		r.fwpsCreate = FwpsInjectionHandleCreate0(AF_UNSPEC, FWPS_INJECTION_TYPE_L2, &r.fwpsCreated)
		r.fwpsDestroy = FwpsInjectionHandleDestroy0(fh)
		Default.LeaveDispatch()
		s.LeaveDispatch()
		h2, err := s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
		if err == nil {
			err = h2.Destroy()
		}
		r.afterLeave = err
		res <- r
	}()
	r := await(t, res, "dispatch goroutine")
	if !r.atDispatch || !r.defaultAtDispatch {
		t.Fatal("EnterDispatch did not mark the goroutine")
	}
	if s.AtDispatch() {
		t.Fatal("the test goroutine is marked DISPATCH_LEVEL")
	}
	if r.created != nil || !errors.Is(r.createErr, STATUS_INVALID_DEVICE_STATE) {
		t.Fatalf("CreateHandle at DISPATCH_LEVEL: %v, %v", r.created, r.createErr)
	}
	if !errors.Is(r.destroyErr, STATUS_INVALID_DEVICE_STATE) || !errors.Is(r.destroyCtxErr, STATUS_INVALID_DEVICE_STATE) {
		t.Fatalf("Destroy at DISPATCH_LEVEL: %v, %v", r.destroyErr, r.destroyCtxErr)
	}
	if r.fwpsCreate != STATUS_INVALID_DEVICE_STATE || r.fwpsCreated != nil || r.fwpsDestroy != STATUS_INVALID_DEVICE_STATE {
		t.Fatalf("WFP names at DISPATCH_LEVEL: create %v (%v), destroy %v", r.fwpsCreate, r.fwpsCreated, r.fwpsDestroy)
	}
	if r.afterLeave != nil {
		t.Fatalf("create/destroy after LeaveDispatch: %v", r.afterLeave)
	}
	// A refused destroy did not begin closing the handles.
	if h.Closing() || fh.Closing() || s.Handles() != 1 {
		t.Fatalf("refused destroy changed state: closing %v %v, Handles %d", h.Closing(), fh.Closing(), s.Handles())
	}
}

func TestCase16_NetworkSendFlags(t *testing.T) {
	check := func(t *testing.T, s *Stack, h *Handle, send func(flags uint32, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status) {
		p := newPool(t, 4)
		rec := newRecorder(t, true)
		l := alloc(t, p)
		before := snap(l)
		for _, flags := range []uint32{0x2, 0x3, 0x80000000} {
			wantStatus(t, "NetworkSend with bad flags", send(flags, l, rec.fn), STATUS_INVALID_PARAMETER)
		}
		// Without an IP data path, valid flags validate and stop at NOT_READY.
		wantStatus(t, "NetworkSend(PRESERVE_IPID) without an IP path", send(FWPS_SEND_INJECT_PRESERVE_IPID, l, rec.fn), STATUS_FWP_TCPIP_NOT_READY)
		wantStatus(t, "NetworkSend(0) without an IP path", send(0, l, rec.fn), STATUS_FWP_TCPIP_NOT_READY)
		if snap(l) != before || rec.count() != 0 {
			t.Fatal("refused NetworkSend changed the NBL or completed")
		}
		q := newQueue(t, s, 4, nil)
		ip := newPath(t, s, PathIP, completeNow(q, STATUS_SUCCESS))
		wantStatus(t, "NetworkSend(PRESERVE_IPID) with an IP path", send(FWPS_SEND_INJECT_PRESERVE_IPID, l, rec.fn), STATUS_SUCCESS)
		if ip.numReqs() != 1 || rec.count() != 1 {
			t.Fatalf("%d requests, %d completions", ip.numReqs(), rec.count())
		}
		if r := ip.req(0); r.Kind != KindNetworkSend || r.Flags != FWPS_SEND_INJECT_PRESERVE_IPID || r.CompartmentID != 7 || r.Handle != h || r.Count != 1 {
			t.Fatalf("request %+v", r)
		}
		checkFull(t, p)
	}
	t.Run("idiomatic", func(t *testing.T) {
		s := newStack(t)
		h := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_NETWORK)
		check(t, s, h, func(flags uint32, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status {
			return nbl.StatusOf(h.InjectNetworkSend(flags, 7, l, nil, Done{Fn: fn}))
		})
	})
	t.Run("fwps", func(t *testing.T) {
		h := fwpsHandle(t, AF_INET, FWPS_INJECTION_TYPE_NETWORK)
		check(t, Default, h, func(flags uint32, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status {
			return FwpsInjectNetworkSendAsync0(h, nil, flags, 7, l, fn, nil)
		})
	})
}

func TestCase17_VSwitchFlagsReserved(t *testing.T) {
	h := fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	p := newPool(t, 4)
	q := newQueue(t, Default, 4, nil)
	sw := newVSwitch(t, Default, completeNow(q, STATUS_SUCCESS))
	rec := newRecorder(t, true)
	l := alloc(t, p)
	before := snap(l)
	for _, c := range []struct {
		flags    uint32
		reserved uintptr
	}{{1, 0}, {0x80000000, 0}, {0, 1}, {2, 0xdead}} {
		st := FwpsInjectvSwitchEthernetIngressAsync0(h, nil, c.flags, c.reserved, sw.id.Bytes(), 0, 0, l, rec.fn, nil)
		wantStatus(t, "vSwitchIngress with flags/reserved", st, STATUS_INVALID_PARAMETER)
	}
	if snap(l) != before || sw.numCalls() != 0 || rec.count() != 0 || h.Stats().Refused != 4 {
		t.Fatalf("refused calls changed something: calls %d completions %d stats %+v", sw.numCalls(), rec.count(), h.Stats())
	}
	wantStatus(t, "vSwitchIngress with flags 0, reserved 0", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, nil), STATUS_SUCCESS)
	if rec.count() != 1 {
		t.Fatalf("%d completions", rec.count())
	}
	checkFull(t, p)
}

func TestCase18_ExactlyOneCompletion(t *testing.T) {
	modes := []string{"completes-before-inject-returns", "completes-after-inject-returns", "worker"}
	for _, api := range []string{"idiomatic", "fwps"} {
		for _, mode := range modes {
			t.Run(api+"/"+mode, func(t *testing.T) {
				s := newStack(t)
				var h *Handle
				if api == "fwps" {
					s = Default
					h = fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
				} else {
					h = newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
				}
				p := newPool(t, 4)
				q := newQueue(t, s, 4, nil)
				hold := &holder{}
				var deliver func(*nbl.NetBufferList, int)
				var w *worker
				switch mode {
				case modes[0]:
					deliver = completeNow(q, STATUS_SUCCESS)
				case modes[1]:
					deliver = hold.deliver
				default:
					w = startWorker(t, s, workerConfig{})
					deliver = w.deliver
				}
				sw := newVSwitch(t, s, deliver)
				var returned atomic.Bool
				var returnedAtCompletion atomic.Int32 // 1: not yet returned, 2: returned
				rec := newRecorder(t, false)
				rec.hook = func(completion) {
					if returned.Load() {
						returnedAtCompletion.Store(2)
					} else {
						returnedAtCompletion.Store(1)
					}
				}
				l := alloc(t, p)
				injCtx, complCtx := newCtx("injection"), newCtx("completion")
				var st Status
				if api == "fwps" {
					st = FwpsInjectvSwitchEthernetIngressAsync0(h, injCtx, 0, 0, sw.id.Bytes(), 9, 2, l, rec.fn, complCtx)
				} else {
					st = nbl.StatusOf(h.InjectVSwitchIngress(sw.id.Bytes(), 9, 2, l, injCtx, Done{Fn: rec.fn, Context: complCtx}))
				}
				returned.Store(true)
				wantStatus(t, "inject", st, STATUS_SUCCESS)
				switch mode {
				case modes[0]:
					if returnedAtCompletion.Load() != 1 {
						t.Fatal("the completion did not run before the inject call returned")
					}
				case modes[1]:
					if rec.count() != 0 {
						t.Fatal("completed while the switch still holds the NBL")
					}
					hold.complete(q, STATUS_SUCCESS, -1)
					if returnedAtCompletion.Load() != 2 {
						t.Fatal("the completion did not run after the inject call returned")
					}
				default:
					w.stop()
				}
				q.Flush()
				q.Flush()
				evs := rec.all()
				if len(evs) != 1 {
					t.Fatalf("%d completions, want exactly 1", len(evs))
				}
				c := evs[0]
				if c.l != l || c.ctx != any(complCtx) || c.status != STATUS_SUCCESS {
					t.Fatalf("completion got NBL %p ctx %v status %v; want %p, %v, success", c.l, c.ctx, c.status, l, complCtx)
				}
				if c.tag.Handle != h.ID() || c.tag.Context != any(injCtx) || c.tag.Hops != 1 {
					t.Fatalf("tag at completion %+v", c.tag)
				}
				if call := sw.call(0); call.count != 1 || call.port != 9 || call.nic != 2 || call.nbls[0] != l {
					t.Fatalf("switch call %+v", call)
				}
				if l.Completion.Owner != nil || l.Completion.Fn != nil {
					t.Fatal("the completion record was not cleared before the completion function ran")
				}
				freeNBL(t, l)
				if st := h.Stats(); st.Injected != 1 || st.Completed != 1 || st.Pending != 0 {
					t.Fatalf("stats %+v", st)
				}
				checkFull(t, p)
			})
		}
	}
}

func TestCase19_DispatchLevelFlag(t *testing.T) {
	for _, dispatch := range []bool{true, false} {
		t.Run(map[bool]string{true: "dispatch-worker", false: "plain-worker"}[dispatch], func(t *testing.T) {
			s := newStack(t)
			p := newPool(t, 16)
			w := startWorker(t, s, workerConfig{dispatch: dispatch})
			sw := newVSwitch(t, s, w.deliver)
			h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			rec := newRecorder(t, true)
			for range 8 {
				if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil {
					t.Fatal(err)
				}
			}
			w.stop()
			evs := rec.all()
			if len(evs) != 8 {
				t.Fatalf("%d completions", len(evs))
			}
			for _, c := range evs {
				if c.dispatch != dispatch {
					t.Fatalf("dispatchLevel = %v, want %v", c.dispatch, dispatch)
				}
			}
			checkFull(t, p)
		})
	}
	t.Run("queue-made-after-EnterDispatch-on-this-goroutine", func(t *testing.T) {
		s := newStack(t)
		p := newPool(t, 4)
		h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
		s.EnterDispatch()
		q := newQueue(t, s, 4, nil)
		s.LeaveDispatch()
		plain := newQueue(t, s, 4, nil)
		hold := &holder{}
		sw := newVSwitch(t, s, hold.deliver)
		rec := newRecorder(t, true)
		for range 2 {
			if err := h.InjectVSwitchIngress(sw.id.Bytes(), 0, 0, alloc(t, p), nil, Done{Fn: rec.fn}); err != nil {
				t.Fatal(err)
			}
		}
		hold.complete(q, STATUS_SUCCESS, 1)
		hold.complete(plain, STATUS_SUCCESS, 1)
		if evs := rec.all(); len(evs) != 2 || !evs[0].dispatch || evs[1].dispatch {
			t.Fatalf("completions %+v; want dispatchLevel true then false", evs)
		}
		checkFull(t, p)
	})
}

func TestCase20_ErrorMeansNoCompletionAndNoChange(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 16)
	w := startWorker(t, s, workerConfig{dispatch: true})
	sw := newVSwitch(t, s, w.deliver)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	noL2 := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
	closed, err := s.CreateHandle(AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Destroy(); err != nil {
		t.Fatal(err)
	}
	o := newOriginator(p.Cap())
	rec := newRecorder(t, true)
	unknown := nextGUID()

	orig := allocOriginal(t, p, o)
	orig.Status = STATUS_PENDING // an arbitrary prior value the model must keep
	orig.Reference()             // what an injection without completion function needs
	cl := mustClone(t, p, orig)
	created := alloc(t, p)
	chain := link(created, alloc(t, p))
	cases := []struct {
		name string
		head *nbl.NetBufferList
		call func(head *nbl.NetBufferList) Status
		want Status
	}{
		{"stale", chain, func(l *nbl.NetBufferList) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(noL2, newCtx("i"), 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, newCtx("c"))
		}, STATUS_FWP_INJECT_HANDLE_STALE},
		{"closing", chain, func(l *nbl.NetBufferList) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(closed, newCtx("i"), 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, nil)
		}, STATUS_FWP_INJECT_HANDLE_CLOSING},
		{"unknown-vswitch", chain, func(l *nbl.NetBufferList) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, unknown.Bytes(), 0, 0, l, rec.fn, nil)
		}, STATUS_NOT_FOUND},
		{"clone-without-completion", cl, func(l *nbl.NetBufferList) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, nil, nil)
		}, STATUS_INVALID_PARAMETER},
		{"original-with-status", orig, func(l *nbl.NetBufferList) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(closed, nil, 0, 0, sw.id.Bytes(), 0, 0, l, nil, nil)
		}, STATUS_FWP_INJECT_HANDLE_CLOSING},
	}
	for _, c := range cases {
		ls := chainNBLs(c.head)
		before := make([]nblSnap, len(ls))
		for i, l := range ls {
			before[i] = snap(l)
		}
		wantStatus(t, c.name, c.call(c.head), c.want)
		for i, l := range ls {
			if snap(l) != before[i] {
				t.Fatalf("%s: NBL %d changed:\n got %+v\nwant %+v", c.name, i, snap(l), before[i])
			}
		}
	}
	w.stop() // anything wrongly accepted would have completed by now
	if rec.count() != 0 || sw.numCalls() != 0 || o.total.Load() != 0 {
		t.Fatalf("completions %d, switch calls %d, originator returns %d; want 0", rec.count(), sw.numCalls(), o.total.Load())
	}
	if st := h.Stats(); st.Injected != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The caller still owns everything and frees it.
	for _, l := range chainNBLs(chain) {
		l.Next = nil
		freeNBL(t, l)
	}
	freeNBL(t, cl)
	if orig.RefCount() != 1 {
		t.Fatalf("the refused injection took the reference: RefCount %d", orig.RefCount())
	}
	orig.Dereference()
	freeNBL(t, orig)
	if o.total.Load() != 1 || o.badHolds.Load() != 0 {
		t.Fatalf("originator: %d returns, %d with holds", o.total.Load(), o.badHolds.Load())
	}
	checkFull(t, p)
}

func TestCase21_AsyncFailureStatus(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 8)
	const mtu = 1514
	w := startWorker(t, s, workerConfig{dispatch: true, status: func(l *nbl.NetBufferList) Status {
		if l.FirstNetBuffer().DataLength() > mtu {
			return STATUS_INVALID_BUFFER_SIZE
		}
		return STATUS_SUCCESS
	}})
	sw := newVSwitch(t, s, w.deliver)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	rec := newRecorder(t, true)
	small := alloc(t, p)
	big, err := p.Allocate(0, 1600)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*nbl.NetBufferList{small, big} {
		// The call succeeds: the failure is found after it returned.
		wantStatus(t, "inject", FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 0, 0, l, rec.fn, nil), STATUS_SUCCESS)
	}
	w.stop()
	evs := rec.all()
	if len(evs) != 2 {
		t.Fatalf("%d completions", len(evs))
	}
	for _, c := range evs {
		switch c.l {
		case small:
			if c.status != STATUS_SUCCESS || !NT_SUCCESS(c.status) {
				t.Fatalf("small frame completed with %v", c.status)
			}
		case big:
			if c.status != 0xC0000206 || NT_SUCCESS(c.status) || int32(c.status) >= 0 {
				t.Fatalf("oversize frame completed with %v; want STATUS_INVALID_BUFFER_SIZE, NT_SUCCESS false", c.status)
			}
		default:
			t.Fatal("completion for an NBL that was not injected")
		}
	}
	// A failed NBL still completed: the handle is drained.
	if st := h.Stats(); st.Completed != 2 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkFull(t, p)
}

func TestCase22_ChainOfThree(t *testing.T) {
	for _, api := range []string{"idiomatic", "fwps"} {
		t.Run(api, func(t *testing.T) {
			s := newStack(t)
			var h *Handle
			if api == "fwps" {
				s = Default
				h = fwpsHandle(t, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			} else {
				h = newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
			}
			p := newPool(t, 8)
			w := startWorker(t, s, workerConfig{dispatch: true})
			sw := newVSwitch(t, s, w.deliver)
			rec := newRecorder(t, true)
			ls := []*nbl.NetBufferList{alloc(t, p), alloc(t, p), alloc(t, p)}
			ctx := newCtx("chain")
			var st Status
			if api == "fwps" {
				st = FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 4, 1, link(ls...), rec.fn, ctx)
			} else {
				st = nbl.StatusOf(h.InjectVSwitchIngress(sw.id.Bytes(), 4, 1, link(ls...), nil, Done{Fn: rec.fn, Context: ctx}))
			}
			wantStatus(t, "inject chain of 3", st, STATUS_SUCCESS)
			w.stop()
			if sw.numCalls() != 1 {
				t.Fatalf("%d switch calls, want one for the chain", sw.numCalls())
			}
			if c := sw.call(0); c.count != 3 || len(c.nbls) != 3 || c.port != 4 || c.nic != 1 {
				t.Fatalf("switch call: count %d, %d NBLs, port %d, nic %d", c.count, len(c.nbls), c.port, c.nic)
			}
			evs := rec.all()
			if len(evs) != 3 {
				t.Fatalf("%d completions, want 3", len(evs))
			}
			seen := map[*nbl.NetBufferList]int{}
			for _, c := range evs {
				seen[c.l]++
				if c.ctx != any(ctx) {
					t.Fatalf("completion context %v, want %v", c.ctx, ctx)
				}
			}
			for i, l := range ls {
				if seen[l] != 1 {
					t.Fatalf("NBL %d completed %d times", i, seen[l])
				}
			}
			if st := h.Stats(); st.Injected != 3 || st.Completed != 3 || st.Pending != 0 {
				t.Fatalf("stats %+v", st)
			}
			checkFull(t, p)
		})
	}
}

// streamEnv is a stack with a fake stream data path and a STREAM handle.
func streamEnv(t *testing.T, deliver func(*nbl.NetBufferList, int)) (*Stack, *Handle, *fakePath) {
	s := newStack(t)
	sp := newPath(t, s, PathStream, deliver)
	return s, newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_STREAM), sp
}

func TestCase23_StreamNullCompletion(t *testing.T) {
	_, h, sp := streamEnv(t, (&holder{}).deliver)
	p := newPool(t, 2)
	l := alloc(t, p)
	before := snap(l)
	err := h.InjectStream(0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND, l, 64, nil, Done{Context: newCtx("c")})
	if !errors.Is(err, ErrNullPointer) || nbl.StatusOf(err) != 0xC022001C {
		t.Fatalf("InjectStream without a completion: %v", err)
	}
	wantStatus(t, "FwpsStreamInjectAsync0(completionFn NULL)", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V6, FWPS_STREAM_FLAG_RECEIVE, l, 64, nil, nil), STATUS_FWP_NULL_POINTER)
	// Even for a disconnect without data, where it would never be called.
	wantStatus(t, "disconnect without data and completionFn NULL", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_DISCONNECT, nil, 0, nil, nil), STATUS_FWP_NULL_POINTER)
	if snap(l) != before || sp.numReqs() != 0 {
		t.Fatal("refused stream injection changed the NBL or reached the stream path")
	}
	freeNBL(t, l)
	checkFull(t, p)
}

func TestCase24_StreamDisconnectWithoutBase(t *testing.T) {
	s, h, sp := streamEnv(t, nil)
	q := newQueue(t, s, 4, nil)
	sp.deliver = completeNow(q, STATUS_SUCCESS)
	p := newPool(t, 4)
	rec := newRecorder(t, true)
	l := alloc(t, p)
	before := snap(l)
	for _, flags := range []uint32{
		FWPS_STREAM_FLAG_SEND_DISCONNECT,
		FWPS_STREAM_FLAG_RECEIVE_DISCONNECT,
		FWPS_STREAM_FLAG_RECEIVE | FWPS_STREAM_FLAG_SEND_DISCONNECT,
		FWPS_STREAM_FLAG_SEND | FWPS_STREAM_FLAG_RECEIVE_DISCONNECT,
		FWPS_STREAM_FLAG_SEND | 0x20, // an undefined bit
	} {
		wantStatus(t, "FwpsStreamInjectAsync0", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, flags, l, 64, rec.fn, nil), STATUS_FWP_INVALID_PARAMETER)
		err := h.InjectStream(0, 1, 2, FWPS_LAYER_STREAM_V4, flags, l, 64, nil, Done{Fn: rec.fn})
		if nbl.StatusOf(err) != 0xC0220035 {
			t.Fatalf("InjectStream(0x%x): %v", flags, err)
		}
	}
	if snap(l) != before || sp.numReqs() != 0 || rec.count() != 0 {
		t.Fatal("refused stream injection changed something")
	}
	// With their base flags they are fine.
	wantStatus(t, "SEND|SEND_DISCONNECT", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_DISCONNECT, l, 64, rec.fn, nil), STATUS_SUCCESS)
	wantStatus(t, "RECEIVE|RECEIVE_DISCONNECT", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_RECEIVE|FWPS_STREAM_FLAG_RECEIVE_DISCONNECT, alloc(t, p), 64, rec.fn, nil), STATUS_SUCCESS)
	if rec.count() != 2 {
		t.Fatalf("%d completions", rec.count())
	}
	checkFull(t, p)
}

func TestCase25_StreamNilNBLDisconnect(t *testing.T) {
	s := newStack(t)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_STREAM)
	rec := newRecorder(t, true)
	ctx := newCtx("disconnect")
	// Without a stream data path: validated, then NOT_READY.
	wantStatus(t, "disconnect without a stream path", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_DISCONNECT, nil, 0, rec.fn, ctx), STATUS_FWP_TCPIP_NOT_READY)

	w := startWorker(t, s, workerConfig{})
	sp := newPath(t, s, PathStream, w.deliver)
	for _, flags := range []uint32{
		FWPS_STREAM_FLAG_SEND | FWPS_STREAM_FLAG_SEND_DISCONNECT,
		FWPS_STREAM_FLAG_RECEIVE | FWPS_STREAM_FLAG_RECEIVE_DISCONNECT,
	} {
		wantStatus(t, "disconnect without data", FwpsStreamInjectAsync0(h, newCtx("inj"), 0, 11, 12, FWPS_LAYER_STREAM_V6, flags, nil, 0, rec.fn, ctx), STATUS_SUCCESS)
	}
	// Without a DISCONNECT flag, data is required.
	wantStatus(t, "no data, no disconnect", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND, nil, 0, rec.fn, ctx), STATUS_INVALID_PARAMETER)
	w.stop()
	if sp.numReqs() != 2 {
		t.Fatalf("stream path got %d requests, want 2", sp.numReqs())
	}
	r := sp.req(0)
	if r.Kind != KindStream || r.NBLs != nil || r.Count != 0 || r.Handle != h || r.FlowID != 11 || r.CalloutID != 12 ||
		r.LayerID != FWPS_LAYER_STREAM_V6 || r.StreamFlags != FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_DISCONNECT {
		t.Fatalf("request %+v", r)
	}
	if rec.count() != 0 {
		t.Fatalf("%d completions for a disconnect without data, want none", rec.count())
	}
	if st := h.Stats(); st.Pending != 0 || st.Injected != 0 {
		t.Fatalf("stats %+v: nothing should be pending", st)
	}
	// Nothing is pending, so Destroy returns at once; afterwards a
	// disconnect is refused as closing.
	destroyBounded(t, h)
	wantStatus(t, "disconnect on a closing handle", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND|FWPS_STREAM_FLAG_SEND_DISCONNECT, nil, 0, rec.fn, ctx), STATUS_FWP_INJECT_HANDLE_CLOSING)
}

func TestCase26_StreamLayer(t *testing.T) {
	s, h, sp := streamEnv(t, nil)
	q := newQueue(t, s, 4, nil)
	sp.deliver = completeNow(q, STATUS_SUCCESS)
	p := newPool(t, 4)
	rec := newRecorder(t, true)
	l := alloc(t, p)
	for _, layer := range []uint16{0, 21, 23, FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, FWPS_LAYER_INBOUND_MAC_FRAME_ETHERNET, 0xFFFF} {
		wantStatus(t, "stream inject at a non-stream layer", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, layer, FWPS_STREAM_FLAG_SEND, l, 64, rec.fn, nil), STATUS_INVALID_PARAMETER)
	}
	if sp.numReqs() != 0 {
		t.Fatal("reached the stream path")
	}
	// The first success takes l (its completion frees it); the second
	// injects a fresh NBL.
	for i, layer := range []uint16{FWPS_LAYER_STREAM_V4, FWPS_LAYER_STREAM_V6} {
		if i > 0 {
			l = alloc(t, p)
		}
		wantStatus(t, "stream inject at a stream layer", FwpsStreamInjectAsync0(h, nil, 0, 1, 2, layer, FWPS_STREAM_FLAG_SEND, l, 64, rec.fn, nil), STATUS_SUCCESS)
		if r := sp.req(sp.numReqs() - 1); r.LayerID != layer || r.Kind != KindStream {
			t.Fatalf("request %+v, want layer %d", r, layer)
		}
	}
	if rec.count() != 2 {
		t.Fatalf("%d completions, want 2", rec.count())
	}
	checkFull(t, p)
}

func TestCase27_StreamChainOfTwoClones(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 8)
	w := startWorker(t, s, workerConfig{dispatch: true})
	sp := newPath(t, s, PathStream, w.deliver)
	h := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_STREAM)
	o := newOriginator(p.Cap())
	a, b := allocOriginal(t, p, o), allocOriginal(t, p, o)
	ca, cb := mustClone(t, p, a), mustClone(t, p, b)
	ctx := newCtx("stream")
	var mu sync.Mutex
	var got []*nbl.NetBufferList
	var ctxs []any
	complete := func(c any, l *nbl.NetBufferList, dispatchLevel bool) {
		mu.Lock()
		got, ctxs = append(got, l), append(ctxs, c)
		mu.Unlock()
		if st := FwpsFreeCloneNetBufferList0(l, 0); st != STATUS_SUCCESS {
			t.Errorf("FwpsFreeCloneNetBufferList0: %v", st)
		}
	}
	wantStatus(t, "stream inject of a chain of 2 clones", FwpsStreamInjectAsync0(h, nil, 0, 5, 6, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND, link(ca, cb), 128, complete, ctx), STATUS_SUCCESS)
	w.stop()
	if len(got) != 2 || !(got[0] == ca && got[1] == cb || got[0] == cb && got[1] == ca) {
		t.Fatalf("completions for %v, want the two clones once each", got)
	}
	for _, c := range ctxs {
		if c != any(ctx) {
			t.Fatalf("context %v, want %v", c, ctx)
		}
	}
	if r := sp.req(0); r.Count != 2 || r.DataLength != 128 || r.FlowID != 5 || r.CalloutID != 6 {
		t.Fatalf("request %+v", r)
	}
	if a.ChildRefCount() != 0 || b.ChildRefCount() != 0 {
		t.Fatalf("ChildRefCount %d %d after the clones were freed", a.ChildRefCount(), b.ChildRefCount())
	}
	freeNBL(t, a)
	freeNBL(t, b)
	if o.total.Load() != 2 || o.badHolds.Load() != 0 {
		t.Fatalf("originator returns %d (with holds %d), want 2", o.total.Load(), o.badHolds.Load())
	}
	checkFull(t, p)
}

// TestCase28_StreamNotReindicatedToInjector: there is no stream layer in
// this package, so the fake stream path below stands for one with two
// callouts: the injecting callout in a higher-weight sublayer and another
// in a lower-weight sublayer. What the engine contributes to case 28 is the
// tag that lets the stream layer tell the two apart: the injected data is
// INJECTED_BY_SELF for the injector's handle, so it is not indicated to it
// again, and INJECTED_BY_OTHER for the lower sublayer's handle, so that
// callout sees it.
func TestCase28_StreamNotReindicatedToInjector(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 8)
	injector := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_STREAM)
	lower := newHandle(t, s, AF_INET, FWPS_INJECTION_TYPE_STREAM)
	q := newQueue(t, s, 8, nil)
	type callout struct {
		name string
		h    *Handle
		seen []*nbl.NetBufferList
	}
	callouts := []*callout{{name: "injector (higher weight)", h: injector}, {name: "lower-weight sublayer", h: lower}}
	// The stream layer indicates data to each callout in weight order,
	// skipping a callout whose own handle injected it.
	indicate := func(head *nbl.NetBufferList, _ int) {
		for l := head; l != nil; l = l.Next {
			for _, c := range callouts {
				if st, _ := c.h.QueryState(l); st.SelfInjected() {
					continue
				}
				c.seen = append(c.seen, l)
			}
		}
		q.CompleteChain(head, STATUS_SUCCESS)
		q.Flush()
	}
	newPath(t, s, PathStream, indicate)
	// Data from the stack itself reaches both callouts.
	stackData := alloc(t, p)
	indicate(stackData, 1) // not injected: completes to its pool
	if len(callouts[0].seen) != 1 || len(callouts[1].seen) != 1 {
		t.Fatalf("stack data was indicated %d and %d times, want once to each", len(callouts[0].seen), len(callouts[1].seen))
	}
	callouts[0].seen, callouts[1].seen = nil, nil

	rec := newRecorder(t, true)
	data := link(alloc(t, p), alloc(t, p))
	if err := injector.InjectStream(0, 1, 2, FWPS_LAYER_STREAM_V4, FWPS_STREAM_FLAG_SEND, data, 128, newCtx("inj"), Done{Fn: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if len(callouts[0].seen) != 0 {
		t.Fatalf("injected data was indicated %d times to the injecting callout, want 0", len(callouts[0].seen))
	}
	if len(callouts[1].seen) != 2 {
		t.Fatalf("injected data was indicated %d times to the lower-weight callout, want 2", len(callouts[1].seen))
	}
	if rec.count() != 2 {
		t.Fatalf("%d completions", rec.count())
	}
	checkFull(t, p)
}

// TestCase29_NullCompletionCloneVersusOriginal: a clone or a created NBL
// needs a completion function; an unaltered original may go without one.
// In this model the injector of such an original holds a reference on it (a
// callout references an NBL before it absorbs it, and the switch releases
// it at the absorb); the injection takes that reference over and drops it
// at completion, and the original goes back to its originator exactly once,
// when nothing else holds it.
func TestCase29_NullCompletionCloneVersusOriginal(t *testing.T) {
	type target struct {
		name   string
		inject func(h *Handle, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status
	}
	s := newStack(t)
	hold := &holder{}
	sw := newVSwitch(t, s, hold.deliver)
	mac := newPath(t, s, PathMAC, hold.deliver)
	targets := []target{
		{"vSwitchIngress", func(h *Handle, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status {
			return FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, sw.id.Bytes(), 1, 0, l, fn, nil)
		}},
		{"MacSend", func(h *Handle, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status {
			return FwpsInjectMacSendAsync0(h, nil, 0, FWPS_LAYER_OUTBOUND_MAC_FRAME_ETHERNET, 1, 0, l, fn, nil)
		}},
		{"MacReceive", func(h *Handle, l *nbl.NetBufferList, fn nbl.CompletionFunc) Status {
			return FwpsInjectMacReceiveAsync0(h, nil, 0, FWPS_LAYER_INBOUND_MAC_FRAME_NATIVE, 1, 0, l, fn, nil)
		}},
	}
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			p := newPool(t, 8)
			o := newOriginator(p.Cap())
			q := newQueue(t, s, 8, nil)
			rec := newRecorder(t, true)
			absorb := func(l *nbl.NetBufferList) { l.Reference(); p.Release(l) }
			orig := allocOriginal(t, p, o)
			cl := mustClone(t, p, orig)
			created := alloc(t, p)
			orig2 := allocOriginal(t, p, o)
			unreferenced := allocOriginal(t, p, o)
			absorb(orig)
			absorb(orig2)
			calls := sw.numCalls() + mac.numReqs()
			for _, c := range []struct {
				name string
				l    *nbl.NetBufferList
			}{
				{"clone", cl},
				{"created NBL", created},
				{"chain of an original and a clone", link(orig2, cl)},
				{"original without a reference", unreferenced},
			} {
				ls := chainNBLs(c.l)
				before := make([]nblSnap, len(ls))
				for i, l := range ls {
					before[i] = snap(l)
				}
				wantStatus(t, c.name+" with completionFn NULL", tg.inject(h, c.l, nil), STATUS_INVALID_PARAMETER)
				for i, l := range ls {
					if snap(l) != before[i] {
						t.Fatalf("%s: NBL %d changed", c.name, i)
					}
				}
			}
			orig2.Next = nil
			if sw.numCalls()+mac.numReqs() != calls {
				t.Fatal("a refused injection reached the target")
			}
			// An unaltered original needs no completion function.
			wantStatus(t, "original with completionFn NULL", tg.inject(h, orig, nil), STATUS_SUCCESS)
			if hold.held() != 1 || o.total.Load() != 0 {
				t.Fatalf("held %d, originator returns %d before completion", hold.held(), o.total.Load())
			}
			hold.complete(q, STATUS_SUCCESS, -1)
			q.Flush()
			if rec.count() != 0 {
				t.Fatal("a completion function ran for an NBL injected without one")
			}
			// The injection's reference is gone, but the clone still
			// holds the original: it has not left yet.
			if orig.RefCount() != 0 || orig.ChildRefCount() != 1 || o.total.Load() != 0 {
				t.Fatalf("after completion: RefCount %d, ChildRefCount %d, originator returns %d; want 0, 1, 0",
					orig.RefCount(), orig.ChildRefCount(), o.total.Load())
			}
			freeNBL(t, cl)
			if o.total.Load() != 1 || o.badHolds.Load() != 0 {
				t.Fatalf("originator returns %d (with holds %d), want exactly 1", o.total.Load(), o.badHolds.Load())
			}
			// An original without clones goes back as soon as the
			// target completes it.
			wantStatus(t, "second original with completionFn NULL", tg.inject(h, orig2, nil), STATUS_SUCCESS)
			if o.total.Load() != 1 {
				t.Fatal("returned before completion")
			}
			hold.complete(q, STATUS_SUCCESS, -1)
			q.Flush()
			q.Flush()
			if o.total.Load() != 2 || rec.count() != 0 || o.badHolds.Load() != 0 {
				t.Fatalf("originator returns %d, completions %d; want 2 and 0", o.total.Load(), rec.count())
			}
			freeNBL(t, created)
			freeNBL(t, unreferenced)
			if o.total.Load() != 3 {
				t.Fatalf("originator returns %d, want 3", o.total.Load())
			}
			checkFull(t, p)
		})
	}
	if st := h.Stats(); st.Injected != 6 || st.Completed != 6 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// queryBoth asks FwpsQueryPacketInjectionState0 and QueryState and checks
// that they agree.
func queryBoth(t *testing.T, h *Handle, l *nbl.NetBufferList) (FWPS_PACKET_INJECTION_STATE, any) {
	t.Helper()
	st, ctx := h.QueryState(l)
	var out any = newCtx("garbage") // must be overwritten
	if fst := FwpsQueryPacketInjectionState0(h, l, &out); fst != st || out != ctx {
		t.Fatalf("FwpsQueryPacketInjectionState0 = %v, %v; QueryState = %v, %v", fst, out, st, ctx)
	}
	return st, ctx
}

func TestCase30_QueryNotInjected(t *testing.T) {
	s := newStack(t)
	p := newPool(t, 4)
	h := newHandle(t, s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	l := alloc(t, p)
	if st, ctx := queryBoth(t, h, l); st != FWPS_PACKET_NOT_INJECTED || ctx != nil {
		t.Fatalf("stack-originated NBL: %v, %v", st, ctx)
	}
	cl := mustClone(t, p, l)
	if st, _ := queryBoth(t, h, cl); st != FWPS_PACKET_NOT_INJECTED {
		t.Fatalf("clone of a stack-originated NBL: %v", st)
	}
	// nil arguments are not injected either.
	if st, ctx := queryBoth(t, nil, l); st != FWPS_PACKET_NOT_INJECTED || ctx != nil {
		t.Fatalf("nil handle: %v %v", st, ctx)
	}
	if st, ctx := queryBoth(t, h, nil); st != FWPS_PACKET_NOT_INJECTED || ctx != nil {
		t.Fatalf("nil NBL: %v %v", st, ctx)
	}
	freeNBL(t, cl)
	freeNBL(t, l)
	checkFull(t, p)
}

// queryEnv is a stack with two L2 handles and a switch that runs a
// "classify" hook on every NBL it receives, then completes it.
type queryEnv struct {
	s        *Stack
	p        *nbl.Pool
	h1, h2   *Handle
	sw       *fakeVSwitch
	q        *CompletionQueue
	classify func(l *nbl.NetBufferList)
}

func newQueryEnv(t *testing.T) *queryEnv {
	e := &queryEnv{s: newStack(t)}
	e.p = newPool(t, 8)
	e.q = newQueue(t, e.s, 8, nil)
	e.h1 = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.h2 = newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.sw = newVSwitch(t, e.s, func(head *nbl.NetBufferList, _ int) {
		for l := head; l != nil; l = l.Next {
			if e.classify != nil {
				e.classify(l)
			}
		}
		e.q.CompleteChain(head, STATUS_SUCCESS)
		e.q.Flush()
	})
	return e
}

func TestCase31_QueryInjectedBySelf(t *testing.T) {
	e := newQueryEnv(t)
	C := newCtx("C")
	var st FWPS_PACKET_INJECTION_STATE
	var got any
	e.classify = func(l *nbl.NetBufferList) { st, got = queryBoth(t, e.h1, l) }
	o := newOriginator(e.p.Cap())
	l := allocOriginal(t, e.p, o)
	rec := newRecorder(t, false) // the owner keeps the original after completion
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, l, C, Done{Fn: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if st != FWPS_PACKET_INJECTED_BY_SELF || got != any(C) {
		t.Fatalf("re-classify with H1: %v, %v; want INJECTED_BY_SELF, %v", st, got, C)
	}
	// Still BY_SELF after completion, while the owner holds it.
	if st, got := queryBoth(t, e.h1, l); st != FWPS_PACKET_INJECTED_BY_SELF || got != any(C) {
		t.Fatalf("after completion: %v, %v", st, got)
	}
	// Re-injection by the same handle does not make it "previously".
	C2 := newCtx("C2")
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, l, C2, Done{Fn: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if st != FWPS_PACKET_INJECTED_BY_SELF || got != any(C2) || l.Tag.HistoryLen != 0 || l.Tag.Hops != 2 {
		t.Fatalf("second injection by H1: %v, %v, tag %+v", st, got, l.Tag)
	}
	freeNBL(t, l)
	checkFull(t, e.p)
}

func TestCase32_QueryInjectedByOther(t *testing.T) {
	e := newQueryEnv(t)
	var st FWPS_PACKET_INJECTION_STATE
	var got any
	e.classify = func(l *nbl.NetBufferList) { st, got = queryBoth(t, e.h2, l) }
	rec := newRecorder(t, true)
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, alloc(t, e.p), newCtx("C"), Done{Fn: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if st != FWPS_PACKET_INJECTED_BY_OTHER || got != nil {
		t.Fatalf("query with H2: %v, %v; want INJECTED_BY_OTHER, nil", st, got)
	}
	// Identity is per handle: a third handle of the same "driver" is other too.
	h3 := newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	e.classify = func(l *nbl.NetBufferList) { st, got = queryBoth(t, h3, l) }
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, alloc(t, e.p), newCtx("C"), Done{Fn: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if st != FWPS_PACKET_INJECTED_BY_OTHER || got != nil {
		t.Fatalf("query with H3: %v, %v", st, got)
	}
	checkFull(t, e.p)
}

func TestCase33_QueryPreviouslyInjectedBySelf(t *testing.T) {
	e := newQueryEnv(t)
	h3 := newHandle(t, e.s, AF_UNSPEC, FWPS_INJECTION_TYPE_L2)
	C1, C2 := newCtx("C1"), newCtx("C2")
	o := newOriginator(e.p.Cap())
	orig := allocOriginal(t, e.p, o)
	keep := newRecorder(t, false)
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, orig, C1, Done{Fn: keep.fn}); err != nil {
		t.Fatal(err)
	}
	// A callout clones the packet injected by H1 and re-injects the clone
	// through H2 with C2; the queries run when the clone is reclassified.
	type q struct {
		st  FWPS_PACKET_INJECTION_STATE
		ctx any
	}
	var byH1, byH2, byH3 q
	e.classify = func(l *nbl.NetBufferList) {
		byH1.st, byH1.ctx = queryBoth(t, e.h1, l)
		byH2.st, byH2.ctx = queryBoth(t, e.h2, l)
		byH3.st, byH3.ctx = queryBoth(t, h3, l)
	}
	cl := mustClone(t, e.p, orig)
	if cl.Tag.Handle != e.h1.ID() || cl.Tag.Context != any(C1) {
		t.Fatalf("the clone does not carry its parent's tag: %+v", cl.Tag)
	}
	free := newRecorder(t, true)
	wantStatus(t, "re-inject the clone through H2", FwpsInjectvSwitchEthernetIngressAsync0(e.h2, C2, 0, 0, e.sw.id.Bytes(), 0, 0, cl, free.fn, nil), STATUS_SUCCESS)
	if byH1.st != FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF || byH1.ctx != any(C1) {
		t.Fatalf("query with H1: %v, %v; want PREVIOUSLY_INJECTED_BY_SELF, %v", byH1.st, byH1.ctx, C1)
	}
	if byH2.st != FWPS_PACKET_INJECTED_BY_SELF || byH2.ctx != any(C2) {
		t.Fatalf("query with H2: %v, %v; want INJECTED_BY_SELF, %v", byH2.st, byH2.ctx, C2)
	}
	if byH3.st != FWPS_PACKET_INJECTED_BY_OTHER || byH3.ctx != nil {
		t.Fatalf("query with H3: %v, %v; want INJECTED_BY_OTHER, nil", byH3.st, byH3.ctx)
	}
	if !byH1.st.SelfInjected() || !byH2.st.SelfInjected() || byH3.st.SelfInjected() {
		t.Fatal("SelfInjected disagrees")
	}
	// The original's own tag is untouched by the clone's journey.
	if st, ctx := queryBoth(t, e.h1, orig); st != FWPS_PACKET_INJECTED_BY_SELF || ctx != any(C1) {
		t.Fatalf("original with H1: %v %v", st, ctx)
	}
	if st, _ := queryBoth(t, e.h2, orig); st != FWPS_PACKET_INJECTED_BY_OTHER {
		t.Fatalf("original with H2: %v", st)
	}
	if free.count() != 1 {
		t.Fatalf("%d clone completions", free.count())
	}
	freeNBL(t, orig)
	if o.total.Load() != 1 {
		t.Fatalf("originator returns %d", o.total.Load())
	}
	checkFull(t, e.p)
}

func TestCase34_QueryNilContext(t *testing.T) {
	e := newQueryEnv(t)
	C := newCtx("C")
	o := newOriginator(e.p.Cap())
	l := allocOriginal(t, e.p, o)
	keep := newRecorder(t, false)
	if err := e.h1.InjectVSwitchIngress(e.sw.id.Bytes(), 0, 0, l, C, Done{Fn: keep.fn}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h    *Handle
		want FWPS_PACKET_INJECTION_STATE
	}{{e.h1, FWPS_PACKET_INJECTED_BY_SELF}, {e.h2, FWPS_PACKET_INJECTED_BY_OTHER}, {nil, FWPS_PACKET_NOT_INJECTED}} {
		if st := FwpsQueryPacketInjectionState0(c.h, l, nil); st != c.want {
			t.Fatalf("query with a NULL context pointer = %v, want %v", st, c.want)
		}
	}
	// With a pointer, the context is written.
	var out any
	if st := FwpsQueryPacketInjectionState0(e.h1, l, &out); st != FWPS_PACKET_INJECTED_BY_SELF || out != any(C) {
		t.Fatalf("with a context pointer: %v, %v", st, out)
	}
	freeNBL(t, l)
	checkFull(t, e.p)
}
