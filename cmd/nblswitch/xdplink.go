//go:build linux

package main

import (
	endian "encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// xdpAttachedNone is XDP_ATTACHED_NONE (linux/if_link.h): no program.
const xdpAttachedNone = 0

// nlaTypeMask clears NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
// attribute type.
const nlaTypeMask = 0x3fff

// xdpAttached reports whether the interface with index ifindex has an XDP
// program attached, in any mode, as the kernel's link dump (RTM_GETLINK,
// IFLA_XDP_ATTACHED) says. It needs no capability, so the daemon can ask
// after it gave them all up. An interface that is gone has none.
func xdpAttached(ifindex int) (bool, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return false, fmt.Errorf("RTM_GETLINK: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return false, fmt.Errorf("RTM_GETLINK reply: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		// struct ifinfomsg: family, pad, type (u16), index (s32), ...
		if int(int32(endian.NativeEndian.Uint32(m.Data[4:8]))) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return false, fmt.Errorf("RTM_NEWLINK attributes: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&nlaTypeMask == unix.IFLA_XDP {
				return xdpAttachedAttr(a.Value)
			}
		}
		// A kernel without XDP reports no IFLA_XDP: nothing attached.
		return false, nil
	}
	return false, nil
}

// xdpAttachedAttr reads IFLA_XDP_ATTACHED from the nested attributes of
// IFLA_XDP.
func xdpAttachedAttr(b []byte) (bool, error) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(endian.NativeEndian.Uint16(b[0:2]))
		t := endian.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			return false, errors.New("IFLA_XDP: malformed nested attribute")
		}
		if t&nlaTypeMask == unix.IFLA_XDP_ATTACHED {
			if l < unix.SizeofRtAttr+1 {
				return false, errors.New("IFLA_XDP_ATTACHED: empty")
			}
			return b[unix.SizeofRtAttr] != xdpAttachedNone, nil
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return false, errors.New("IFLA_XDP without IFLA_XDP_ATTACHED")
}
