package vswitch_test

// Fault injection through the port interface and the pools: a wrapper
// port around a memport that fails sends (EAGAIN, ENOBUFS, EIO), takes
// fewer frames than it is given or reports nonsense counts, fails receives
// (transiently, with frames, or for good), or stops reclaiming; pools that
// run dry; transmit and injection rings that fill; completion functions
// that panic; handles destroyed while their completions are queued. Every
// case runs a bounded number of frames, under a deadline, and ends with
// the drops counted under their reason (as many as were injected, where
// that is known), every NBL back (internal/ledger), and no goroutine left.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// faultDeadline bounds each fault case; reaching it fails the case.
const faultDeadline = 20 * time.Second

// faultPort is a memport behind faults. Its counters are atomic: the
// switch's worker calls the port while the test reads them.
type faultPort struct {
	*memport.Port
	// send, if set, says how many of the n frames of Send call number
	// call to pass to the memport (which may take fewer, when its transmit
	// slots are full), and the error to return.
	send func(call, n int) (int, error)
	// report, if set, replaces the count Send returns: it gets what the
	// memport took and how many frames were offered.
	report func(took, n int) int
	// recv, if set, says whether Receive call number call receives, and
	// the error it returns (with the frames, if it receives).
	recv func(call int) (bool, error)
	// stalled makes Reclaim return nothing: the transmit ring stays full.
	stalled atomic.Bool
	// gated makes Receive deliver no more frames than budget allows (open).
	gated  bool
	budget atomic.Int64

	sendCalls, recvCalls atomic.Int64
	refused              atomic.Uint64 // frames offered to Send and not taken
	sendErrs, recvErrs   atomic.Uint64
}

func (f *faultPort) Send(in []*nbl.NetBufferList) (int, error) {
	call := int(f.sendCalls.Add(1) - 1)
	k, err := len(in), error(nil)
	if f.send != nil {
		k, err = f.send(call, len(in))
		k = min(max(k, 0), len(in))
	}
	took, _ := f.Port.Send(in[:k])
	f.refused.Add(uint64(len(in) - took))
	if err != nil {
		f.sendErrs.Add(1)
	}
	if f.report != nil {
		return f.report(took, len(in)), err
	}
	return took, err
}

// open lets a gated port receive n more frames.
func (f *faultPort) open(n int64) { f.budget.Add(n) }

func (f *faultPort) Receive(out []*nbl.NetBufferList) (int, error) {
	call := int(f.recvCalls.Add(1) - 1)
	if f.gated {
		k := min(int64(len(out)), f.budget.Load())
		if k <= 0 {
			return 0, nil
		}
		n, err := f.Port.Receive(out[:k])
		f.budget.Add(-int64(n))
		return n, err
	}
	if f.recv == nil {
		return f.Port.Receive(out)
	}
	ok, err := f.recv(call)
	if err != nil {
		f.recvErrs.Add(1)
	}
	if !ok {
		return 0, err
	}
	n, _ := f.Port.Receive(out)
	return n, err
}

func (f *faultPort) Reclaim(out []*nbl.NetBufferList) int {
	if f.stalled.Load() {
		return 0
	}
	return f.Port.Reclaim(out)
}

// fixture is a switch (manual, or with running workers) with a ledger.
type fixture struct {
	t      *testing.T
	r      *rig
	l      *ledger.Ledger
	manual bool
	ctx    context.Context
	mps    []*memport.Port // by switch port index, for the ledger
}

func newFixture(t *testing.T, manual bool, cfg vswitch.Config) *fixture {
	t.Helper()
	ledger.Goroutines(t) // registered first: checked after the rig's cleanup closed the switch
	ctx, cancel := context.WithTimeout(context.Background(), faultDeadline)
	t.Cleanup(cancel)
	cfg.Manual = manual
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	return &fixture{t: t, r: newRig(t, cfg), l: ledger.New(t), manual: manual, ctx: ctx}
}

// port adds a fault port around a memport made from mc.
func (fx *fixture) port(mc memport.Config, pc vswitch.PortConfig) *faultPort {
	fx.t.Helper()
	mp, err := memport.New(mc)
	if err != nil {
		fx.t.Fatal(err)
	}
	f := &faultPort{Port: mp}
	if err := fx.r.sw.AddPort(f, pc); err != nil {
		fx.t.Fatal(err)
	}
	fx.r.ports = append(fx.r.ports, mp)
	if len(mc.Frames) > 0 {
		fx.r.gens = append(fx.r.gens, mp)
	}
	fx.mps = append(fx.mps, mp)
	return f
}

