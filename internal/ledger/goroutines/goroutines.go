// Package goroutines finds goroutines that tests started and left running.
// It imports nothing of the project, so the tests of every package, the
// lowest ones included, can use it in their TestMain.
//
// A goroutine counts as the tests' when one of its frames, or the function
// that created it, is outside the standard library (or in package main):
// goroutines of the runtime, of package testing, of the fuzzing engine and
// of os/signal are never reported. Goroutines are told apart by their IDs,
// which the runtime does not reuse, so a leak is found even when another
// goroutine ended meanwhile and the count did not change.
package goroutines

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// DefaultWait is how long a check waits for goroutines that are on their
// way out (a worker finishing its last burst, a waiter woken by Close).
const DefaultWait = 5 * time.Second

// Goroutine is one goroutine of a stack dump.
type Goroutine struct {
	ID    uint64
	State string // "chan receive", "sleep", "running", ...
	Stack string // the goroutine's part of runtime.Stack, header included
}

// Snapshot is the set of goroutines alive at one moment.
type Snapshot struct {
	ids  map[uint64]bool
	self uint64
}

// Take records the goroutines alive now.
func Take() Snapshot {
	gs := dump()
	s := Snapshot{ids: make(map[uint64]bool, len(gs)), self: currentID()}
	for _, g := range gs {
		s.ids[g.ID] = true
	}
	return s
}

// Leaked returns the goroutines started since s was taken that are still
// running and are the tests' (see the package comment), other than the
// calling goroutine. It waits up to wait for them to end, polling, and
// returns as soon as none is left.
func (s Snapshot) Leaked(wait time.Duration) []Goroutine {
	deadline := time.Now().Add(wait)
	for {
		leaked := s.new()
		if len(leaked) == 0 || !time.Now().Before(deadline) {
			return leaked
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s Snapshot) new() []Goroutine {
	self := currentID()
	var out []Goroutine
	for _, g := range dump() {
		if s.ids[g.ID] || g.ID == self || g.ID == s.self || !g.tests() {
			continue
		}
		out = append(out, g)
	}
	return out
}

// Format lists goroutines with their stacks, for a failure message.
func Format(gs []Goroutine) string {
	var b strings.Builder
	for i, g := range gs {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(g.Stack)
	}
	return b.String()
}

// Runner is what a TestMain runs (*testing.M).
type Runner interface{ Run() int }

// VerifyNoLeaks runs the tests and returns their exit code, or 1 when they
// passed but left goroutines running (listed on stderr with their stacks,
// after waiting up to DefaultWait for them to end). Use it as
//
//	func TestMain(m *testing.M) { os.Exit(goroutines.VerifyNoLeaks(m)) }
func VerifyNoLeaks(m Runner) int { return VerifyNoLeaksWithin(m, DefaultWait) }

// VerifyNoLeaksWithin is VerifyNoLeaks with its own bound on the wait.
func VerifyNoLeaksWithin(m Runner, wait time.Duration) int {
	before := Take()
	code := m.Run()
	if code != 0 {
		return code
	}
	if leaked := before.Leaked(wait); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "goroutine leak check: %d goroutines started by the tests are still running:\n%s\n", len(leaked), Format(leaked))
		return 1
	}
	return 0
}

// dump returns every goroutine.
func dump() []Goroutine {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []Goroutine
	for _, block := range strings.Split(strings.TrimSpace(string(buf)), "\n\n") {
		if g, ok := parse(block); ok {
			out = append(out, g)
		}
	}
	return out
}

// parse reads one goroutine's block: "goroutine 7 [sleep]:" then function
// lines, each followed by a tab-indented file line.
func parse(block string) (Goroutine, bool) {
	header, _, _ := strings.Cut(block, "\n")
	rest, ok := strings.CutPrefix(header, "goroutine ")
	if !ok {
		return Goroutine{}, false
	}
	idText, state, ok := strings.Cut(rest, " ")
	if !ok {
		return Goroutine{}, false
	}
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return Goroutine{}, false
	}
	state = strings.TrimSuffix(strings.TrimPrefix(state, "["), "]:")
	if i := strings.Index(state, ","); i >= 0 {
		state = state[:i] // "chan receive, 2 minutes"
	}
	return Goroutine{ID: id, State: state, Stack: block}, true
}

// currentID returns the calling goroutine's ID.
func currentID() uint64 {
	var buf [64]byte
	g, _ := parse(string(buf[:runtime.Stack(buf[:], false)]))
	return g.ID
}

// tests reports whether the goroutine runs or was created by code outside
// the standard library.
func (g Goroutine) tests() bool {
	for _, line := range strings.Split(g.Stack, "\n")[1:] {
		if line == "" || line[0] == '\t' {
			continue
		}
		fn := strings.TrimPrefix(line, "created by ")
		if i := strings.Index(fn, " in goroutine "); i >= 0 {
			fn = fn[:i]
		}
		if !standard(fn) {
			return true
		}
	}
	return false
}

// standard reports whether a function (as a stack dump names it, such as
// "runtime.gopark(...)" or "github.com/x/y.(*T).f(...)") is in the
// standard library: its import path's first element has no dot. Package
// main is not.
func standard(fn string) bool {
	if first, _, ok := strings.Cut(fn, "/"); ok {
		return !strings.Contains(first, ".")
	}
	pkg, _, _ := strings.Cut(fn, ".")
	return pkg != "main"
}
