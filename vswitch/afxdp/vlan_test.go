//go:build linux

package afxdp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// kernelAtLeast reports whether the running kernel is major.minor or later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release, err)
	}
	return ma > major || ma == major && mi >= minor
}

// requireVLAN skips unless the port on ifname can recover out-of-band VLAN
// tags; on Linux 6.8 or later, where veth can, it fails instead.
func requireVLAN(t *testing.T, ifname string) {
	t.Helper()
	err := afxdp.VLANAvailable(ifname)
	switch {
	case err == nil:
	case kernelAtLeast(t, 6, 8):
		t.Fatalf("out-of-band VLAN tags not recoverable on %s with Linux 6.8 or later: %v", ifname, err)
	default:
		t.Skipf("this kernel cannot give XDP the VLAN tag: %v", err)
	}
}

// otherTagged counts the frames vlanFrame passed over (not the test's:
// the host's own, sent while a tagging TC program was attached) that
// carried an out-of-band tag, so that a test can account for the port's
// counters exactly.
var otherTagged uint64

// vlanFrame receives the next test frame with sequence seq on the port
// (bounded), releases other frames, and returns its tag and a copy of its
// bytes; it fails the test if none comes.
func vlanFrame(t *testing.T, p *afxdp.Port, seq uint32) (nbl.Ieee8021QInfo, []byte) {
	t.Helper()
	buf := make([]*nbl.NetBufferList, 1)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if n, _ := p.Receive(buf); n == 0 {
			continue
		}
		l := buf[0]
		d, _ := l.FirstNetBuffer().Data()
		d = append([]byte(nil), d...)
		tag := l.Info.Ieee8021Q
		p.Cache().Release(l)
		off := 14
		if et := binary.BigEndian.Uint16(d[12:]); et == 0x8100 || et == 0x88a8 {
			off = 18 // a tag in the bytes
		}
		if len(d) >= off+4 && binary.BigEndian.Uint16(d[off-2:]) == etherType && binary.BigEndian.Uint32(d[off:]) == seq {
			return tag, d
		}
		if tag.Present {
			otherTagged++
		}
	}
	t.Fatalf("frame %d did not arrive", seq)
	return nbl.Ieee8021QInfo{}, nil
}

// TestVLANOutOfBand sends frames from the host with their 802.1Q tag out
// of band (a TC program calling bpf_skb_vlan_push), with several TPIDs and
// TCIs, and without: the port reports each tag in Info.Ieee8021Q exactly,
// leaves the frame's bytes untagged, reports no tag for untagged frames
// and frames whose tag is in their bytes, and counts what it recovered.
func TestVLANOutOfBand(t *testing.T) {
	otherTagged = 0
	h, p, host := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	requireVLAN(t, h.Peer)
	if c := p.Capabilities(); !c.VLAN || c.VLANReason != "" || !p.Stats().VLAN {
		t.Fatalf("capabilities %+v, stats VLAN %v: want VLAN recovery where VLANAvailable says so", c, p.Stats().VLAN)
	}
	if p.AttachMode() != afxdp.AttachDriver {
		t.Fatalf("program attached in %s mode, want driver mode with the VLAN program", p.AttachMode())
	}
	dst, err := parseMAC(h.PeerMAC)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 256)
	seq := uint32(0)
	send := func(size int) uint32 {
		seq++
		if err := host.send(host.frame(b, dst, seq, size)); err != nil {
			t.Fatal(err)
		}
		return seq
	}

	// Untagged: no tag.
	tag, d := vlanFrame(t, p, send(100))
	if tag.Present || tag != (nbl.Ieee8021QInfo{}) {
		t.Errorf("untagged frame reported with tag %+v", tag)
	}
	if len(d) != 100 {
		t.Errorf("untagged frame is %d bytes, want 100", len(d))
	}

	offloaded := uint64(0)
	for _, c := range []struct {
		tpid uint16
		tci  int32
		want nbl.Ieee8021QInfo
	}{
		{0x8100, 3<<13 | 100, nbl.Ieee8021QInfo{VlanID: 100, Priority: 3, Present: true, TPID: 0x8100}},
		{0x8100, 0, nbl.Ieee8021QInfo{VlanID: 0, Priority: 0, Present: true, TPID: 0x8100}}, // priority tag, VLAN 0
		{0x8100, 7<<13 | 1<<12 | 4095, nbl.Ieee8021QInfo{VlanID: 4095, Priority: 7, CFI: true, Present: true, TPID: 0x8100}},
		{0x88a8, 5<<13 | 1<<12 | 2000, nbl.Ieee8021QInfo{VlanID: 2000, Priority: 5, CFI: true, Present: true, TPID: 0x88a8}},
	} {
		t.Run(fmt.Sprintf("%#04x-%#04x", c.tpid, c.tci), func(t *testing.T) {
			detach := offloadTCI(t, h.NS, h.If, c.tpid, c.tci)
			defer detach()
			for i := range 3 {
				size := 64 + 50*i
				tag, d := vlanFrame(t, p, send(size))
				offloaded++
				if tag != c.want {
					t.Errorf("tag %+v, want %+v", tag, c.want)
				}
				if len(d) != size || binary.BigEndian.Uint16(d[12:]) != etherType {
					t.Errorf("frame is %d bytes with EtherType %#04x, want %d bytes, untagged", len(d), binary.BigEndian.Uint16(d[12:]), size)
				}
				if tag.TCI() != uint16(c.tci) {
					t.Errorf("TCI %#04x, want %#04x", tag.TCI(), c.tci)
				}
			}
		})
	}

	// A tag in the frame's bytes stays there, and is not reported as out
	// of band: the switch reads it from the bytes.
	f := host.frame(b, dst, 0, 100)
	g := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x20, 0x2a), f[12:]...) // PCP 1, VID 42
	seq++
	binary.BigEndian.PutUint32(g[18:], seq)
	if err := host.send(g); err != nil {
		t.Fatal(err)
	}
	tag, d = vlanFrame(t, p, seq)
	if tag.Present {
		t.Errorf("frame tagged in its bytes reported with out-of-band tag %+v", tag)
	}
	if len(d) != 104 || binary.BigEndian.Uint16(d[12:]) != 0x8100 || binary.BigEndian.Uint16(d[14:]) != 0x202a {
		t.Errorf("in-band tag changed: % x", d[:18])
	}

	// After the TC program is gone, frames are untagged again.
	tag, _ = vlanFrame(t, p, send(80))
	if tag.Present {
		t.Errorf("frame sent without a tag after the TC program left reported with tag %+v", tag)
	}
	st := p.Stats()
	if st.RxVLANOffloaded != offloaded+otherTagged || st.RxVLANUnknown != 0 {
		t.Errorf("RxVLANOffloaded %d, RxVLANUnknown %d; want %d (the test's) + %d (the host's own) and 0", st.RxVLANOffloaded, st.RxVLANUnknown, offloaded, otherTagged)
	}
}