func (fx *fixture) start() {
	fx.t.Helper()
	fx.r.start()
	fx.l.Switch(fx.r.sw, fx.mps...)
}

// run drives the switch until done holds: Steps in manual mode, waiting
// otherwise; the ledger's running checks go along. It fails the test at
// the deadline.
func (fx *fixture) run(what string, done func() bool) {
	fx.t.Helper()
	for i := 0; !done(); i++ {
		if fx.ctx.Err() != nil || i == maxSteps {
			for j, mp := range fx.mps {
				fx.t.Logf("port %d: %+v; its pool: %d of %d NBLs not in the free ring", j, mp.Stats(), mp.Pool().InUse(), mp.Pool().Cap())
			}
			fx.t.Fatalf("still waiting for %s after %d steps or polls (deadline %v)", what, i, faultDeadline)
		}
		if fx.manual {
			fx.r.sw.Step()
		} else {
			time.Sleep(100 * time.Microsecond)
		}
		if i%64 == 0 && !fx.l.Check() {
			fx.t.FailNow()
		}
	}
	if fx.manual {
		fx.r.settle()
	}
}

// close closes the switch, checks the rig's books and the ledger's, and
// returns the final counters.
func (fx *fixture) close() vswitch.Stats {
	fx.t.Helper()
	st := fx.r.close()
	for _, h := range fx.r.hs {
		if err := h.DestroyContext(fx.ctx); err != nil {
			fx.t.Errorf("destroy handle: %v", err)
		}
	}
	fx.l.CheckClosed()
	return st
}

var (
	errAgain  = syscall.EAGAIN
	errNoBufs = syscall.ENOBUFS
	errIO     = syscall.EIO
)

// sendFault is a fault of the sink's Send: a gen port sends n unicast
// frames to a sink that fails as the case says.
type sendFault struct {
	name   string
	send   func(call, n int) (int, error)
	report func(took, n int) int
	// all: every frame is refused (the sink takes nothing).
	all bool
}

var sendFaults = []sendFault{
	{name: "eagain-every-third", send: func(call, n int) (int, error) {
		if call%3 == 2 {
			return 0, errAgain
		}
		return n, nil
	}},
	{name: "enobufs-short", send: func(call, n int) (int, error) {
		if call%2 == 1 {
			return n / 2, errNoBufs
		}
		return n, nil
	}},
	{name: "eio-dead-port", send: func(int, int) (int, error) { return 0, errIO }, all: true},
	{name: "short-no-error", send: func(_, n int) (int, error) { return n - 1, nil }},
	{name: "never-accepts", send: func(int, int) (int, error) { return 0, nil }, all: true},
	{name: "reports-negative", send: func(int, int) (int, error) { return 0, nil },
		report: func(int, int) int { return -1 }, all: true},
	{name: "reports-too-many", report: func(took, n int) int { return n + 7 }},
}

// TestFaultSend: whatever a port's Send does, every frame it did not take
// is dropped as DropTxError (exactly as many as it refused), what it took
// is counted as transmitted, and nothing is lost.
func TestFaultSend(t *testing.T) {
	const n = 1000
	for _, mode := range []string{"manual", "workers"} {
		for _, tc := range sendFaults {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				fx := newFixture(t, mode == "manual", vswitch.Config{})
				gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: n, MaxInFlight: 256},
					vswitch.PortConfig{ID: 1, Name: "gen"})
				sink := fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "sink"})
				sink.send, sink.report = tc.send, tc.report
				fx.start()
				fx.run("every frame back", func() bool { return gen.Stats().Returned == n })
				st := fx.close()
				ps := st.Ports[1]
				tx, txErr := ps.TxPackets, ps.Drops[vswitch.DropTxError]
				if txErr != sink.refused.Load() {
					t.Errorf("%d frames dropped as tx-error, the port refused %d", txErr, sink.refused.Load())
				}
				if got := tx + txErr + ps.Drops[vswitch.DropRingFull]; got != n {
					t.Errorf("sink: %d transmitted + %d tx-error + %d ring-full = %d, want %d", tx, txErr, ps.Drops[vswitch.DropRingFull], got, n)
				}
				if tc.all && tx != 0 {
					t.Errorf("a port that takes nothing transmitted %d frames", tx)
				}
				if tc.send != nil && txErr == 0 {
					t.Error("the fault was never hit")
				}
				if tc.send == nil && tx != n {
					t.Errorf("a port that takes everything transmitted %d of %d frames", tx, n)
				}
			})
		}
	}
}

