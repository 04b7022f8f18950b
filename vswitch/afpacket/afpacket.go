//go:build linux

// Package afpacket is a switch port on a real Linux interface through an
// AF_PACKET socket: a TPACKET_V3 receive ring mapped into memory, with NBLs
// that point straight into the ring's blocks (no copy), and transmission in
// bursts with sendmmsg.
//
// The socket uses PACKET_VNET_HDR, so large GSO/GRO frames pass through
// whole and partially computed checksums (CHECKSUM_PARTIAL, which veth and
// TCP produce by default) are handed on for the kernel to complete: TCP
// works across the switch with the hosts' offloads left on. The kernel strips
// the outer 802.1Q tag on receive; it travels in the NBL's
// Info.Ieee8021Q, and the switch puts it back where a port wants it.
//
// A ring block goes back to the kernel when every NBL that points into it
// has been released. A block's frames wait at most the retire timeout
// (Config.RetireTimeout, 1 ms by default) before the kernel hands the block
// over, which bounds the latency this port adds at low rates.
//
// # Frames held for long
//
// The kernel fills the ring's blocks in order, so one frame held for long
// (a callout that absorbs frames and keeps them) would stop the whole ring
// once the kernel comes round to its block. When the ring runs short of
// blocks for the kernel (Config.LowWater), or a block has been held longer
// than Config.MaxHold, the port copies the frames still held in the oldest
// block out and gives the block back: see copyout.go for how, and
// Stats.CopiedOut for the count.
//
// A copy-out keeps every held NBL as it is: same descriptor, same MDL, same
// addresses. The pages under the held frames are replaced in one step
// (mremap) by copies from the port's copy pool, so a holder, its clones, a
// transmission in progress and any slice taken earlier with Data or a
// decoder all go on reading the same bytes at the same place. Reading a held
// frame is therefore always safe. Writing into one is safe from the
// worker that serves the port; a write from another goroutine at the very
// moment its block is copied out may be lost (it lands in the page being
// replaced). Holders that keep frames for long and change them should do so
// before they park them, or keep a copy, as WFP advises for long holds.
package afpacket

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/nbl"
)

// Config describes a port.
type Config struct {
	// Interface is the name of the interface to bind to. Required.
	Interface string
	// BlockSize and Blocks size the receive ring (defaults 256 KiB and 32).
	// A block must hold the largest frame: with GSO that is 64 KiB plus
	// headers.
	BlockSize int
	Blocks    int
	// RetireTimeout is how long the kernel keeps a partly filled block
	// before handing it over (default 1 ms, the smallest it takes).
	RetireTimeout time.Duration
	// Burst is the most frames one Send passes to sendmmsg (default 64).
	Burst int
	// NBLs is the number of descriptors for received frames (default
	// 8192).
	NBLs int
	// NoVnetHdr turns PACKET_VNET_HDR off: frames larger than the MTU are
	// then cut, and partial checksums reach the other side unfinished.
	NoVnetHdr bool
	// FanoutGroup, if not 0, joins the socket to a PACKET_FANOUT group (by
	// hash) so that several ports on one interface share its traffic.
	FanoutGroup uint16
	// CopyPages is the size, in pages, of the pool that frames held for
	// long are copied out to (default a quarter of the ring; -1 turns
	// copy-out off, and then held frames keep their blocks from the
	// kernel).
	CopyPages int
	// LowWater: when no more than this many blocks are left for the kernel
	// (the ring less the blocks handed out and not all returned, and less
	// the filled blocks not yet received), the oldest held block is copied
	// out (default Blocks/4, at least 1).
	LowWater int
	// MaxHold, if not 0, also copies a block out once its frames have been
	// held this long after it was received, however many blocks are free.
	MaxHold time.Duration
}

// Stats are the port's counters; kernel figures accumulate across reads.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	TxErrors           uint64
	KernelPackets      uint64 // PACKET_STATISTICS tp_packets
	KernelDrops        uint64 // tp_drops: frames lost because the ring was full
	KernelFreezes      uint64 // tp_freeze_q_cnt
	PoolEmpty          uint64 // frames left in the ring for want of a descriptor
	// CopiedOut counts ring blocks given back to the kernel early by
	// copying the frames still held in them out; CopiedFrames counts those
	// frames. CopyOutFailed counts tries that failed (the copy pool or the
	// records were short, or a mapping failed; the port tries again after
	// a millisecond, or sooner when a copy or the oldest block frees);
	// CopyPagesInUse is the copy pool's pages holding frames now. Close
	// reports copy pages still in use as an error.
	CopiedOut, CopiedFrames uint64
	CopyOutFailed           uint64
	CopyPagesInUse          int
}

