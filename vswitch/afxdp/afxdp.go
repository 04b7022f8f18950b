//go:build linux

package afxdp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/pool"
	"github.com/nblpipe/nblpipe/ring"
)

// Mode chooses between zero-copy and copy mode for the socket.
type Mode uint8

const (
	// Auto binds with XDP_ZEROCOPY and falls back to XDP_COPY when the
	// driver has no zero-copy support (veth, most virtual devices).
	Auto Mode = iota
	// Copy binds with XDP_COPY: the kernel copies frames between its
	// buffers and the UMEM. Every driver supports it.
	Copy
	// ZeroCopy binds with XDP_ZEROCOPY and fails if the driver cannot.
	ZeroCopy
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Copy:
		return "copy"
	case ZeroCopy:
		return "zero-copy"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// AttachMode chooses where the XDP program runs.
type AttachMode uint8

const (
	// AttachAuto tries driver mode, then generic mode.
	AttachAuto AttachMode = iota
	// AttachDriver runs the program in the driver's receive path (native
	// XDP) and fails if the driver has none.
	AttachDriver
	// AttachGeneric runs it on socket buffers after the driver (skb mode),
	// which every interface supports, more slowly.
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachDriver:
		return "driver"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", uint8(m))
}

// Config describes a port. Zero values take the defaults.
type Config struct {
	// Interface is the name of the interface to bind to. Required.
	Interface string
	// Queues lists the receive queues to serve, one socket each (default:
	// every receive queue the interface has). Frames that arrive on a
	// queue not listed pass to the kernel's stack.
	Queues []int
	// FrameSize is the size of a UMEM frame: a power of two from 2048 to
	// the page size (default 2048). A received frame starts 256 bytes in
	// (XDP_PACKET_HEADROOM), so the largest frame is FrameSize-256 bytes
	// on receive and FrameSize on transmit.
	FrameSize int
	// RxFrames is the number of UMEM frames for receiving, per queue
	// (default 4096); TxFrames the number for frames copied for
	// transmission (default 2048). Both are rounded up to whole pages.
	RxFrames, TxFrames int
	// RingSize is the number of entries of each socket's RX and TX rings,
	// a power of two (default 2048). The fill and completion rings are
	// sized to hold every frame that may be on them.
	RingSize int
	// Burst sizes the scratch space of one Send and the hand-over of
	// released frames to the fill ring (default 64).
	Burst int
	// NBLs is the number of descriptors for received frames (default
	// RxFrames times the number of queues).
	NBLs int
	// Mode chooses zero-copy or copy mode (default Auto).
	Mode Mode
	// Attach chooses the XDP attach mode (default AttachAuto).
	Attach AttachMode
	// NoNeedWakeup leaves XDP_USE_NEED_WAKEUP off: every Send then wakes
	// the kernel with a system call whether it asked or not.
	NoNeedWakeup bool
	// NoChecksumFix turns off the completion of partial checksums on
	// receive (see the package documentation).
	NoChecksumFix bool
	// CloseTimeout bounds how long Close waits for the kernel to complete
	// frames sent zero-copy from this port's UMEM (default 200 ms).
	CloseTimeout time.Duration
	// RequireVLAN makes New fail, with an error that wraps
	// ErrVLANUnsupported, unless the port can recover the 802.1Q tags a
	// driver hands over out of band (Capabilities().VLAN; see the package
	// documentation). Without that, a frame of any VLAN whose tag travels
	// out of band arrives untagged and lands in the port's native VLAN.
	// With RequireVLAN, a received frame whose tag the XDP program could
	// not read is dropped (Stats.RxVLANUnknown) instead of delivered.
	RequireVLAN bool
	// Logger receives the port's rare events: New warns there when the
	// port cannot recover out-of-band VLAN tags (default slog.Default()).
	Logger *slog.Logger
}

// ErrVLANUnsupported is wrapped by the error New returns when
// Config.RequireVLAN is set and the port cannot recover out-of-band VLAN
// tags on this kernel, driver or attach mode. An AF_PACKET port, which
// reads the tag from the packet's auxiliary data, has no such limit.
var ErrVLANUnsupported = errors.New("afxdp: out-of-band VLAN tags cannot be recovered")

// Capabilities says what the port's XDP program can do on its interface.
type Capabilities struct {
	// VLAN is true when the XDP program reads the 802.1Q tag the driver
	// holds out of band (bpf_xdp_metadata_rx_vlan_tag) and Receive puts
	// it in Info.Ieee8021Q. When false, such tags are lost: frames of a
	// VLAN sent that way arrive untagged. Tags inside the frame's bytes
	// are kept either way.
	VLAN bool
	// VLANReason says why VLAN is false, for a log; empty when it is true.
	VLANReason string
}

// Stats are the port's counters. They only grow: the kernel's
// XDP_STATISTICS figures are cumulative over a socket's life, and Stats
// keeps the last ones read after Close.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	// RxChecksumFixed counts received frames whose partial checksum the
	// port completed.
	RxChecksumFixed uint64
	// TxZeroCopy counts frames sent straight from their UMEM frame,
	// TxCopied frames copied into a transmit frame first.
	TxZeroCopy, TxCopied uint64
	// TxCompleted counts completion-ring entries; TxInFlight is the
	// number of frames on a TX ring or in the kernel, not yet completed.
	TxCompleted, TxInFlight uint64
	// TxRefused counts frames Send refused because they are empty or
	// longer than a frame or than the interface's MTU allows (MTU + 18
	// bytes of Ethernet header and 802.1Q tag, as the MTU was at New);
	// the switch drops them as tx-error.
	TxRefused uint64
	// TxErrors counts failed wakeups of the transmit path.
	TxErrors uint64
	// PoolEmpty counts bursts cut short for want of a descriptor: the
	// frames stay on the RX ring until the next Receive.
	PoolEmpty uint64
	// TxWakeups and RxWakeups count the system calls made because the
	// kernel asked to be woken (XDP_RING_NEED_WAKEUP).
	TxWakeups, RxWakeups uint64
	// Bad counts descriptors the kernel returned that name no frame it
	// was given (never expected).
	Bad uint64
	// RxVLANOffloaded counts received frames whose 802.1Q tag the driver
	// held out of band and the port put in Info.Ieee8021Q.
	RxVLANOffloaded uint64
	// RxVLANUnknown counts received frames whose out-of-band tag could not
	// be read: the XDP program wrote no metadata, or the kfunc failed
	// (with another error than "no tag"). They are delivered as their
	// bytes show them, or, with Config.RequireVLAN, dropped and not
	// counted in RxPackets. Only a port with Capabilities().VLAN counts.
	RxVLANUnknown uint64

	// The kernel's XDP_STATISTICS, summed over the port's sockets: frames
	// dropped (most often for want of a fill-ring entry), invalid
	// descriptors, a full RX ring, an empty fill ring, an empty TX ring
	// at a wakeup.
	KernelRxDropped, KernelRxInvalid, KernelTxInvalid uint64
	KernelRxRingFull, KernelFillEmpty, KernelTxEmpty  uint64

	// Queues is the number of sockets. ZeroCopy is true when they are
	// bound in zero-copy mode; DriverMode when the XDP program runs in
	// the driver; VLAN when it recovers out-of-band VLAN tags
	// (Capabilities).
	Queues                     int
	ZeroCopy, DriverMode, VLAN bool
}

