// Package memport is an in-memory switch port: a generator that "receives"
// frames built from templates, and a sink that counts, checks or captures
// what the switch transmits. It serves tests and benchmarks, so the whole
// pipeline runs without root, without the kernel, and repeatably.
//
// A generator's frames are NBLs from the port's own pool, each with its own
// frame memory into which the template is copied on every receive (as a NIC
// would DMA it), so frames do not share bytes and a callout may rewrite
// them. The port is their originator: when the switch is done with a frame,
// it comes back to the port (Stats.Returned) and then to the pool.
package memport

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/nbl"
)

// Config describes a port.
type Config struct {
	// Frames are the templates the port receives, in turn. Empty: the port
	// receives nothing (a pure sink).
	Frames [][]byte
	// Limit stops the generator after that many frames (0: no limit).
	Limit uint64
	// Pool is the pool the generator allocates from; nil makes one of
	// PoolSize NBLs (default 4096) with frames large enough for the
	// largest template.
	Pool     *nbl.Pool
	PoolSize int
	// MaxInFlight bounds the generated frames not yet returned (0: only the
	// pool bounds them), like a sender with a window; it keeps queues, and
	// so latency, short when the switch is the bottleneck.
	MaxInFlight int
	// OnSend, if set, sees every frame the switch transmits on the port,
	// before the port reclaims it. It runs on the switch's worker and must
	// not keep the NBL.
	OnSend func(l *nbl.NetBufferList)
	// Capture keeps a copy of up to that many transmitted frames (for
	// tests; it allocates).
	Capture int
	// TxSlots bounds the frames sent and not yet reclaimed (default 4096),
	// per transmit queue.
	TxSlots int
	// TxQueues makes the port a vswitch.QueuedSender: every worker of the
	// switch sends to it through a queue of its own, at the same time as
	// the others, instead of handing its frames to the port's worker. The
	// hooks (OnSend, SendError) then run on several workers at once.
	TxQueues bool
	// StampEvery, if not 0, stamps every StampEvery-th generated frame with
	// its receive time (Info.Timestamp, from Clock), and the sink side
	// records the time from that stamp to Send for each stamped frame it
	// transmits, in a ring of the last LatencySamples (default 65536).
	StampEvery     int
	LatencySamples int
	// Clock returns nanoseconds on a monotonic clock, the same for every
	// port (default: since the package was loaded).
	Clock func() int64
	// SendError, if set, is consulted for each Send: it returns how many of
	// n frames to accept and the error to return (fault injection).
	SendError func(n int) (int, error)
}

// Stats are the port's counters.
type Stats struct {
	Generated  uint64 // frames handed to the switch
	Returned   uint64 // generated frames the switch gave back
	Sent       uint64 // frames the switch transmitted here
	SentBytes  uint64
	Reclaimed  uint64 // transmitted frames given back to the switch
	PoolEmpty  uint64 // receive calls cut short by an empty pool
	SendErrors uint64
}

// Port is an in-memory port. Receive, Send and Reclaim are called by one
// goroutine (the switch worker that owns the port), and with
// Config.TxQueues, SendQueue and ReclaimQueue by one goroutine per queue;
// Stats and Captured are safe from any goroutine.
type Port struct {
	_ cpu.CacheLinePad // apart from whatever the allocator put before it

	// Set by New (txqs also by TxQueues, before the switch starts) and
	// then only read, by the port's own worker and by the workers that
	// send through its queues alike.
	cfg     Config
	pool    *nbl.Pool
	ownPool bool
	cache   *nbl.Cache
	maxLen  int
	txqs    []txQueue // queue 0 is Send's; TxQueues adds one per worker
	sameLen bool      // every template has one length
	// short holds each template zero-padded to shortLen bytes when every
	// template is at most that long: Receive copies the whole block, a few
	// vector moves instead of a call to memmove. The bytes past a frame's
	// length land in the descriptor's own frame, behind its data.
	short  [][shortLen]byte
	lat    []int64
	closed atomic.Bool

	// Written on every receive by the port's own worker (returned by the
	// worker that releases the port's frames: with queues, the same): a
	// line of their own, so that a sender reading the fields above does
	// not take it from that worker.
	_                              cpu.CacheLinePad
	next                           int
	left                           uint64
	stampN                         int
	generated, returned, poolEmpty atomic.Uint64

	// Written by the senders.
	_                cpu.CacheLinePad
	latN, sendErrors atomic.Uint64
	_                cpu.CacheLinePad

	mu       sync.Mutex
	captured [][]byte
}

