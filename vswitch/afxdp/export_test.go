//go:build linux

package afxdp

import "encoding/binary"

// Hooks for the tests of package afxdp_test.

// SetVLANMeta makes Receive read the VLAN metadata (or not) and drop the
// frames whose tag is unknown (or not), whatever program the port runs:
// with the plain program, no frame has metadata.
func SetVLANMeta(p *Port, read, require bool) {
	p.vlanMeta, p.cfg.RequireVLAN = read, require
}

// MetaWord returns the metadata word in front of slab frame g's receive
// position; SetMetaWord writes it.
func MetaWord(p *Port, g uint64) uint32 {
	return binary.NativeEndian.Uint32(p.slab.Frame(int(g))[rxHeadroom-metaSize:])
}

func SetMetaWord(p *Port, g uint64, w uint32) {
	binary.NativeEndian.PutUint32(p.slab.Frame(int(g))[rxHeadroom-metaSize:], w)
}

// MetaTagWord is the word of a frame the VLAN program found a tag for.
const MetaTagWord = metaTag