// Port is an AF_PACKET port.
type Port struct {
	cfg     Config
	fd      int
	ifindex int
	pool    *nbl.Pool
	cache   *nbl.Cache
	vnet    bool
	hdrLen  int
	page    int // the page size

	// ctl maps the whole ring and is never changed: block headers, packet
	// headers and block status are read and written through it. NBLs
	// point into views instead (block.buf), which a copy-out may change.
	ctl []byte

	// blocks holds the records of walks and copies: one is bound to each
	// ring block (cur), the rest are free or hold copied frames.
	blocks []block
	cur    []int32 // record bound to each ring block
	free   []int32 // free records (the receiving goroutine's)

	// receive cursor
	bi      int    // ring block being walked, or next to walk
	left    uint32 // packets of it not yet handed out
	off     uint32 // offset of the next packet in it
	ord     uint32 // ordinal of the next packet in it
	started bool   // the block's walk has begun (and holds it)
	// walked blocks, handed out and not all back: tail, tail+1, ...,
	// tail+walked-1 in ring order (bi is tail+walked when not started).
	tail, walked int

	copyState

	// transmit
	msgs  []mmsghdr
	iovs  []unix.Iovec
	vhdrs [][virtioNetHdrLen]byte
	done  []*nbl.NetBufferList

	rxPackets, rxBytes, txPackets, txBytes, txErrors, poolEmpty atomic.Uint64
	kpackets, kdrops, kfreezes                                  atomic.Uint64
	copiedOut, copiedFrames, copyFailed                         atomic.Uint64
	copyPagesInUse                                              atomic.Int64
	closeOnce                                                   sync.Once
	closed                                                      atomic.Bool
}

// block is the record of one walk of a ring block: the NBLs of its frames
// carry the record's index and the frame's ordinal (OriginatorContext), and
// come back to it. After a copy-out the record stays with the copied
// frames and the ring block gets a fresh record.
type block struct {
	// holds counts the frames handed out and not back, plus one while the
	// block is walked and one while it is being copied out.
	holds atomic.Int32
	// copied says the ring block went back to the kernel and the record's
	// frames live in copies; done is set by whoever dropped the last hold
	// of such a record, when it no longer touches it.
	copied, done atomic.Bool
	// returned has a bit per frame of the walk, set when it comes back.
	returned []atomic.Uint64
	ring     int32 // ring block bound to (for a record not copied)

	// The receiving goroutine's alone:
	mixed    bool    // a copy-out failed after moving pages (pages >= 0) into view
	view     uintptr // the block's memory as its NBLs see it
	buf      []byte  // view as a slice
	frames   uint32  // frames of the walk
	walkedAt int64   // when the walk ended (ns since the port opened)
	pages    []int32 // copy pool page under each page of the view, -1 if none
}

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

const virtioNetHdrLen = 10

// maxIov is the most iovecs one frame takes: the virtio header and up to
// seven segments of data (a frame of more is sent cut short and counted).
const maxIov = 8

// virtio_net_hdr, as the kernel reads and writes it with PACKET_VNET_HDR.
type virtioNetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ErrPermission says the process lacks CAP_NET_RAW.
var ErrPermission = errors.New("afpacket: opening a packet socket needs CAP_NET_RAW (run as root)")

