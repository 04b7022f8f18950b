//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/internal/netns"
)

// This file runs the built nblswitch binary between two hosts in network
// namespaces (internal/netns): the hosts' veth peers, in the test's
// namespace, are the daemon's ports. The tests need root.

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	// Goroutines the tests started (switch workers, exec's copiers) are
	// gone once everything closed. The fuzzing engine keeps a signal
	// goroutine of its own: no check when fuzzing.
	fuzzing := false
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		fuzzing = true
	}
	for deadline := time.Now().Add(5 * time.Second); !fuzzing && runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "%d goroutines left (%d at start):\n%s\n", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			code = 1
			break
		}
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if left := netns.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "network namespaces left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// binary builds nblswitch once per test run, without cgo (so that it can
// drop its capabilities on every thread).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if buildDir, buildErr = os.MkdirTemp("", "nblswitch-test"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "nblswitch")
		cmd := exec.Command(goTool, append(append([]string{"build"}, buildTags...), "-o", buildBin, ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of exec and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running nblswitch.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	waitErr        error
}

// startDaemon runs prefix... (a wrapper such as setpriv, may be empty)
// then the binary with args. The daemon is killed when the test ends, and
// its log shown if the test failed.
func startDaemon(t *testing.T, prefix []string, args ...string) *proc {
	t.Helper()
	argv := append(append(prefix[:len(prefix):len(prefix)], binary(t)), args...)
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("nblswitch %s log:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// waitLog waits for s in the daemon's log; it fails if the daemon exits
// first or the time runs out.
func (p *proc) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("nblswitch exited (%v) before logging %q:\n%s", p.waitErr, s, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nblswitch did not log %q within %v:\n%s", s, timeout, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the daemon to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("nblswitch did not exit within %v", timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
		return 0
	case errors.As(p.waitErr, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("nblswitch: %v", p.waitErr)
	return -1
}

// stop sends SIGINT, waits for the exit and decodes the -stats-json
// report; the exit code must be 0.
func (p *proc) stop(t *testing.T) snapshot {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("nblswitch exited with %d after SIGINT:\n%s", code, p.stderr.String())
	}
	var s snapshot
	if err := json.Unmarshal([]byte(p.stdout.String()), &s); err != nil {
		t.Fatalf("-stats-json output: %v\n%s", err, p.stdout.String())
	}
	return s
}

// checkAccounted checks a final report: closed without error, counters
// balanced, nothing in flight, every injection completed.
func checkAccounted(t *testing.T, s snapshot) {
	t.Helper()
	if !s.Closed || s.CloseError != "" {
		t.Errorf("switch not closed cleanly: %q", s.CloseError)
	}
	if !s.Balance.Balanced || s.Balance.In != s.Balance.Out {
		t.Errorf("counters do not balance: %+v", s.Balance)
	}
	if s.InFlight != (inFlight{}) {
		t.Errorf("in flight after shutdown: %+v", s.InFlight)
	}
	if c := s.Callout; c.Injected != c.Completed || c.HandlePend != 0 {
		t.Errorf("callout injections: %d injected, %d completed, %d pending", c.Injected, c.Completed, c.HandlePend)
	}
	for _, p := range s.Ports {
		if p.Kernel == nil || p.Kernel.TxErrors != 0 || p.Kernel.CopyPagesInUse != 0 {
			t.Errorf("port %s: back-end stats %+v", p.Name, p.Kernel)
			continue
		}
		if x := p.Kernel.XDP; x != nil && (x.BadDescs != 0 || x.RxInvalidDescs != 0 || x.TxInvalidDescs != 0) {
			t.Errorf("port %s: AF_XDP descriptors the kernel or the port found bad: %+v", p.Name, *x)
		}
	}
}

// checkBackend checks that every port of a final report got the back end
// asked for, with its own figures: for AF_XDP the sockets' mode, the
// program in driver mode (veth has native XDP, and TCP needs it there:
// see vswitch/afxdp), no frame refused as too long; for AF_PACKET no XDP
// figures, and the kernel counted at least what the switch received.
func checkBackend(t *testing.T, s snapshot, backend string) {
	t.Helper()
	if s.Backend != backend {
		t.Errorf("report: back end %q, want %q", s.Backend, backend)
	}
	for _, p := range s.Ports {
		if p.Backend != backend || p.Kernel == nil {
			t.Errorf("port %s: back end %q, stats %v", p.Name, p.Backend, p.Kernel)
			continue
		}
		x := p.Kernel.XDP
		switch backend {
		case backendAFXDP:
			if x == nil || (x.Mode != "copy" && x.Mode != "zero-copy") || x.Attach != "driver" || x.Queues < 1 || x.TxRefused != 0 {
				t.Errorf("port %s: AF_XDP figures %+v", p.Name, x)
			} else {
				t.Logf("port %s: AF_XDP %s mode, %s attach, %d queue(s); rx_dropped %d rx_ring_full %d fill_ring_empty %d tx_ring_empty %d, tx copied %d zero-copy %d, tx in flight %d, checksums fixed %d",
					p.Name, x.Mode, x.Attach, x.Queues, x.RxDropped, x.RxRingFull, x.FillRingEmpty, x.TxRingEmpty, x.TxCopied, x.TxZeroCopy, x.TxInFlight, x.RxChecksumFixed)
			}
		default:
			if x != nil {
				t.Errorf("port %s: an AF_PACKET port with AF_XDP figures %+v", p.Name, x)
			}
			if p.Kernel.KernelPackets < p.RxPackets {
				t.Errorf("port %s: the kernel counted %d packets, the switch received %d", p.Name, p.Kernel.KernelPackets, p.RxPackets)
			}
		}
	}
}

// xdpShown returns what ip -d link show says of ifname and whether it
// shows an XDP program attached.
func xdpShown(t *testing.T, ifname string) (bool, string) {
	t.Helper()
	out, err := netns.Run("-d", "link", "show", "dev", ifname)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, "xdp"), out
}

// checkXDP checks that the hosts' peers (the daemon's ports) have an XDP
// program attached, or none.
func checkXDP(t *testing.T, attached bool, what string, ifnames ...string) {
	t.Helper()
	for _, n := range ifnames {
		if on, out := xdpShown(t, n); on != attached {
			t.Errorf("%s: XDP program attached to %s: %v, want %v:\n%s", what, n, on, attached, out)
		}
	}
}

// hosts makes the two hosts, 10.82.0.1 and 10.82.0.2.
func hosts(t *testing.T, commands ...string) (h1, h2 *netns.Host) {
	t.Helper()
	netns.Require(t, append([]string{"ping"}, commands...)...)
	return netns.NewHost(t, "10.82.0.1/24"), netns.NewHost(t, "10.82.0.2/24")
}

// ping pings h2 from h1 and fails the test on any loss.
func ping(t *testing.T, h1 *netns.Host, what string) {
	t.Helper()
	out, err := netns.Exec(h1.NS, "ping", "-c", "5", "-i", "0.2", "-W", "2", "10.82.0.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping %s: %v\n%s", what, err, out)
	}
}

// iperf3 runs TCP from h1 to h2 for 2 s and returns the receiver's
// summary line; it fails the test if no data passed.
func iperf3(t *testing.T, h1, h2 *netns.Host) string {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", h2.NS, "iperf3", "-s", "-1", "-B", "10.82.0.2")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	out, err := netns.Exec(h1.NS, "iperf3", "-c", "10.82.0.2", "-t", "2", "-f", "m", "--connect-timeout", "3000")
	if err != nil {
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "receiver") {
			if f := strings.Fields(l); len(f) > 6 && f[4] != "0.00" {
				return strings.TrimSpace(l)
			}
			t.Fatalf("iperf3 passed no data:\n%s", out)
		}
	}
	t.Fatalf("no iperf3 receiver summary:\n%s", out)
	return ""
}

