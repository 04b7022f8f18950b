package pcapport

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/nbl"
)

// Magic numbers, as the first four bytes read little-endian.
const (
	magicPcapMicro   = 0xa1b2c3d4
	magicPcapNano    = 0xa1b23c4d
	magicPcapMicroBE = 0xd4c3b2a1
	magicPcapNanoBE  = 0x4d3cb2a1
	magicPcapng      = 0x0a0d0d0a // the section header block type, a palindrome
	pcapHeaderLen    = 24
	ethHeaderLen     = 14
)

// source reads the input. Its fields are the owning worker's.
type source struct {
	p   *Port
	cfg Config

	in     io.Reader
	seeker io.Seeker // nil: one pass only
	start  int64     // where the capture starts in the input
	owned  io.Closer

	br   *bufio.Reader // over in
	gz   *gzip.Reader  // nil unless the input is gzipped
	gzbr *bufio.Reader // over gz
	pcap *pcapgo.Reader
	ng   *pcapgo.NgReader
	gd   *ngGuard

	maxFrame   int
	passesLeft int    // including the current one; negative: endless
	passFrames uint64 // frames delivered in the current pass
	records    uint64 // records read, for error messages

	// pending is the record read and not yet delivered (paced, or the pool
	// was empty); it aliases the reader's buffer, valid until its next
	// read.
	pending     []byte
	pendingTS   int64
	havePending bool

	paced             bool // the pass's first frame set the bases
	capBase, wallBase int64
	invSpeed          float64

	err error // why the input ended: io.EOF or the error
}

func newSource(p *Port, cfg Config, in io.Reader, owned io.Closer) (*source, error) {
	s := &source{p: p, cfg: cfg, in: in, owned: owned, maxFrame: cfg.MaxFrameSize, invSpeed: 1}
	if cfg.Clock == nil {
		s.cfg.Clock = monotonic
	}
	switch {
	case cfg.Speed < 0:
		return nil, fmt.Errorf("pcapport: Speed %v is negative", cfg.Speed)
	case cfg.Speed > 0:
		s.invSpeed = 1 / cfg.Speed
	}
	s.passesLeft = cfg.Loop
	if s.passesLeft == 0 {
		s.passesLeft = 1
	}
	if s.passesLeft != 1 {
		sk, ok := in.(io.Seeker)
		if !ok {
			return nil, errors.New("pcapport: Loop needs an input that is an io.Seeker")
		}
		pos, err := sk.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("pcapport: Loop needs a seekable input: %w", err)
		}
		s.seeker, s.start = sk, pos
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// open detects the format and makes the reader.
func (s *source) open() error {
	s.br = bufio.NewReaderSize(s.in, 64<<10)
	top := s.br
	m, err := top.Peek(4)
	if len(m) >= 2 && m[0] == 0x1f && m[1] == 0x8b {
		if s.gz, err = gzip.NewReader(s.br); err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		s.gzbr = bufio.NewReaderSize(s.gz, 64<<10)
		top = s.gzbr
		m, err = top.Peek(4)
	}
	if len(m) < 4 {
		switch {
		case err == nil || err == io.EOF || err == io.ErrUnexpectedEOF:
			return fmt.Errorf("%w: %d bytes, shorter than a file header", ErrCorrupt, len(m))
		case s.gz != nil:
			return fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		return fmt.Errorf("pcapport: read: %w", err)
	}
	switch magic := binary.LittleEndian.Uint32(m); magic {
	case magicPcapMicro, magicPcapNano, magicPcapMicroBE, magicPcapNanoBE:
		r, err := pcapgo.NewReader(top)
		if err != nil {
			return headerError("pcap", err)
		}
		if r.LinkType() != layers.LinkTypeEthernet {
			return fmt.Errorf("%w: %v (%d)", ErrLinkType, r.LinkType(), uint32(r.LinkType()))
		}
		// The snapshot length bounds the reader's buffer and each record:
		// keep it sane (libpcap readers ignore larger ones too).
		if sl := r.Snaplen(); sl == 0 || sl > MaxSnaplen {
			r.SetSnaplen(MaxSnaplen)
		}
		s.pcap = r
	case magicPcapng:
		s.gd = newNgGuard(top)
		r, err := pcapgo.NewNgReader(s.gd, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return headerError("pcapng", err)
		}
		s.ng = r
	default:
		return fmt.Errorf("%w: magic %08x", ErrFormat, magic)
	}
	return nil
}

// headerError classifies an error met reading a file header.
func headerError(format string, err error) error {
	switch {
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrFormat):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated %s header", ErrCorrupt, format)
	}
	return fmt.Errorf("%w: %s header: %v", ErrFormat, format, err)
}

// rewind starts the next pass without allocating: the readers' buffers are
// empty at a clean end of input, so seeking under them is safe.
func (s *source) rewind() error {
	if _, err := s.seeker.Seek(s.start, io.SeekStart); err != nil {
		return fmt.Errorf("pcapport: rewind: %w", err)
	}
	s.br.Reset(s.in)
	top := s.br
	if s.gz != nil {
		if err := s.gz.Reset(s.br); err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		s.gzbr.Reset(s.gz)
		top = s.gzbr
	}
	if s.pcap != nil {
		// The pcapgo reader goes on reading records: skip the file header.
		if _, err := top.Discard(pcapHeaderLen); err != nil {
			return fmt.Errorf("%w: rewind: %v", ErrCorrupt, err)
		}
	} else {
		// NgReader reads the section header again, as a new section.
		s.gd.reset(top)
	}
	s.paced = false
	s.passFrames = 0
	return nil
}

// read returns the next record. end reports a clean end of the input.
func (s *source) read() (data []byte, ci gopacket.CaptureInfo, end bool, err error) {
	if s.pcap != nil {
		data, ci, err = s.pcap.ZeroCopyReadPacketData()
		if err == io.EOF && ci.CaptureLength == 0 {
			// EOF before a record header: the file ends between records.
			// (A record cut short reads io.EOF or io.ErrUnexpectedEOF with
			// its header filled in.)
			return nil, ci, true, nil
		}
	} else {
		// The guard passes only whole blocks, so EOF is between blocks.
		data, ci, err = s.ng.ZeroCopyReadPacketData()
		if err == io.EOF {
			return nil, ci, true, nil
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: record %d is truncated", ErrCorrupt, s.records+1)
		} else if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: record %d: %v", ErrCorrupt, s.records+1, err)
		}
		return nil, ci, false, err
	}
	s.records++
	return data, ci, false, nil
}

