//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
)

// The 64-byte frame-rate measurement of -ports veth sends one UDP frame,
// over and over, from h1 to h2 with a generator running inside h1's
// namespace: trafgen (netsniff-ng) where it is installed, else a Go
// generator in this process. NBLPIPE_VETH_GENERATOR=trafgen or =go picks
// one; under CI=true a missing trafgen is an error, not a fallback.
const (
	genTrafgen = "trafgen"
	genGo      = "go-sendmmsg"

	vethFrameSize = 64 // bytes, Ethernet header included, no FCS
	// genMaxPps bounds the generator's packet count (-n) at a rate no
	// generator reaches on one core: the time limit is what stops it, the
	// count is a second bound.
	genMaxPps = 20e6
)

// generator is a running frame generator.
type generator interface {
	// Name says which generator this is, for the report.
	Name() string
	// CPU returns the CPU time this process has spent generating so far
	// (0 for a generator in a process of its own), so that it can be
	// taken out of the switch's figure.
	CPU() time.Duration
	// Stop ends the generator and returns what went wrong while it ran.
	Stop() error
}

// chooseGenerator returns the generator to use, from
// NBLPIPE_VETH_GENERATOR and what is installed.
func chooseGenerator() (string, error) {
	switch v := os.Getenv("NBLPIPE_VETH_GENERATOR"); v {
	case "", genTrafgen:
		_, err := exec.LookPath("trafgen")
		switch {
		case err == nil:
			return genTrafgen, nil
		case v == genTrafgen || os.Getenv("CI") == "true":
			return "", fmt.Errorf("-ports veth needs trafgen (apt-get install netsniff-ng): %w", err)
		}
		return genGo, nil
	case "go":
		return genGo, nil
	default:
		return "", fmt.Errorf("NBLPIPE_VETH_GENERATOR=%q: want trafgen or go", v)
	}
}

// startGenerator starts generator kind in namespace ns on interface
// ifname, sending frame until it has sent maxPkts or limit has passed,
// whichever is first, or Stop is called.
func startGenerator(kind, ns, ifname string, frame []byte, maxPkts uint64, limit time.Duration) (generator, error) {
	switch kind {
	case genTrafgen:
		return startTrafgen(ns, ifname, frame, maxPkts, limit)
	case genGo:
		return startGoGen(ns, ifname, frame, maxPkts, limit)
	}
	return nil, fmt.Errorf("unknown generator %q", kind)
}

