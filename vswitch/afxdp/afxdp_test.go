//go:build linux

package afxdp_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// childEnv makes the test binary a helper that prints what Available says
// (TestAvailableWithoutCapabilities runs it with every capability dropped).
const childEnv = "AFXDP_TEST_CHILD"

// TestMain fails the run if a namespace this process made or a goroutine
// outlived the tests.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "available" {
		fmt.Println(afxdp.Available("lo"))
		os.Exit(0)
	}
	before := runtime.NumGoroutine()
	code := m.Run()
	if ns := netns.Leftovers(); len(ns) > 0 {
		fmt.Fprintf(os.Stderr, "leak check: namespaces left behind: %v\n", ns)
		code = 1
	}
	if f := flag.Lookup("test.fuzz"); code == 0 && (f == nil || f.Value.String() == "") {
		// (A fuzzing run leaves os/signal's goroutine behind.)
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leak check: %d goroutines at exit, %d at start:\n%s\n", n, before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// requireXDP skips (or under CI fails, through netns.Require) without
// root, and fails when AF_XDP is not available on the interface: this
// kernel has it, so a missing piece is a bug to see.
func requireXDP(t *testing.T, ifname string) {
	t.Helper()
	if err := afxdp.Available(ifname); err != nil {
		t.Fatalf("AF_XDP unavailable on %s: %v", ifname, err)
	}
}

// bridge makes two hosts (10.79.0.1 and .2) and a switch whose two AF_XDP
// ports, configured by port, own the hosts' veth peers; o configures the
// switch.
func bridge(t *testing.T, port afxdp.Config, o clients.Options) (h1, h2 *netns.Host, sw *vswitch.Switch, ports [2]*afxdp.Port) {
	t.Helper()
	netns.Require(t, "ping")
	h1 = netns.NewHost(t, "10.79.0.1/24")
	h2 = netns.NewHost(t, "10.79.0.2/24")
	sw, ports = switchHosts(t, port, o, h1, h2)
	return h1, h2, sw, ports
}

// switchHosts makes a switch with an AF_XDP port on each host's veth peer
// (see clients.Switch). At cleanup, once the switch closed, every
// descriptor must be back in its port's pool.
func switchHosts(t *testing.T, port afxdp.Config, o clients.Options, h1, h2 *netns.Host) (*vswitch.Switch, [2]*afxdp.Port) {
	t.Helper()
	requireXDP(t, h1.Peer)
	var ports [2]*afxdp.Port
	t.Cleanup(func() { // registered first: runs after the switch closed
		for i, p := range ports {
			if p != nil && !p.Pool().Full() {
				t.Errorf("port %d: %d descriptors not back in the pool after close", i, p.Pool().InUse())
			}
		}
	})
	sw, ps := clients.Switch(t, o, func(h *netns.Host) (*afxdp.Port, error) {
		c := port
		c.Interface = h.Peer
		return afxdp.New(c)
	}, h1, h2)
	ports = [2]*afxdp.Port(ps)
	t.Logf("ports bound in %s mode, program attached in %s mode", ports[0].Mode(), ports[0].AttachMode())
	return sw, ports
}

// TestPingThroughSwitch pings from one host to the other through two
// AF_XDP ports, with the program in driver mode and in generic mode.
func TestPingThroughSwitch(t *testing.T) {
	for _, mode := range []afxdp.AttachMode{afxdp.AttachDriver, afxdp.AttachGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			h1, h2, sw, ports := bridge(t, afxdp.Config{Attach: mode}, clients.Options{})
			if got := ports[0].AttachMode(); got != mode {
				t.Fatalf("attached in %s mode, asked for %s", got, mode)
			}
			t.Logf("%s", clients.CheckPing(t, sw, h1, h2, 5))
			for i, p := range ports {
				s := p.Stats()
				if s.TxErrors != 0 || s.Bad != 0 || s.TxCompleted != s.TxPackets-s.TxInFlight {
					t.Errorf("port %d: %+v", i, s)
				}
			}
		})
	}
}

