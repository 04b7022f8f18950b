//go:build linux

package afxdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/nbl"
)

func TestRedirectInstructionsAssemble(t *testing.T) {
	insns := redirectInstructions(3)
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	// Five instructions, the map load taking two slots.
	if buf.Len() != 6*8 {
		t.Errorf("program is %d bytes, want 48", buf.Len())
	}
}

// TestProgramPassesWithoutSocket runs the loaded program on a frame with
// BPF_PROG_TEST_RUN: with no socket in the XSKMAP for the frame's queue it
// must return XDP_PASS, so that queues no port serves keep working.
func TestProgramPassesWithoutSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to load a BPF program")
		}
		t.Skip("needs root to load a BPF program")
	}
	p, err := loadProgram(4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	frame := make([]byte, 64)
	ret, err := p.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	if ret != xdpPass {
		t.Errorf("program returned %d for a queue with no socket, want XDP_PASS (%d)", ret, xdpPass)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err         error
		unsupported bool
	}{
		{&stepError{"socket(AF_XDP)", unix.EAFNOSUPPORT}, true},
		{&stepError{"socket(AF_XDP)", unix.EPERM}, true},
		{&stepError{"create XSKMAP", unix.EPERM}, true},
		{&stepError{"create XSKMAP", unix.EINVAL}, true},
		{&stepError{"load XDP program", unix.EINVAL}, true},
		{&stepError{"attach the XDP program", unix.EOPNOTSUPP}, true},
		{&stepError{"attach the XDP program", unix.EBUSY}, false},
		{&stepError{"bind", unix.EINVAL}, false},
		{&stepError{"XDP_UMEM_REG", unix.ENOBUFS}, true},
		{&stepError{"XDP_UMEM_REG", unix.EINVAL}, false},
		{errors.New("other"), false},
	} {
		err := classify(c.err)
		if got := errors.Is(err, ErrUnsupported); got != c.unsupported {
			t.Errorf("classify(%v) = %v: unsupported %v, want %v", c.err, err, got, c.unsupported)
		}
		var se *stepError
		if errors.As(c.err, &se) && !errors.Is(err, se.err) {
			t.Errorf("classify(%v) = %v lost the system error", c.err, err)
		}
	}
}

func TestVLANInstructionsAssemble(t *testing.T) {
	const id = 12345
	insns := vlanRedirectInstructions(3, id)
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	// Find the kfunc call: opcode BPF_JMP|BPF_CALL (0x85), src_reg
	// BPF_PSEUDO_KFUNC_CALL (2), off 0 (vmlinux), imm the BTF ID.
	b := buf.Bytes()
	calls := 0
	for i := 0; i+8 <= len(b); i += 8 {
		if b[i] == 0x85 && b[i+1]>>4 == 2 {
			calls++
			if off, imm := binary.LittleEndian.Uint16(b[i+2:]), binary.LittleEndian.Uint32(b[i+4:]); off != 0 || imm != id {
				t.Errorf("kfunc call with off %d imm %d, want 0 and %d", off, imm, id)
			}
		}
	}
	if calls != 1 {
		t.Errorf("%d kfunc calls, want 1", calls)
	}
}

