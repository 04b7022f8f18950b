package vswitch_test

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// soakCallout does, frame by frame and at random, what callouts do: permit,
// block, absorb and reinject the original, clone and reinject the clone,
// absorb the frame and inject a new NBL allocated with its bytes, or
// absorb and hold the frame for a while on another goroutine before
// letting it go. It injects through whichever handle is current; a churn
// goroutine replaces that handle while traffic flows.
type soakCallout struct {
	h      atomic.Pointer[inject.Handle]
	id     []byte
	held   chan *nbl.NetBufferList
	done   inject.Done
	seq    atomic.Uint64
	counts [7]atomic.Uint64 // permit, block, reinject, clone, hold, inject refused, new NBL
	fresh  *nbl.Pool        // NBLs the callout allocates
	freed  inject.Done      // frees a fresh NBL when its injection completes
}

func (c *soakCallout) classify(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	h := c.h.Load()
	if st, _ := h.QueryState(l); st.SelfInjected() || out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 {
		out.ActionType = vswitch.FWP_ACTION_PERMIT
		return
	}
	n := c.seq.Add(1)
	x := n * 0x9E3779B97F4A7C15 >> 60 // 0..15, spread
	absorb := func() {
		out.ActionType = vswitch.FWP_ACTION_BLOCK
		out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
		out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
	}
	switch {
	case x < 4:
		c.counts[0].Add(1)
		out.ActionType = vswitch.FWP_ACTION_PERMIT
	case x < 6:
		c.counts[1].Add(1)
		out.ActionType = vswitch.FWP_ACTION_BLOCK
	case x < 8:
		// A new NBL with the frame's bytes goes on in its place.
		nb := l.FirstNetBuffer()
		fl, err := c.fresh.Allocate(0, nb.DataLength())
		if err == nil {
			d, _ := fl.FirstNetBuffer().Data()
			nb.CopyOut(d, 0)
			if err = h.InjectVSwitchIngress(c.id, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, fl, nil, c.freed); err != nil {
				_ = c.fresh.Free(fl)
			}
		}
		if err != nil {
			c.counts[5].Add(1)
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		c.counts[6].Add(1)
		absorb()
	case x < 11:
		l.Reference()
		if err := h.InjectVSwitchIngress(c.id, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, l, nil, inject.Done{}); err != nil {
			c.counts[5].Add(1)
			l.Dereference()
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		c.counts[2].Add(1)
		absorb()
	case x < 14:
		l.Reference()
		// The worker's cache for the frame's pool, or the pool itself
		// for frames of a pool the switch has no cache for (the
		// callout's own, below).
		var cl *nbl.NetBufferList
		var err error
		if meta.Cache != nil {
			cl, err = meta.Cache.Clone(l)
		} else {
			cl, err = l.Pool().Clone(l)
		}
		if err == nil {
			if err = h.InjectVSwitchIngress(c.id, meta.VSwitchSourcePortID, meta.VSwitchSourceNicIndex, cl, nil, c.done); err != nil {
				_ = cl.Pool().FreeClone(cl)
			}
		}
		if err != nil {
			c.counts[5].Add(1)
			l.Dereference()
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			return
		}
		c.counts[3].Add(1)
		absorb()
	default:
		l.Reference()
		select {
		case c.held <- l:
			c.counts[4].Add(1)
			absorb()
		default:
			l.Dereference()
			c.counts[0].Add(1)
			out.ActionType = vswitch.FWP_ACTION_PERMIT
		}
	}
}

func (c *soakCallout) free(_ any, l *nbl.NetBufferList, _ bool) {
	if err := c.fresh.Free(l); err != nil {
		panic(err)
	}
}

func (c *soakCallout) complete(_ any, cl *nbl.NetBufferList, _ bool) {
	orig := cl.Parent()
	if err := cl.Pool().FreeClone(cl); err != nil {
		panic(err)
	}
	orig.Dereference()
}

// TestSoak runs four ports on two workers with the soak callout, replaces
// the injection handle and adds and removes a filter while traffic flows,
// and injects faults: the ports refuse part of a send now and then (with
// EAGAIN, ENOBUFS or EIO), and a callout that panics is added and taken
// away again. It checks the counters every 200 ms, and at the end checks
// that every frame came back to its port exactly once, every handle
// balanced its books, the switch's counters balance, and the pools are
// full. It runs for NBLPIPE_SOAK (a duration, `make soak`), or 1 s; -short
// skips it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the soak runs in make test and make soak")
	}
	d := time.Second
	if v := os.Getenv("NBLPIPE_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("NBLPIPE_SOAK=%q: %v", v, err)
		}
	}
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("50a50a50-1111-2222-3333-444444444444")
	sw, err := vswitch.New(vswitch.Config{ID: id, Stack: st, Workers: 2, HopLimit: 4})
	if err != nil {
		t.Fatal(err)
	}
	const nports = 4
	var ports [nports]*memport.Port
	for i := range ports {
		var frames [][]byte
		for j := range nports {
			if j != i {
				frames = append(frames, udpFrame(t, macN(i+1), macN(j+1), 64+i*100))
			}
		}
		frames = append(frames, udpFrame(t, macN(i+1), net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 64))
		// Ports 1 and 2 have a transmit queue per worker
		// (vswitch.QueuedSender); 3 and 4 take frames through their ring.
		p, err := memport.New(memport.Config{Frames: frames, MaxInFlight: 256, PoolSize: 1024, SendError: soakSendFault, TxQueues: i < 2})
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
		if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), NicIndex: uint16(i), Name: "soak"}); err != nil {
			t.Fatal(err)
		}
	}
	c := &soakCallout{id: id.Bytes(), held: make(chan *nbl.NetBufferList, 128)}
	c.done = inject.Done{Fn: c.complete}
	c.freed = inject.Done{Fn: c.free}
	if c.fresh, err = nbl.NewPool(nbl.Config{NBLs: 2048, FrameSize: 2048}); err != nil {
		t.Fatal(err)
	}
	h0, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	c.h.Store(h0)
	if err := sw.RegisterCallout(&vswitch.Callout{Key: "soak", Classify: c.classify}); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddFilter(&vswitch.Filter{Key: "soak", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
		Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "soak", Weight: 10}); err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The holder lets held frames go after a while.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case l := <-c.held:
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				l.Dereference()
			case <-stop:
				// Let go of what is still held: injections of other
				// frames may wait for these (their completion waits
				// while a callout holds the frame).
				for {
					select {
					case l := <-c.held:
						l.Dereference()
					default:
						return
					}
				}
			}
		}
	}()
	// Handle churn: a new handle takes over; the old one is destroyed,
	// which waits for its pending injections.
	var handles []*inject.Handle
	handles = append(handles, h0)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
			if err != nil {
				t.Error(err)
				return
			}
			old := c.h.Swap(h)
			handles = append(handles, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := old.DestroyContext(ctx); err != nil {
				t.Errorf("destroying a handle under load: %v", err)
			}
			cancel()
		}
	}()
	// Panic churn: a callout that panics on its first frame is added at
	// the egress layer, and taken away again once it has been disabled.
	var panicked atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			co := &vswitch.Callout{Key: "panicky", Classify: func(*vswitch.IncomingValues, *vswitch.Metadata, *nbl.NetBufferList, any, *vswitch.Filter, uint64, *vswitch.ClassifyOut) {
				panic("soak: a faulty callout")
			}}
			if err := sw.RegisterCallout(co); err != nil {
				t.Error(err)
				return
			}
			if _, err := sw.AddFilter(&vswitch.Filter{Key: "panicky", LayerID: vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET, Weight: 30,
				Action: vswitch.FWP_ACTION_CALLOUT_INSPECTION, CalloutKey: "panicky"}); err != nil {
				t.Error(err)
				return
			}
			for !co.Disabled() {
				select {
				case <-stop:
				case <-time.After(time.Millisecond):
					continue
				}
				break
			}
			panicked.Add(co.Panics())
			if err := sw.DeleteFilter("panicky"); err != nil {
				t.Error(err)
				return
			}
			if err := sw.UnregisterCallout("panicky"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Filter churn: a block filter for an EtherType nobody sends.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var err error
			if i%2 == 0 {
				_, err = sw.AddFilter(&vswitch.Filter{Key: "churn", LayerID: vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET, Weight: 20,
					Action: vswitch.FWP_ACTION_BLOCK, Conditions: []vswitch.Condition{{Field: 4, Match: vswitch.FWP_MATCH_EQUAL, Uint: 0x88B5}}})
			} else {
				err = sw.DeleteFilter("churn")
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()

	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(200 * time.Millisecond)
		for _, h := range []*inject.Handle{c.h.Load()} {
			if s := h.Stats(); s.Pending < 0 || s.Completed > s.Injected {
				t.Fatalf("handle books: %+v", s)
			}
		}
		for i, p := range ports {
			if s := p.Stats(); s.Returned > s.Generated {
				t.Fatalf("port %d: returned %d of %d generated", i, s.Returned, s.Generated)
			}
		}
	}
	// Stop holding before the holder stops: take the callout's filter
	// away, give the workers a burst to see it, then stop the goroutines.
	if err := sw.DeleteFilter("soak"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sw.CloseContext(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	last := c.h.Load()
	if err := last.Destroy(); err != nil {
		t.Fatal(err)
	}
	var gen uint64
	for i, p := range ports {
		s := p.Stats()
		gen += s.Generated
		if s.Returned != s.Generated {
			t.Errorf("port %d: %d frames generated, %d came back", i, s.Generated, s.Returned)
		}
		if !p.Pool().Full() {
			t.Errorf("port %d: pool not full: %d in use", i, p.Pool().InUse())
		}
	}
	var injected, completed uint64
	for _, h := range handles {
		s := h.Stats()
		injected += s.Injected
		completed += s.Completed
		if s.Pending != 0 || s.Injected != s.Completed {
			t.Errorf("handle %d: %+v", h.ID(), s)
		}
	}
	if !c.fresh.Full() {
		t.Errorf("the callout's pool: %d NBLs in use", c.fresh.InUse())
	}
	var sendFaults uint64
	for _, p := range ports {
		sendFaults += p.Stats().SendErrors
	}
	ss := sw.Stats()
	tt := checkConservation(t, ss, ss.FloodCopies)
	// A panic drops the frame classified, and the original of a flooded
	// frame when it was a copy.
	if p, d := panicked.Load(), tt.drops[vswitch.DropCalloutPanic]; d < p || d > 2*p {
		t.Errorf("%d callout panics, %d frames dropped for them", p, d)
	}
	if !sw.CopyPool().Full() {
		t.Errorf("copy pool: %d in use", sw.CopyPool().InUse())
	}
	t.Logf("soak %v: %d frames generated, %d handles, %d injected and completed, %v; callout permit/block/reinject/clone/new/hold/refused %d/%d/%d/%d/%d/%d/%d; faults: %d failed sends, %d callout panics; hop-limit drops %d, flood copies %d",
		d, gen, len(handles), completed, tt, c.counts[0].Load(), c.counts[1].Load(), c.counts[2].Load(), c.counts[3].Load(),
		c.counts[6].Load(), c.counts[4].Load(), c.counts[5].Load(), sendFaults, panicked.Load(), tt.drops[vswitch.DropHopLimit], ss.FloodCopies)
	if sendFaults == 0 || panicked.Load() == 0 || c.counts[6].Load() == 0 {
		t.Error("a fault or an action of the soak never happened")
	}
	if gen == 0 || injected == 0 {
		t.Fatal("the soak moved nothing")
	}
}

var soakSends atomic.Uint64

// soakSendFault makes one send in 200 fail part-way, with one of the
// errors a kernel port returns.
func soakSendFault(n int) (int, error) {
	if n == 0 || soakSends.Add(1)%200 != 0 {
		return n, nil
	}
	errs := [...]error{syscall.EAGAIN, syscall.ENOBUFS, syscall.EIO}
	return rand.IntN(n), errs[rand.IntN(len(errs))]
}