// New opens the socket, maps its ring and binds it to the interface.
func New(cfg Config) (*Port, error) {
	if cfg.Interface == "" {
		return nil, errors.New("afpacket: Config.Interface is required")
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 256 << 10
	}
	if cfg.Blocks == 0 {
		cfg.Blocks = 32
	}
	if cfg.RetireTimeout == 0 {
		cfg.RetireTimeout = time.Millisecond
	}
	if cfg.Burst == 0 {
		cfg.Burst = 64
	}
	if cfg.NBLs == 0 {
		cfg.NBLs = 8192
	}
	if cfg.BlockSize <= 0 || cfg.BlockSize%unix.Getpagesize() != 0 || cfg.BlockSize < 64<<10+4096 && !cfg.NoVnetHdr {
		return nil, fmt.Errorf("afpacket: BlockSize %d must be a multiple of the page size and hold a 64 KiB GSO frame", cfg.BlockSize)
	}
	if cfg.Blocks < 2 || cfg.Blocks > 1<<16 {
		return nil, fmt.Errorf("afpacket: Blocks must be between 2 and 65536, got %d", cfg.Blocks)
	}
	if cfg.CopyPages == 0 {
		cfg.CopyPages = max(1, cfg.BlockSize*cfg.Blocks/4/unix.Getpagesize())
	}
	if cfg.LowWater < 0 || cfg.LowWater >= cfg.Blocks || cfg.MaxHold < 0 {
		return nil, fmt.Errorf("afpacket: LowWater must be between 0 and Blocks-1 (got %d) and MaxHold not negative", cfg.LowWater)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afpacket: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, ErrPermission
		}
		return nil, fmt.Errorf("afpacket: socket: %w", err)
	}
	p := &Port{cfg: cfg, fd: fd, ifindex: ifi.Index, vnet: !cfg.NoVnetHdr, page: unix.Getpagesize()}
	fail := func(what string, err error) (*Port, error) {
		p.unmapAll()
		unix.Close(fd)
		return nil, fmt.Errorf("afpacket: %s on %s: %w", what, cfg.Interface, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fail("PACKET_VERSION", err)
	}
	if p.vnet {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fail("PACKET_VNET_HDR", err)
		}
	}
	// Our own transmissions must not come back to us.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.Blocks),
		Frame_size:     2048,
		Frame_nr:       uint32(cfg.BlockSize / 2048 * cfg.Blocks),
		Retire_blk_tov: uint32(max(1, cfg.RetireTimeout/time.Millisecond)),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fail("PACKET_RX_RING", err)
	}
	// Two mappings of the ring: the control one, and the first views of the
	// blocks, which NBLs point into.
	ctl, err := mmapRaw(0, p.ringSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE, fd)
	if err != nil {
		return fail("mmap", err)
	}
	p.ctl, p.ctlAddr = bytesAt(ctl, p.ringSize()), ctl
	views, err := mmapRaw(0, p.ringSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE, fd)
	if err != nil {
		return fail("mmap", err)
	}
	if err := p.initBlocks(views); err != nil {
		return fail("copy pool", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if cfg.FanoutGroup != 0 {
		arg := int(cfg.FanoutGroup) | unix.PACKET_FANOUT_HASH<<16
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
			return fail("PACKET_FANOUT", err)
		}
	}
	p.pool, err = nbl.NewPool(nbl.Config{NBLs: cfg.NBLs, NoFrames: true})
	if err != nil {
		return fail("pool", err)
	}
	if p.cache, err = p.pool.NewCache(256); err != nil {
		return fail("pool cache", err)
	}
	p.msgs = make([]mmsghdr, cfg.Burst)
	p.iovs = make([]unix.Iovec, maxIov*cfg.Burst)
	p.vhdrs = make([][virtioNetHdrLen]byte, cfg.Burst)
	p.done = make([]*nbl.NetBufferList, 0, cfg.Burst*4)
	if p.vnet {
		p.hdrLen = virtioNetHdrLen
	}
	return p, nil
}

// Pool returns the pool of the port's descriptors.
func (p *Port) Pool() *nbl.Pool { return p.pool }

// Cache returns the port's descriptor cache; the worker serving the port
// releases into it.
func (p *Port) Cache() *nbl.Cache { return p.cache }

// FD returns the socket, for poll(2).
func (p *Port) FD() int { return p.fd }

func (p *Port) ringSize() int { return p.cfg.BlockSize * p.cfg.Blocks }

func (p *Port) blockHdr(i int) *unix.TpacketHdrV1 {
	// The block descriptor's union starts 8 bytes in (version, offset_to_priv).
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&p.ctl[i*p.cfg.BlockSize+8]))
}