// udpFrame builds the Ethernet/IPv4/UDP frame of size bytes (at least 60)
// that the generators send: from srcMAC/srcIP to dstMAC/dstIP, UDP port
// 1024 to 9 (discard), with a zero payload and correct checksums.
func udpFrame(srcMAC, dstMAC, srcIP, dstIP string, size int) ([]byte, error) {
	sm, err := net.ParseMAC(srcMAC)
	if err != nil {
		return nil, err
	}
	dm, err := net.ParseMAC(dstMAC)
	if err != nil {
		return nil, err
	}
	si, di := net.ParseIP(srcIP).To4(), net.ParseIP(dstIP).To4()
	if si == nil || di == nil {
		return nil, fmt.Errorf("udpFrame: want IPv4 addresses, got %q and %q", srcIP, dstIP)
	}
	const headers = 14 + 20 + 8
	if size < 60 || size > 1514 {
		return nil, fmt.Errorf("udpFrame: size %d out of 60..1514", size)
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: si, DstIP: di}
	udp := &layers.UDP{SrcPort: 1024, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	return nbl.BuildFrame(&layers.Ethernet{SrcMAC: sm, DstMAC: dm, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(make([]byte, size-headers)))
}

// trafgenConfig renders frame as a trafgen packet configuration: one
// packet, its bytes spelled out, so that trafgen sends exactly the frame
// the Go generator would.
func trafgenConfig(frame []byte) string {
	var b strings.Builder
	b.WriteString("/* nblpipe bench: one UDP frame, sent over and over */\n{\n")
	for i, c := range frame {
		if i%16 == 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "0x%02x", c)
		if i != len(frame)-1 {
			b.WriteString(",")
		}
		if i%16 == 15 || i == len(frame)-1 {
			b.WriteString("\n")
		} else {
			b.WriteString(" ")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// trafgenMaxNum is the largest packet count given to trafgen: it fails
// ("xmalloc: zero size") on counts of 2^32 and more.
const trafgenMaxNum = 1<<31 - 1

// trafgenArgs are the arguments of trafgen: one CPU, a packet count, a
// fixed seed, and it leaves the host's socket memory settings and IRQ
// affinities alone.
func trafgenArgs(ifname, conf string, maxPkts uint64) []string {
	maxPkts = min(maxPkts, trafgenMaxNum)
	return []string{"--dev", ifname, "--conf", conf, "--cpus", "1", "--num", fmt.Sprint(maxPkts),
		"--seed", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"}
}

type trafgen struct {
	cmd     *exec.Cmd
	dir     string // holds the configuration and is trafgen's working directory
	conf    string
	out     *lockedBuffer
	exited  chan struct{}
	waitErr error
	stopped chan struct{}
	once    sync.Once
}

// lockedBuffer collects a child's output for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < 64<<10 {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}

func startTrafgen(ns, ifname string, frame []byte, maxPkts uint64, limit time.Duration) (*trafgen, error) {
	// trafgen runs in a directory of its own, removed when it stops: it
	// keeps a temporary file in its working directory, which it leaves
	// behind when it is killed.
	dir, err := os.MkdirTemp("", "nblpipe-trafgen-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "frame.cfg")
	if err := os.WriteFile(conf, []byte(trafgenConfig(frame)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	t := &trafgen{dir: dir, conf: conf, out: &lockedBuffer{}, exited: make(chan struct{}), stopped: make(chan struct{})}
	// ip netns exec execs trafgen in place: the child's PID is trafgen's.
	t.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "trafgen"}, trafgenArgs(ifname, t.conf, maxPkts)...)...)
	t.cmd.Stdout, t.cmd.Stderr = t.out, t.out
	t.cmd.Dir = dir
	// trafgen sends from a child process it forks, which stops on its own
	// SIGINT, not its parent's: it expects ^C's SIGINT to the whole process
	// group. Give it a group of its own and signal the group.
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.cmd.WaitDelay = 5 * time.Second // bounds the wait for its output
	if err := t.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("trafgen: %w", err)
	}
	go func() {
		t.waitErr = t.cmd.Wait()
		close(t.exited)
	}()
	// The time limit: SIGINT (trafgen stops and reports), then SIGKILL.
	go func() {
		select {
		case <-t.exited:
			return
		case <-t.stopped:
		case <-time.After(limit):
		}
		pgid := t.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		select {
		case <-t.exited:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	return t, nil
}

func (t *trafgen) Name() string       { return genTrafgen }
func (t *trafgen) CPU() time.Duration { return 0 }

// Running reports whether trafgen is still running, and what it said if
// it is not.
func (t *trafgen) Running() (bool, string) {
	select {
	case <-t.exited:
		return false, fmt.Sprintf("trafgen exited (%v): %s", t.waitErr, t.out.String())
	default:
		return true, ""
	}
}

func (t *trafgen) Stop() error {
	select {
	case <-t.exited:
		// It stopped on its own, before it was asked to: a failure
		// unless it exited cleanly.
		os.RemoveAll(t.dir)
		if t.waitErr != nil {
			return fmt.Errorf("trafgen: %v: %s", t.waitErr, t.out.String())
		}
		return nil
	default:
	}
	t.once.Do(func() { close(t.stopped) })
	<-t.exited
	os.RemoveAll(t.dir)
	var ee *exec.ExitError
	if errors.As(t.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			return nil // stopped as asked
		}
	}
	if t.waitErr != nil {
		return fmt.Errorf("trafgen: %v: %s", t.waitErr, t.out.String())
	}
	return nil
}
