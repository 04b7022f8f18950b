package scenario

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The baselines are the pipelines a Go programmer writes without nblpipe:
// a goroutine per stage (receive, switch, inspect, transmit) joined by
// buffered channels, with packet buffers from a sync.Pool. One variant
// sends each packet on its own; the other sends batches of 32. They do the
// same work as the scenarios: copy the frame in, parse the Ethernet header,
// learn and look up MAC addresses, and for Inspect and Clone hand every
// frame to an inspector goroutine that sends it (or a copy) back to be
// switched again.

type pbuf struct {
	data      [2048]byte
	n         int
	port      int
	inspected bool
	ts        int64
}

var bufPool = sync.Pool{New: func() any { return new(pbuf) }}

// inspectFrame is the inspector stage's work on one frame: mark it seen, on a
// copy for the Clone scenario (the original goes back to the pool).
func inspectFrame(p *pbuf, clone bool) *pbuf {
	if clone {
		c := bufPool.Get().(*pbuf)
		*c = *p
		bufPool.Put(p)
		p = c
	}
	p.inspected = true
	return p
}

// learn is the switch stage's work on one frame: parse the Ethernet
// header, learn the source, look the destination up.
func learn(fdb map[[6]byte]int, p *pbuf) {
	var dst, src [6]byte
	copy(dst[:], p.data[0:6])
	copy(src[:], p.data[6:12])
	_ = binary.BigEndian.Uint16(p.data[12:14])
	fdb[src] = p.port
	_, _ = fdb[dst] // unknown: flood to the one other port
}

// maxInFlight is the baselines' window, the same as the scenarios' memport
// MaxInFlight.
const maxInFlight = 2048

// Baseline runs the channel pipeline for cfg (Workers and Burst ignored;
// batch selects the batched variant) and measures like Run.
func Baseline(cfg Config, batch bool) (Result, error) {
	if !batch {
		return baselineSingle(cfg)
	}
	return baselineBatch(cfg)
}