// TestVLANPathDoesNotAllocate: receiving frames with an out-of-band tag,
// sending them back and reclaiming them allocates nothing.
func TestVLANPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	h, p, host := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	requireVLAN(t, h.Peer)
	defer offloadTag(t, h.NS, h.If, 100)()
	r := newReflector(t, p, host, h.PeerMAC)
	for range 100 {
		r.zeroCopy(128)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	before := p.Stats().RxVLANOffloaded
	allocs := testing.AllocsPerRun(200, func() { r.zeroCopy(128) })
	if r.err != nil {
		t.Fatal(r.err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per receive, send and reclaim of a tagged frame, want 0", allocs)
	}
	// AllocsPerRun runs the function once more to warm up.
	if got := p.Stats().RxVLANOffloaded - before; got < 200 {
		t.Errorf("%d of the frames came with their tag, want every one", got)
	}
}

// TestRequireVLAN: with Config.RequireVLAN, New refuses a port that cannot
// recover out-of-band tags (the program in generic mode, which takes no
// device-bound program) with ErrVLANUnsupported and leaves no program on
// the interface; without it, such a port opens and says why it has no
// VLAN recovery. Where the kernel and driver allow it, RequireVLAN opens.
func TestRequireVLAN(t *testing.T) {
	netns.Require(t)
	h := netns.NewHost(t, "")
	requireXDP(t, h.Peer)
	small := afxdp.Config{Interface: h.Peer, RxFrames: 64, TxFrames: 64, RingSize: 64}

	c := small
	c.Attach, c.RequireVLAN = afxdp.AttachGeneric, true
	if p, err := afxdp.New(c); err == nil {
		p.Close()
		t.Fatal("RequireVLAN in generic mode succeeded")
	} else {
		t.Logf("RequireVLAN in generic mode: %v", err)
		if !errors.Is(err, afxdp.ErrVLANUnsupported) || errors.Is(err, afxdp.ErrUnsupported) {
			t.Errorf("RequireVLAN in generic mode: %v, want ErrVLANUnsupported (and not ErrUnsupported)", err)
		}
	}
	if out, err := netns.Run("link", "show", "dev", h.Peer); err != nil || strings.Contains(out, "xdp") {
		t.Errorf("an XDP program is left on %s after New failed: %v\n%s", h.Peer, err, out)
	}

	c.RequireVLAN = false
	var log bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	p, err := afxdp.New(c)
	if err != nil {
		t.Fatal(err)
	}
	caps := p.Capabilities()
	p.Close()
	if caps.VLAN || !strings.Contains(caps.VLANReason, "generic") {
		t.Errorf("generic mode: capabilities %+v, want no VLAN recovery and the reason", caps)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "lost") || !strings.Contains(log.String(), h.Peer) {
		t.Errorf("generic mode: New logged %q, want a warning that names the interface", log.String())
	}

	// A new interface: the kernel frees the closed port's queue binding
	// in a deferred work item, and a bind right after Close may find the
	// queue busy.
	h = netns.NewHost(t, "")
	requireVLAN(t, h.Peer)
	c = small
	c.Interface, c.RequireVLAN = h.Peer, true
	if p, err = afxdp.New(c); err != nil {
		t.Fatalf("RequireVLAN where VLANAvailable says yes: %v", err)
	}
	caps = p.Capabilities()
	p.Close()
	if !caps.VLAN {
		t.Errorf("RequireVLAN opened a port without VLAN recovery: %+v", caps)
	}
}

// TestVLANAvailable: lo takes no device-bound XDP program (and has no
// VLAN kfunc), a missing interface is not a VLAN limitation.
func TestVLANAvailable(t *testing.T) {
	netns.Require(t)
	err := afxdp.VLANAvailable("lo")
	if !errors.Is(err, afxdp.ErrVLANUnsupported) {
		t.Errorf("VLANAvailable(lo) = %v, want ErrVLANUnsupported", err)
	}
	t.Logf("lo: %v", err)
	if err := afxdp.VLANAvailable("nblnosuchif0"); err == nil || errors.Is(err, afxdp.ErrVLANUnsupported) {
		t.Errorf("VLANAvailable on a missing interface: %v, want an error that is not ErrVLANUnsupported", err)
	}
}

// TestVLANUnknownTag makes Receive read VLAN metadata that the plain
// program never writes (the case of a program that could not reserve it):
// every frame's tag is then unknown. With RequireVLAN the frames are
// dropped and counted, and their UMEM frames go back to the kernel (more
// frames than the port has cross); without it they are delivered untagged
// and counted. A metadata word left in a frame is zeroed before the frame
// goes back to the kernel.
func TestVLANUnknownTag(t *testing.T) {
	const frames = 64
	h, p, host := standalone(t, afxdp.Config{RxFrames: frames, TxFrames: 64, RingSize: 64, Attach: afxdp.AttachGeneric})
	dst, err := parseMAC(h.PeerMAC)
	if err != nil {
		t.Fatal(err)
	}
	afxdp.SetVLANMeta(p, true, true)
	b := make([]byte, 128)
	buf := make([]*nbl.NetBufferList, 16)
	const n = 3 * frames
	delivered := 0
	for i := range n {
		if err := host.send(host.frame(b, dst, uint32(i), 100)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Second); p.Stats().RxVLANUnknown <= uint64(i) && time.Now().Before(deadline); {
			k, _ := p.Receive(buf)
			delivered += k
			for _, l := range buf[:k] {
				p.Cache().Release(l)
			}
		}
	}
	st := p.Stats()
	if st.RxVLANUnknown < n || delivered != 0 || st.RxPackets != 0 || st.KernelRxDropped != 0 {
		t.Errorf("RequireVLAN: %d of %d frames counted unknown, %d delivered, kernel dropped %d; %+v", st.RxVLANUnknown, n, delivered, st.KernelRxDropped, st)
	}

	afxdp.SetVLANMeta(p, true, false)
	before := p.Stats().RxVLANUnknown
	if err := host.send(host.frame(b, dst, 1000, 100)); err != nil {
		t.Fatal(err)
	}
	tag, _ := vlanFrame(t, p, 1000)
	if tag.Present {
		t.Errorf("frame of unknown tag delivered with tag %+v", tag)
	}
	if p.Stats().RxVLANUnknown <= before {
		t.Error("frame of unknown tag delivered and not counted")
	}

	// A stale word: put a "tagged" word in front of a received frame's
	// position; once the frame is released and refilled, it is gone.
	if err := host.send(host.frame(b, dst, 1001, 100)); err != nil {
		t.Fatal(err)
	}
	var l *nbl.NetBufferList
	for deadline := time.Now().Add(2 * time.Second); l == nil && time.Now().Before(deadline); {
		if k, _ := p.Receive(buf[:1]); k == 1 {
			if d, _ := buf[0].FirstNetBuffer().Data(); binary.BigEndian.Uint32(d[14:]) == 1001 {
				l = buf[0]
			} else {
				p.Cache().Release(buf[0])
			}
		}
	}
	if l == nil {
		t.Fatal("frame 1001 did not arrive")
	}
	g := l.OriginatorContext
	afxdp.SetMetaWord(p, g, afxdp.MetaTagWord)
	p.Cache().Release(l)       // to the port's return ring
	k, _ := p.Receive(buf[:1]) // refills first
	for _, l := range buf[:k] {
		p.Cache().Release(l)
	}
	if w := afxdp.MetaWord(p, g); w != 0 {
		t.Errorf("metadata word %#x left in frame %d after it went back to the fill ring", w, g)
	}
}