func TestIperf3TCPThroughSwitch(t *testing.T) {
	netns.Require(t, "iperf3")
	h1, h2, _, ports := bridge(t, afxdp.Config{}, clients.Options{})
	t.Logf("iperf3 TCP through two AF_XDP ports: %s", clients.Iperf3(t, h1, h2, 3))
	for i, p := range ports {
		t.Logf("port %d: %+v", i, p.Stats())
	}
}

// TestBurstArrivesExactlyOnce sends numbered raw frames from one host in
// bursts and checks that the other host receives each exactly once, intact.
func TestBurstArrivesExactlyOnce(t *testing.T) {
	h1, h2, sw, ports := bridge(t, afxdp.Config{}, clients.Options{})
	tx := openRaw(t, h1.NS, h1.If)
	rx := openRaw(t, h2.NS, h2.If)
	dst, _ := parseMAC(h2.MAC)
	const bursts, per, size = 32, 128, 200
	const total = bursts * per
	c := countFrames(t, rx, total, size)
	b := make([]byte, size)
	for i := range bursts {
		for j := range per {
			if err := tx.send(tx.frame(b, dst, uint32(i*per+j), size)); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		// Let the receiver catch up before the next burst (bounded).
		c.wait((i+1)*per, 2*time.Second, time.Millisecond)
	}
	c.wait(total, time.Second, 5*time.Millisecond)
	missing, dup, bad := c.finish()
	st := sw.Stats()
	if missing != 0 || dup != 0 || bad != 0 {
		t.Errorf("of %d frames: %d missing, %d duplicates, %d malformed; switch %+v; ports %+v / %+v",
			total, missing, dup, bad, st.Ports, ports[0].Stats(), ports[1].Stats())
	}
	if st.Ports[0].RxPackets < total {
		t.Errorf("port 1 received %d frames, want at least %d", st.Ports[0].RxPackets, total)
	}
	t.Logf("%d frames in %d bursts arrived once each", total, bursts)
}

// counter receives frames on a raw socket on its own goroutine, until
// finished or the test ends, and counts the intact test frames of size
// bytes by sequence number (below total); any other frame is bad.
type counter struct {
	seen     []int // read once finished
	got, bad atomic.Int64
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

func countFrames(t *testing.T, r *rawSocket, total, size int) *counter {
	c := &counter{seen: make([]int, total), stop: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		b := make([]byte, 2048)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			n, err := r.recv(b)
			if err != nil || n == 0 {
				continue
			}
			if seq, ok := checkFrame(b[:n]); ok && int(seq) < total && n == size {
				c.seen[seq]++
				c.got.Add(1)
			} else {
				c.bad.Add(1)
			}
		}
	}()
	t.Cleanup(c.halt) // before r closes
	return c
}

// wait waits until n frames came, polling every poll, for at most timeout.
func (c *counter) wait(n int, timeout, poll time.Duration) {
	for deadline := time.Now().Add(timeout); c.got.Load() < int64(n) && time.Now().Before(deadline); {
		time.Sleep(poll)
	}
}

func (c *counter) halt() {
	c.once.Do(func() { close(c.stop) })
	c.wg.Wait()
}

// finish gives a late duplicate 50 ms to come, stops the receiver, and
// returns how many frames did not come, how many came more than once
// (beyond the first), and how many bad frames came.
func (c *counter) finish() (missing, dup int, bad int64) {
	time.Sleep(50 * time.Millisecond)
	c.halt()
	for _, k := range c.seen {
		if k == 0 {
			missing++
		} else {
			dup += k - 1
		}
	}
	return missing, dup, c.bad.Load()
}

// TestMultiQueue switches between hosts whose veth pairs have two queues:
// each port serves both with a socket each, and frames sent on either
// queue arrive exactly once.
func TestMultiQueue(t *testing.T) {
	netns.Require(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to send on two queues")
	}
	h1 := multiQueueHost(t, "10.79.1.1/24", 2)
	h2 := multiQueueHost(t, "10.79.1.2/24", 2)
	sw, ports := switchHosts(t, afxdp.Config{RxFrames: 512, TxFrames: 512, RingSize: 512}, clients.Options{}, h1, h2)
	if q := ports[0].Queues(); len(q) != 2 || q[0] != 0 || q[1] != 1 {
		t.Fatalf("port serves queues %v, want [0 1]", q)
	}
	dst, _ := parseMAC(h2.MAC)
	rx := openRaw(t, h2.NS, h2.If)
	const per, size = 1000, 100
	c := countFrames(t, rx, 2*per, size)
	var errs []<-chan error
	for cpu := range 2 {
		errs = append(errs, pinnedSender(t, openRaw(t, h1.NS, h1.If), cpu, dst, uint32(cpu*per), per, size))
	}
	for _, e := range errs {
		if err := <-e; err != nil {
			t.Errorf("sender: %v", err)
		}
	}
	c.wait(2*per, 3*time.Second, 5*time.Millisecond)
	missing, dup, bad := c.finish()
	byQueue := ports[0].RxByQueue()
	t.Logf("frames received by queue on the first port: %v", byQueue)
	// Two senders at full speed can outrun the port on a loaded machine:
	// the kernel then drops frames for an empty fill ring, and counts them.
	// Every frame arrives exactly once or is among those counted drops.
	st := ports[0].Stats()
	if uint64(missing) > st.KernelRxDropped || missing > per || dup != 0 || bad != 0 {
		t.Errorf("of %d frames: %d missing (the kernel counted %d drops on the port), %d duplicates, %d malformed; switch %+v; port %+v",
			2*per, missing, st.KernelRxDropped, dup, bad, sw.Stats().Ports, st)
	} else if missing > 0 {
		t.Logf("%d frames dropped by the kernel for an empty fill ring (counted: %d)", missing, st.KernelRxDropped)
	}
	if byQueue[0] < per/2 || byQueue[1] < per/2 {
		t.Errorf("frames sent from two CPUs did not arrive on both queues: %v", byQueue)
	}
}

// TestCloseUnderTraffic closes the switch while both hosts send as fast as
// they can: Close returns, every NBL is back in its pool, and the switch's
// counters balance.
func TestCloseUnderTraffic(t *testing.T) {
	h1, h2, sw, ports := bridge(t, afxdp.Config{}, clients.Options{})
	m1, _ := parseMAC(h1.MAC)
	m2, _ := parseMAC(h2.MAC)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	for _, d := range []struct {
		h   *netns.Host
		dst []byte
	}{{h1, m2}, {h2, m1}} {
		r := openRaw(t, d.h.NS, d.h.If)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 256)
			end := time.Now().Add(5 * time.Second)
			for i := uint32(0); i < 500000 && time.Now().Before(end); i++ {
				select {
				case <-stop:
					return
				default:
				}
				if r.send(r.frame(b, d.dst, i, 256)) == nil {
					sent.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := sw.CloseContext(ctx)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("close under traffic: %v", err)
	}
	for i, p := range ports {
		if !p.Pool().Full() {
			t.Errorf("port %d: %d descriptors not back in the pool", i, p.Pool().InUse())
		}
		t.Logf("port %d: %+v", i, p.Stats())
	}
	if !sw.CopyPool().Full() {
		t.Errorf("switch copy pool: %d NBLs not back", sw.CopyPool().InUse())
	}
	st := sw.Stats()
	var in, out uint64
	for _, ps := range append(st.Ports, st.Unknown) {
		in += ps.RxPackets + ps.Injected
		out += ps.TxPackets + ps.Dropped() + ps.Absorbed
	}
	in += st.FloodCopies
	if in != out || in == 0 {
		t.Errorf("switch counters do not balance: %d in, %d out: %+v", in, out, st.Ports)
	}
	if err := sw.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	t.Logf("closed in %v with %d frames sent by the hosts, %d through the switch", took.Round(time.Millisecond), sent.Load(), in)
}

// standalone makes a host and an AF_XDP port on its veth peer, with no
// switch: the test drives the port itself.
func standalone(t *testing.T, cfg afxdp.Config) (*netns.Host, *afxdp.Port, *rawSocket) {
	t.Helper()
	netns.Require(t)
	h := netns.NewHost(t, "")
	requireXDP(t, h.Peer)
	cfg.Interface = h.Peer
	p, err := afxdp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h, p, openRaw(t, h.NS, h.If)
}

// reflector drives a standalone port: it receives the host's test frames
// and sends them straight back. It allocates nothing once made.
type reflector struct {
	p    *afxdp.Port
	host *rawSocket
	dst  []byte
	buf  []*nbl.NetBufferList
	out  []byte
	in   []byte
	seq  uint32
	fp   *nbl.Pool // a pool of another owner, for the copy path
	err  error
}

func newReflector(t *testing.T, p *afxdp.Port, host *rawSocket, peerMAC string) *reflector {
	dst, err := parseMAC(peerMAC)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := nbl.NewPool(nbl.Config{NBLs: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fp.Close() })
	return &reflector{p: p, host: host, dst: dst, buf: make([]*nbl.NetBufferList, 8), out: make([]byte, 2048), in: make([]byte, 2048), fp: fp}
}

func (r *reflector) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

// receive waits (bounded) for the next test frame on the port; other
// frames (the hosts' own chatter) are released.
func (r *reflector) receive() *nbl.NetBufferList {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, _ := r.p.Receive(r.buf[:1])
		if n == 0 {
			continue
		}
		l := r.buf[0]
		r.buf[0] = nil
		d, ok := l.FirstNetBuffer().Data()
		if seq, good := checkFrame(d); ok && good && seq == r.seq {
			return l
		}
		r.p.Cache().Release(l)
	}
	r.fail("frame %d did not arrive", r.seq)
	return nil
}

// reclaim waits (bounded) until the port gives l back.
func (r *reflector) reclaim(l *nbl.NetBufferList) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := r.p.Reclaim(r.buf[:1]); n == 1 {
			got := r.buf[0]
			r.buf[0] = nil
			if got != l {
				r.fail("Reclaim returned another NBL")
			}
			return true
		}
	}
	r.fail("frame %d was not reclaimed", r.seq)
	return false
}

