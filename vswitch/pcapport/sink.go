package pcapport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/nbl"
)

// sink writes the frames the switch sends. Its fields are the owning
// worker's.
type sink struct {
	bw      *bufio.Writer
	pw      *pcapgo.Writer   // FormatPcap
	nw      *pcapgo.NgWriter // FormatPcapng; writes into bw (NgWriter keeps a bufio.Writer it is given)
	owned   io.Closer
	snaplen int
	now     func() time.Time
	scratch []byte // for frames whose data are not contiguous
	txq     []*nbl.NetBufferList
	err     error // a write failed: the sink takes nothing more
}

func newSink(cfg Config, out io.Writer, owned io.Closer) (*sink, error) {
	s := &sink{owned: owned, snaplen: cfg.Snaplen, now: cfg.Now}
	switch {
	case s.snaplen == 0:
		s.snaplen = MaxSnaplen
	case s.snaplen < ethHeaderLen || s.snaplen > MaxSnaplen:
		return nil, fmt.Errorf("pcapport: Snaplen %d out of %d-%d", s.snaplen, ethHeaderLen, MaxSnaplen)
	}
	if s.now == nil {
		s.now = time.Now
	}
	slots := cfg.TxSlots
	if slots == 0 {
		slots = 4096
	}
	if slots < 1 {
		return nil, fmt.Errorf("pcapport: TxSlots %d", slots)
	}
	s.txq = make([]*nbl.NetBufferList, 0, slots)
	s.scratch = make([]byte, s.snaplen)
	s.bw = bufio.NewWriterSize(out, 64<<10)
	switch cfg.OutputFormat {
	case FormatPcap:
		if cfg.Microseconds {
			s.pw = pcapgo.NewWriter(s.bw)
		} else {
			s.pw = pcapgo.NewWriterNanos(s.bw)
		}
		if err := s.pw.WriteFileHeader(uint32(s.snaplen), layers.LinkTypeEthernet); err != nil {
			return nil, fmt.Errorf("pcapport: write header: %w", err)
		}
	case FormatPcapng:
		intf := pcapgo.NgInterface{Name: "pcapport", OS: runtime.GOOS, LinkType: layers.LinkTypeEthernet, SnapLength: uint32(s.snaplen)}
		opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "nblpipe pcapport", OS: runtime.GOOS, Hardware: runtime.GOARCH}}
		var err error
		if s.nw, err = pcapgo.NewNgWriterInterface(s.bw, intf, opts); err != nil {
			return nil, fmt.Errorf("pcapport: write header: %w", err)
		}
	default:
		return nil, fmt.Errorf("pcapport: unknown OutputFormat %v", cfg.OutputFormat)
	}
	return s, nil
}

// Send implements vswitch.Port: it writes the frames, in order, and keeps
// them until Reclaim. It takes fewer than len(in) when TxSlots are full or
// a write fails; after a failure it takes nothing and returns the error.
func (p *Port) Send(in []*nbl.NetBufferList) (int, error) {
	s := p.snk
	if s == nil {
		return 0, ErrNotSink
	}
	if s.err != nil {
		return 0, s.err
	}
	n := min(len(in), cap(s.txq)-len(s.txq))
	var bytes, truncated uint64
	var now time.Time
	for i, l := range in[:n] {
		nb := l.FirstNetBuffer()
		wire := nb.DataLength()
		c := min(wire, s.snaplen)
		data, ok := nb.Data()
		if ok {
			data = data[:c]
		} else {
			data = s.scratch[:c]
			nb.CopyOut(data, 0)
		}
		var ts time.Time
		if l.Info.Timestamp != 0 {
			ts = time.Unix(0, l.Info.Timestamp)
		} else {
			if now.IsZero() {
				now = s.now()
			}
			ts = now
		}
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: c, Length: wire}
		var err error
		if s.pw != nil {
			err = s.pw.WritePacket(ci, data)
		} else {
			err = s.nw.WritePacket(ci, data)
		}
		if err != nil {
			s.err = fmt.Errorf("pcapport: write: %w", err)
			p.writeErrors.Add(1)
			n = i
			break
		}
		bytes += uint64(c)
		if c < wire {
			truncated++
		}
	}
	s.txq = append(s.txq, in[:n]...)
	p.written.Add(uint64(n))
	p.writtenBytes.Add(bytes)
	if truncated > 0 {
		p.writeTruncated.Add(truncated)
	}
	return n, s.err
}

// Reclaim implements vswitch.Port: a written frame is finished at once.
func (p *Port) Reclaim(out []*nbl.NetBufferList) int {
	s := p.snk
	if s == nil {
		return 0
	}
	n := copy(out, s.txq)
	rest := copy(s.txq, s.txq[n:])
	clear(s.txq[rest:])
	s.txq = s.txq[:rest]
	p.reclaimed.Add(uint64(n))
	return n
}

func (s *sink) close() error {
	var errs []error
	if len(s.txq) > 0 {
		errs = append(errs, fmt.Errorf("%w: %d", ErrNotEmpty, len(s.txq)))
	}
	if err := s.bw.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("pcapport: flush: %w", err))
	}
	if s.owned != nil {
		errs = append(errs, s.owned.Close())
	}
	return errors.Join(errs...)
}