func (p *Port) blockStatus(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&p.ctl[i*p.cfg.BlockSize+8]))
}

// Receive implements vswitch.Port: it hands out the frames of the blocks the
// kernel has filled, in order, as NBLs over the ring's memory.
func (p *Port) Receive(out []*nbl.NetBufferList) (int, error) {
	if p.closed.Load() {
		return 0, nil
	}
	p.maintain()
	n := 0
	bs := p.cfg.BlockSize
	for n < len(out) {
		if !p.started {
			if p.walked == p.cfg.Blocks {
				break // every block is out and held: wait for returns or a copy-out
			}
			// Pairs with the kernel's release of the block to user space.
			if atomic.LoadUint32(p.blockStatus(p.bi))&unix.TP_STATUS_USER == 0 {
				break
			}
			r := &p.blocks[p.cur[p.bi]]
			if r.mixed && !p.cleanView(r, p.bi) {
				break // no view all ring for the walk yet: the next Receive tries again
			}
			h := p.blockHdr(p.bi)
			p.left, p.off, p.ord, p.started = h.Num_pkts, h.Offset_to_first_pkt, 0, true
			r.frames = h.Num_pkts
			for i := range r.returned[:min(len(r.returned), (int(h.Num_pkts)+63)/64)] {
				r.returned[i].Store(0)
			}
			r.holds.Store(1) // the walk's own hold
		}
		if p.left == 0 {
			p.finishWalk()
			continue
		}
		ri := p.cur[p.bi]
		r := &p.blocks[ri]
		base := p.bi * bs
		f, ok := p.frameAt(p.off)
		if !ok {
			// A header the kernel did not write as it should: leave the
			// rest of the block.
			p.left = 0
			continue
		}
		hdr := (*unix.Tpacket3Hdr)(unsafe.Pointer(&p.ctl[base+int(p.off)]))
		l, err := p.cache.AllocateAround(r.buf[f.front:f.end:f.end], f.mac-f.front, f.end-f.mac)
		if err != nil {
			p.poolEmpty.Add(1)
			break
		}
		if p.vnet && f.mac-p.hdrLen >= int(p.off) {
			p.readVnet(l, p.ctl[base+f.mac-p.hdrLen:base+f.mac])
		}
		if hdr.Status&unix.TP_STATUS_VLAN_VALID != 0 {
			tci := uint16(hdr.Hv1.Vlan_tci)
			tpid := hdr.Hv1.Vlan_tpid
			if tpid == 0 {
				tpid = 0x8100
			}
			l.Info.Ieee8021Q = nbl.Ieee8021QInfo{VlanID: tci & 0xFFF, Priority: uint8(tci >> 13), CFI: tci&0x1000 != 0, Present: true, TPID: tpid}
		}
		l.Info.Timestamp = int64(hdr.Sec)*1e9 + int64(hdr.Nsec)
		l.Info.Hash = hdr.Hv1.Rxhash
		l.Originator = p
		l.OriginatorContext = uint64(ri)<<32 | uint64(p.ord)
		r.holds.Add(1)
		out[n] = l
		n++
		p.rxBytes.Add(uint64(f.end - f.mac))
		p.left--
		p.ord++
		p.off += hdr.Next_offset
		if p.left == 0 {
			p.finishWalk()
		}
	}
	p.rxPackets.Add(uint64(n))
	return n, nil
}

// frame is where one packet of a block lies, in offsets from the block's
// start: the NBL describes [front, end) with its data from mac on.
type frame struct{ front, mac, end int }

// frameAt locates the packet whose tpacket3 header is off bytes into the
// block being walked, checking that the kernel's offsets stay inside the
// block.
func (p *Port) frameAt(off uint32) (frame, bool) { return p.frameIn(p.bi, off) }