// txQueue is one transmit queue and its counters, written by the one
// goroutine that sends through it; padded so that two queues share no cache
// line.
type txQueue struct {
	q                          []*nbl.NetBufferList
	sent, sentBytes, reclaimed atomic.Uint64
	_                          [64 - 24 - 24]byte
}

// shortLen is the block Receive copies templates of up to that many bytes
// in (see Port.short).
const shortLen = 64

var epoch = time.Now()

// monotonic is the default Clock: nanoseconds since the package loaded, so
// the stamps of one port compare with the clock of another.
func monotonic() int64 { return int64(time.Since(epoch)) }

// New makes a port.
func New(cfg Config) (*Port, error) {
	p := &Port{cfg: cfg, left: cfg.Limit}
	if cfg.Clock == nil {
		p.cfg.Clock = monotonic
	}
	if cfg.StampEvery > 0 {
		n := cfg.LatencySamples
		if n <= 0 {
			n = 65536
		}
		p.lat = make([]int64, n)
	}
	for _, f := range cfg.Frames {
		if len(f) < 14 {
			return nil, fmt.Errorf("memport: template of %d bytes is shorter than an Ethernet header", len(f))
		}
		p.maxLen = max(p.maxLen, len(f))
	}
	if cfg.TxSlots == 0 {
		cfg.TxSlots = 4096
		p.cfg.TxSlots = 4096
	}
	p.txqs = []txQueue{{q: cpu.Isolated[*nbl.NetBufferList](0, cfg.TxSlots)}}
	p.pool = cfg.Pool
	if p.pool == nil {
		size := cfg.PoolSize
		if size == 0 {
			size = 4096
		}
		var err error
		p.pool, err = nbl.NewPool(nbl.Config{NBLs: size, FrameSize: max(p.maxLen, 64) + 128, Headroom: 128})
		if err != nil {
			return nil, err
		}
		p.ownPool = true
	}
	p.sameLen = len(cfg.Frames) > 0
	for _, f := range cfg.Frames {
		p.sameLen = p.sameLen && len(f) == len(cfg.Frames[0])
	}
	if len(cfg.Frames) > 0 && p.maxLen <= shortLen {
		p.short = make([][shortLen]byte, len(cfg.Frames))
		for i, f := range cfg.Frames {
			copy(p.short[i][:], f)
		}
	}
	if len(cfg.Frames) > 0 && p.maxLen+p.pool.Config().Headroom > p.pool.Config().FrameSize {
		return nil, fmt.Errorf("memport: a %d-byte template does not fit the pool's frames", p.maxLen)
	}
	c, err := p.pool.NewCache(256)
	if err != nil {
		return nil, err
	}
	p.cache = c
	return p, nil
}

// Pool returns the pool the port's frames come from.
func (p *Port) Pool() *nbl.Pool { return p.pool }

// Cache returns the port's NBL cache. The switch worker that serves the
// port releases the port's frames into it, on the same goroutine.
func (p *Port) Cache() *nbl.Cache { return p.cache }