// TestBridgeCallouts: with each back end and each callout, the daemon
// carries ping and iperf3 TCP between the hosts, shuts down cleanly on
// SIGINT with every frame accounted for, and its callout saw the traffic.
// With AF_XDP the XDP program is on the ports while the daemon runs and
// gone after it stopped.
func TestBridgeCallouts(t *testing.T) {
	for _, backend := range backends {
		for _, callout := range callouts {
			t.Run(backend+"/"+callout, func(t *testing.T) {
				h1, h2 := hosts(t, "iperf3")
				args := []string{"-port", h1.Peer, "-port", h2.Peer, "-backend", backend, "-callout", callout, "-stats", "500ms", "-stats-json"}
				prof := filepath.Join(t.TempDir(), "cpu.pprof")
				if callout == calloutNone {
					args = append(args, "-cpuprofile", prof)
				}
				p := startDaemon(t, nil, args...)
				p.waitLog(t, "nblswitch running", 10*time.Second)
				checkXDP(t, backend == backendAFXDP, "while running", h1.Peer, h2.Peer)
				ping(t, h1, "through nblswitch -backend "+backend+" -callout "+callout)
				t.Logf("-backend %s -callout %s, iperf3 TCP 2 s: %s", backend, callout, iperf3(t, h1, h2))
				p.waitLog(t, "msg=stats port="+h1.Peer, 5*time.Second)
				s := p.stop(t)
				checkAccounted(t, s)
				checkBackend(t, s, backend)
				checkXDP(t, false, "after the daemon stopped", h1.Peer, h2.Peer)
				if s.Callout.Name != callout || !s.CapsDropped {
					t.Errorf("report: callout %q caps dropped %v", s.Callout.Name, s.CapsDropped)
				}
				if strings.Contains(p.stderr.String(), "falling back") {
					t.Errorf("a port fell back:\n%s", p.stderr.String())
				}
				var rx, tx uint64
				for _, port := range s.Ports {
					rx += port.RxPackets
					tx += port.TxPackets
				}
				if rx < 1000 || tx < 1000 {
					t.Errorf("the switch received %d and transmitted %d frames during ping and iperf3", rx, tx)
				}
				c := s.Callout
				switch callout {
				case calloutCount:
					if c.IngressFrames < rx || c.EgressFrames == 0 {
						t.Errorf("count callout saw %d ingress and %d egress frames; the ports received %d", c.IngressFrames, c.EgressFrames, rx)
					}
				case calloutReinject, calloutInspect:
					if c.Injected < rx-c.Failed-c.CloneFailed || c.Injected == 0 {
						t.Errorf("%s callout injected %d frames; the ports received %d", callout, c.Injected, rx)
					}
				}
				if callout == calloutNone {
					b, err := os.ReadFile(prof)
					if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
						t.Errorf("-cpuprofile: %d bytes, err %v (want a gzip-compressed profile)", len(b), err)
					}
				}
			})
		}
	}
}

