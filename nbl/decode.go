package nbl

import (
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Decoder decodes the headers of packets held in NetBuffers with gopacket's
// DecodingLayerParser, in place: the layer structs are the Decoder's own,
// their slices alias the packet memory, and nothing is allocated when the
// data lies in one segment (the usual case) or fits the Decoder's scratch
// buffer. A Decoder is not safe for concurrent use; give each worker one.
//
// After Decode, Decoded lists the layers found, outermost first, and the
// layer fields (Ethernet, IPv4, UDP, ...) hold their headers. They stay valid
// while the NetBuffer is held and until the next Decode.
type Decoder struct {
	Ethernet layers.Ethernet
	Dot1Q    layers.Dot1Q
	ARP      layers.ARP
	IPv4     layers.IPv4
	IPv6     layers.IPv6
	ICMPv4   layers.ICMPv4
	ICMPv6   layers.ICMPv6
	TCP      layers.TCP
	UDP      layers.UDP
	Payload  gopacket.Payload

	// Decoded lists the layer types of the last Decode.
	Decoded []gopacket.LayerType
	// Truncated is set when a layer found less data than its header says.
	Truncated bool

	parser  *gopacket.DecodingLayerParser
	scratch []byte
}

// NewDecoder returns a Decoder for Ethernet frames (with 802.1Q tags, ARP,
// IPv4, IPv6, ICMP, TCP and UDP). scratchSize is the largest non-contiguous
// packet it copies to decode; larger ones are decoded up to that size.
func NewDecoder(scratchSize int) *Decoder {
	d := &Decoder{
		Decoded: make([]gopacket.LayerType, 0, 16),
		scratch: make([]byte, max(scratchSize, 0)),
	}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&d.Ethernet, &d.Dot1Q, &d.ARP, &d.IPv4, &d.IPv6, &d.ICMPv4, &d.ICMPv6, &d.TCP, &d.UDP, &d.Payload)
	// Layers the Decoder does not know end decoding quietly instead of
	// returning an error value (which would allocate).
	d.parser.IgnoreUnsupported = true
	return d
}

// Decode decodes nb's data. It returns gopacket's error for a malformed
// header; Decoded then lists the layers decoded before it.
func (d *Decoder) Decode(nb *NetBuffer) error {
	data, ok := nb.Data()
	if !ok {
		n := nb.CopyOut(d.scratch, 0)
		data = d.scratch[:n]
	}
	return d.DecodeBytes(data)
}

// DecodeBytes decodes a frame held in data (which the layers then alias).
func (d *Decoder) DecodeBytes(data []byte) error {
	err := d.parser.DecodeLayers(data, &d.Decoded)
	d.Truncated = d.parser.Truncated
	return err
}

// Has reports whether the last Decode found a layer of type t.
func (d *Decoder) Has(t gopacket.LayerType) bool {
	for _, l := range d.Decoded {
		if l == t {
			return true
		}
	}
	return false
}

// BuildFrame serialises layers into a new frame with gopacket, fixing
// lengths and computing checksums. It allocates: it is for tests,
// generators and examples, not for the packet path.
func BuildFrame(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// AllocateCopy takes an NBL around a fresh frame, with the pool's headroom as
// backfill, and copies data into it. It fails with ErrInvalidParameter when
// data does not fit a frame and ErrResources when the pool is empty.
func (c *Cache) AllocateCopy(data []byte) (*NetBufferList, error) {
	l, err := c.Allocate(c.p.cfg.Headroom, len(data))
	if err != nil {
		return nil, err
	}
	copy(l.mdl.buf[c.p.cfg.Headroom:], data)
	return l, nil
}
