package pcapport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// pcapng block types.
const (
	ngSHB = 0x0a0d0d0a // section header
	ngIDB = 1          // interface description
	ngPB  = 2          // packet (obsolete)
	ngSPB = 3          // simple packet
	ngISB = 5          // interface statistics
	ngEPB = 6          // enhanced packet

	ngByteOrderMagic = 0x1a2b3c4d

	// maxNgBlock bounds a block the guard holds: a record of MaxSnaplen
	// bytes with its header and 64 KiB of options.
	maxNgBlock = MaxSnaplen + 32 + 64<<10
)

// ngGuard stands between the input and pcapgo.NgReader. NgReader trusts
// the file: it allocates a buffer of an interface's snapshot length or a
// packet's captured length as the file states them, reads a packet's data
// past the end of its block when the captured length says so, and divides
// by a timestamp resolution that a crafted if_tsresol option makes zero.
// The guard reads the file one whole block at a time, checks its framing
// (length, trailer, a section header first) and every field NgReader
// relies on, clamps interface snapshot lengths to MaxSnaplen, and passes on
// only blocks that NgReader parses within their bounds. Blocks NgReader
// skips are passed through unread when they are too large to hold.
type ngGuard struct {
	r      *bufio.Reader
	buf    []byte // the current block; served from off
	off    int
	stream int64 // bytes of a large skipped block still to pass through
	err    error

	big     bool   // the section's byte order
	section bool   // a section header was seen
	ifaces  int    // interfaces in the section
	snap0   uint32 // the first interface's snapshot length (as NgReader sees it)
	blocks  uint64
}

func newNgGuard(r *bufio.Reader) *ngGuard {
	return &ngGuard{r: r, buf: make([]byte, 0, 64<<10)}
}

// reset restarts the guard at the beginning of a file.
func (g *ngGuard) reset(r *bufio.Reader) {
	g.r = r
	g.buf, g.off, g.stream, g.err = g.buf[:0], 0, 0, nil
	g.section, g.ifaces, g.snap0 = false, 0, 0
}

func (g *ngGuard) u16(b []byte) uint16 {
	if g.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (g *ngGuard) u32(b []byte) uint32 {
	if g.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (g *ngGuard) put32(b []byte, v uint32) {
	if g.big {
		binary.BigEndian.PutUint32(b, v)
	} else {
		binary.LittleEndian.PutUint32(b, v)
	}
}

// Read implements io.Reader for NgReader.
func (g *ngGuard) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for g.off == len(g.buf) && g.stream == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if err := g.load(); err != nil {
			g.err = err
			return 0, err
		}
	}
	if g.off < len(g.buf) {
		n := copy(p, g.buf[g.off:])
		g.off += n
		return n, nil
	}
	n, err := g.r.Read(p[:min(int64(len(p)), g.stream)])
	g.stream -= int64(n)
	if n > 0 {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = g.corrupt("truncated block")
	}
	g.err = err
	return 0, err
}

func (g *ngGuard) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: pcapng block %d: %s", ErrCorrupt, g.blocks, fmt.Sprintf(format, args...))
}

