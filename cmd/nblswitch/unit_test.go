//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

func TestParseFlags(t *testing.T) {
	good := []string{"-port", "a", "-port", "b"}
	o, err := parseFlags(good, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ports, []string{"a", "b"}) || o.backend != backendAFPacket || o.callout != calloutNone || o.workers != 1 || o.keepCaps || o.port != (portOptions{}) {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"-port", "a", "-port", "b", "-backend", "afxdp", "-callout", "inspect", "-workers", "2",
		"-vlan", "a=access:10", "-vlan", "b=trunk:0:10,20-22", "-stats", "1s", "-stats-json", "-keep-caps", "-log-level", "debug",
		"-afxdp-mode", "copy", "-afxdp-attach", "generic"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.backend != backendAFXDP || o.callout != calloutInspect || o.workers != 2 || !o.statsJSON || !o.keepCaps ||
		o.port.XDPMode != afxdp.Copy || o.port.XDPAttach != afxdp.AttachGeneric {
		t.Errorf("parsed: %+v", o)
	}
	if v := o.vlans["b"]; v.mode != vswitch.Trunk || v.vlan != 0 || !slices.Equal(v.allowed, []uint16{10, 20, 21, 22}) {
		t.Errorf("trunk VLANs: %+v", v)
	}
	if v := o.vlans["a"]; v.mode != vswitch.Access || v.vlan != 10 {
		t.Errorf("access VLAN: %+v", v)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-port", "a"}, "at least two -port"},
		{[]string{"-port", "a", "-port", "a"}, "given twice"},
		{[]string{"-port", "a", "-port", "averyveryverylongname"}, "longer than 15"},
		{[]string{"-port", "a", "-port", "b/c"}, "'/'"},
		{append(good, "-backend", "dpdk"), "-backend \"dpdk\""},
		{append(good, "-callout", "magic"), "-callout \"magic\""},
		{append(good, "-workers", "0"), "-workers 0"},
		{append(good, "-burst", "5000"), "-burst 5000"},
		{append(good, "-storm-limit", "-1"), "-storm-limit -1"},
		{append(good, "-stats", "1ms"), "-stats 1ms"},
		{append(good, "-vlan", "c=access:5"), "c is not a -port"},
		{append(good, "-vlan", "a=access:5000"), "1-4094"},
		{append(good, "-vlan", "a=access:5", "-vlan", "a=access:6"), "given twice for a"},
		{append(good, "-log-level", "loud"), "-log-level"},
		{append(good, "extra"), "unexpected arguments"},
		{append(good, "-shutdown-timeout", "0s"), "-shutdown-timeout"},
		{append(good, "-afxdp-mode", "fast"), "-afxdp-mode"},
		{append(good, "-afxdp-attach", "offload"), "-afxdp-attach"},
	}
	for _, c := range bad {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

func TestParseVLAN(t *testing.T) {
	for _, c := range []struct {
		in      string
		ifname  string
		mode    vswitch.VLANMode
		vlan    uint16
		allowed []uint16
	}{
		{"eth1=access:1", "eth1", vswitch.Access, 1, nil},
		{"eth1=access:4094", "eth1", vswitch.Access, 4094, nil},
		{"v=trunk:7:7", "v", vswitch.Trunk, 7, []uint16{7}},
		{"v=trunk:0:3,1-2,2", "v", vswitch.Trunk, 0, []uint16{3, 1, 2}},
	} {
		ifname, v, err := parseVLAN(c.in)
		if err != nil || ifname != c.ifname || v.mode != c.mode || v.vlan != c.vlan || !slices.Equal(v.allowed, c.allowed) {
			t.Errorf("%q: %q %+v %v", c.in, ifname, v, err)
		}
	}
	for _, in := range []string{"", "eth1", "=access:1", "eth1=access", "eth1=access:0", "eth1=access:x", "eth1=trunk:1",
		"eth1=trunk:1:", "eth1=trunk:1:0", "eth1=trunk:1:5-3", "eth1=trunk:4095:1", "eth1=hybrid:1", "eth1=access:1:2", "eth1=trunk:1:1-"} {
		if _, _, err := parseVLAN(in); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

const statusSample = `Name:	nblswitch
Umask:	0022
State:	S (sleeping)
Tgid:	4242
CapInh:	0000000000000000
CapPrm:	000001ffffffffff
CapEff:	0000000000002000
CapBnd:	000001ffffffffff
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	0
`

func TestParseStatus(t *testing.T) {
	tc, err := parseStatus(statusSample)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Effective != 1<<13 || !tc.Effective.has(capNetRaw) || tc.Effective.has(capNetAdmin) || tc.Permitted != 0x1ffffffffff || !tc.NoNewPrivs || tc.Inheritable != 0 {
		t.Errorf("parsed %+v", tc)
	}
	if _, err := parseStatus(strings.Replace(statusSample, "CapEff:", "CapXxx:", 1)); err == nil {
		t.Error("status without CapEff accepted")
	}
	if _, err := parseStatus(strings.Replace(statusSample, "0000000000002000", "zz", 1)); err == nil {
		t.Error("malformed CapEff accepted")
	}
	// This process's own threads: the reader finds them all.
	caps, err := taskCaps("self")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(caps, func(tc threadCaps) bool { return tc.TID == os.Getpid() }) {
		t.Errorf("threads of self: %+v (pid %d)", caps, os.Getpid())
	}
}

func TestCheckCaps(t *testing.T) {
	afp := requiredCaps(backendAFPacket)
	if err := checkCaps(capSet(1)<<capNetRaw, afp); err != nil {
		t.Errorf("CAP_NET_RAW alone refused for afpacket: %v", err)
	}
	err := checkCaps(capSet(1)<<capNetAdmin, afp)
	if !errors.Is(err, errMissingCap) || !strings.Contains(err.Error(), "CAP_NET_RAW") || strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("missing CAP_NET_RAW: %v", err)
	}
	// AF_XDP's further needs are afxdp.Available's, per port: without
	// them the port falls back, so only CAP_NET_RAW is required to start.
	if err := checkCaps(capSet(1)<<capNetRaw, requiredCaps(backendAFXDP)); err != nil {
		t.Errorf("afxdp with CAP_NET_RAW refused at start: %v", err)
	}
	if err := checkCaps(capSet(1)<<capNetAdmin|capSet(1)<<capBPF, requiredCaps(backendAFXDP)); err == nil || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Errorf("afxdp without CAP_NET_RAW: %v", err)
	}
}

// TestAFXDPUnavailableWrap: an error that says AF_XDP cannot be used
// becomes errAFXDPUnavailable with afxdp's reason kept; others do not.
func TestAFXDPUnavailableWrap(t *testing.T) {
	ue := &afxdp.UnsupportedError{Reason: "loading a BPF program needs CAP_BPF or CAP_SYS_ADMIN (run as root)", Err: syscall.EPERM}
	err := asAFXDPUnavailable("veth0", fmt.Errorf("afxdp: %w", ue))
	if !errors.Is(err, errAFXDPUnavailable) || !errors.Is(err, afxdp.ErrUnsupported) || !errors.Is(err, syscall.EPERM) ||
		!strings.Contains(err.Error(), "veth0") || unavailableReason(err) != ue.Reason {
		t.Errorf("wrapped: %v (reason %q)", err, unavailableReason(err))
	}
	other := errors.New("afxdp: Config.Interface is required")
	if err := asAFXDPUnavailable("veth0", other); err != other {
		t.Errorf("an unrelated error was changed: %v", err)
	}
	if got := unavailableReason(other); got != other.Error() {
		t.Errorf("reason of an unrelated error: %q", got)
	}
}

// TestOpenPortErrors: a missing interface is an error for either back
// end, and not one that falls back; an unknown back end is refused.
func TestOpenPortErrors(t *testing.T) {
	for _, b := range backends {
		_, _, err := openPort(b, "nblnosuchif0", portOptions{})
		if err == nil || errors.Is(err, errAFXDPUnavailable) {
			t.Errorf("%s on a missing interface: %v", b, err)
		}
	}
	if _, _, err := openPort("dpdk", "x", portOptions{}); err == nil {
		t.Error("unknown back end opened")
	}
}

// TestAFXDPBackendStats: every AF_XDP counter lands in its field and in
// the JSON under its name.
func TestAFXDPBackendStats(t *testing.T) {
	s := afxdp.Stats{RxPackets: 1, RxBytes: 2, TxPackets: 3, TxBytes: 4, RxChecksumFixed: 5, TxZeroCopy: 6, TxCopied: 7,
		TxCompleted: 8, TxInFlight: 9, TxRefused: 10, TxErrors: 11, PoolEmpty: 12, TxWakeups: 13, RxWakeups: 14, Bad: 15,
		KernelRxDropped: 16, KernelRxInvalid: 17, KernelTxInvalid: 18, KernelRxRingFull: 19, KernelFillEmpty: 20, KernelTxEmpty: 21,
		Queues: 2, DriverMode: true}
	b := afxdpBackendStats(s, 22)
	x := b.XDP
	if x == nil || b.RxPackets != 1 || b.RxBytes != 2 || b.TxPackets != 3 || b.TxBytes != 4 || b.TxErrors != 11 || b.PoolEmpty != 12 ||
		b.DescriptorsHeld != 22 || x.RxChecksumFixed != 5 || x.TxZeroCopy != 6 || x.TxCopied != 7 || x.TxCompleted != 8 ||
		x.TxInFlight != 9 || x.TxRefused != 10 || x.TxWakeups != 13 || x.RxWakeups != 14 || x.BadDescs != 15 ||
		x.RxDropped != 16 || x.RxInvalidDescs != 17 || x.TxInvalidDescs != 18 || x.RxRingFull != 19 || x.FillRingEmpty != 20 ||
		x.TxRingEmpty != 21 || x.Queues != 2 || x.Mode != "copy" || x.Attach != "driver" {
		t.Errorf("mapped %+v %+v", b, x)
	}
	s.ZeroCopy, s.DriverMode = true, false
	if x := afxdpBackendStats(s, 0).XDP; x.Mode != "zero-copy" || x.Attach != "generic" {
		t.Errorf("modes: %q %q", x.Mode, x.Attach)
	}
	j, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"xdp":{"mode":"copy","attach":"driver","queues":2`, `"rx_dropped":16`, `"rx_invalid_descs":17`,
		`"tx_invalid_descs":18`, `"rx_ring_full":19`, `"fill_ring_empty":20`, `"tx_ring_empty":21`, `"tx_refused":10`} {
		if !bytes.Contains(j, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, j)
		}
	}
	if j, _ := json.Marshal(backendStats{}); bytes.Contains(j, []byte(`"xdp"`)) {
		t.Errorf("an AF_PACKET port's JSON has an xdp object: %s", j)
	}
}

// TestXDPAttachedAttr: IFLA_XDP_ATTACHED is found among IFLA_XDP's
// nested attributes, after others and with NLA_F_NESTED set or not;
// malformed payloads are errors.
func TestXDPAttachedAttr(t *testing.T) {
	progID := []byte{8, 0, 4, 0, 7, 0, 0, 0} // IFLA_XDP_PROG_ID 7
	for _, c := range []struct {
		b       []byte
		on, bad bool
	}{
		{[]byte{5, 0, 2, 0, 0, 0, 0, 0}, false, false},                      // XDP_ATTACHED_NONE
		{[]byte{5, 0, 2, 0, 1, 0, 0, 0}, true, false},                       // XDP_ATTACHED_DRV
		{append(progID, 5, 0, 2, 0x80, 2, 0, 0, 0), true, false},            // after another, with a flag bit
		{append(progID[:len(progID):len(progID)], 5, 0, 2, 0), false, true}, // cut short
		{progID, false, true},             // no IFLA_XDP_ATTACHED
		{[]byte{2, 0, 2, 0}, false, true}, // length below the header
		{[]byte{4, 0, 2, 0}, false, true}, // no value
		{nil, false, true},
	} {
		on, err := xdpAttachedAttr(c.b)
		if on != c.on || (err != nil) != c.bad {
			t.Errorf("% x: attached %v, err %v; want %v, error %v", c.b, on, err, c.on, c.bad)
		}
	}
	// The loopback interface has no XDP program; a missing index has none.
	if lo, err := net.InterfaceByName("lo"); err == nil {
		if on, err := xdpAttached(lo.Index); on || err != nil {
			t.Errorf("lo: attached %v, err %v", on, err)
		}
	}
	if on, err := xdpAttached(1 << 30); on || err != nil {
		t.Errorf("a missing interface: attached %v, err %v", on, err)
	}
}

func TestBalance(t *testing.T) {
	var st vswitch.Stats
	st.Ports = []vswitch.PortStats{{RxPackets: 10, Injected: 4, TxPackets: 9, Absorbed: 4}, {RxPackets: 3, TxPackets: 2}}
	st.Ports[1].Drops[vswitch.DropClosed] = 1
	st.Ports[0].Drops[vswitch.DropRingFull] = 2
	st.FloodCopies = 1
	st.Unknown.Injected = 1
	st.Unknown.Drops[vswitch.DropNoDestination] = 1
	b := balanceOf(st)
	if b.In != 19 || b.Out != 19 || !b.Balanced {
		t.Errorf("balanced counters: %+v", b)
	}
	st.Ports[1].TxPackets++
	if b := balanceOf(st); b.Balanced {
		t.Errorf("one transmission too many still balances: %+v", b)
	}
	c := counters("p", 1, st.Ports[0])
	if c.Dropped != 2 || c.Drops["ring-full"] != 2 || len(c.Drops) != 1 {
		t.Errorf("counters: %+v", c)
	}
	if got := dropsText(map[string]uint64{"closed": 3, "ring-full": 1}); got != "ring-full=1 closed=3" {
		t.Errorf("dropsText: %q", got)
	}
}

// TestRunUsage: bad command lines exit with 2 and say why, before anything
// is opened.
func TestRunUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-port", "x"}, io.Discard, &stderr, nil); code != exitUsage || !strings.Contains(stderr.String(), "at least two -port") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-h"}, io.Discard, &stderr, nil); code != exitOK || !strings.Contains(stderr.String(), "-callout") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr.String())
	}
}

// TestRunRefusesCgoBuild: a cgo build cannot drop capabilities on every
// thread, so it refuses to start without -keep-caps (the test binary is a
// cgo build when cgo is on).
func TestRunRefusesCgoBuild(t *testing.T) {
	if !builtWithCgo {
		t.Skip("built without cgo")
	}
	var stderr bytes.Buffer
	code := run([]string{"-port", "nosuch0", "-port", "nosuch1"}, io.Discard, &stderr, nil)
	if code != exitError || !strings.Contains(stderr.String(), "CGO_ENABLED=0") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestSnapshotJSON: the final report round-trips through JSON with the
// field names tests and scripts read.
func TestSnapshotJSON(t *testing.T) {
	s := snapshot{Backend: "afpacket", Ports: []portCounters{{Name: "a", Drops: map[string]uint64{"closed": 1}, Kernel: &backendStats{KernelDrops: 3}}},
		Balance: balance{In: 5, Out: 5, Balanced: true}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"balance":{"in":5,"out":5,"balanced":true}`, `"kernel_drops":3`, `"drops":{"closed":1}`, `"in_flight":{`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
	var back snapshot
	if err := json.Unmarshal(b, &back); err != nil || back.Ports[0].Kernel.KernelDrops != 3 || !back.Balance.Balanced {
		t.Errorf("round trip: %+v %v", back, err)
	}
}