// TestFaultReceive: receive errors, with frames or without, transient or
// for good, lose nothing: the frames returned with an error are switched,
// the switch's receive count is the port's, and each error is counted
// (PortStats.RxErrors). io.EOF, with the last frames, ends the port's
// input: the switch calls Receive no more.
func TestFaultReceive(t *testing.T) {
	const n = 600
	const eofCall = 3
	for _, mode := range []string{"manual", "workers"} {
		for _, tc := range []struct {
			name string
			recv func(call int) (bool, error)
			// stops: the port stops delivering before its limit.
			stops bool
		}{
			{"transient-with-frames", func(call int) (bool, error) {
				if call%2 == 1 {
					return true, syscall.EINTR
				}
				return true, nil
			}, false},
			{"transient-empty", func(call int) (bool, error) {
				if call%3 != 0 {
					return false, errAgain
				}
				return true, nil
			}, false},
			{"permanent", func(call int) (bool, error) {
				if call >= 4 {
					return false, errIO
				}
				return true, nil
			}, true},
			{"eof-with-frames", func(call int) (bool, error) {
				switch {
				case call == eofCall:
					return true, fmt.Errorf("port gone: %w", io.EOF)
				case call > eofCall:
					return false, errors.New("Receive called after io.EOF")
				}
				return true, nil
			}, true},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				fx := newFixture(t, mode == "manual", vswitch.Config{Burst: 32})
				gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: n, MaxInFlight: 256},
					vswitch.PortConfig{ID: 1, Name: "gen"})
				gen.recv = tc.recv
				fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "sink"})
				fx.start()
				// A port that stops is done once it was asked a few times more
				// (after io.EOF: once) and every frame it gave came back.
				calls := int64(9)
				if tc.name == "eof-with-frames" {
					calls = eofCall + 1
				}
				fx.run("the generator to finish or stop", func() bool {
					s := gen.Stats()
					if tc.stops {
						return gen.recvCalls.Load() >= calls && s.Returned == s.Generated
					}
					return s.Returned == n
				})
				st := fx.close()
				g := gen.Stats()
				if tc.stops && (g.Generated == 0 || g.Generated >= n) {
					t.Errorf("the port generated %d frames before it stopped; want some, fewer than %d", g.Generated, n)
				}
				if gen.recvErrs.Load() == 0 {
					t.Error("no receive error was injected")
				}
				if got, want := st.Ports[0].RxErrors, gen.recvErrs.Load(); got != want {
					t.Errorf("%d receive errors counted, %d injected", got, want)
				}
				if st.Ports[1].TxPackets != g.Generated {
					t.Errorf("%d frames generated, %d transmitted", g.Generated, st.Ports[1].TxPackets)
				}
				if tc.name == "eof-with-frames" {
					if calls := gen.recvCalls.Load(); calls != eofCall+1 {
						t.Errorf("Receive called %d times, want %d (none after io.EOF)", calls, eofCall+1)
					}
					if g.Generated != (eofCall+1)*32 {
						t.Errorf("%d frames generated, want the %d of the calls up to io.EOF", g.Generated, (eofCall+1)*32)
					}
				}
			})
		}
	}
}

// TestFaultPools: pools that run dry. A copy pool of two NBLs for
// broadcasts to five ports: each port gets every frame or a counted
// DropPoolEmpty for it. A generator whose own pool holds four NBLs: it
// receives less per call and waits for its frames to come back; the
// switch drops nothing.
func TestFaultPools(t *testing.T) {
	const n = 300
	for _, mode := range []string{"manual", "workers"} {
		t.Run(mode+"/copy-pool", func(t *testing.T) {
			fx := newFixture(t, mode == "manual", vswitch.Config{CopyPoolSize: 2})
			gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), broadcast, 64)}, Limit: n, MaxInFlight: 64},
				vswitch.PortConfig{ID: 1, Name: "gen"})
			for i := range 5 {
				fx.port(memport.Config{}, vswitch.PortConfig{ID: uint32(2 + i), Name: "sink"})
			}
			fx.start()
			fx.run("every frame back", func() bool { return gen.Stats().Returned == n })
			st := fx.close()
			var poolEmpty uint64
			for i := 1; i < 6; i++ {
				ps := st.Ports[i]
				poolEmpty += ps.Drops[vswitch.DropPoolEmpty]
				if got := ps.TxPackets + ps.Dropped(); got != n {
					t.Errorf("port %d: %d transmitted + %d dropped (%v), want %d", i, ps.TxPackets, ps.Dropped(), ps.Drops, n)
				}
			}
			if poolEmpty == 0 {
				t.Error("no copy failed with a copy pool of 2 NBLs")
			}
			if st.FloodCopies != 4*n {
				t.Errorf("%d flood copies counted, want %d (made or failed)", st.FloodCopies, 4*n)
			}
		})
		for _, workers := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/port-pool-%d-workers", mode, workers), func(t *testing.T) {
				portPoolDry(t, mode == "manual", workers, n)
			})
		}
	}
}