// Receive implements vswitch.Port: it fills out with the next frames.
func (p *Port) Receive(out []*nbl.NetBufferList) (int, error) {
	frames := p.cfg.Frames
	if len(frames) == 0 || p.closed.Load() {
		return 0, nil
	}
	want := len(out)
	if p.cfg.Limit > 0 && uint64(want) > p.left {
		want = int(p.left)
	}
	if p.cfg.MaxInFlight > 0 {
		inFlight := int(p.generated.Load() - p.returned.Load())
		want = min(want, max(0, p.cfg.MaxInFlight-inFlight))
	}
	if want == 0 {
		return 0, nil
	}
	n := 0
	next := p.next
	if p.sameLen {
		// One length for every template: allocate the burst at once.
		n = p.cache.AllocateBurst(out[:want], len(frames[0]))
		switch short := p.short; {
		case len(short) == 1:
			// One template: the same block for every frame. (Copied from
			// an element, not through a pointer: a copy between two
			// dereferenced array pointers may overlap and calls memmove.)
			for _, l := range out[:n] {
				nb := l.FirstNetBuffer()
				buf, off := nb.CurrentMdl().Bytes(), uint(nb.CurrentMdlOffset())
				if off+shortLen <= uint(len(buf)) {
					*(*[shortLen]byte)(buf[off : off+shortLen]) = short[0]
				} else {
					d, _ := nb.Data()
					copy(d, frames[0])
				}
				l.Originator = p
			}
		case short != nil:
			for _, l := range out[:n] {
				nb := l.FirstNetBuffer()
				buf, off := nb.CurrentMdl().Bytes(), uint(nb.CurrentMdlOffset())
				if off+shortLen <= uint(len(buf)) && uint(next) < uint(len(short)) {
					*(*[shortLen]byte)(buf[off : off+shortLen]) = short[next]
				} else {
					d, _ := nb.Data()
					copy(d, frames[next])
				}
				if next++; next == len(frames) {
					next = 0
				}
				l.Originator = p
			}
		default:
			for _, l := range out[:n] {
				d, _ := l.FirstNetBuffer().Data()
				copy(d, frames[next])
				if next++; next == len(frames) {
					next = 0
				}
				l.Originator = p
			}
		}
	} else {
		headroom := p.pool.Config().Headroom
		for ; n < want; n++ {
			tpl := frames[next]
			l, err := p.cache.Allocate(headroom, len(tpl))
			if err != nil {
				break
			}
			d, _ := l.FirstNetBuffer().Data()
			copy(d, tpl)
			if next++; next == len(frames) {
				next = 0
			}
			l.Originator = p
			out[n] = l
		}
	}
	p.next = next
	if n < want {
		p.poolEmpty.Add(1)
	}
	if s := p.cfg.StampEvery; s > 0 {
		// Frame k of the burst is the StampEvery-th since the last
		// stamped one when stampN+k+1 is a multiple of StampEvery.
		for k := s - 1 - p.stampN; k < n; k += s {
			out[k].Info.Timestamp = p.cfg.Clock()
		}
		p.stampN = (p.stampN + n) % s
	}
	if p.cfg.Limit > 0 {
		p.left -= uint64(n)
	}
	p.generated.Add(uint64(n))
	return n, nil
}

// ReturnNetBufferList implements nbl.Originator.
func (p *Port) ReturnNetBufferList(*nbl.NetBufferList) { p.returned.Add(1) }

// ReturnNetBufferLists implements nbl.BatchOriginator: one count for a run.
func (p *Port) ReturnNetBufferLists(ls []*nbl.NetBufferList) { p.returned.Add(uint64(len(ls))) }

// TxQueues implements vswitch.QueuedSender: with Config.TxQueues, it makes
// a transmit queue for each of n workers and reports true. The switch calls
// it when it starts, before any Send.
func (p *Port) TxQueues(n int) bool {
	if !p.cfg.TxQueues || n < 1 {
		return false
	}
	p.mu.Lock() // Stats may read txqs from another goroutine
	defer p.mu.Unlock()
	for len(p.txqs) < n {
		p.txqs = append(p.txqs, txQueue{q: cpu.Isolated[*nbl.NetBufferList](0, p.cfg.TxSlots)})
	}
	return true
}

// Send implements vswitch.Port: SendQueue through queue 0.
func (p *Port) Send(in []*nbl.NetBufferList) (int, error) { return p.SendQueue(0, in) }

