package goroutines

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(VerifyNoLeaks(m)) }

// TestLeakedFound: a goroutine started after the snapshot and still
// blocked is reported with its stack; once it ends, nothing is.
func TestLeakedFound(t *testing.T) {
	s := Take()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	leaked := s.Leaked(50 * time.Millisecond)
	if len(leaked) != 1 {
		t.Fatalf("%d goroutines reported, want 1:\n%s", len(leaked), Format(leaked))
	}
	if g := leaked[0]; g.State != "chan receive" || !strings.Contains(g.Stack, "TestLeakedFound.func1") {
		t.Errorf("reported %q:\n%s", g.State, g.Stack)
	}
	close(stop)
	<-done
	if leaked := s.Leaked(time.Second); len(leaked) != 0 {
		t.Errorf("after the goroutine ended:\n%s", Format(leaked))
	}
}

// TestLeakedWaits: a goroutine that ends within the wait is not a leak.
func TestLeakedWaits(t *testing.T) {
	s := Take()
	go time.Sleep(30 * time.Millisecond)
	if leaked := s.Leaked(5 * time.Second); len(leaked) != 0 {
		t.Errorf("a goroutine on its way out was reported:\n%s", Format(leaked))
	}
}

// TestGoroutinesBeforeIgnored: goroutines alive at the snapshot are not
// reported, even if they are the tests'.
func TestGoroutinesBeforeIgnored(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); <-stop }()
	s := Take()
	if leaked := s.Leaked(0); len(leaked) != 0 {
		t.Errorf("a goroutine older than the snapshot was reported:\n%s", Format(leaked))
	}
	close(stop)
	<-done
}

type runner func() int

func (r runner) Run() int { return r() }

// TestVerifyNoLeaks: a run that leaves a goroutine behind fails; one that
// does not keeps its exit code.
func TestVerifyNoLeaks(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	leaky := runner(func() int {
		go func() { defer close(done); <-stop }()
		return 0
	})
	// The failure report goes to stderr: keep the test's output readable.
	stderr := os.Stderr
	os.Stderr, _ = os.Open(os.DevNull)
	code := VerifyNoLeaksWithin(leaky, 50*time.Millisecond)
	os.Stderr.Close()
	os.Stderr = stderr
	close(stop)
	<-done
	if code != 1 {
		t.Errorf("leaky run: exit code %d, want 1", code)
	}
	if code := VerifyNoLeaksWithin(runner(func() int { return 0 }), time.Second); code != 0 {
		t.Errorf("clean run: exit code %d, want 0", code)
	}
	if code := VerifyNoLeaksWithin(runner(func() int { return 3 }), time.Second); code != 3 {
		t.Errorf("failed run: exit code %d, want 3", code)
	}
}

// TestStandard: which functions of a dump belong to the standard library.
func TestStandard(t *testing.T) {
	for fn, want := range map[string]bool{
		"runtime.gopark(0x0?, 0x0?, 0x0?)":                                 true,
		"testing.(*T).Run(0xc000003c00, {0x5a1b2c, 0x4}, 0x5b0c10)":        true,
		"internal/fuzz.(*worker).coordinate(0xc0000a0000)":                 true,
		"os/signal.signal_recv()":                                          true,
		"main.main()":                                                      false,
		"github.com/nblpipe/nblpipe/vswitch.(*Switch).clock(0xc00001e000)": false,
		"golang.org/x/sys/unix.Syscall(0x1, 0x2, 0x3, 0x4)":                false,
	} {
		if got := standard(fn); got != want {
			t.Errorf("standard(%q) = %v, want %v", fn, got, want)
		}
	}
	runtimeOnly := "goroutine 5 [finalizer wait]:\nruntime.gopark(0x0?)\n\t/go/src/runtime/proc.go:435 +0xce\nruntime.runfinq()\n\t/go/src/runtime/mfinal.go:196 +0x107\ncreated by runtime.createfing in goroutine 1\n\t/go/src/runtime/mfinal.go:166 +0x3d"
	g, ok := parse(runtimeOnly)
	if !ok || g.ID != 5 || g.State != "finalizer wait" || g.tests() {
		t.Errorf("runtime goroutine parsed as %+v (ok %v), tests() %v", g, ok, g.tests())
	}
	created := "goroutine 9 [sleep, 2 minutes]:\ntime.Sleep(0x3b9aca00)\n\t/go/src/runtime/time.go:363 +0x165\ncreated by github.com/nblpipe/nblpipe/x.Start in goroutine 1\n\t/x.go:3 +0x1e"
	g, ok = parse(created)
	if !ok || g.ID != 9 || g.State != "sleep" || !g.tests() {
		t.Errorf("goroutine created by project code parsed as %+v (ok %v), tests() %v", g, ok, g.tests())
	}
}
