//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// capability is a Linux capability number (capability.h).
type capability int

// The capabilities nblswitch asks for.
const (
	capSetpcap  capability = unix.CAP_SETPCAP
	capNetAdmin capability = unix.CAP_NET_ADMIN
	capNetRaw   capability = unix.CAP_NET_RAW
	capBPF      capability = unix.CAP_BPF
)

var capNames = map[capability]string{
	capSetpcap: "CAP_SETPCAP", capNetAdmin: "CAP_NET_ADMIN", capNetRaw: "CAP_NET_RAW", capBPF: "CAP_BPF",
}

func (c capability) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("capability %d", int(c))
}

// capNeed is a capability and what it is needed for.
type capNeed struct {
	cap capability
	why string
}

// capSet is a 64-bit capability mask, as /proc/PID/status prints it.
type capSet uint64

func (s capSet) has(c capability) bool { return c >= 0 && c < 64 && s&(1<<uint(c)) != 0 }

// effectiveCaps returns the calling thread's effective capabilities
// (capget(2); at start every thread has the same).
func effectiveCaps() (capSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return capSet(data[0].Effective) | capSet(data[1].Effective)<<32, nil
}

// errMissingCap is wrapped by checkCaps' error.
var errMissingCap = errors.New("missing capability")

// checkCaps reports every needed capability missing from eff, naming each
// and what it is for.
func checkCaps(eff capSet, needs []capNeed) error {
	var msgs []string
	for _, n := range needs {
		if !eff.has(n.cap) {
			msgs = append(msgs, fmt.Sprintf("%s (needed %s)", n.cap, n.why))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; run as root, or grant it to the binary (setcap cap_net_raw,cap_setpcap+ep nblswitch)",
		errMissingCap, strings.Join(msgs, ", "))
}

// errCgo says why capabilities cannot be dropped in a cgo build.
var errCgo = errors.New("this nblswitch was built with cgo, where Go cannot change the capabilities of every thread " +
	"(syscall.AllThreadsSyscall is unsupported): rebuild with CGO_ENABLED=0, or run with -keep-caps")

// threadCaps are one thread's capability sets, from /proc/PID/task/TID/status.
type threadCaps struct {
	TID                                           int
	Inheritable, Permitted, Effective, Bounding   capSet
	Ambient                                       capSet
	NoNewPrivs                                    bool
	haveInh, havePrm, haveEff, haveBnd, haveNoNew bool
}

// parseStatus reads the capability lines of a /proc status file. It fails
// when a line it needs is missing or malformed.
func parseStatus(text string) (threadCaps, error) {
	var tc threadCaps
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var dst *capSet
		var seen *bool
		switch key {
		case "CapInh":
			dst, seen = &tc.Inheritable, &tc.haveInh
		case "CapPrm":
			dst, seen = &tc.Permitted, &tc.havePrm
		case "CapEff":
			dst, seen = &tc.Effective, &tc.haveEff
		case "CapBnd":
			dst, seen = &tc.Bounding, &tc.haveBnd
		case "CapAmb":
			dst = &tc.Ambient
		case "NoNewPrivs":
			tc.NoNewPrivs, tc.haveNoNew = val == "1", true
			continue
		default:
			continue
		}
		v, err := strconv.ParseUint(val, 16, 64)
		if err != nil {
			return tc, fmt.Errorf("status line %s: %w", key, err)
		}
		*dst = capSet(v)
		if seen != nil {
			*seen = true
		}
	}
	if !tc.haveInh || !tc.havePrm || !tc.haveEff || !tc.haveBnd {
		return tc, errors.New("status has no CapInh, CapPrm, CapEff and CapBnd lines")
	}
	return tc, nil
}

// taskCaps reads the capability sets of every thread of process pid
// ("self" for this one).
func taskCaps(pid string) ([]threadCaps, error) {
	dirs, err := filepath.Glob(filepath.Join("/proc", pid, "task", "*"))
	if err != nil {
		return nil, err
	}
	var out []threadCaps
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited
			}
			return nil, err
		}
		tc, err := parseStatus(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d, err)
		}
		tc.TID, _ = strconv.Atoi(filepath.Base(d))
		out = append(out, tc)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no threads under /proc/%s/task", pid)
	}
	slices.SortFunc(out, func(a, b threadCaps) int { return a.TID - b.TID })
	return out, nil
}