// hostGets waits (bounded) for the reflected frame at the host.
func (r *reflector) hostGets(size int) {
	for range 40 {
		n, err := r.host.recv(r.in)
		if err != nil {
			r.fail("host recv: %v", err)
			return
		}
		if n == 0 {
			continue
		}
		if seq, ok := checkFrame(r.in[:n]); ok && seq == r.seq && n == size {
			return
		}
	}
	r.fail("frame %d did not come back to the host", r.seq)
}

// zeroCopy sends one frame from the host, receives it on the port and
// sends it back from its own UMEM frame.
func (r *reflector) zeroCopy(size int) {
	r.seq++
	if err := r.host.send(r.host.frame(r.out, r.dst, r.seq, size)); err != nil {
		r.fail("host send: %v", err)
		return
	}
	l := r.receive()
	if l == nil {
		return
	}
	r.buf[0] = l
	if n, err := r.p.Send(r.buf[:1]); n != 1 || err != nil {
		r.fail("Send took %d: %v", n, err)
		r.p.Cache().Release(l)
		return
	}
	r.buf[0] = nil
	if r.reclaim(l) {
		r.p.Cache().Release(l)
	}
	r.hostGets(size)
}

// copied sends a frame held in another pool's memory: the port copies it.
func (r *reflector) copied(size int) {
	r.seq++
	l, err := r.fp.Allocate(64, size)
	if err != nil {
		r.fail("allocate: %v", err)
		return
	}
	l.FirstNetBuffer().CopyIn(0, r.host.frame(r.out, r.host.src, r.seq, size))
	r.buf[0] = l
	if n, err := r.p.Send(r.buf[:1]); n != 1 || err != nil {
		r.fail("Send took %d: %v", n, err)
		r.fp.Free(l)
		return
	}
	r.buf[0] = nil
	if r.reclaim(l) {
		r.fp.Free(l)
	}
	r.hostGets(size)
}