// frameIn is frameAt for ring block bi.
func (p *Port) frameIn(bi int, off uint32) (frame, bool) {
	bs := p.cfg.BlockSize
	const hsz = int(unsafe.Sizeof(unix.Tpacket3Hdr{}))
	start := int(off)
	if start < 0 || start+hsz > bs {
		return frame{}, false
	}
	hdr := (*unix.Tpacket3Hdr)(unsafe.Pointer(&p.ctl[bi*bs+start]))
	mac := start + int(hdr.Mac)
	end := mac + int(hdr.Snaplen)
	if mac < start+hsz || end > bs || end < mac {
		return frame{}, false
	}
	// Backfill: the room between the tpacket header and the frame (the
	// sockaddr_ll and the virtio header, both read already) is free for a
	// tag or a header to be prepended.
	front := start + hsz
	if p.vnet {
		front = min(front, mac-p.hdrLen)
	}
	front = max(front, start)
	return frame{front: front, mac: mac, end: end}, true
}

// finishWalk drops the walk's hold on the current block and moves on.
func (p *Port) finishWalk() {
	r := &p.blocks[p.cur[p.bi]]
	if p.cfg.MaxHold > 0 {
		r.walkedAt = int64(time.Since(p.epoch))
	}
	p.walked++
	p.started = false
	p.bi = (p.bi + 1) % p.cfg.Blocks
	p.drop(r)
}

// drop drops one hold on a record. The last hold of a record still bound
// to its ring block gives the block back to the kernel; the last hold of
// copied frames leaves their pages for the receiving goroutine to take
// back (maintain).
func (p *Port) drop(r *block) {
	if r.holds.Add(-1) != 0 {
		return
	}
	if r.copied.Load() {
		r.done.Store(true) // the last touch of r: it may be reused from here
		p.copiesDone.Add(1)
		return
	}
	if p.closed.Load() {
		return // the ring is gone (a frame released after Close)
	}
	// Pairs with the kernel's read of the status before it refills the
	// block: every NBL's use of the block happened before.
	atomic.StoreUint32(p.blockStatus(int(r.ring)), unix.TP_STATUS_KERNEL)
}

// ReturnNetBufferList implements nbl.Originator: a frame of the ring is
// done with. It may run on any worker.
func (p *Port) ReturnNetBufferList(l *nbl.NetBufferList) {
	c := l.OriginatorContext
	ri := int(c >> 32)
	if ri >= len(p.blocks) {
		return // not one of ours; cannot happen for NBLs this port made
	}
	r := &p.blocks[ri]
	if ord := uint32(c); int(ord>>6) < len(r.returned) {
		r.returned[ord>>6].Or(1 << (ord & 63))
	}
	p.drop(r)
}

func (p *Port) readVnet(l *nbl.NetBufferList, b []byte) {
	h := virtioNetHdr{flags: b[0], gsoType: b[1],
		hdrLen:     uint16(b[2]) | uint16(b[3])<<8,
		gsoSize:    uint16(b[4]) | uint16(b[5])<<8,
		csumStart:  uint16(b[6]) | uint16(b[7])<<8,
		csumOffset: uint16(b[8]) | uint16(b[9])<<8}
	if h.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
		l.Info.Checksum |= nbl.ChecksumPartial
		l.Info.CsumStart, l.Info.CsumOffset = h.csumStart, h.csumOffset
	}
	if h.flags&unix.VIRTIO_NET_HDR_F_DATA_VALID != 0 {
		l.Info.Checksum |= nbl.ChecksumUnnecessary
	}
	if h.gsoType != unix.VIRTIO_NET_HDR_GSO_NONE {
		l.Info.GSOType, l.Info.GSOSize = h.gsoType, h.gsoSize
	}
}