// portPoolDry: a generator whose pool of four NBLs runs dry at every
// burst gets each frame back and goes on until its limit. With two
// workers the sink's worker releases the generator's frames into a cache
// of its own for the generator's pool: they must not stay there while the
// generator starves.
func portPoolDry(t *testing.T, manual bool, workers, n int) {
	fx := newFixture(t, manual, vswitch.Config{Workers: workers})
	gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: uint64(n), PoolSize: 4},
		vswitch.PortConfig{ID: 1, Name: "gen"})
	fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "sink"})
	fx.start()
	fx.run("every frame back", func() bool { return gen.Stats().Returned == uint64(n) })
	st := fx.close()
	if gen.Stats().PoolEmpty == 0 {
		t.Error("the generator's pool of 4 never ran dry")
	}
	if tt := ledger.Sum(st); tt.Tx != uint64(n) || tt.Dropped != 0 {
		t.Errorf("%v; want %d transmitted and nothing dropped", tt, n)
	}
}

// TestFaultRings: transmit rings that stay full. With two workers, a
// destination port's transmit ring of two slots fills each burst (manual
// mode: the sender's whole burst comes before the owner runs) and its port
// never accepts: every frame is a ring-full or a tx-error drop. A port that
// stops reclaiming keeps its transmit slots full: the rest is refused, and
// everything comes back once it reclaims again. An injection ring of two
// slots refuses the rest of a chain of ten at once, with a failure status.
func TestFaultRings(t *testing.T) {
	const n = 320
	t.Run("tx-ring-full", func(t *testing.T) {
		fx := newFixture(t, true, vswitch.Config{TxRingSize: 2, Burst: 32})
		gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: n},
			vswitch.PortConfig{ID: 1, Name: "gen"}) // worker 0
		sink := fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "sink"}) // worker 1
		sink.send = func(int, int) (int, error) { return 0, nil }
		fx.start()
		fx.run("every frame back", func() bool { return gen.Stats().Returned == n })
		st := fx.close()
		ps := st.Ports[1]
		full, txErr := ps.Drops[vswitch.DropRingFull], ps.Drops[vswitch.DropTxError]
		if full == 0 || txErr == 0 || full+txErr != n || ps.TxPackets != 0 {
			t.Errorf("sink: %d ring-full, %d tx-error, %d transmitted; want both drops, adding up to %d", full, txErr, ps.TxPackets, n)
		}
		if txErr != sink.refused.Load() {
			t.Errorf("%d tx-error drops, the port refused %d", txErr, sink.refused.Load())
		}
	})
	for _, mode := range []string{"manual", "workers"} {
		t.Run(mode+"/port-stalled", func(t *testing.T) {
			const slots = 8
			fx := newFixture(t, mode == "manual", vswitch.Config{})
			gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(1), macN(2), 64)}, Limit: n},
				vswitch.PortConfig{ID: 1, Name: "gen"})
			sink := fx.port(memport.Config{TxSlots: slots}, vswitch.PortConfig{ID: 2, Name: "sink"})
			sink.stalled.Store(true)
			fx.start()
			fx.run("every frame but the stalled ones back", func() bool { return gen.Stats().Returned == n-slots })
			if s := sink.Stats(); s.Sent != slots || s.Reclaimed != 0 {
				t.Errorf("stalled sink: %+v, want %d sent and none reclaimed", s, slots)
			}
			sink.stalled.Store(false)
			fx.run("the stalled frames back", func() bool { return gen.Stats().Returned == n })
			st := fx.close()
			if ps := st.Ports[1]; ps.TxPackets != slots || ps.Drops[vswitch.DropTxError] != n-slots {
				t.Errorf("sink: %d transmitted, %d tx-error; want %d and %d", ps.TxPackets, ps.Drops[vswitch.DropTxError], slots, n-slots)
			}
		})
	}
	t.Run("inject-ring-full", func(t *testing.T) {
		const chain, ring = 10, 2
		fx := newFixture(t, true, vswitch.Config{InjectRingSize: ring, Workers: 1})
		fx.port(memport.Config{}, vswitch.PortConfig{ID: 1, Name: "a"})
		fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "b"})
		fx.start()
		h := fx.r.handle()
		ha := fx.l.Handle(h)
		pool := fx.r.pool(chain)
		fx.l.Pool("injector", pool)
		f := &freer{pool: pool}
		var head *nbl.NetBufferList
		for i := chain - 1; i >= 0; i-- {
			l := alloc(t, pool, idFrame(t, macN(1), macN(2), 64, uint32(i)))
			l.Next = head
			head = l
		}
		if err := h.InjectVSwitchIngress(fx.r.id.Bytes(), 1, 0, head, nil, inject.Done{Fn: f.fn}); err != nil {
			t.Fatal(err)
		}
		ha.Accepted(chain)
		if got := f.count(); got != chain-ring {
			t.Fatalf("%d completions before any step, want the %d that did not fit", got, chain-ring)
		}
		fx.run("every completion", func() bool { return f.count() == chain })
		st := fx.close()
		var ok, refused int
		for _, s := range f.statuses {
			switch s {
			case inject.STATUS_SUCCESS:
				ok++
			case inject.STATUS_INSUFFICIENT_RESOURCES:
				refused++
			default:
				t.Errorf("completion status %v", s)
			}
		}
		if ok != ring || refused != chain-ring {
			t.Errorf("%d completed with success, %d refused; want %d and %d", ok, refused, ring, chain-ring)
		}
		if d := st.Ports[0].Drops[vswitch.DropRingFull]; d != chain-ring {
			t.Errorf("%d ring-full drops at the source port, want %d", d, chain-ring)
		}
	})
}