// ErrClosed is returned by Send on a closed port.
var ErrClosed = errors.New("afxdp: port closed")

// queue is one socket of the port, bound to one receive queue, with its
// own region of the UMEM slab: RxFrames receive frames, and for the first
// queue the TxFrames transmit frames after them.
type queue struct {
	id     uint32
	x      *xsk
	start  uint64 // index in the slab of the region's first frame
	frames uint64 // frames in the region
	// returned holds the slab indexes of receive frames whose NBLs were
	// released, from any worker; Receive moves them to the fill ring.
	returned *ring.Ring[uint64]
	txDirty  bool // TX descriptors written and not yet published
	kstats   unix.XDPStatistics
	received atomic.Uint64 // frames handed out from this queue's RX ring
}

// Port is an AF_XDP port.
type Port struct {
	cfg     Config
	ifindex int

	slab      *pool.Slab // every queue's UMEM region, one after the other
	frameSize uint64
	shift     uint   // log2(frameSize)
	maxTx     uint64 // the longest frame Send takes
	rxFrames  uint64
	queues    []queue
	prog      *program
	pool      *nbl.Pool
	cache     *nbl.Cache
	zerocopy  bool
	vlanMeta  bool // the XDP program writes the VLAN metadata
	next      int  // the queue Receive starts with

	scratch []uint64
	txFree  []uint32             // free transmit frames of queue 0 (stack of slab indexes)
	txHeld  []*nbl.NetBufferList // per slab frame: its NBL, while sent zero-copy
	held    int                  // NBLs in txHeld
	done    []*nbl.NetBufferList // NBLs whose transmission is finished, for Reclaim
	refused []*nbl.NetBufferList // Send's scratch

	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
	rxFixed, txZeroCopy, txCopied          atomic.Uint64
	txCompleted                            atomic.Uint64
	txInFlight                             atomic.Int64
	txRefused, txErrors, poolEmpty         atomic.Uint64
	txWakeups, rxWakeups, badDescs         atomic.Uint64
	rxVLANOffloaded, rxVLANUnknown         atomic.Uint64

	mu     sync.Mutex // serialises Stats's getsockopt with Close
	closed atomic.Bool
	once   sync.Once
}