func baselineBatch(cfg Config) (Result, error) {
	const batch = true
	fa, err := Frame(macA, macB, cfg.FrameSize)
	if err != nil {
		return Result{}, err
	}
	fb, err := Frame(macB, macA, cfg.FrameSize)
	if err != nil {
		return Result{}, err
	}
	frames := [2][]byte{fa, fb}
	size := 1
	if batch {
		size = 32
	}
	var (
		quit      = make(chan struct{})
		rx        = make(chan []*pbuf, 2*maxInFlight/size)
		toInspect = make(chan []*pbuf, 2*maxInFlight/size)
		back      = make(chan []*pbuf, 2*maxInFlight/size)
		tx        = make(chan []*pbuf, 2*maxInFlight/size)
		sent      atomic.Uint64
		sentBytes atomic.Uint64
		wg        sync.WaitGroup
		latMu     sync.Mutex
		lats      []int64
	)
	// Batches are slices from a pool of fixed backing arrays.
	batchPool := sync.Pool{New: func() any { return new([32]*pbuf) }}
	getBatch := func() []*pbuf { return batchPool.Get().(*[32]*pbuf)[:0:size] }
	putBatch := func(b []*pbuf) { a := (*[32]*pbuf)(b[:32:32]); clear(a[:]); batchPool.Put(a) }
	epoch := time.Now()
	inspect := cfg.Kind == Inspect || cfg.Kind == Clone

	wg.Add(1)
	go func() { // receive
		defer wg.Done()
		seq := 0
		for {
			// Like the memports' window: at most maxInFlight frames between
			// the receive stage and their end, so that the inspect loop's
			// channels cannot all fill and deadlock.
			for uint64(seq)-sent.Load() >= maxInFlight {
				select {
				case <-quit:
					return
				default:
					runtime.Gosched()
				}
			}
			b := getBatch()
			for len(b) < size {
				p := bufPool.Get().(*pbuf)
				f := frames[seq&1]
				p.n = copy(p.data[:], f)
				p.port, p.inspected, p.ts = seq&1, false, 0
				if seq%61 == 0 {
					p.ts = int64(time.Since(epoch))
				}
				seq++
				b = append(b, p)
			}
			select {
			case rx <- b:
			case <-quit:
				return
			}
		}
	}()
	wg.Add(1)
	go func() { // switch: parse, learn, look up, forward
		defer wg.Done()
		fdb := map[[6]byte]int{}
		for {
			var in []*pbuf
			select {
			case in = <-back:
			case in = <-rx:
			case <-quit:
				return
			}
			out := getBatch()
			var ins []*pbuf
			for _, p := range in {
				learn(fdb, p)
				switch {
				case cfg.Kind == Block:
					sent.Add(1)
					sentBytes.Add(uint64(p.n))
					bufPool.Put(p)
				case inspect && !p.inspected:
					if ins == nil {
						ins = getBatch()
					}
					ins = append(ins, p)
				default:
					out = append(out, p)
				}
			}
			putBatch(in)
			if ins != nil {
				select {
				case toInspect <- ins:
				case <-quit:
					return
				}
			}
			if len(out) > 0 {
				select {
				case tx <- out:
				case <-quit:
					return
				}
			} else {
				putBatch(out)
			}
		}
	}()
	if inspect {
		wg.Add(1)
		go func() { // inspect: look at each frame, reinject it or a copy
			defer wg.Done()
			for {
				var in []*pbuf
				select {
				case in = <-toInspect:
				case <-quit:
					return
				}
				for i, p := range in {
					in[i] = inspectFrame(p, cfg.Kind == Clone)
				}
				select {
				case back <- in:
				case <-quit:
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // transmit
		defer wg.Done()
		var local []int64
		defer func() { latMu.Lock(); lats = append(lats, local...); latMu.Unlock() }()
		for {
			var in []*pbuf
			select {
			case in = <-tx:
			case <-quit:
				return
			}
			var bytes uint64
			for _, p := range in {
				bytes += uint64(p.n)
				if p.ts != 0 && len(local) < 1<<16 {
					local = append(local, int64(time.Since(epoch))-p.ts)
				}
				bufPool.Put(p)
			}
			sent.Add(uint64(len(in)))
			sentBytes.Add(bytes)
			putBatch(in)
		}
	}()

	return measureBaseline(cfg, &sent, &sentBytes, quit, &wg, &lats)
}

// baselineSingle is the per-packet pipeline: channels of *pbuf.
func baselineSingle(cfg Config) (Result, error) {
	fa, err := Frame(macA, macB, cfg.FrameSize)
	if err != nil {
		return Result{}, err
	}
	fb, err := Frame(macB, macA, cfg.FrameSize)
	if err != nil {
		return Result{}, err
	}
	frames := [2][]byte{fa, fb}
	var (
		quit      = make(chan struct{})
		rx        = make(chan *pbuf, 1024)
		toInspect = make(chan *pbuf, 1024)
		back      = make(chan *pbuf, 1024)
		tx        = make(chan *pbuf, 1024)
		sent      atomic.Uint64
		sentBytes atomic.Uint64
		wg        sync.WaitGroup
		latMu     sync.Mutex
		lats      []int64
	)
	epoch := time.Now()
	inspect := cfg.Kind == Inspect || cfg.Kind == Clone
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; ; seq++ {
			for uint64(seq)-sent.Load() >= maxInFlight {
				select {
				case <-quit:
					return
				default:
					runtime.Gosched()
				}
			}
			p := bufPool.Get().(*pbuf)
			p.n = copy(p.data[:], frames[seq&1])
			p.port, p.inspected, p.ts = seq&1, false, 0
			if seq%61 == 0 {
				p.ts = int64(time.Since(epoch))
			}
			select {
			case rx <- p:
			case <-quit:
				return
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		fdb := map[[6]byte]int{}
		for {
			var p *pbuf
			select {
			case p = <-back:
			case p = <-rx:
			case <-quit:
				return
			}
			learn(fdb, p)
			next := tx
			switch {
			case cfg.Kind == Block:
				sent.Add(1)
				sentBytes.Add(uint64(p.n))
				bufPool.Put(p)
				continue
			case inspect && !p.inspected:
				next = toInspect
			}
			select {
			case next <- p:
			case <-quit:
				return
			}
		}
	}()
	if inspect {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var p *pbuf
				select {
				case p = <-toInspect:
				case <-quit:
					return
				}
				p = inspectFrame(p, cfg.Kind == Clone)
				select {
				case back <- p:
				case <-quit:
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var local []int64
		defer func() { latMu.Lock(); lats = append(lats, local...); latMu.Unlock() }()
		for {
			var p *pbuf
			select {
			case p = <-tx:
			case <-quit:
				return
			}
			if p.ts != 0 && len(local) < 1<<16 {
				local = append(local, int64(time.Since(epoch))-p.ts)
			}
			sent.Add(1)
			sentBytes.Add(uint64(p.n))
			bufPool.Put(p)
		}
	}()
	return measureBaseline(cfg, &sent, &sentBytes, quit, &wg, &lats)
}

func measureBaseline(cfg Config, sent, sentBytes *atomic.Uint64, quit chan struct{}, wg *sync.WaitGroup, lats *[]int64) (Result, error) {
	time.Sleep(cfg.Warmup)
	var r Result
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a0, g0 := ms.Mallocs, automaticGCs()
	p0, b0 := sent.Load(), sentBytes.Load()
	t0 := time.Now()
	time.Sleep(cfg.Duration)
	// As in Setup.run: a window so short, or a machine so loaded, that the
	// stages delivered nothing yet measures nothing; wait for the first
	// packet, at most 5 s more. Elapsed is the real interval.
	for end := time.Now().Add(5 * time.Second); sent.Load() == p0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	r.Elapsed = time.Since(t0)
	r.Packets, r.Bytes = sent.Load()-p0, sentBytes.Load()-b0
	runtime.ReadMemStats(&ms)
	r.Allocs, r.GCCycles = ms.Mallocs-a0, automaticGCs()-g0
	close(quit)
	wg.Wait()
	r.Latencies = *lats
	return r, nil
}