// panicker is an injector whose completion function frees the NBL and
// then panics for every third one.
type panicker struct {
	pool         *nbl.Pool
	runs, panics atomic.Int64
	statusMu     sync.Mutex
	badStatus    []inject.Status
	freeErrs     atomic.Int64
}

func (p *panicker) complete(_ any, l *nbl.NetBufferList, _ bool) {
	n := p.runs.Add(1)
	if !inject.NT_SUCCESS(l.Status) {
		p.statusMu.Lock()
		p.badStatus = append(p.badStatus, l.Status)
		p.statusMu.Unlock()
	}
	if err := p.pool.Free(l); err != nil {
		p.freeErrs.Add(1)
	}
	if n%3 == 0 {
		p.panics.Add(1)
		panic("completion bug")
	}
}

// TestFaultCompletionPanics: completion functions that panic (after
// freeing their NBL) are recovered: every other completion still runs
// once, the handle's books balance, and the switch keeps switching.
func TestFaultCompletionPanics(t *testing.T) {
	const n = 60
	for _, mode := range []string{"manual", "workers"} {
		t.Run(mode, func(t *testing.T) {
			fx := newFixture(t, mode == "manual", vswitch.Config{})
			fx.port(memport.Config{}, vswitch.PortConfig{ID: 1, Name: "a"})
			sink := fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "b"})
			gen := fx.port(memport.Config{Frames: [][]byte{udpFrame(t, macN(3), macN(2), 64)}, Limit: n},
				vswitch.PortConfig{ID: 3, Name: "gen"})
			fx.start()
			h := fx.r.handle()
			ha := fx.l.Handle(h)
			pool := fx.r.pool(16)
			fx.l.Pool("injector", pool)
			p := &panicker{pool: pool}
			for i := range n {
				l, err := pool.Allocate(pool.Config().Headroom, 64)
				for err != nil { // the pool is small: wait for completions
					fx.run("a free NBL", func() bool { return p.runs.Load() > int64(i-16) })
					l, err = pool.Allocate(pool.Config().Headroom, 64)
				}
				l.FirstNetBuffer().CopyIn(0, idFrame(t, macN(1), macN(2), 64, uint32(i)))
				if err := h.InjectVSwitchIngress(fx.r.id.Bytes(), 1, 0, l, nil, inject.Done{Fn: p.complete}); err != nil {
					t.Fatal(err)
				}
				ha.Accepted(1)
			}
			fx.run("every completion and every generated frame", func() bool {
				return p.runs.Load() == n && gen.Stats().Returned == n
			})
			st := fx.close()
			if p.panics.Load() != n/3 {
				t.Errorf("%d completions panicked, want %d", p.panics.Load(), n/3)
			}
			if len(p.badStatus) != 0 || p.freeErrs.Load() != 0 {
				t.Errorf("completions with failure statuses %v, %d free errors", p.badStatus, p.freeErrs.Load())
			}
			if got := sink.Stats().Sent; got != 2*n {
				t.Errorf("port b took %d frames, want %d injected and %d generated", got, n, n)
			}
			if tt := ledger.Sum(st); tt.Dropped != 0 {
				t.Errorf("%v", tt)
			}
		})
	}
}