var _ nbl.Originator = (*Port)(nil)

func (c *Config) defaults() error {
	if c.Interface == "" {
		return errors.New("afxdp: Config.Interface is required")
	}
	page := unix.Getpagesize()
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.RxFrames == 0 {
		c.RxFrames = 4096
	}
	if c.TxFrames == 0 {
		c.TxFrames = 2048
	}
	if c.RingSize == 0 {
		c.RingSize = 2048
	}
	if c.Burst == 0 {
		c.Burst = 64
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 200 * time.Millisecond
	}
	switch {
	case c.FrameSize < 2048 || c.FrameSize > page || c.FrameSize&(c.FrameSize-1) != 0:
		return fmt.Errorf("afxdp: FrameSize %d must be a power of two from 2048 to the page size %d", c.FrameSize, page)
	case c.RxFrames < 1 || c.TxFrames < 1 || c.RxFrames > 1<<22 || c.TxFrames > 1<<22:
		return fmt.Errorf("afxdp: RxFrames %d and TxFrames %d must be from 1 to 4194304", c.RxFrames, c.TxFrames)
	case c.RingSize < 2 || c.RingSize > 1<<20 || c.RingSize&(c.RingSize-1) != 0:
		return fmt.Errorf("afxdp: RingSize %d must be a power of two from 2 to 1048576", c.RingSize)
	case c.Burst < 1 || c.Burst > 4096:
		return fmt.Errorf("afxdp: Burst %d out of 1-4096", c.Burst)
	case c.NBLs < 0:
		return fmt.Errorf("afxdp: NBLs %d is negative", c.NBLs)
	case c.Mode > ZeroCopy:
		return fmt.Errorf("afxdp: unknown Mode %d", c.Mode)
	case c.Attach > AttachGeneric:
		return fmt.Errorf("afxdp: unknown AttachMode %d", c.Attach)
	case c.CloseTimeout < 0:
		return fmt.Errorf("afxdp: CloseTimeout %v is negative", c.CloseTimeout)
	}
	// Every queue's region must start on a page (XDP_UMEM_REG).
	perPage := page / c.FrameSize
	c.RxFrames = (c.RxFrames + perPage - 1) / perPage * perPage
	c.TxFrames = (c.TxFrames + perPage - 1) / perPage * perPage
	seen := map[int]bool{}
	for _, q := range c.Queues {
		if q < 0 || q >= 1<<16 || seen[q] {
			return fmt.Errorf("afxdp: Queues %v: each must be from 0 to 65535 and listed once", c.Queues)
		}
		seen[q] = true
	}
	return nil
}

// rxQueues lists the interface's receive queues, as sysfs shows them.
func rxQueues(ifname string) ([]int, error) {
	ents, err := os.ReadDir("/sys/class/net/" + ifname + "/queues")
	if err != nil {
		return nil, err
	}
	var qs []int
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "rx-"); ok {
			if q, err := strconv.Atoi(n); err == nil {
				qs = append(qs, q)
			}
		}
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("no receive queues under /sys/class/net/%s/queues", ifname)
	}
	sort.Ints(qs)
	return qs, nil
}