// TestVLANTagDecode reads metadata as the VLAN program writes it.
func TestVLANTagDecode(t *testing.T) {
	meta := func(word uint32, tpid, tci uint16) []byte {
		f := make([]byte, rxHeadroom+64)
		m := f[rxHeadroom-metaSize:]
		binary.NativeEndian.PutUint32(m, word)
		binary.BigEndian.PutUint16(m[4:], tpid)
		binary.NativeEndian.PutUint16(m[6:], tci)
		return f
	}
	for _, c := range []struct {
		name  string
		frame []byte
		off   uint64
		want  nbl.Ieee8021QInfo
		ok    bool
	}{
		{"no tag", meta(metaNoTag, 0, 0), rxHeadroom, nbl.Ieee8021QInfo{}, true},
		{"tag", meta(metaTag, 0x8100, 3<<13|100), rxHeadroom, nbl.Ieee8021QInfo{VlanID: 100, Priority: 3, Present: true, TPID: 0x8100}, true},
		{"802.1ad, DEI", meta(metaTag, 0x88a8, 7<<13|1<<12|4095), rxHeadroom, nbl.Ieee8021QInfo{VlanID: 4095, Priority: 7, CFI: true, Present: true, TPID: 0x88a8}, true},
		{"no TPID", meta(metaTag, 0, 5), rxHeadroom, nbl.Ieee8021QInfo{VlanID: 5, Present: true, TPID: 0x8100}, true},
		{"kfunc failed", meta(metaError, 0, 0), rxHeadroom, nbl.Ieee8021QInfo{}, false},
		{"no word", meta(0, 0x8100, 100), rxHeadroom, nbl.Ieee8021QInfo{}, false},
		{"foreign word", meta(0xdeadbeef, 0x8100, 100), rxHeadroom, nbl.Ieee8021QInfo{}, false},
		{"no room", meta(metaTag, 0x8100, 100), 4, nbl.Ieee8021QInfo{}, false},
	} {
		got, ok := vlanTag(c.frame, c.off)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// TestVLANProgramNeedsDeviceBinding loads the VLAN program on a veth:
// veth gives the VLAN tag to XDP, the kernel refuses the kfunc in a
// program that is not bound to the device, and takes it bound.
func TestVLANProgramNeedsDeviceBinding(t *testing.T) {
	netns.Require(t)
	id, err := vlanKfuncID()
	if err != nil {
		t.Skipf("no VLAN kfunc on this kernel: %v", err)
	}
	h := netns.NewHost(t, "")
	ifi, err := net.InterfaceByName(h.Peer)
	if err != nil {
		t.Fatal(err)
	}
	feats, err := xdpRxMetadataFeatures(ifi.Index)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: xdp-rx-metadata-features %#x", h.Peer, feats)
	if feats&xdpRxMetadataVLANTag == 0 {
		// veth has had the kfunc as long as the kernel has.
		t.Fatalf("veth does not give XDP the VLAN tag: features %#x", feats)
	}
	p, err := loadProgram(1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	unbound, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: vlanRedirectInstructions(p.xsks.FD(), int32(id))})
	if err == nil {
		unbound.Close()
		t.Fatal("the kernel took the VLAN kfunc in a program not bound to a device")
	}
	t.Logf("not device-bound: %v", err)
	prog, err := loadVLANProgram(p.xsks, ifi.Index)
	if err != nil {
		t.Fatal(err)
	}
	prog.Close()
	if _, err := loadVLANProgram(p.xsks, 1); err == nil { // lo
		t.Error("the VLAN program loaded for lo, whose driver has no VLAN kfunc")
	}
}

func TestXDPRxMetadataFeaturesMissingInterface(t *testing.T) {
	if _, err := xdpRxMetadataFeatures(1 << 30); !errors.Is(err, unix.ENODEV) {
		t.Errorf("features of a missing interface: %v, want ENODEV", err)
	}
}

// TestParseAttrs: malformed netlink attributes end the parse, never
// read out of bounds.
func TestParseAttrs(t *testing.T) {
	good := append(attr(1, []byte{1, 2, 3, 4}), attr(5, []byte{9, 9, 9, 9, 9, 9, 9, 9})...)
	if a := parseAttrs(good); len(a) != 2 || len(a[1]) != 4 || len(a[5]) != 8 {
		t.Errorf("parse of two attributes: %v", a)
	}
	for _, c := range []struct {
		b    []byte
		want int // attributes before the malformed one
	}{
		{nil, 0},
		{[]byte{1}, 0},
		{[]byte{3, 0, 1, 0}, 0},          // shorter than its header
		{[]byte{200, 0, 1, 0, 1, 2}, 0},  // longer than the message
		{[]byte{8, 0, 1, 0, 1, 2, 3}, 0}, // one byte short
		{append(attr(1, []byte{1}), 255, 255, 1, 0), 1},
	} {
		if a := parseAttrs(c.b); len(a) != c.want {
			t.Errorf("parseAttrs(% x) = %v, want %d attributes", c.b, a, c.want)
		}
	}
}
