package vswitch_test

// Benchmarks of the switch on in-memory ports, one packet per b.N
// iteration, with 64-byte frames and bursts of 32: plain forwarding, an
// absorb-and-reinject callout, the inspect sample's clone-and-reinject
// callout, and a BLOCK filter; each with one worker (a manual switch driven
// by the benchmark goroutine: the switch on one core) and with two worker
// goroutines. BenchmarkBaselinePipeline is what a Go programmer would
// write instead: a goroutine per stage joined by buffered channels, with
// packet buffers from a sync.Pool. All report ns/pkt and Mpps from the
// elapsed time and the packets processed.

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

const (
	benchFrameSize = 64
	benchBurst     = 32
	benchWarm      = 8192 // packets switched before the timer starts
)

func reportPackets(b *testing.B, pkts int) {
	el := b.Elapsed()
	b.ReportMetric(float64(el.Nanoseconds())/float64(pkts), "ns/pkt")
	b.ReportMetric(float64(pkts)/el.Seconds()/1e6, "Mpps")
}

func BenchmarkSwitch(b *testing.B) {
	for _, scenario := range []string{"forward", "absorb-reinject", "clone-reinject", "block"} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", scenario, workers), func(b *testing.B) {
				benchSwitch(b, scenario, workers)
			})
		}
	}
}

func benchSwitch(b *testing.B, scenario string, workers int) {
	r := newRig(b, vswitch.Config{Manual: workers == 1, Workers: workers, Burst: benchBurst})
	total := uint64(b.N) + benchWarm
	gen := r.gatedGen(vswitch.PortConfig{ID: 1, Name: "gen"}, udpFrame(b, macN(1), macN(2), benchFrameSize))
	sink := r.port(memport.Config{Frames: [][]byte{udpFrame(b, macN(2), broadcast, benchFrameSize)}, Limit: 1}, vswitch.PortConfig{ID: 2, Name: "sink"})
	processed := func() uint64 { return sink.Stats().Sent }
	var x *inspector
	var clonePool *nbl.Pool
	switch scenario {
	case "absorb-reinject":
		h := r.handle()
		r.callout("reinject", ingress, 1, h, (&reinjector{h: h, swID: r.id.Bytes()}).classify, fromGen()...)
	case "clone-reinject":
		h := r.handle()
		x = newInspector(h, r.id)
		var err error
		if clonePool, err = nbl.NewPool(nbl.Config{NBLs: 8192, NoFrames: true}); err != nil {
			b.Fatal(err)
		}
		x.clonePool = clonePool
		// Clones are made on the generator's worker, in a cache of its
		// own. They are freed where they complete: usually on the sink's
		// worker, but a clone dropped on the generator's completes there,
		// so with two workers the frees go through the pool's shared ring;
		// with one, through a second cache.
		if x.cloneCache, err = clonePool.NewCache(256); err != nil {
			b.Fatal(err)
		}
		if workers == 1 {
			if x.freeCache, err = clonePool.NewCache(256); err != nil {
				b.Fatal(err)
			}
		}
		r.callout("inspect", ingress, 1, h, x.classify, fromGen()...)
	case "block":
		r.filter(&vswitch.Filter{Key: "block", LayerID: ingress, Action: vswitch.FWP_ACTION_BLOCK, Conditions: fromGen()})
		processed = func() uint64 { return gen.Stats().Returned } // a blocked frame is done when it is back
	}
	r.start()
	run := func(target uint64) {
		if workers == 1 {
			for i := 0; processed() < target; i++ {
				if !r.sw.Step() && i > 1<<24 {
					b.Fatalf("stalled at %d of %d packets", processed(), target)
				}
			}
			return
		}
		deadline := time.Now().Add(time.Minute + time.Duration(b.N)*time.Microsecond)
		for processed() < target {
			if time.Now().After(deadline) {
				b.Fatalf("stalled at %d of %d packets", processed(), target)
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	gen.open(benchWarm)
	run(benchWarm)
	b.ReportAllocs()
	b.ResetTimer()
	gen.open(int64(b.N))
	run(total)
	b.StopTimer()
	reportPackets(b, b.N)

	if workers == 1 {
		r.settle()
	} else {
		r.waitUntil("every frame", func() bool { return gen.Stats().Returned == total })
	}
	r.close()
	if x != nil {
		x.cloneCache.Flush()
		if x.freeCache != nil {
			x.freeCache.Flush()
		}
		x.verify(b, int64(total))
		if !clonePool.Full() {
			b.Errorf("%d clones not freed", clonePool.InUse())
		}
	}
	if g := gen.Stats(); g.Returned != total {
		b.Errorf("generator %+v, want %d frames", g, total)
	}
}

// BenchmarkBaselinePipeline is the pipeline a Go programmer would write: a
// receive goroutine fills packet buffers taken from a sync.Pool, a switch
// goroutine parses the Ethernet header, learns the source address in a map
// and looks the destination up, a transmit goroutine "sends" the packet and
// puts the buffer back; buffered channels join the stages. GOMAXPROCS 1
// and 2 stand for one and two cores.
func BenchmarkBaselinePipeline(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			benchPipeline(b)
		})
	}
}

type pipePkt struct {
	buf     [2048]byte
	n       int
	in, out int
}

func benchPipeline(b *testing.B) {
	frames := [2][]byte{udpFrame(b, macN(2), broadcast, benchFrameSize), udpFrame(b, macN(1), macN(2), benchFrameSize)}
	total := b.N + benchWarm
	bufs := sync.Pool{New: func() any { return new(pipePkt) }}
	rx := make(chan *pipePkt, 1024)
	tx := make(chan *pipePkt, 1024)
	warm := make(chan struct{})
	done := make(chan struct{})
	var perPort [2]int
	go func() { // receive: port 1 announces its address, then port 0 sends
		for i := 0; i < total+1; i++ {
			p := bufs.Get().(*pipePkt)
			src := 0
			if i == 0 {
				src = 1
			}
			p.n = copy(p.buf[:], frames[1-src])
			p.in = src
			rx <- p
		}
		close(rx)
	}()
	go func() { // switch: parse, learn, look up
		fdb := map[[6]byte]int{}
		for p := range rx {
			f := p.buf[:p.n]
			if len(f) < 14 {
				bufs.Put(p)
				continue
			}
			var dst, src [6]byte
			copy(dst[:], f[0:6])
			copy(src[:], f[6:12])
			_ = binary.BigEndian.Uint16(f[12:14])
			if src[0]&1 == 0 {
				fdb[src] = p.in
			}
			out, ok := fdb[dst]
			if !ok || dst[0]&1 != 0 {
				out = 1 - p.in // flood: the other port
			}
			if out == p.in {
				bufs.Put(p)
				continue
			}
			p.out = out
			tx <- p
		}
		close(tx)
	}()
	go func() { // transmit
		n := 0
		for p := range tx {
			perPort[p.out]++
			bufs.Put(p)
			if n++; n == benchWarm+1 {
				close(warm)
			}
		}
		close(done)
	}()
	<-warm
	b.ReportAllocs()
	b.ResetTimer()
	<-done
	b.StopTimer()
	reportPackets(b, b.N)
	if perPort[1] != total || perPort[0] != 1 {
		b.Errorf("delivered %v, want %d to port 1", perPort, total)
	}
}