// TestReflect sends frames back out of the port they came in on, from
// their own UMEM frame (zero-copy transmit), and frames from another pool
// (copied), and checks that the host gets each back intact and that every
// descriptor and frame is returned.
func TestReflect(t *testing.T) {
	h, p, host := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	r := newReflector(t, p, host, h.PeerMAC)
	const n = 300 // more than the port has frames: they must come back
	for i := range n {
		r.zeroCopy(60 + i%1400)
		r.copied(60 + i%1400)
		if r.err != nil {
			t.Fatalf("after %d frames: %v; %+v", i, r.err, p.Stats())
		}
	}
	st := p.Stats()
	if st.TxZeroCopy != n || st.TxCopied != n || st.TxCompleted != 2*n || st.TxInFlight != 0 || st.Bad != 0 {
		t.Errorf("stats: %+v", st)
	}
	p.Cache().Flush()
	if !p.Pool().Full() || !r.fp.Full() {
		t.Errorf("descriptors in use: port %d, other pool %d", p.Pool().InUse(), r.fp.InUse())
	}
	t.Logf("%s mode, %s attach: %+v", p.Mode(), p.AttachMode(), st)
}

// TestPathDoesNotAllocate: receiving, sending zero-copy and copied,
// reclaiming and returning frames allocates nothing.
func TestPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	h, p, host := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	r := newReflector(t, p, host, h.PeerMAC)
	for range 100 { // warm up: every frame of the port has been round once
		r.zeroCopy(128)
		r.copied(128)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		r.zeroCopy(128)
		r.copied(128)
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per receive, send and reclaim of two frames, want 0", allocs)
	}
}