func pow2(n int) uint32 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// New maps the UMEM, opens and binds a socket for each queue, loads the
// XDP program and attaches it to the interface. Errors that mean AF_XDP
// cannot work here wrap ErrUnsupported (see Available); others are
// configuration or interface errors.
//
// New loads the program that recovers out-of-band VLAN tags when the
// kernel, the driver and the attach mode allow it, and the plain redirect
// program otherwise; Capabilities says which, and why. With
// Config.RequireVLAN it fails instead, with an error that wraps
// ErrVLANUnsupported, and leaves the interface as it was.
func New(cfg Config) (*Port, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afxdp: %w", err)
	}
	qids := cfg.Queues
	if len(qids) == 0 {
		if qids, err = rxQueues(cfg.Interface); err != nil {
			return nil, fmt.Errorf("afxdp: %w", err)
		}
	}
	if cfg.NBLs == 0 {
		cfg.NBLs = cfg.RxFrames * len(qids)
	}
	p := &Port{
		cfg:       cfg,
		ifindex:   ifi.Index,
		frameSize: uint64(cfg.FrameSize),
		shift:     uint(bits.TrailingZeros(uint(cfg.FrameSize))),
		rxFrames:  uint64(cfg.RxFrames),
		// The interface's MTU with an Ethernet header and a VLAN tag:
		// the kernel drops longer frames on transmit.
		maxTx: uint64(min(cfg.FrameSize, ifi.MTU+18)),
	}
	fail := func(err error) (*Port, error) {
		p.teardown()
		err = classify(err)
		var ue *UnsupportedError
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("%w (interface %s)", err, cfg.Interface)
		}
		if errors.Is(err, ErrVLANUnsupported) {
			return nil, err // names the interface
		}
		return nil, fmt.Errorf("afxdp: %s: %w", cfg.Interface, err)
	}
	total := cfg.RxFrames*len(qids) + cfg.TxFrames
	p.slab, err = pool.NewSlab(pool.SlabConfig{Frames: total, FrameSize: cfg.FrameSize})
	if err != nil {
		return fail(err)
	}
	if p.slab.Stride() != cfg.FrameSize {
		return fail(fmt.Errorf("slab stride %d is not the frame size %d", p.slab.Stride(), cfg.FrameSize))
	}
	maxQ := 0
	for _, q := range qids {
		maxQ = max(maxQ, q)
	}
	if p.prog, err = loadProgram(maxQ + 1); err != nil {
		return fail(err)
	}
	p.prog.useVLAN(ifi.Index, cfg.Attach)
	if !p.prog.vlan && cfg.RequireVLAN {
		return fail(fmt.Errorf("%w on %s: %w", ErrVLANUnsupported, cfg.Interface, p.prog.noVLAN))
	}
	p.queues = make([]queue, len(qids))
	start := uint64(0)
	for i, qid := range qids {
		q := &p.queues[i]
		q.id = uint32(qid)
		q.start = start
		q.frames = p.rxFrames
		if i == 0 {
			q.frames += uint64(cfg.TxFrames)
		}
		start += q.frames
		umem := p.slab.Bytes()[q.start*p.frameSize : start*p.frameSize]
		xc := xskConfig{
			umem:      umem,
			frameSize: uint32(cfg.FrameSize),
			fillSize:  pow2(cfg.RxFrames),
			compSize:  pow2(int(q.frames)),
			rxSize:    uint32(cfg.RingSize),
			txSize:    uint32(cfg.RingSize),
			ifindex:   ifi.Index,
			queue:     q.id,
			zerocopy:  cfg.Mode == ZeroCopy || (cfg.Mode == Auto && (i == 0 || p.zerocopy)),
			noWakeup:  cfg.NoNeedWakeup,
		}
		q.x, err = openXSK(xc)
		if err != nil && cfg.Mode == Auto && xc.zerocopy {
			// No zero-copy in this driver: copy mode works everywhere.
			xc.zerocopy = false
			q.x, err = openXSK(xc)
		}
		if err != nil {
			return fail(fmt.Errorf("queue %d: %w", qid, err))
		}
		if i == 0 {
			p.zerocopy = q.x.zerocopy
		}
		if err := p.prog.register(q.id, q.x.fd); err != nil {
			return fail(err)
		}
		if q.returned, err = ring.New[uint64](int(pow2(cfg.RxFrames)), ring.MPSC); err != nil {
			return fail(err)
		}
		// Every receive frame starts on the fill ring.
		f := &q.x.fill
		for j := range p.rxFrames {
			f.addrs[f.local&f.mask] = j << p.shift
			f.local++
		}
		f.publishProducer()
	}
	if p.pool, err = nbl.NewPool(nbl.Config{NBLs: cfg.NBLs, NoFrames: true}); err != nil {
		return fail(err)
	}
	if p.cache, err = p.pool.NewCache(min(256, cfg.NBLs)); err != nil {
		return fail(err)
	}
	p.scratch = make([]uint64, cfg.Burst)
	p.txFree = make([]uint32, 0, cfg.TxFrames)
	for i := cfg.TxFrames - 1; i >= 0; i-- {
		p.txFree = append(p.txFree, uint32(cfg.RxFrames+i))
	}
	p.txHeld = make([]*nbl.NetBufferList, total)
	p.done = make([]*nbl.NetBufferList, 0, 2*cfg.RingSize+4*cfg.Burst)
	p.refused = make([]*nbl.NetBufferList, 0, cfg.Burst)
	// Last, so that the first frame redirected finds everything ready.
	if err := p.prog.attach(ifi.Index, cfg.Attach); err != nil {
		return fail(err)
	}
	p.vlanMeta = p.prog.vlan
	if !p.vlanMeta {
		if cfg.RequireVLAN {
			// No frame has been handed out: fail detaches the program.
			return fail(fmt.Errorf("%w on %s: %w", ErrVLANUnsupported, cfg.Interface, p.prog.noVLAN))
		}
		logger := cfg.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Warn("afxdp: VLAN tags the driver holds out of band are lost on this port: their frames arrive untagged (use Config.RequireVLAN or an AF_PACKET port where VLANs matter)",
			"interface", cfg.Interface, "reason", p.prog.noVLAN)
	}
	return p, nil
}