// dropReport is what dropCaps did and found.
type dropReport struct {
	Threads          int    // threads checked afterwards
	BoundingDropped  bool   // the bounding set was emptied
	BoundingKeptWhy  string // why not
	NoNewPrivs       bool   // on every thread
	AllZero          bool   // effective, permitted, inheritable and ambient sets empty on every thread
	NonZero          []string
	BoundingAfter    capSet // of the first thread
	EffectiveBefore  capSet
	ThreadsAtTheDrop int
}

// Capability state written by every thread: package variables, so their
// address stays put while the runtime runs the call on each thread.
var (
	capHdr  unix.CapUserHeader
	capData [2]unix.CapUserData
)

// dropCaps gives up every capability on every thread of the process:
// PR_SET_NO_NEW_PRIVS, the ambient set cleared, the bounding set dropped
// (it needs CAP_SETPCAP; without it the bounding set stays and the report
// says so), then the effective, permitted and inheritable sets cleared with
// capset. Each step runs on every OS thread of the runtime through
// syscall.AllThreadsSyscall, since capabilities are per thread; new threads
// inherit the result. Afterwards it reads /proc/self/task/*/status and
// reports any thread that kept a capability as an error.
func dropCaps() (dropReport, error) {
	var r dropReport
	if builtWithCgo {
		return r, errCgo
	}
	var err error
	if r.EffectiveBefore, err = effectiveCaps(); err != nil {
		return r, err
	}
	if before, err := taskCaps("self"); err == nil {
		r.ThreadsAtTheDrop = len(before)
	}
	prctl := func(what string, option, arg uintptr) error {
		if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, option, arg, 0, 0, 0, 0); e != 0 {
			return fmt.Errorf("%s: %w", what, e)
		}
		return nil
	}
	if err := prctl("PR_SET_NO_NEW_PRIVS", unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return r, err
	}
	if err := prctl("PR_CAP_AMBIENT_CLEAR_ALL", unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil && !errors.Is(err, unix.EINVAL) {
		return r, err
	}
	if r.EffectiveBefore.has(capSetpcap) {
		last := lastCap()
		for c := 0; c <= last; c++ {
			// The bounding set is the same on every thread (nothing here
			// changes it per thread): read it on this one.
			in, _, e := syscall.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(c), 0)
			if e != 0 || in != 1 {
				continue
			}
			if err := prctl(fmt.Sprintf("PR_CAPBSET_DROP %d", c), unix.PR_CAPBSET_DROP, uintptr(c)); err != nil {
				return r, err
			}
		}
		r.BoundingDropped = true
	} else {
		r.BoundingKeptWhy = "no CAP_SETPCAP to drop it"
	}
	capHdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: the calling thread
	capData = [2]unix.CapUserData{}
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&capHdr)), uintptr(unsafe.Pointer(&capData[0])), 0)
	runtime.KeepAlive(&capHdr)
	runtime.KeepAlive(&capData)
	if e != 0 {
		return r, fmt.Errorf("capset: %w", e)
	}
	return r, r.verify()
}

// verify reads every thread's sets into the report and fails if any
// thread kept a capability or lacks no_new_privs.
func (r *dropReport) verify() error {
	after, err := taskCaps("self")
	if err != nil {
		return fmt.Errorf("verify capability drop: %w", err)
	}
	r.Threads = len(after)
	r.BoundingAfter = after[0].Bounding
	r.AllZero, r.NoNewPrivs = true, true
	for _, tc := range after {
		if tc.Effective|tc.Permitted|tc.Inheritable|tc.Ambient != 0 {
			r.AllZero = false
			r.NonZero = append(r.NonZero, fmt.Sprintf("tid %d: CapEff=%016x CapPrm=%016x CapInh=%016x CapAmb=%016x",
				tc.TID, uint64(tc.Effective), uint64(tc.Permitted), uint64(tc.Inheritable), uint64(tc.Ambient)))
		}
		if !tc.NoNewPrivs {
			r.NoNewPrivs = false
		}
	}
	switch {
	case !r.AllZero:
		return fmt.Errorf("capabilities left after the drop: %s", strings.Join(r.NonZero, "; "))
	case !r.NoNewPrivs:
		return errors.New("no_new_privs is not set on every thread after the drop")
	}
	return nil
}

// lastCap returns the highest capability the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}