// TestCapabilitiesDropped: with each back end, after the drop the daemon
// keeps forwarding and every one of its threads has empty capability sets
// and no_new_privs; with AF_XDP the program stays attached, and the
// shutdown, without a capability, still detaches it (the port holds it by
// a BPF link, which closing its descriptor releases). With -keep-caps the
// same check finds capabilities (it can fail).
func TestCapabilitiesDropped(t *testing.T) {
	check := func(pid int) (zero bool, detail string) {
		caps, err := taskCaps(fmt.Sprint(pid))
		if err != nil {
			t.Fatal(err)
		}
		zero = len(caps) > 1
		for _, tc := range caps {
			if tc.Effective|tc.Permitted|tc.Inheritable|tc.Ambient != 0 || !tc.NoNewPrivs {
				zero = false
				detail += fmt.Sprintf("tid %d: CapEff=%016x CapPrm=%016x NoNewPrivs=%v; ", tc.TID, uint64(tc.Effective), uint64(tc.Permitted), tc.NoNewPrivs)
			}
		}
		return zero, fmt.Sprintf("%d threads: %s", len(caps), detail)
	}

	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			h1, h2 := hosts(t)
			p := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-backend", backend, "-callout", calloutInspect, "-workers", "2", "-stats-json")
			p.waitLog(t, "nblswitch running", 10*time.Second)
			if !strings.Contains(p.stderr.String(), "all_threads_zero=true") {
				t.Errorf("the daemon did not log a verified drop")
			}
			ping(t, h1, "after the capability drop")
			if zero, detail := check(p.cmd.Process.Pid); !zero {
				t.Errorf("capabilities left after the drop: %s", detail)
			}
			checkXDP(t, backend == backendAFXDP, "after the capability drop", h1.Peer, h2.Peer)
			ping(t, h1, "after reading the threads' capabilities")
			s := p.stop(t)
			checkAccounted(t, s)
			checkBackend(t, s, backend)
			checkXDP(t, false, "after a shutdown without capabilities", h1.Peer, h2.Peer)
			if backend == backendAFXDP {
				// The daemon's own check, after the ports closed and
				// before it exited: the detach needed no capability.
				for _, n := range []string{h1.Peer, h2.Peer} {
					if want := `msg="XDP program detached" port=` + n + ` caps_dropped=true`; !strings.Contains(p.stderr.String(), want) {
						t.Errorf("the daemon did not log %s:\n%s", want, p.stderr.String())
					}
				}
			}
			if !s.CapsDropped {
				t.Error("the report says the capabilities were not dropped")
			}
		})
	}

	h1, h2 := hosts(t)
	k := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-keep-caps")
	k.waitLog(t, "nblswitch running", 10*time.Second)
	if zero, _ := check(k.cmd.Process.Pid); zero {
		t.Error("with -keep-caps the threads have no capabilities")
	}
	ping(t, h1, "with -keep-caps")
}