// load reads and checks the next block; io.EOF at a clean end of file.
func (g *ngGuard) load() error {
	g.blocks++
	g.off = 0
	g.buf = g.buf[:8]
	if n, err := io.ReadFull(g.r, g.buf); err != nil {
		g.buf = g.buf[:0]
		if err == io.EOF && n == 0 {
			return io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return g.corrupt("truncated block header")
		}
		return err
	}
	typ := binary.LittleEndian.Uint32(g.buf) // a section header reads the same either way
	if typ == ngSHB {
		g.buf = g.buf[:12]
		if _, err := io.ReadFull(g.r, g.buf[8:]); err != nil {
			g.buf = g.buf[:0]
			return g.corrupt("truncated section header")
		}
		switch {
		case binary.BigEndian.Uint32(g.buf[8:]) == ngByteOrderMagic:
			g.big = true
		case binary.LittleEndian.Uint32(g.buf[8:]) == ngByteOrderMagic:
			g.big = false
		default:
			g.buf = g.buf[:0]
			return g.corrupt("bad byte-order magic")
		}
	} else if !g.section {
		g.buf = g.buf[:0]
		return fmt.Errorf("%w: pcapng: the file does not start with a section header", ErrFormat)
	} else {
		typ = g.u32(g.buf)
	}
	length := g.u32(g.buf[4:8])
	minLen := uint32(12)
	switch typ {
	case ngSHB:
		minLen = 28
	case ngIDB:
		minLen = 20
	case ngEPB, ngPB:
		minLen = 32
	case ngSPB:
		minLen = 16
	case ngISB:
		minLen = 24
	}
	if length < minLen || length%4 != 0 {
		g.buf = g.buf[:0]
		return g.corrupt("type %#x: length %d (a multiple of 4 of at least %d expected)", typ, length, minLen)
	}
	if length > maxNgBlock {
		if minLen != 12 {
			g.buf = g.buf[:0]
			return g.corrupt("type %#x: length %d over the %d-byte limit", typ, length, maxNgBlock)
		}
		// A block NgReader skips: pass it through.
		g.stream = int64(length) - int64(len(g.buf))
		return nil
	}
	have := len(g.buf)
	if cap(g.buf) < int(length) {
		nb := make([]byte, length, min(maxNgBlock, max(int(length), 2*cap(g.buf))))
		copy(nb, g.buf[:have])
		g.buf = nb
	}
	g.buf = g.buf[:length]
	if _, err := io.ReadFull(g.r, g.buf[have:]); err != nil {
		g.buf = g.buf[:0]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return g.corrupt("type %#x: truncated", typ)
		}
		return err
	}
	if t := g.u32(g.buf[length-4:]); t != length {
		g.buf = g.buf[:0]
		return g.corrupt("type %#x: trailing length %d, leading %d", typ, t, length)
	}
	if err := g.check(typ, g.buf); err != nil {
		g.buf = g.buf[:0]
		return err
	}
	return nil
}

// check checks what NgReader will read of a whole block b.
func (g *ngGuard) check(typ uint32, b []byte) error {
	end := len(b) - 4 // the trailing length
	switch typ {
	case ngSHB:
		if maj, mnr := g.u16(b[12:]), g.u16(b[14:]); maj != 1 || mnr != 0 {
			return fmt.Errorf("%w: pcapng version %d.%d", ErrFormat, maj, mnr)
		}
		g.section, g.ifaces, g.snap0 = true, 0, 0
		return g.options(typ, b[24:end])
	case ngIDB:
		if err := g.options(typ, b[16:end]); err != nil {
			return err
		}
		if g.u32(b[12:]) > MaxSnaplen {
			// NgReader would allocate a buffer of this size.
			g.put32(b[12:], MaxSnaplen)
		}
		if g.ifaces++; g.ifaces == 1 {
			g.snap0 = g.u32(b[12:])
		}
	case ngEPB, ngPB:
		if c := g.u32(b[20:]); c > uint32(end-28) {
			return g.corrupt("captured length %d beyond the block", c)
		}
	case ngSPB:
		c := g.u32(b[8:])
		if g.ifaces > 0 && g.snap0 != 0 && c > g.snap0 {
			c = g.snap0
		}
		if c > uint32(end-12) {
			return g.corrupt("simple packet of %d bytes beyond the block", c)
		}
	case ngISB:
		return g.options(typ, b[20:end])
	}
	return nil
}

// options checks an option list the way NgReader walks it: each option
// (code, length, value padded to 4) within the block, up to the end of
// options or the block's end; the interface options NgReader interprets
// with their sizes and a timestamp resolution it can divide by.
func (g *ngGuard) options(typ uint32, o []byte) error {
	for len(o) > 0 {
		if len(o) < 4 {
			return g.corrupt("type %#x: %d stray bytes after the options", typ, len(o))
		}
		code, n := g.u16(o), int(g.u16(o[2:]))
		o = o[4:]
		if code == 0 { // end of options
			if n != 0 {
				return g.corrupt("type %#x: end of options of length %d", typ, n)
			}
			return nil
		}
		padded := (n + 3) &^ 3
		if padded > 0xffff {
			// NgReader adds the padding to the length in 16 bits: it would
			// lose count of the block.
			return g.corrupt("type %#x: option %d of %d bytes", typ, code, n)
		}
		if padded > len(o) {
			return g.corrupt("type %#x: option %d of %d bytes beyond the block", typ, code, n)
		}
		if typ == ngIDB {
			switch code {
			case 9: // if_tsresol
				if n != 1 {
					return g.corrupt("if_tsresol of %d bytes", n)
				}
				v := o[0]
				if (v&0x80 != 0 && v&0x7f > 63) || (v&0x80 == 0 && v > 19) {
					return g.corrupt("if_tsresol %#x out of range", v)
				}
			case 14: // if_tsoffset
				if n != 8 {
					return g.corrupt("if_tsoffset of %d bytes", n)
				}
			}
		}
		o = o[padded:]
	}
	return nil
}