func writeVnet(b *[virtioNetHdrLen]byte, l *nbl.NetBufferList) {
	*b = [virtioNetHdrLen]byte{}
	i := &l.Info
	if i.Checksum&nbl.ChecksumPartial != 0 {
		b[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
		b[6], b[7] = byte(i.CsumStart), byte(i.CsumStart>>8)
		b[8], b[9] = byte(i.CsumOffset), byte(i.CsumOffset>>8)
	}
	if i.GSOType != 0 {
		b[1] = i.GSOType
		b[4], b[5] = byte(i.GSOSize), byte(i.GSOSize>>8)
		// hdr_len: the kernel recomputes it; a safe upper bound is enough.
		b[2], b[3] = byte(i.CsumStart+i.CsumOffset+2), byte((i.CsumStart+i.CsumOffset+2)>>8)
	}
}

// Send implements vswitch.Port: one sendmmsg for up to Burst frames. The
// kernel copies the frames, so they are finished when it returns.
func (p *Port) Send(in []*nbl.NetBufferList) (int, error) {
	total := 0
	for len(in) > 0 {
		k := min(len(in), len(p.msgs))
		for i, l := range in[:k] {
			iov := p.iovs[i*maxIov : (i+1)*maxIov]
			used := 0
			if p.vnet {
				writeVnet(&p.vhdrs[i], l)
				iov[0] = unix.Iovec{Base: &p.vhdrs[i][0]}
				iov[0].SetLen(virtioNetHdrLen)
				used = 1
			}
			// One iovec per segment of the data: the kernel gathers them.
			nb := l.FirstNetBuffer()
			left := nb.DataLength()
			off := nb.CurrentMdlOffset()
			for m := nb.CurrentMdl(); m != nil && left > 0 && used < maxIov; m = m.Next() {
				seg := m.Bytes()[off:]
				off = 0
				if len(seg) > left {
					seg = seg[:left]
				}
				if len(seg) == 0 {
					continue
				}
				iov[used] = unix.Iovec{Base: unsafe.SliceData(seg)}
				iov[used].SetLen(len(seg))
				used++
				left -= len(seg)
			}
			m := &p.msgs[i]
			m.hdr = unix.Msghdr{Iov: &iov[0]}
			m.hdr.SetIovlen(used)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msgs[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		runtime.KeepAlive(in)
		if errno != 0 {
			if errno == unix.EAGAIN || errno == unix.ENOBUFS {
				return total, nil // the rest stay the caller's; it counts them
			}
			p.txErrors.Add(1)
			return total, fmt.Errorf("afpacket: sendmmsg on %s: %w", p.cfg.Interface, errno)
		}
		sent := int(r)
		var bytes uint64
		for _, l := range in[:sent] {
			bytes += uint64(l.FirstNetBuffer().DataLength())
		}
		p.done = append(p.done, in[:sent]...)
		p.txPackets.Add(uint64(sent))
		p.txBytes.Add(bytes)
		total += sent
		if sent < k {
			return total, nil
		}
		in = in[k:]
	}
	return total, nil
}

// Reclaim implements vswitch.Port. It also takes back the pages of copies
// whose frames all came back: a switch that stopped receiving from the port
// still reclaims.
func (p *Port) Reclaim(out []*nbl.NetBufferList) int {
	if !p.closed.Load() {
		p.takeBackCopies()
	}
	n := copy(out, p.done)
	rest := copy(p.done, p.done[n:])
	clear(p.done[rest:])
	p.done = p.done[:rest]
	return n
}

// Stats returns the port's counters, reading the kernel's PACKET_STATISTICS
// (which resets on read) into running totals.
func (p *Port) Stats() Stats {
	if !p.closed.Load() {
		if st, err := unix.GetsockoptTpacketStatsV3(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			p.kpackets.Add(uint64(st.Packets))
			p.kdrops.Add(uint64(st.Drops))
			p.kfreezes.Add(uint64(st.Freeze_q_cnt))
		}
	}
	return Stats{
		RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
		TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(), TxErrors: p.txErrors.Load(),
		KernelPackets: p.kpackets.Load(), KernelDrops: p.kdrops.Load(), KernelFreezes: p.kfreezes.Load(),
		PoolEmpty: p.poolEmpty.Load(),
		CopiedOut: p.copiedOut.Load(), CopiedFrames: p.copiedFrames.Load(), CopyOutFailed: p.copyFailed.Load(),
		CopyPagesInUse: int(p.copyPagesInUse.Load()),
	}
}

// Close closes the socket and unmaps the ring. The switch calls it after
// every frame was released, from no goroutine that still receives; Close
// takes back the pages of the copies whose frames came back since the last
// Receive, and reports as errors the descriptors and the copy pages still
// in use (frames not returned).
func (p *Port) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.Stats()
		p.closeCopies()
		p.closed.Store(true)
		p.cache.Flush()
		if !p.pool.Full() {
			err = fmt.Errorf("afpacket: %s: %d descriptors still in use at close", p.cfg.Interface, p.pool.InUse())
		}
		err = errors.Join(err, p.copyPoolLeak(), p.unmapAll(), unix.Close(p.fd))
	})
	return err
}