// Receive implements vswitch.Port: it fills out with the next frames of the
// input (see the package doc for how it ends).
func (p *Port) Receive(out []*nbl.NetBufferList) (int, error) {
	s := p.src
	if s == nil {
		return 0, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	if p.closed.Load() {
		return 0, io.EOF
	}
	n := 0
	var bytes uint64
	now, haveNow := int64(0), false
	// Bound the records one call examines, so a run of dropped records
	// does not hold the worker.
	for budget := 4*len(out) + 64; n < len(out) && budget > 0; budget-- {
		if !s.havePending {
			if !s.next() {
				break
			}
		}
		if s.cfg.Pace {
			if !haveNow {
				now, haveNow = s.cfg.Clock(), true
			}
			if !s.paced {
				s.paced, s.capBase, s.wallBase = true, s.pendingTS, now
			}
			if due := s.wallBase + int64(float64(s.pendingTS-s.capBase)*s.invSpeed); due > now {
				break
			}
		}
		l, err := p.cache.AllocateCopy(s.pending)
		if err != nil {
			p.poolEmpty.Add(1)
			break
		}
		l.Originator = p
		l.Info.Timestamp = s.pendingTS
		out[n] = l
		n++
		bytes += uint64(len(s.pending))
		s.havePending = false
		s.passFrames++
	}
	// Count before the switch can return them.
	p.delivered.Add(uint64(n))
	p.deliveredBytes.Add(bytes)
	if s.err != nil {
		p.end(s.err)
		return n, s.err
	}
	return n, nil
}

// next reads records until one can be delivered and makes it pending, or
// the input ends (s.err set). It reports whether a frame is pending.
func (s *source) next() bool {
	p := s.p
	for {
		data, ci, end, err := s.read()
		if err != nil {
			s.err = err
			return false
		}
		if end {
			p.passes.Add(1)
			if s.passesLeft > 0 {
				s.passesLeft--
			}
			if s.passesLeft == 0 || s.passFrames == 0 {
				s.err = io.EOF
				return false
			}
			if err := s.rewind(); err != nil {
				s.err = err
				return false
			}
			continue
		}
		if s.ng != nil {
			if lt, ok := ngLinkType(ci); !ok || lt != layers.LinkTypeEthernet {
				p.drops[DropLinkType].Add(1)
				continue
			}
		}
		switch {
		case len(data) < ci.Length && !s.cfg.KeepTruncated:
			p.drops[DropTruncated].Add(1)
			continue
		case len(data) < ethHeaderLen:
			p.drops[DropRunt].Add(1)
			continue
		case len(data) > s.maxFrame:
			p.drops[DropOversize].Add(1)
			continue
		}
		s.pending = data
		s.pendingTS = 0
		if !ci.Timestamp.IsZero() {
			s.pendingTS = ci.Timestamp.UnixNano()
		}
		s.havePending = true
		return true
	}
}

// ngLinkType is the link type NgReader reports for a packet (with
// WantMixedLinkType).
func ngLinkType(ci gopacket.CaptureInfo) (layers.LinkType, bool) {
	if len(ci.AncillaryData) == 0 {
		return 0, false
	}
	lt, ok := ci.AncillaryData[0].(layers.LinkType)
	return lt, ok
}

func (s *source) close() error {
	s.pending, s.havePending = nil, false
	if s.err == nil {
		s.err = io.EOF
	}
	// (gzip.Reader.Close only repeats a read error, which Err reports.)
	if s.owned != nil {
		return s.owned.Close()
	}
	return nil
}
