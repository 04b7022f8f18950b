package pcapport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// MaxSnaplen is the longest record the port reads or writes (libpcap's
// MAXIMUM_SNAPLEN). A pcap header that announces a larger snapshot length,
// or none (0), is read as announcing this one.
const MaxSnaplen = 262144

// Format is a capture file format.
type Format uint8

// The formats.
const (
	FormatPcap   Format = iota // libpcap's classic format
	FormatPcapng               // pcapng, one section with one Ethernet interface
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapng:
		return "pcapng"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Errors.
var (
	// ErrFormat: the input is not a capture the port reads (unknown magic,
	// unsupported version).
	ErrFormat = errors.New("pcapport: not a pcap or pcapng capture")
	// ErrCorrupt: the input is truncated or inconsistent.
	ErrCorrupt = errors.New("pcapport: corrupt capture")
	// ErrLinkType: a pcap file whose link type is not Ethernet.
	ErrLinkType = errors.New("pcapport: link type is not Ethernet")
	// ErrNotSink: Send on a port without an output.
	ErrNotSink = errors.New("pcapport: the port has no output")
	// ErrNotEmpty: Close with frames sent and not reclaimed.
	ErrNotEmpty = errors.New("pcapport: closed with frames not reclaimed")
)

// DropReason says why the source dropped a record.
type DropReason uint8

// Drop reasons of the source.
const (
	DropRunt      DropReason = iota // shorter than an Ethernet header (14 bytes)
	DropOversize                    // longer than Config.MaxFrameSize
	DropTruncated                   // captured shorter than on the wire (caplen < len), without KeepTruncated
	DropLinkType                    // pcapng: from an interface whose link type is not Ethernet
	NumDropReasons
)

var dropNames = [...]string{DropRunt: "runt", DropOversize: "oversize", DropTruncated: "truncated", DropLinkType: "link-type"}

func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// Config describes a port. A port with an input is a source, one with an
// output a sink; it may be both.
type Config struct {
	// Input is the capture to replay; InputFile names one the port opens
	// (and closes). Set at most one.
	Input     io.Reader
	InputFile string
	// Loop is the number of passes over the input: 0 and 1 mean one,
	// negative means until Close. More than one needs an Input that is an
	// io.Seeker (a file is). A pass that yields no frame ends the replay.
	Loop int
	// Pace releases frames at the capture's pace: a frame is due when the
	// time since the pass's first frame reaches its capture time minus the
	// first frame's, divided by Speed (default 1; 2 replays twice as fast).
	// Clock is the monotonic clock in nanoseconds pacing reads (default:
	// since the package was loaded).
	Pace  bool
	Speed float64
	Clock func() int64
	// KeepTruncated forwards the captured part of a record captured short
	// of its wire length, instead of dropping it (DropTruncated).
	KeepTruncated bool
	// MaxFrameSize is the longest frame received (default 9216, the
	// switch's default, or what the pool's frames hold if less); longer
	// records are dropped (DropOversize).
	MaxFrameSize int
	// Pool is the pool the source allocates from; nil makes one of
	// PoolSize NBLs (default 1024) with frames for MaxFrameSize bytes. The
	// pool bounds the frames in flight: when it is empty, Receive returns
	// fewer frames and the next one waits (Stats.PoolEmpty), it is not
	// dropped.
	Pool     *nbl.Pool
	PoolSize int

	// Output receives the frames the switch transmits on the port;
	// OutputFile names a file the port creates (truncating it) and closes.
	// Set at most one.
	Output     io.Writer
	OutputFile string
	// OutputFormat is the output's format (default pcap).
	OutputFormat Format
	// Microseconds writes pcap timestamps in microseconds (magic
	// a1b2c3d4) instead of nanoseconds (a1b23c4d); pcapng is always
	// written in nanoseconds.
	Microseconds bool
	// Snaplen is the snapshot length written in the header (default and
	// at most MaxSnaplen); longer frames are written truncated to it.
	Snaplen int
	// Now stamps frames whose NBL has no timestamp (default time.Now).
	Now func() time.Time
	// TxSlots bounds the frames written and not yet reclaimed (default
	// 4096); Send takes no more.
	TxSlots int
}

var epoch = time.Now()

// monotonic is the default Clock.
func monotonic() int64 { return int64(time.Since(epoch)) }

// Port is a capture-file port. Receive, Send and Reclaim are called by one
// goroutine (the switch worker that owns the port); Stats, Done and Err are
// safe from any goroutine.
type Port struct {
	src *source
	snk *sink

	pool    *nbl.Pool
	ownPool bool
	cache   *nbl.Cache
	closed  atomic.Bool

	// source accounting: ended is set once the input has ended; done
	// closes when it has and every delivered frame has returned.
	delivered, deliveredBytes, returned, passes, poolEmpty atomic.Uint64
	drops                                                  [NumDropReasons]atomic.Uint64
	ended                                                  atomic.Bool
	endErr                                                 atomic.Pointer[error]
	done                                                   chan struct{}
	doneOnce                                               sync.Once

	// sink accounting
	written, writtenBytes, writeTruncated, writeErrors, reclaimed atomic.Uint64
}

var _ vswitch.Port = (*Port)(nil)
var _ nbl.Originator = (*Port)(nil)

// New makes a port. For a source it opens the input and reads its header,
// so a file that is not a capture fails here; for a sink it writes the
// output's header.
func New(cfg Config) (_ *Port, err error) {
	p := &Port{done: make(chan struct{})}
	if cfg.Input != nil && cfg.InputFile != "" {
		return nil, errors.New("pcapport: set Input or InputFile, not both")
	}
	if cfg.Output != nil && cfg.OutputFile != "" {
		return nil, errors.New("pcapport: set Output or OutputFile, not both")
	}
	var closers []io.Closer
	defer func() {
		if err != nil {
			for _, c := range closers {
				c.Close()
			}
			if p.ownPool {
				p.pool.Close()
			}
		}
	}()
	if cfg.Input != nil || cfg.InputFile != "" {
		in := cfg.Input
		var owned io.Closer
		if cfg.InputFile != "" {
			f, err := os.Open(cfg.InputFile)
			if err != nil {
				return nil, fmt.Errorf("pcapport: %w", err)
			}
			in, owned = f, f
			closers = append(closers, f)
		}
		if err := p.setupPool(&cfg); err != nil {
			return nil, err
		}
		p.src, err = newSource(p, cfg, in, owned)
		if err != nil {
			return nil, err
		}
	} else {
		p.ended.Store(true) // nothing to replay
		p.finish()
	}
	if cfg.Output != nil || cfg.OutputFile != "" {
		out := cfg.Output
		var owned io.Closer
		if cfg.OutputFile != "" {
			f, err := os.Create(cfg.OutputFile)
			if err != nil {
				return nil, fmt.Errorf("pcapport: %w", err)
			}
			out, owned = f, f
			closers = append(closers, f)
		}
		p.snk, err = newSink(cfg, out, owned)
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// setupPool finds or makes the source's pool and settles MaxFrameSize.
func (p *Port) setupPool(cfg *Config) error {
	const defaultMax, headroom = 9216, 128
	if cfg.MaxFrameSize < 0 {
		return fmt.Errorf("pcapport: MaxFrameSize %d is negative", cfg.MaxFrameSize)
	}
	p.pool = cfg.Pool
	if p.pool == nil {
		if cfg.MaxFrameSize == 0 {
			cfg.MaxFrameSize = defaultMax
		}
		if cfg.MaxFrameSize > MaxSnaplen {
			return fmt.Errorf("pcapport: MaxFrameSize %d above MaxSnaplen %d", cfg.MaxFrameSize, MaxSnaplen)
		}
		size := cfg.PoolSize
		if size == 0 {
			size = 1024
		}
		var err error
		p.pool, err = nbl.NewPool(nbl.Config{NBLs: size, FrameSize: cfg.MaxFrameSize + headroom, Headroom: headroom})
		if err != nil {
			return fmt.Errorf("pcapport: %w", err)
		}
		p.ownPool = true
	} else {
		pc := p.pool.Config()
		room := pc.FrameSize - pc.Headroom
		if pc.NoFrames || room < 14 {
			return errors.New("pcapport: the pool's NBLs have no frames for a copy")
		}
		switch {
		case cfg.MaxFrameSize == 0:
			cfg.MaxFrameSize = min(defaultMax, room)
		case cfg.MaxFrameSize > room:
			return fmt.Errorf("pcapport: MaxFrameSize %d does not fit the pool's frames (%d bytes after headroom)", cfg.MaxFrameSize, room)
		}
	}
	c, err := p.pool.NewCache(256)
	if err != nil {
		return err
	}
	p.cache = c
	return nil
}

// Pool returns the pool the source's frames come from (nil for a port that
// is only a sink).
func (p *Port) Pool() *nbl.Pool { return p.pool }

// Cache returns the source's NBL cache. The switch worker that serves the
// port releases the port's frames into it, on the same goroutine.
func (p *Port) Cache() *nbl.Cache { return p.cache }

// ReturnNetBufferList implements nbl.Originator: a frame the port received
// came back.
func (p *Port) ReturnNetBufferList(*nbl.NetBufferList) {
	r := p.returned.Add(1)
	if p.ended.Load() && r == p.delivered.Load() {
		p.finish()
	}
}

func (p *Port) finish() { p.doneOnce.Do(func() { close(p.done) }) }

// end marks the end of the input: err is io.EOF or why it stopped.
func (p *Port) end(err error) {
	if err != io.EOF {
		p.endErr.Store(&err)
	}
	p.ended.Store(true)
	if p.returned.Load() == p.delivered.Load() {
		p.finish()
	}
}

// Done is closed once the input has ended and every frame the port
// received has come back to it, or when the port is closed. It is closed
// from the start for a port with no input.
func (p *Port) Done() <-chan struct{} { return p.done }

// Err returns the error that ended the input early (it matches ErrCorrupt,
// or is the input's read error), or nil: while the input lasts, and after
// it ended cleanly.
func (p *Port) Err() error {
	if e := p.endErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Close stops the source, returns the port's cached NBLs to the pool,
// flushes the output, closes the files the port opened, and frees the pool
// if the port made it. It fails if the switch left frames unreclaimed, if
// the port's own pool still has NBLs out, or if the output could not be
// written.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	defer p.finish()
	var errs []error
	if p.cache != nil {
		p.cache.Flush()
	}
	if p.src != nil {
		errs = append(errs, p.src.close())
	}
	if p.snk != nil {
		errs = append(errs, p.snk.close())
	}
	if p.ownPool {
		if !p.pool.Full() {
			errs = append(errs, fmt.Errorf("pcapport: %d NBLs of the port's pool still in use at close", p.pool.InUse()))
		} else {
			errs = append(errs, p.pool.Close())
		}
	}
	return errors.Join(errs...)
}

// Stats are the port's counters.
type Stats struct {
	// Source.
	Received      uint64 // frames handed to the switch
	ReceivedBytes uint64
	Returned      uint64 // received frames the switch gave back
	Passes        uint64 // passes over the input finished
	PoolEmpty     uint64 // Receive calls cut short by an empty pool (the frame waits)
	Drops         [NumDropReasons]uint64
	// Sink.
	Written        uint64 // records written
	WrittenBytes   uint64 // frame bytes written (after truncation to Snaplen)
	WriteTruncated uint64 // records written truncated to Snaplen
	WriteErrors    uint64 // Send calls that failed to write
	Reclaimed      uint64 // written frames given back to the switch
}

// Dropped returns the source's drops over every reason.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	s := Stats{
		Received: p.delivered.Load(), ReceivedBytes: p.deliveredBytes.Load(), Returned: p.returned.Load(),
		Passes: p.passes.Load(), PoolEmpty: p.poolEmpty.Load(),
		Written: p.written.Load(), WrittenBytes: p.writtenBytes.Load(), WriteTruncated: p.writeTruncated.Load(),
		WriteErrors: p.writeErrors.Load(), Reclaimed: p.reclaimed.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = p.drops[i].Load()
	}
	return s
}