// TestCloseIsIdempotent: Close detaches the XDP program, a second Close
// returns nil, and Send on a closed port says so.
func TestCloseIsIdempotent(t *testing.T) {
	h, p, _ := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	if out, err := netns.Run("link", "show", "dev", h.Peer); err != nil || !strings.Contains(out, "prog/xdp") {
		t.Fatalf("no XDP program on %s while the port is open: %v\n%s", h.Peer, err, out)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Run("link", "show", "dev", h.Peer); err != nil || strings.Contains(out, "xdp") {
		t.Errorf("the XDP program is still attached to %s after Close: %v\n%s", h.Peer, err, out)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := p.Send(nil); !errors.Is(err, afxdp.ErrClosed) {
		t.Errorf("Send after close: %v, want ErrClosed", err)
	}
	if n, err := p.Receive(make([]*nbl.NetBufferList, 4)); n != 0 || err != nil {
		t.Errorf("Receive after close: %d, %v", n, err)
	}
}

func TestAvailableMissingInterface(t *testing.T) {
	err := afxdp.Available("nblnosuchif0")
	if err == nil || errors.Is(err, afxdp.ErrUnsupported) {
		t.Fatalf("Available on a missing interface: %v, want an error that is not ErrUnsupported", err)
	}
}

// TestAvailableWithoutCapabilities runs Available in child processes that
// lack what AF_XDP needs: every capability, or CAP_IPC_LOCK with a small
// RLIMIT_MEMLOCK. It must say AF_XDP is unsupported, and why.
func TestAvailableWithoutCapabilities(t *testing.T) {
	netns.Require(t, "setpriv", "sh")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, reason string
		args         []string
	}{
		{"no-capabilities", "CAP_NET_ADMIN", []string{"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--", exe, "-test.run=^$"}},
		{"no-memlock", "RLIMIT_MEMLOCK", []string{"sh", "-c", `ulimit -l 64 && exec setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock -- "$0" -test.run='^$'`, exe}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(c.args[0], c.args[1:]...)
			cmd.Env = append(os.Environ(), childEnv+"=available")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			s := strings.TrimSpace(string(out))
			if !strings.Contains(s, "AF_XDP is not available") || !strings.Contains(s, c.reason) {
				t.Errorf("Available said %q, want the reason (%s)", s, c.reason)
			}
			t.Log(s)
		})
	}
	// And with them, it is available.
	if err := afxdp.Available("lo"); err != nil {
		t.Errorf("as root: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []afxdp.Config{
		{},
		{Interface: "lo", FrameSize: 3000},
		{Interface: "lo", FrameSize: 1024},
		{Interface: "lo", RingSize: 1000},
		{Interface: "lo", RxFrames: -1},
		{Interface: "lo", Burst: -1},
		{Interface: "lo", Queues: []int{0, 0}},
		{Interface: "lo", Queues: []int{-1}},
		{Interface: "lo", Mode: 9},
		{Interface: "lo", Attach: 9},
		{Interface: "lo", CloseTimeout: -1},
		{Interface: "nblnosuchif0"},
	} {
		if p, err := afxdp.New(c); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded", c)
		} else if errors.Is(err, afxdp.ErrUnsupported) {
			t.Errorf("New(%+v): %v is a configuration error, not ErrUnsupported", c, err)
		}
	}
}

