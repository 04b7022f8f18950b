//go:build linux

package afxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The generic netlink family "netdev" (Documentation/netlink/specs/
// netdev.yaml, Linux 6.3 and later) tells which XDP RX metadata kfuncs a
// driver implements: a driver that lacks one still takes a program calling
// it, and the call returns -EOPNOTSUPP on every frame.
const (
	netdevFamily            = "netdev"
	netdevCmdDevGet         = 1 // NETDEV_CMD_DEV_GET
	netdevADevIfindex       = 1 // NETDEV_A_DEV_IFINDEX, u32
	netdevADevXDPRxMetadata = 5 // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, u64

	// NETDEV_XDP_RX_METADATA_VLAN_TAG: the driver implements
	// bpf_xdp_metadata_rx_vlan_tag (Linux 6.8 and later).
	xdpRxMetadataVLANTag = 1 << 2

	sizeofGenlmsghdr = 4      // struct genlmsghdr: cmd, version, reserved
	nlaTypeMask      = 0x3fff // the type bits of nla_type
)

// xdpRxMetadataFeatures asks the kernel for the interface's
// xdp-rx-metadata-features bits.
func xdpRxMetadataFeatures(ifindex int) (uint64, error) {
	s, err := openGenl()
	if err != nil {
		return 0, err
	}
	defer unix.Close(s.fd)
	name := append([]byte(netdevFamily), 0)
	attrs, err := s.request(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, attr(unix.CTRL_ATTR_FAMILY_NAME, name))
	if err != nil {
		return 0, fmt.Errorf("resolve family %q: %w", netdevFamily, err)
	}
	fam, ok := attrs[unix.CTRL_ATTR_FAMILY_ID]
	if !ok || len(fam) < 2 {
		return 0, fmt.Errorf("resolve family %q: no family ID in the reply", netdevFamily)
	}
	idx := binary.NativeEndian.AppendUint32(nil, uint32(ifindex))
	attrs, err = s.request(binary.NativeEndian.Uint16(fam), netdevCmdDevGet, attr(netdevADevIfindex, idx))
	if err != nil {
		return 0, fmt.Errorf("%s dev-get: %w", netdevFamily, err)
	}
	v, ok := attrs[netdevADevXDPRxMetadata]
	if !ok || len(v) < 8 {
		return 0, fmt.Errorf("%s dev-get: the reply has no xdp-rx-metadata-features", netdevFamily)
	}
	return binary.NativeEndian.Uint64(v), nil
}

// genl is a generic netlink socket for one request at a time.
type genl struct {
	fd  int
	seq uint32
}

func openGenl() (*genl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &genl{fd: fd}, nil
}

// attr encodes one netlink attribute, padded to four bytes.
func attr(typ uint16, val []byte) []byte {
	n := unix.SizeofNlAttr + len(val)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofNlAttr:], val)
	return b
}

// request sends one generic netlink command to family and returns the
// attributes of its reply, by type.
func (s *genl) request(family uint16, cmd uint8, attrs ...[]byte) (map[uint16][]byte, error) {
	s.seq++
	msg := make([]byte, unix.SizeofNlMsghdr+sizeofGenlmsghdr)
	for _, a := range attrs {
		msg = append(msg, a...)
	}
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], family)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], s.seq)
	msg[unix.SizeofNlMsghdr] = cmd
	msg[unix.SizeofNlMsghdr+1] = 1 // version
	if err := unix.Sendto(s.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			return nil, err
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, errors.New("malformed netlink message")
			}
			typ, seq := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:])
			data := b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+3)&^3):]
			if seq != s.seq {
				continue
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return nil, errors.New("short netlink error message")
				}
				if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
					return nil, unix.Errno(-e)
				}
				return nil, errors.New("netlink acknowledged without a reply")
			case family:
				return parseAttrs(data[min(len(data), sizeofGenlmsghdr):]), nil
			}
		}
	}
}

// parseAttrs splits netlink attributes by type (nested ones stay whole).
func parseAttrs(b []byte) map[uint16][]byte {
	out := map[uint16][]byte{}
	for len(b) >= unix.SizeofNlAttr {
		n := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if n < unix.SizeofNlAttr || n > len(b) {
			break
		}
		out[typ] = b[unix.SizeofNlAttr:n]
		b = b[min(len(b), (n+3)&^3):]
	}
	return out
}
