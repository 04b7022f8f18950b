package afxdp

import (
	"encoding/binary"
	"math/bits"
)

// completeChecksum finishes a partial checksum (CHECKSUM_PARTIAL): the
// one's-complement sum of b[start:], which already includes the
// pseudo-header sum stored in the checksum field, is inverted and stored
// at start+off. Out-of-range positions leave b as it is.
func completeChecksum(b []byte, start, off int) {
	at := start + off
	if start < 0 || off < 0 || at+2 > len(b) {
		return
	}
	s := ^checksum(b[start:])
	if s == 0 {
		s = 0xFFFF // a computed 0 is sent as all ones (CSUM_MANGLED_0)
	}
	b[at], b[at+1] = byte(s>>8), byte(s)
}

// checksum returns the folded one's-complement sum of b (RFC 1071), not
// inverted.
func checksum(b []byte) uint16 {
	// Eight bytes at a time, read as little-endian words: the
	// one's-complement sum does not depend on byte order, so the sum of
	// the swapped words is the swapped sum, put right once at the end.
	var s uint64
	for len(b) >= 8 {
		v := binary.LittleEndian.Uint64(b)
		s += v&0xFFFFFFFF + v>>32
		b = b[8:]
	}
	sum := uint64(bits.ReverseBytes16(fold(s)))
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return fold(sum)
}

// fold folds a 64-bit one's-complement accumulator to 16 bits.
func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	return uint16(s)
}

// fixPartialChecksum completes the TCP or UDP checksum of an Ethernet
// frame (IPv4 or IPv6, optionally behind one 802.1Q tag) that still holds
// the partial form CHECKSUM_PARTIAL leaves: the checksum field contains
// exactly the pseudo-header sum, and the full checksum does not verify.
// It reports whether it changed the frame. Frames it cannot parse, IP
// fragments and other protocols are left alone, and so are frames whose
// checksum verifies. Only the pseudo-header is summed unless the field
// matches it, so complete frames cost a few dozen instructions.
func fixPartialChecksum(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	et := binary.BigEndian.Uint16(f[12:14])
	ip := f[14:]
	if et == 0x8100 || et == 0x88A8 {
		if len(f) < 18 {
			return false
		}
		et = binary.BigEndian.Uint16(f[16:18])
		ip = f[18:]
	}
	var l4 []byte
	var proto uint8
	var pseudo uint64
	switch et {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return false
		}
		ihl := int(ip[0]&0x0F) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total < ihl || total > len(ip) || binary.BigEndian.Uint16(ip[6:8])&0x3FFF != 0 {
			return false
		}
		proto = ip[9]
		l4 = ip[ihl:total]
		for i := 12; i < 20; i += 2 {
			pseudo += uint64(binary.BigEndian.Uint16(ip[i:]))
		}
	case 0x86DD:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return false
		}
		proto = ip[6]
		l4 = ip[40 : 40+plen]
		for i := 8; i < 40; i += 2 {
			pseudo += uint64(binary.BigEndian.Uint16(ip[i:]))
		}
	default:
		return false
	}
	var at int
	switch proto {
	case 6: // TCP
		if len(l4) < 20 {
			return false
		}
		at = 16
	case 17: // UDP
		if len(l4) < 8 {
			return false
		}
		at = 6
	default:
		return false
	}
	pseudo += uint64(proto) + uint64(len(l4))>>16 + uint64(len(l4))&0xFFFF
	p := fold(pseudo)
	if binary.BigEndian.Uint16(l4[at:]) != p {
		return false
	}
	s := checksum(l4)
	if fold(uint64(s)+uint64(p)) == 0xFFFF {
		return false // complete already: the field only happens to match
	}
	c := ^s
	if c == 0 {
		c = 0xFFFF
	}
	binary.BigEndian.PutUint16(l4[at:], c)
	return true
}