func parseMAC(s string) ([]byte, error) {
	var m [6]byte
	if _, err := fmt.Sscanf(s, "%02x:%02x:%02x:%02x:%02x:%02x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]); err != nil {
		return nil, fmt.Errorf("MAC %q: %w", s, err)
	}
	return m[:], nil
}

// TestZeroCopyMode: veth has no zero-copy AF_XDP, so asking for it fails
// with the driver's refusal, and Auto falls back to copy mode.
func TestZeroCopyMode(t *testing.T) {
	netns.Require(t)
	h := netns.NewHost(t, "")
	requireXDP(t, h.Peer)
	p, err := afxdp.New(afxdp.Config{Interface: h.Peer, Mode: afxdp.ZeroCopy, RxFrames: 64, TxFrames: 64, RingSize: 64})
	if err == nil {
		mode := p.Mode()
		p.Close()
		t.Fatalf("zero-copy mode on veth succeeded (%s)", mode)
	}
	t.Logf("zero-copy on veth: %v", err)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("zero-copy on veth: %v, want the driver's EOPNOTSUPP", err)
	}
	if errors.Is(err, afxdp.ErrUnsupported) {
		t.Errorf("a driver without zero-copy is not a reason to give up AF_XDP: %v", err)
	}
	p, err = afxdp.New(afxdp.Config{Interface: h.Peer, RxFrames: 64, TxFrames: 64, RingSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Mode() != afxdp.Copy || p.Stats().ZeroCopy {
		t.Errorf("Auto on veth gave %s mode, want copy", p.Mode())
	}
}

// TestSendRefusesOversize: frames longer than the MTU allows are refused
// and moved behind the ones Send took, which keep their order.
func TestSendRefusesOversize(t *testing.T) {
	h, p, host := standalone(t, afxdp.Config{RxFrames: 64, TxFrames: 64, RingSize: 64})
	r := newReflector(t, p, host, h.PeerMAC)
	sizes := []int{1600, 100, 1519, 120, 1518}
	in := make([]*nbl.NetBufferList, len(sizes))
	for i, size := range sizes {
		l, err := r.fp.Allocate(0, size)
		if err != nil {
			t.Fatal(err)
		}
		l.FirstNetBuffer().CopyIn(0, host.frame(r.out, host.src, uint32(i), size))
		in[i] = l
	}
	orig := append([]*nbl.NetBufferList(nil), in...)
	n, err := p.Send(in)
	if err != nil || n != 3 {
		t.Fatalf("Send took %d (%v), want the 3 frames of at most 1518 bytes", n, err)
	}
	want := []*nbl.NetBufferList{orig[1], orig[3], orig[4], orig[0], orig[2]}
	for i := range in {
		if in[i] != want[i] {
			t.Fatalf("after Send, in[%d] is frame %d bytes long; want taken frames first, in order, then the refused", i, in[i].FirstNetBuffer().DataLength())
		}
	}
	got := 0
	deadline := time.Now().Add(2 * time.Second)
	for got < 3 && time.Now().Before(deadline) {
		k := p.Reclaim(r.buf)
		for _, l := range r.buf[:k] {
			r.fp.Free(l)
		}
		got += k
	}
	for _, l := range in[3:] {
		r.fp.Free(l)
	}
	if got != 3 {
		t.Fatalf("reclaimed %d frames, want 3", got)
	}
	for _, size := range []int{100, 120, 1518} {
		m, err := host.recv(r.in)
		if err != nil || m != size {
			t.Errorf("host got a frame of %d bytes (%v), want %d", m, err, size)
		}
	}
	if st := p.Stats(); st.TxRefused != 2 || st.TxPackets != 3 {
		t.Errorf("stats: %+v", st)
	}
	if !r.fp.Full() {
		t.Errorf("%d NBLs of the other pool not back", r.fp.InUse())
	}
}
