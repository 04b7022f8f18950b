//go:build linux

package afxdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