// TestXDPAttached: the daemon's detach check sees the program an AF_XDP
// port attaches, and sees it gone once the port closed.
func TestXDPAttached(t *testing.T) {
	h1, _ := hosts(t)
	ifi, err := net.InterfaceByName(h1.Peer)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := openPort(backendAFXDP, h1.Peer, portOptions{})
	if err != nil {
		t.Fatal(err)
	}
	on, err := xdpAttached(ifi.Index)
	shown, out := xdpShown(t, h1.Peer)
	if cerr := p.Close(); cerr != nil {
		t.Error(cerr)
	}
	if !on || err != nil || !shown {
		t.Errorf("with the port open: attached %v (err %v); ip shows one: %v\n%s", on, err, shown, out)
	}
	on, err = xdpAttached(ifi.Index)
	shown, out = xdpShown(t, h1.Peer)
	if on || err != nil || shown {
		t.Errorf("after Close: attached %v (err %v); ip shows one: %v\n%s", on, err, shown, out)
	}
}

// TestAFXDPDetachOnKill: when the daemon dies without its shutdown
// (SIGKILL), the kernel detaches its XDP programs as it closes the
// process's descriptors: nothing is left on the interfaces.
func TestAFXDPDetachOnKill(t *testing.T) {
	h1, h2 := hosts(t)
	p := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-backend", backendAFXDP)
	p.waitLog(t, "nblswitch running", 10*time.Second)
	ping(t, h1, "through AF_XDP")
	checkXDP(t, true, "while running", h1.Peer, h2.Peer)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	checkXDP(t, false, "after SIGKILL", h1.Peer, h2.Peer)
}

// TestWithoutNetRaw: without CAP_NET_RAW the daemon exits with an error
// that names it, before opening anything, whichever back end is asked for.
func TestWithoutNetRaw(t *testing.T) {
	h1, h2 := hosts(t, "setpriv")
	for _, backend := range backends {
		p := startDaemon(t, []string{"setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", "--"}, "-port", h1.Peer, "-port", h2.Peer, "-backend", backend)
		code := p.wait(t, 10*time.Second)
		log := p.stderr.String()
		if code == 0 || !strings.Contains(log, "CAP_NET_RAW") || strings.Contains(log, "nblswitch running") || strings.Contains(log, "port opened") {
			t.Errorf("-backend %s without CAP_NET_RAW: exit %d, log:\n%s", backend, code, log)
		}
		t.Logf("-backend %s: exit %d: %s", backend, code, strings.TrimSpace(log))
	}
	checkXDP(t, false, "after the refused starts", h1.Peer, h2.Peer)
}

// TestAFXDPFallback: -backend afxdp where AF_XDP cannot be used (no
// CAP_BPF or CAP_SYS_ADMIN to load the program; a locked-memory limit too
// small for the UMEM and no CAP_IPC_LOCK) logs for each port that it falls
// back to AF_PACKET and why, forwards through AF_PACKET, attaches nothing,
// and still drops its capabilities and shuts down with every frame
// accounted for.
func TestAFXDPFallback(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix []string
		reason string
	}{
		{"no-cap-bpf", []string{"setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-sys_admin", "--"}, "CAP_BPF or CAP_SYS_ADMIN"},
		{"memlock-64k", []string{"prlimit", "--memlock=65536:65536", "--", "setpriv", "--inh-caps=-all", "--bounding-set=-ipc_lock", "--"}, "RLIMIT_MEMLOCK"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h1, h2 := hosts(t, "setpriv", "prlimit")
			p := startDaemon(t, c.prefix, "-port", h1.Peer, "-port", h2.Peer, "-backend", backendAFXDP, "-callout", calloutInspect, "-stats-json")
			p.waitLog(t, "nblswitch running", 10*time.Second)
			log := p.stderr.String()
			for _, n := range []string{h1.Peer, h2.Peer} {
				var line string
				for _, l := range strings.Split(log, "\n") {
					if strings.Contains(l, "falling back to AF_PACKET") && strings.Contains(l, "port="+n+" ") {
						line = l
					}
				}
				if !strings.Contains(line, c.reason) || !strings.Contains(log, "msg=\"port opened\" port="+n+" backend=afpacket") {
					t.Errorf("port %s: no fallback logged with the reason (%s):\n%s", n, c.reason, log)
				} else {
					t.Logf("%s", line)
				}
			}
			checkXDP(t, false, "after the fallback", h1.Peer, h2.Peer)
			ping(t, h1, "after the fallback")
			s := p.stop(t)
			checkAccounted(t, s)
			checkBackend(t, s, backendAFPacket)
			if !s.CapsDropped {
				t.Error("capabilities not dropped after the fallback")
			}
		})
	}
}

