package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/ledger"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

func TestMain(m *testing.M) { os.Exit(ledger.VerifyNoLeaks(m)) }

// fakeT records what the ledger reports instead of failing the test.
type fakeT struct {
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeT) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
}

func (f *fakeT) reported() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.errs, "\n")
}

// wantReport fails unless the ledger reported something containing each
// of want.
func (f *fakeT) wantReport(t *testing.T, want ...string) {
	t.Helper()
	got := f.reported()
	if got == "" {
		t.Fatalf("the ledger reported nothing; want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("the ledger reported:\n%s\nwant it to mention %q", got, w)
		}
	}
}

func (f *fakeT) wantNoReport(t *testing.T) {
	t.Helper()
	if got := f.reported(); got != "" {
		t.Fatalf("the ledger reported:\n%s", got)
	}
}

// frame is a 64-byte Ethernet frame of an experimental EtherType.
func frame(src, dst byte) []byte {
	f := make([]byte, 64)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, dst})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, src})
	f[12], f[13] = 0x88, 0xB5
	return f
}

// world is a manual switch with a generator, a sink and a handle.
type world struct {
	stack *inject.Stack
	sw    *vswitch.Switch
	gen   *memport.Port
	sink  *memport.Port
	h     *inject.Handle
	pool  *nbl.Pool
	done  inject.Done
	freed sync.WaitGroup
}