// SendQueue implements vswitch.QueuedSender.
func (p *Port) SendQueue(qi int, in []*nbl.NetBufferList) (int, error) {
	tq := &p.txqs[qi]
	n := min(len(in), cap(tq.q)-len(tq.q))
	var err error
	if p.cfg.SendError != nil {
		var k int
		k, err = p.cfg.SendError(n)
		n = min(max(k, 0), n)
		if err != nil {
			p.sendErrors.Add(1)
		}
	}
	var bytes uint64
	var now int64
	lat := p.lat
	for _, l := range in[:n] {
		bytes += uint64(l.FirstNetBuffer().DataLength())
		if ts := l.Info.Timestamp; ts != 0 && lat != nil {
			if now == 0 {
				now = p.cfg.Clock()
			}
			i := p.latN.Add(1) - 1
			lat[i%uint64(len(lat))] = now - ts
		}
	}
	// The hooks in a loop of their own: the usual sink has none, and its
	// loop above then tests nothing more per frame.
	if p.cfg.OnSend != nil || p.cfg.Capture > 0 {
		for _, l := range in[:n] {
			if p.cfg.OnSend != nil {
				p.cfg.OnSend(l)
			}
			if p.cfg.Capture > 0 {
				p.capture(l)
			}
		}
	}
	tq.q = append(tq.q, in[:n]...)
	tq.sent.Add(uint64(n))
	tq.sentBytes.Add(bytes)
	return n, err
}

func (p *Port) capture(l *nbl.NetBufferList) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.captured) >= p.cfg.Capture {
		return
	}
	nb := l.FirstNetBuffer()
	b := make([]byte, nb.DataLength())
	nb.CopyOut(b, 0)
	p.captured = append(p.captured, b)
}

// Reclaim implements vswitch.Port: everything sent is finished at once.
// The slots past the queue's length may keep pointers to reclaimed NBLs
// until a Send overwrites them (clearing them on every Reclaim costs more
// than the copy); Close clears them.
func (p *Port) Reclaim(out []*nbl.NetBufferList) int { return p.ReclaimQueue(0, out) }

// ReclaimQueue implements vswitch.QueuedSender: Reclaim for queue qi.
func (p *Port) ReclaimQueue(qi int, out []*nbl.NetBufferList) int {
	tq := &p.txqs[qi]
	if len(tq.q) == 0 {
		return 0 // no stores: workers poll the queues of ports they do not serve
	}
	n := copy(out, tq.q)
	if n == len(tq.q) {
		tq.q = tq.q[:0]
	} else {
		rest := copy(tq.q, tq.q[n:])
		tq.q = tq.q[:rest]
	}
	tq.reclaimed.Add(uint64(n))
	return n
}

// ErrNotEmpty is returned by Close when frames were never reclaimed.
var ErrNotEmpty = errors.New("memport: closed with frames not reclaimed")

// Close stops the generator, returns the port's cached NBLs to the pool, and
// frees the pool if the port made it. It fails if the switch left frames
// unreclaimed, or, for a pool the port made, if NBLs are still out.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.cache.Flush()
	left := 0
	for i := range p.txqs {
		q := p.txqs[i].q
		clear(q[len(q):cap(q)])
		left += len(q)
	}
	if left > 0 {
		return fmt.Errorf("%w: %d", ErrNotEmpty, left)
	}
	if p.ownPool {
		if !p.pool.Full() {
			return fmt.Errorf("memport: %d NBLs of the port's pool still in use at close", p.pool.InUse())
		}
		return p.pool.Close()
	}
	return nil
}

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	// Returned is read before Generated: a frame is counted generated
	// before the switch sees it, so while frames flow a reading never
	// shows more returned than generated (read the other way round, the
	// frames generated and returned between the two loads could).
	ret := p.returned.Load()
	st := Stats{
		Generated: p.generated.Load(), Returned: ret, PoolEmpty: p.poolEmpty.Load(),
		SendErrors: p.sendErrors.Load(),
	}
	p.mu.Lock() // TxQueues may be growing txqs
	defer p.mu.Unlock()
	for i := range p.txqs {
		tq := &p.txqs[i]
		st.Sent += tq.sent.Load()
		st.SentBytes += tq.sentBytes.Load()
		st.Reclaimed += tq.reclaimed.Load()
	}
	return st
}

// Latencies returns the recorded receive-to-send times in nanoseconds (the
// most recent ones when more were recorded than the ring holds). Call it
// when the switch is stopped.
func (p *Port) Latencies() []int64 {
	n := min(p.latN.Load(), uint64(len(p.lat)))
	return append([]int64(nil), p.lat[:n]...)
}

// Captured returns copies of the frames captured so far.
func (p *Port) Captured() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.captured...)
}