// TestFaultHandleDestroyedWhileQueued: Destroy waits while the handle's
// injections are still queued in the switch, or absorbed and held by a
// callout; new injections through it fail (the caller keeps the NBL);
// once the switch completes them (switched, or failed by Close) Destroy
// returns.
func TestFaultHandleDestroyedWhileQueued(t *testing.T) {
	const n = 20
	for _, tc := range []string{"switched", "switch-closed", "held-by-callout"} {
		t.Run(tc, func(t *testing.T) {
			fx := newFixture(t, true, vswitch.Config{})
			fx.port(memport.Config{}, vswitch.PortConfig{ID: 1, Name: "a"})
			fx.port(memport.Config{}, vswitch.PortConfig{ID: 2, Name: "b"})
			var held []*nbl.NetBufferList
			if tc == "held-by-callout" {
				fx.r.callout("hold", ingress, 10, nil, func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
					l.Reference()
					held = append(held, l)
					absorb(out)
				})
			}
			fx.start()
			h := fx.r.handle()
			ha := fx.l.Handle(h)
			pool := fx.r.pool(n + 1)
			fx.l.Pool("injector", pool)
			f := &freer{pool: pool}
			for i := range n {
				l := alloc(t, pool, idFrame(t, macN(1), macN(2), 64, uint32(i)))
				if err := h.InjectVSwitchIngress(fx.r.id.Bytes(), 1, 0, l, nil, inject.Done{Fn: f.fn}); err != nil {
					t.Fatal(err)
				}
				ha.Accepted(1)
			}
			if tc == "held-by-callout" {
				fx.run("the callout to hold every frame", func() bool { return len(held) == n })
			}
			destroyed := make(chan error, 1)
			go func() { destroyed <- h.DestroyContext(fx.ctx) }()
			for !h.Closing() {
				if fx.ctx.Err() != nil {
					t.Fatal("Destroy never began")
				}
				time.Sleep(100 * time.Microsecond)
			}
			select {
			case err := <-destroyed:
				t.Fatalf("Destroy returned (%v) with %d injections pending", err, h.Stats().Pending)
			default:
			}
			// A closing handle refuses new injections; the caller keeps the NBL.
			late := alloc(t, pool, idFrame(t, macN(1), macN(2), 64, n))
			if err := h.InjectVSwitchIngress(fx.r.id.Bytes(), 1, 0, late, nil, inject.Done{Fn: f.fn}); !errors.Is(err, inject.ErrHandleClosing) {
				t.Errorf("injection through a closing handle: %v, want ErrHandleClosing", err)
			}
			if err := pool.Free(late); err != nil {
				t.Errorf("the refused NBL is not the caller's: %v", err)
			}
			want := inject.STATUS_SUCCESS
			switch tc {
			case "switched":
				fx.run("every completion", func() bool { return f.count() == n })
			case "held-by-callout":
				fx.r.settle()
				if got := f.count(); got != 0 {
					t.Errorf("%d completions ran while the callout held the frames", got)
				}
				for _, l := range held {
					l.Dereference()
				}
				fx.run("every completion", func() bool { return f.count() == n })
			case "switch-closed":
				want = inject.STATUS_INVALID_DEVICE_STATE
				if err := fx.r.sw.CloseContext(fx.ctx); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-destroyed:
				if err != nil {
					t.Errorf("Destroy: %v", err)
				}
			case <-fx.ctx.Done():
				t.Fatal("Destroy did not return after every completion ran")
			}
			st := fx.close()
			for i, s := range f.statuses {
				if s != want {
					t.Errorf("completion %d: status %v, want %v", i, s, want)
				}
			}
			if f.count() != n {
				t.Errorf("%d completions, want %d", f.count(), n)
			}
			switch tc {
			case "switch-closed":
				if d := st.Ports[0].Drops[vswitch.DropClosed]; d != n {
					t.Errorf("%d closed drops, want %d", d, n)
				}
			case "held-by-callout":
				if a := st.Ports[0].Absorbed; a != n {
					t.Errorf("%d absorbed, want %d", a, n)
				}
			}
		})
	}
}