func newWorld(t *testing.T, frames uint64) *world {
	t.Helper()
	w := &world{stack: inject.NewStack()}
	w.stack.Start()
	id := inject.GUID{0x1e, 0xd9, 0xe4}
	sw, err := vswitch.New(vswitch.Config{ID: id, Stack: w.stack, Manual: true, CopyPoolSize: 64, MaxFrameSize: 1518,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w.sw = sw
	gc := memport.Config{Frames: [][]byte{frame(1, 2)}, Limit: frames, PoolSize: 64}
	if frames == 0 {
		gc.Frames = nil // a Limit of 0 is no limit: generate nothing instead
	}
	if w.gen, err = memport.New(gc); err != nil {
		t.Fatal(err)
	}
	if w.sink, err = memport.New(memport.Config{Frames: [][]byte{frame(2, 1)}, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*memport.Port{w.gen, w.sink} {
		if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), Name: fmt.Sprint("p", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	if w.h, err = w.stack.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2); err != nil {
		t.Fatal(err)
	}
	if w.pool, err = nbl.NewPool(nbl.Config{NBLs: 16}); err != nil {
		t.Fatal(err)
	}
	w.done = inject.Done{Fn: func(_ any, l *nbl.NetBufferList, _ bool) {
		if err := w.pool.Free(l); err != nil {
			panic(err)
		}
		w.freed.Done()
	}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sw.CloseContext(ctx)
		_ = w.h.DestroyContext(ctx)
	})
	return w
}

// inject injects one frame from the world's pool; it reports whether the
// switch accepted it.
func (w *world) inject(t *testing.T) bool {
	t.Helper()
	l, err := w.pool.Allocate(w.pool.Config().Headroom, 64)
	if err != nil {
		t.Fatal(err)
	}
	l.FirstNetBuffer().CopyIn(0, frame(1, 2))
	w.freed.Add(1)
	if err := w.h.InjectVSwitchIngress(w.sw.ID().Bytes(), 1, 0, l, nil, w.done); err != nil {
		w.freed.Done()
		if err := w.pool.Free(l); err != nil {
			t.Fatal(err)
		}
		return false
	}
	return true
}

func (w *world) steps(n int) {
	for range n {
		w.sw.Step()
	}
}

// close steps until nothing moves, then closes the switch and destroys
// the handle.
func (w *world) close(t *testing.T) {
	t.Helper()
	for idle := 0; idle < 4; {
		if w.sw.Step() {
			idle = 0
		} else {
			idle++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.sw.CloseContext(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := w.h.DestroyContext(ctx); err != nil {
		t.Fatalf("destroy: %v", err)
	}
}

// TestLedgerBalanced: a run where every frame and injection is accounted
// for passes Check between steps and CheckClosed after close.
func TestLedgerBalanced(t *testing.T) {
	w := newWorld(t, 200)
	f := &fakeT{}
	l := ledger.New(f)
	l.Switch(w.sw, w.gen, w.sink)
	l.Pool("injected", w.pool)
	ha := l.Handle(w.h)
	for i := 0; i < 50; i++ {
		if w.inject(t) {
			ha.Accepted(1)
		} else {
			t.Fatal("injection refused")
		}
		w.steps(3)
		if !l.Check() {
			break
		}
	}
	w.close(t)
	w.freed.Wait()
	if !l.CheckClosed() {
		t.Errorf("CheckClosed returned false")
	}
	f.wantNoReport(t)
	if s := w.gen.Stats(); s.Generated != 200 {
		t.Fatalf("the run generated %d frames, want 200", s.Generated)
	}
}

// TestLedgerLeakedNBL: an NBL that never goes back to its pool fails
// CheckClosed, naming the pool; once freed, the books balance.
func TestLedgerLeakedNBL(t *testing.T) {
	p, err := nbl.NewPool(nbl.Config{NBLs: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := &fakeT{}
	l := ledger.New(f)
	l.Pool("test pool", p)
	nb, err := p.Allocate(0, 60)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Check() {
		t.Errorf("Check failed with one NBL legitimately out: %s", f.reported())
	}
	if l.CheckClosed() {
		t.Error("CheckClosed returned true with an NBL out")
	}
	f.wantReport(t, "test pool", "1 NBLs")
	if err := p.Free(nb); err != nil {
		t.Fatal(err)
	}
	f2 := &fakeT{}
	l2 := ledger.New(f2)
	l2.Pool("test pool", p)
	l2.CheckClosed()
	f2.wantNoReport(t)
}

// TestLedgerLeakedNBLInSwitch: a frame a callout absorbed and kept is
// found: the generator's pool is not full and the port's books show a
// frame never returned.
func TestLedgerLeakedNBLInSwitch(t *testing.T) {
	w := newWorld(t, 10)
	var kept *nbl.NetBufferList
	if err := w.sw.RegisterCallout(&vswitch.Callout{Key: "keep", Classify: func(_ *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		if kept == nil {
			l.Reference()
			kept = l
			out.ActionType = vswitch.FWP_ACTION_BLOCK
			out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sw.AddFilter(&vswitch.Filter{Key: "keep", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
		Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "keep"}); err != nil {
		t.Fatal(err)
	}
	f := &fakeT{}
	l := ledger.New(f)
	l.Switch(w.sw, w.gen, w.sink)
	for idle := 0; idle < 4; {
		if w.sw.Step() {
			idle = 0
		} else {
			idle++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = w.sw.CloseContext(ctx) // fails: the generator's pool is not full
	if kept == nil {
		t.Fatal("the callout kept nothing")
	}
	if l.CheckClosed() {
		t.Error("CheckClosed returned true with a frame held")
	}
	f.wantReport(t, "switch 0 port 0 pool", "10 frames generated, 9 returned")
	kept.Dereference()
	if err := w.h.DestroyContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerPortMismatch: a memport given for the wrong switch port fails:
// the switch's counts of the port differ from the port's own.
func TestLedgerPortMismatch(t *testing.T) {
	w := newWorld(t, 20)
	f := &fakeT{}
	l := ledger.New(f)
	l.Switch(w.sw, w.sink, w.gen) // swapped
	w.close(t)
	if l.CheckClosed() {
		t.Error("CheckClosed returned true with the ports swapped")
	}
	f.wantReport(t, "the switch received 20 frames, the port generated 1", "the switch transmitted 1 frames, the port took 20")
}

// TestLedgerHandle: accepted injections that did not all complete, or
// that are still pending, fail.
func TestLedgerHandle(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		w := newWorld(t, 0)
		f := &fakeT{}
		l := ledger.New(f)
		a := l.Handle(w.h)
		if !w.inject(t) {
			t.Fatal("injection refused")
		}
		a.Accepted(1)
		if !l.Check() {
			t.Errorf("Check failed with an injection in flight: %s", f.reported())
		}
		if l.CheckClosed() { // the switch was not stepped: still pending
			t.Error("CheckClosed returned true with an injection pending")
		}
		f.wantReport(t, "1 pending")
		w.close(t)
		w.freed.Wait()
	})
	t.Run("miscounted", func(t *testing.T) {
		w := newWorld(t, 0)
		f := &fakeT{}
		l := ledger.New(f)
		a := l.Handle(w.h)
		for range 2 {
			if !w.inject(t) {
				t.Fatal("injection refused")
			}
		}
		a.Accepted(3)
		w.close(t)
		w.freed.Wait()
		if l.CheckClosed() {
			t.Error("CheckClosed returned true with 3 accepted and 2 completed")
		}
		f.wantReport(t, "3 injections accepted, 2 completed")
	})
}

// TestLedgerGoroutines: a goroutine the test started and left blocked is
// reported when the test ends; one that ended is not.
func TestLedgerGoroutines(t *testing.T) {
	f := &fakeT{}
	ledger.GoroutinesWithin(f, 50*time.Millisecond)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	f.runCleanups()
	f.wantReport(t, "1 goroutines started by the test are still running", "TestLedgerGoroutines.func1")
	close(stop)
	<-done

	f2 := &fakeT{}
	ledger.GoroutinesWithin(f2, time.Second)
	ended := make(chan struct{})
	go close(ended)
	<-ended
	f2.runCleanups()
	f2.wantNoReport(t)
}

// TestLedgerSwitchGoroutines: a switch left running is a goroutine leak
// (its workers and clock), found by Goroutines; closing it ends them.
func TestLedgerSwitchGoroutines(t *testing.T) {
	f := &fakeT{}
	ledger.GoroutinesWithin(f, 50*time.Millisecond)
	st := inject.NewStack()
	st.Start()
	sw, err := vswitch.New(vswitch.Config{ID: inject.GUID{0x1e, 0xd9, 0xe5}, Stack: st, CopyPoolSize: 16, MaxFrameSize: 1518})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	f.runCleanups()
	f.wantReport(t, "vswitch.(*Switch).clock", "vswitch.(*worker)")
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
}
