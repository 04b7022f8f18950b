//go:build linux

package afxdp

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped by every error that says AF_XDP cannot be used
// here at all: the kernel lacks AF_XDP sockets, BPF or the XSKMAP, or the
// process lacks the capabilities. A caller that gets it can fall back to
// an AF_PACKET port; errors.As with *UnsupportedError gives the reason.
var ErrUnsupported = errors.New("afxdp: AF_XDP is not available")

// UnsupportedError says why AF_XDP cannot be used. It matches
// ErrUnsupported and the system error behind it with errors.Is.
type UnsupportedError struct {
	// Reason is a sentence for a log: what is missing and how to get it.
	Reason string
	// Err is the system call's error, if one failed.
	Err error
}

func (e *UnsupportedError) Error() string {
	if e.Err == nil {
		return "afxdp: AF_XDP is not available: " + e.Reason
	}
	return "afxdp: AF_XDP is not available: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns ErrUnsupported and the system error.
func (e *UnsupportedError) Unwrap() []error { return []error{ErrUnsupported, e.Err} }

// Capability numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capIPCLock  = 14
	capSysAdmin = 21
	capBPF      = 39
)

// effectiveCaps returns the process's effective capability set.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

func hasCap(set uint64, c uint) bool { return set&(1<<c) != 0 }

// Available reports whether an AF_XDP port with the default Config can be
// opened on the interface, and if not, why, as an error that wraps
// ErrUnsupported (or, for an interface that does not exist, an error that
// does not). It checks the capabilities (CAP_NET_ADMIN, CAP_NET_RAW, and
// CAP_BPF or CAP_SYS_ADMIN), that the UMEM may be locked in memory
// (CAP_IPC_LOCK, or an RLIMIT_MEMLOCK that holds it), opens and closes an
// AF_XDP socket, and loads and unloads the redirect program with its
// XSKMAP. It attaches nothing: the interface is left as it was.
func Available(ifname string) error {
	if _, err := net.InterfaceByName(ifname); err != nil {
		return fmt.Errorf("afxdp: interface %q: %w", ifname, err)
	}
	caps, err := effectiveCaps()
	if err != nil {
		return &UnsupportedError{Reason: "cannot read the process's capabilities", Err: err}
	}
	switch {
	case !hasCap(caps, capNetAdmin):
		return &UnsupportedError{Reason: "attaching an XDP program needs CAP_NET_ADMIN (run as root)", Err: unix.EPERM}
	case !hasCap(caps, capNetRaw):
		return &UnsupportedError{Reason: "an AF_XDP socket needs CAP_NET_RAW (run as root)", Err: unix.EPERM}
	case !hasCap(caps, capBPF) && !hasCap(caps, capSysAdmin):
		return &UnsupportedError{Reason: "loading a BPF program needs CAP_BPF or CAP_SYS_ADMIN (run as root)", Err: unix.EPERM}
	}
	if !hasCap(caps, capIPCLock) {
		// The kernel charges the UMEM to RLIMIT_MEMLOCK (XDP_UMEM_REG).
		var c Config
		c.Interface = ifname
		_ = c.defaults()
		queues := 1
		if qs, err := rxQueues(ifname); err == nil {
			queues = len(qs)
		}
		need := uint64(c.RxFrames*queues+c.TxFrames) * uint64(c.FrameSize)
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err == nil && lim.Cur != unix.RLIM_INFINITY && lim.Cur < need {
			return &UnsupportedError{Reason: fmt.Sprintf("the UMEM (%d bytes) exceeds RLIMIT_MEMLOCK (%d bytes): raise the limit (ulimit -l) or grant CAP_IPC_LOCK", need, lim.Cur), Err: unix.ENOBUFS}
		}
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return classify(&stepError{"socket(AF_XDP)", err})
	}
	unix.Close(fd)
	p, err := loadProgram(1)
	if err != nil {
		return classify(err)
	}
	return p.close()
}

// classify turns a setup failure that means AF_XDP cannot work here into
// an UnsupportedError; other errors come back as they are.
func classify(err error) error {
	var se *stepError
	step := ""
	if errors.As(err, &se) {
		step = se.step
	}
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		return &UnsupportedError{Reason: "the kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)", Err: err}
	case errors.Is(err, unix.ENOSYS):
		return &UnsupportedError{Reason: "the kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL)", Err: err}
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return &UnsupportedError{Reason: step + " was refused: AF_XDP needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or root)", Err: err}
	case step == "XDP_UMEM_REG" && (errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)):
		return &UnsupportedError{Reason: "the kernel would not lock the UMEM in memory: raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK, or make the UMEM smaller", Err: err}
	case step == "create XSKMAP" && errors.Is(err, unix.EINVAL):
		return &UnsupportedError{Reason: "the kernel has no XSKMAP (Linux 4.18 or later)", Err: err}
	case step == "load XDP program":
		return &UnsupportedError{Reason: "the kernel refused the XDP redirect program (Linux 5.3 or later is needed for its fallback to XDP_PASS)", Err: err}
	case step == "attach the XDP program" && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return &UnsupportedError{Reason: "the interface takes no XDP program in driver or generic mode", Err: err}
	}
	return err
}

// VLANAvailable reports whether a port on the interface would recover the
// 802.1Q tags its driver holds out of band (Capabilities.VLAN), and if
// not, why, in an error that wraps ErrVLANUnsupported. It checks that the
// kernel has the bpf_xdp_metadata_rx_vlan_tag kfunc (Linux 6.8 and later),
// that the driver implements it (the netdev netlink family's
// xdp-rx-metadata-features), and loads and unloads the device-bound
// program; it attaches nothing. A port gets the capability only with its
// program in driver mode: Config.Attach AttachGeneric, or a driver that
// refuses the program in driver mode, loses it. Errors that mean AF_XDP
// itself is unavailable wrap ErrUnsupported, as from Available.
func VLANAvailable(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("afxdp: interface %q: %w", ifname, err)
	}
	p, err := loadProgram(1)
	if err != nil {
		return classify(err)
	}
	defer p.close()
	prog, err := loadVLANProgram(p.xsks, ifi.Index)
	if err != nil {
		return fmt.Errorf("%w on %s: %w", ErrVLANUnsupported, ifname, err)
	}
	return prog.Close()
}