// teardown frees what New made, in reverse order.
func (p *Port) teardown() error {
	var errs []error
	if p.prog != nil {
		errs = append(errs, p.prog.close())
	}
	for i := range p.queues {
		if x := p.queues[i].x; x != nil {
			errs = append(errs, x.close())
		}
	}
	if p.pool != nil {
		errs = append(errs, p.pool.Close())
	}
	if p.slab != nil {
		errs = append(errs, p.slab.Close())
	}
	return errors.Join(errs...)
}

// Pool returns the pool of the port's descriptors.
func (p *Port) Pool() *nbl.Pool { return p.pool }

// Cache returns the port's descriptor cache; the worker serving the port
// releases into it.
func (p *Port) Cache() *nbl.Cache { return p.cache }

// FDs returns the sockets, one per queue, for poll(2).
func (p *Port) FDs() []int {
	fds := make([]int, len(p.queues))
	for i := range p.queues {
		fds[i] = p.queues[i].x.fd
	}
	return fds
}

// Queues returns the receive queues the port serves.
func (p *Port) Queues() []int {
	qs := make([]int, len(p.queues))
	for i := range p.queues {
		qs[i] = int(p.queues[i].id)
	}
	return qs
}

// RxByQueue returns the frames received on each queue, in the order of
// Queues.
func (p *Port) RxByQueue() []uint64 {
	n := make([]uint64, len(p.queues))
	for i := range p.queues {
		n[i] = p.queues[i].received.Load()
	}
	return n
}

// Mode returns Copy or ZeroCopy: the mode the sockets are bound in.
func (p *Port) Mode() Mode {
	if p.zerocopy {
		return ZeroCopy
	}
	return Copy
}

// AttachMode returns AttachDriver or AttachGeneric: where the XDP program
// runs.
func (p *Port) AttachMode() AttachMode {
	if p.prog.driver {
		return AttachDriver
	}
	return AttachGeneric
}

// Capabilities reports what the port's XDP program does on this kernel and
// driver. A port without VLAN loses out-of-band 802.1Q tags: a daemon that
// switches VLANs should log VLANReason and use an AF_PACKET port, or open
// the port with Config.RequireVLAN.
func (p *Port) Capabilities() Capabilities {
	c := Capabilities{VLAN: p.prog.vlan}
	if p.prog.noVLAN != nil {
		c.VLANReason = p.prog.noVLAN.Error()
	}
	return c
}