// TestVLANs: access ports on one VLAN carry traffic; on different VLANs
// they do not, and the switch counts the frames it could not deliver.
func TestVLANs(t *testing.T) {
	h1, h2 := hosts(t)
	same := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-vlan", h1.Peer+"=access:10", "-vlan", h2.Peer+"=access:10", "-stats-json")
	same.waitLog(t, "nblswitch running", 10*time.Second)
	ping(t, h1, "between access ports of VLAN 10")
	checkAccounted(t, same.stop(t))

	apart := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-vlan", h1.Peer+"=access:10", "-vlan", h2.Peer+"=access:20", "-stats-json")
	apart.waitLog(t, "nblswitch running", 10*time.Second)
	if out, err := netns.Exec(h1.NS, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.82.0.2"); err == nil {
		t.Errorf("ping crossed from VLAN 10 to VLAN 20:\n%s", out)
	}
	s := apart.stop(t)
	checkAccounted(t, s)
	if s.Ports[0].RxPackets == 0 || s.Ports[0].Drops["no-destination"] != s.Ports[0].RxPackets || s.Ports[1].TxPackets != 0 {
		t.Errorf("VLAN 10 port received %d frames, dropped %v; VLAN 20 port transmitted %d", s.Ports[0].RxPackets, s.Ports[0].Drops, s.Ports[1].TxPackets)
	}
}

// TestShutdownUnderLoad: with each back end, SIGINT while a ping flood
// (32 echoes kept in flight) or iperf3 runs through the daemon: it exits
// 0, and the final report balances, with nothing in flight and every
// injection completed, whether the frames in the switch were let finish or
// not (-drain-timeout 0, where Close drops and counts them); no XDP
// program is left behind.
func TestShutdownUnderLoad(t *testing.T) {
	for _, backend := range backends {
		for _, c := range []struct {
			load, callout, drain string
		}{
			{"ping-flood", calloutNone, "1s"}, {"ping-flood", calloutInspect, "1s"}, {"ping-flood", calloutReinject, "1s"},
			{"iperf3", calloutInspect, "1s"},
			// No drain: Close itself completes what is in flight, as closed.
			{"ping-flood", calloutInspect, "0s"}, {"iperf3", calloutReinject, "0s"},
		} {
			t.Run(backend+"/"+c.load+"/"+c.callout+"/drain-"+c.drain, func(t *testing.T) {
				h1, h2 := hosts(t, "iperf3")
				p := startDaemon(t, nil, "-port", h1.Peer, "-port", h2.Peer, "-backend", backend, "-callout", c.callout, "-workers", "2",
					"-stats-json", "-drain-timeout", c.drain)
				p.waitLog(t, "nblswitch running", 10*time.Second)
				ping(t, h1, "before the load")
				var load []*exec.Cmd
				if c.load == "iperf3" {
					load = append(load, exec.Command("ip", "netns", "exec", h2.NS, "iperf3", "-s", "-1", "-B", "10.82.0.2"),
						exec.Command("ip", "netns", "exec", h1.NS, "iperf3", "-c", "10.82.0.2", "-t", "8", "--connect-timeout", "3000"))
				} else {
					load = append(load, exec.Command("ip", "netns", "exec", h1.NS, "ping", "-f", "-q", "-l", "32", "-c", "500000", "-w", "8", "10.82.0.2"))
				}
				for i, cmd := range load {
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
					if i == 0 && len(load) > 1 {
						time.Sleep(300 * time.Millisecond) // the server first
					}
				}
				time.Sleep(1500 * time.Millisecond)
				s := p.stop(t)
				checkAccounted(t, s)
				checkBackend(t, s, backend)
				checkXDP(t, false, "after the shutdown", h1.Peer, h2.Peer)
				var rx uint64
				for _, port := range s.Ports {
					rx += port.RxPackets
				}
				if rx < 1000 {
					t.Errorf("only %d frames went through the switch: the load did not run", rx)
				}
				t.Logf("-backend %s %s -callout %s: %d frames received, shutdown took %.3f s, drops %v / %v, in %d out %d",
					backend, c.load, c.callout, rx, s.ShutdownSeconds, s.Ports[0].Drops, s.Ports[1].Drops, s.Balance.In, s.Balance.Out)
			})
		}
	}
}
