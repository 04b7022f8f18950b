// Package netns makes network namespaces and veth pairs for tests and
// benchmarks that need real interfaces, and always removes them. Every name
// is unique to the process and call, so parallel tests and leftovers of
// earlier runs cannot collide, and nothing touches the host's interfaces:
// one end of each veth pair lives in a namespace made here, the other end
// either in another such namespace or, for the switch under test, in the
// test process's own namespace.
//
// It runs ip(8) from iproute2; it needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

var seq atomic.Uint32

// Unique returns a short name with the given prefix, unique to this
// process and call (interface names are limited to 15 bytes).
func Unique(prefix string) string {
	return fmt.Sprintf("%s%x%x", prefix, os.Getpid()&0xffff, seq.Add(1))
}

// Run runs ip with args and returns its combined output.
func Run(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ns string, name string, args ...string) (string, error) {
	full := append([]string{"netns", "exec", ns, name}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Require skips tb when the prerequisites of real-interface tests are
// missing (not root, no ip, no netns support), with the reason. Under CI
// (CI=true) it fails instead: there the prerequisites must be present.
func Require(tb testing.TB, commands ...string) {
	tb.Helper()
	fail := tb.Skipf
	if os.Getenv("CI") == "true" {
		fail = tb.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root for network namespaces and raw sockets (run as root, or go test -exec sudo)")
		return
	}
	for _, c := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(c); err != nil {
			fail("needs %s in PATH (apt-get install iproute2 iputils-ping iperf3 tcpdump): %v", c, err)
			return
		}
	}
}

// Host is a network namespace with one veth interface, whose peer stays in
// the test process's namespace for a switch port to own.
type Host struct {
	NS      string // namespace name
	If      string // interface inside the namespace
	Peer    string // the veth peer in the caller's namespace
	Addr    string // address of If, e.g. "10.77.1.1/24"
	MAC     string
	PeerMAC string
}

// NewHost makes a namespace with a veth pair: If inside it with addr (CIDR,
// may be empty), Peer in the caller's namespace, both up. tb.Cleanup
// removes both, also when the test fails.
func NewHost(tb testing.TB, addr string) *Host {
	tb.Helper()
	h, cleanup, err := Make(addr)
	tb.Cleanup(cleanup)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// Make is NewHost for programs: it returns the host and a cleanup function
// that removes what was made; call it even when err is not nil.
func Make(addr string) (*Host, func(), error) {
	h := &Host{NS: Unique("nbl"), If: "eth0", Peer: Unique("nblv"), Addr: addr}
	tmp := Unique("nblt")
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if _, err := Run("netns", "add", h.NS); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { _, _ = Run("netns", "del", h.NS) })
	if _, err := Run("link", "add", h.Peer, "type", "veth", "peer", "name", tmp); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { _, _ = Run("link", "del", h.Peer) })
	steps := [][]string{
		{"link", "set", tmp, "netns", h.NS},
		{"-n", h.NS, "link", "set", tmp, "name", h.If},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "set", h.If, "up"},
		{"link", "set", h.Peer, "up"},
	}
	if addr != "" {
		steps = append(steps, []string{"-n", h.NS, "addr", "add", addr, "dev", h.If})
	}
	for _, s := range steps {
		if _, err := Run(s...); err != nil {
			return nil, cleanup, err
		}
	}
	var err error
	if h.MAC, err = mac(h.NS, h.If); err != nil {
		return nil, cleanup, err
	}
	if h.PeerMAC, err = mac("", h.Peer); err != nil {
		return nil, cleanup, err
	}
	return h, cleanup, nil
}

func mac(ns, ifname string) (string, error) {
	args := []string{"-o", "link", "show", ifname}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := Run(args...)
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1], nil
		}
	}
	return "", errors.New("netns: no MAC address in: " + out)
}

// Leftovers lists namespaces this process made and did not remove, for a
// leak check at the end of a test binary. (Other test binaries, which go
// test may run at the same time, have names of their own.)
func Leftovers() []string {
	out, err := Run("netns", "list")
	if err != nil {
		return nil
	}
	var ns []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], fmt.Sprintf("nbl%x", os.Getpid()&0xffff)) {
			ns = append(ns, f[0])
		}
	}
	return ns
}