// Stats returns the port's counters, with the kernel's XDP_STATISTICS.
func (p *Port) Stats() Stats {
	p.mu.Lock()
	if !p.closed.Load() {
		p.readKernelStats()
	}
	var k unix.XDPStatistics
	for i := range p.queues {
		q := &p.queues[i].kstats
		k.Rx_dropped += q.Rx_dropped
		k.Rx_invalid_descs += q.Rx_invalid_descs
		k.Tx_invalid_descs += q.Tx_invalid_descs
		k.Rx_ring_full += q.Rx_ring_full
		k.Rx_fill_ring_empty_descs += q.Rx_fill_ring_empty_descs
		k.Tx_ring_empty_descs += q.Tx_ring_empty_descs
	}
	p.mu.Unlock()
	return Stats{
		RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
		TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
		RxChecksumFixed: p.rxFixed.Load(),
		TxZeroCopy:      p.txZeroCopy.Load(), TxCopied: p.txCopied.Load(),
		TxCompleted: p.txCompleted.Load(), TxInFlight: uint64(max(0, p.txInFlight.Load())),
		TxRefused: p.txRefused.Load(), TxErrors: p.txErrors.Load(), PoolEmpty: p.poolEmpty.Load(),
		TxWakeups: p.txWakeups.Load(), RxWakeups: p.rxWakeups.Load(), Bad: p.badDescs.Load(),
		RxVLANOffloaded: p.rxVLANOffloaded.Load(), RxVLANUnknown: p.rxVLANUnknown.Load(),
		KernelRxDropped: k.Rx_dropped, KernelRxInvalid: k.Rx_invalid_descs, KernelTxInvalid: k.Tx_invalid_descs,
		KernelRxRingFull: k.Rx_ring_full, KernelFillEmpty: k.Rx_fill_ring_empty_descs, KernelTxEmpty: k.Tx_ring_empty_descs,
		Queues: len(p.queues), ZeroCopy: p.zerocopy, DriverMode: p.prog.driver, VLAN: p.prog.vlan,
	}
}

// readKernelStats keeps each socket's figures where they only grow; p.mu
// is held.
func (p *Port) readKernelStats() {
	for i := range p.queues {
		q := &p.queues[i]
		st, err := q.x.statistics()
		if err != nil {
			continue
		}
		k := &q.kstats
		k.Rx_dropped = max(k.Rx_dropped, st.Rx_dropped)
		k.Rx_invalid_descs = max(k.Rx_invalid_descs, st.Rx_invalid_descs)
		k.Tx_invalid_descs = max(k.Tx_invalid_descs, st.Tx_invalid_descs)
		k.Rx_ring_full = max(k.Rx_ring_full, st.Rx_ring_full)
		k.Rx_fill_ring_empty_descs = max(k.Rx_fill_ring_empty_descs, st.Rx_fill_ring_empty_descs)
		k.Tx_ring_empty_descs = max(k.Tx_ring_empty_descs, st.Tx_ring_empty_descs)
	}
}

// Close detaches the XDP program, waits up to Config.CloseTimeout for the
// kernel to complete frames sent zero-copy, closes the sockets and frees
// the UMEM. The switch calls it after its workers stopped and reclaimed
// what they could; NBLs the port still holds then (sent zero-copy and not
// completed in time, or finished and not reclaimed) are released here, as
// the switch would have released them. Close must not run at the same time
// as Receive, Send or Reclaim. It is idempotent: later calls return nil.
func (p *Port) Close() error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.readKernelStats()
		p.closed.Store(true)
		var errs []error
		errs = append(errs, p.prog.close())
		deadline := time.Now().Add(p.cfg.CloseTimeout)
		for p.held > 0 {
			for i := range p.queues {
				_ = p.queues[i].x.kick()
			}
			p.reap()
			if p.held == 0 || !time.Now().Before(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		p.reap()
		for i := range p.queues {
			errs = append(errs, p.queues[i].x.close())
		}
		// The sockets are gone and their transmissions with them.
		for i, l := range p.txHeld {
			if l != nil {
				p.txHeld[i] = nil
				p.held--
				p.done = append(p.done, l)
			}
		}
		injected := 0
		for _, l := range p.done {
			if l.Completion.Owner != nil {
				injected++ // only the switch can complete it: left as it is
				continue
			}
			l.Pool().Release(l)
		}
		clear(p.done)
		p.done = p.done[:0]
		if injected > 0 {
			errs = append(errs, fmt.Errorf("afxdp: %s: %d injected NBLs were still held at close and are not completed", p.cfg.Interface, injected))
		}
		p.cache.Flush()
		if !p.pool.Full() {
			// NBLs still point into the UMEM: keep it mapped rather than
			// let a late reader fault.
			errs = append(errs, fmt.Errorf("afxdp: %s: %d descriptors still in use at close; the UMEM stays mapped", p.cfg.Interface, p.pool.InUse()))
		} else {
			errs = append(errs, p.pool.Close(), p.slab.Close())
		}
		err = errors.Join(errs...)
	})
	return err
}
