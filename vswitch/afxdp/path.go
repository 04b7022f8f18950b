//go:build linux

package afxdp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/nbl"
)

// The packet path: Receive, Send and Reclaim run on the one worker that
// serves the port; ReturnNetBufferList runs on any worker.

// queueOf returns the queue whose UMEM region holds slab frame g.
func (p *Port) queueOf(g uint64) int {
	first := p.queues[0].frames
	if g < first {
		return 0
	}
	return 1 + int((g-first)/p.rxFrames)
}

// refill moves the frames whose NBLs were released to their fill rings, in
// bursts, and wakes the driver if it asked.
func (p *Port) refill(q *queue) {
	f := &q.x.fill
	start := f.local
	for {
		room := min(int(f.free()), len(p.scratch))
		if room == 0 {
			break
		}
		n := q.returned.DequeueBurst(p.scratch[:room])
		if n == 0 {
			break
		}
		for _, g := range p.scratch[:n] {
			if p.vlanMeta {
				// No metadata word survives into the frame's next use:
				// only the XDP program can write one there.
				clear(p.slab.Frame(int(g))[rxHeadroom-metaSize : rxHeadroom-metaSize+4])
			}
			f.addrs[f.local&f.mask] = (g - q.start) << p.shift
			f.local++
		}
		if n < room {
			break
		}
	}
	if f.local != start {
		f.publishProducer()
		if f.needWakeup() {
			q.x.wakeRX()
			p.rxWakeups.Add(1)
		}
	}
}

// rxHeadroom is where the kernel puts a received frame in its UMEM frame
// (XDP_PACKET_HEADROOM, the socket's UMEM has no headroom of its own).
const rxHeadroom = 256

// vlanTag reads the VLAN metadata the XDP program wrote in front of a
// received frame that starts at off in its UMEM frame. ok is false when
// there is none, or the kfunc failed: the tag is unknown.
func vlanTag(frame []byte, off uint64) (tag nbl.Ieee8021QInfo, ok bool) {
	if off < metaSize {
		return tag, false
	}
	m := frame[off-metaSize : off]
	switch binary.NativeEndian.Uint32(m) {
	case metaNoTag:
		return tag, true
	case metaTag:
		tci := binary.NativeEndian.Uint16(m[6:])
		tpid := binary.BigEndian.Uint16(m[4:])
		if tpid == 0 {
			tpid = 0x8100
		}
		return nbl.Ieee8021QInfo{VlanID: tci & 0xFFF, Priority: uint8(tci >> 13), CFI: tci&0x1000 != 0, Present: true, TPID: tpid}, true
	}
	return tag, false
}

// Receive implements vswitch.Port: it hands out the frames of the RX rings
// as NBLs over their UMEM frames, with the XDP headroom in front of each
// as backfill. Queues take turns at being first. With the VLAN program, a
// tag the driver held out of band goes into Info.Ieee8021Q, as an
// AF_PACKET port does with tp_vlan_tci; a frame whose tag is unknown is
// counted, and dropped with Config.RequireVLAN.
func (p *Port) Receive(out []*nbl.NetBufferList) (int, error) {
	if p.closed.Load() {
		return 0, nil
	}
	n := 0
	var bytes, offloaded, unknown uint64
	nq := len(p.queues)
	first := p.next
	p.next++
	if p.next == nq {
		p.next = 0
	}
	for k := 0; k < nq && n < len(out); k++ {
		qi := first + k
		if qi >= nq {
			qi -= nq
		}
		q := &p.queues[qi]
		p.refill(q)
		r := &q.x.rx
		avail := min(int(r.ready()), len(out)-n)
		if avail == 0 {
			continue
		}
		took, used := 0, 0
		for range avail {
			d := r.descs[r.local&r.mask]
			local := d.Addr >> p.shift
			off := d.Addr & (p.frameSize - 1)
			if local >= p.rxFrames || off+uint64(d.Len) > p.frameSize {
				// Not one of the frames given to the kernel: it
				// validates what it writes, so this does not happen.
				p.badDescs.Add(1)
				r.local++
				used++
				continue
			}
			g := q.start + local
			frame := p.slab.Frame(int(g))
			var tag nbl.Ieee8021QInfo
			if p.vlanMeta {
				var ok bool
				if tag, ok = vlanTag(frame, off); !ok {
					unknown++
					if p.cfg.RequireVLAN {
						// Its VLAN is unknown: back to the fill ring
						// at the next refill, never delivered.
						if !q.returned.Enqueue(g) {
							p.badDescs.Add(1)
						}
						r.local++
						used++
						continue
					}
				} else if tag.Present {
					offloaded++
				}
			}
			l, err := p.cache.AllocateAround(frame[:off+uint64(d.Len)], int(off), int(d.Len))
			if err != nil {
				p.poolEmpty.Add(1)
				break
			}
			if !p.cfg.NoChecksumFix && fixPartialChecksum(frame[off:off+uint64(d.Len)]) {
				p.rxFixed.Add(1)
			}
			l.Info.Ieee8021Q = tag
			l.Originator = p
			l.OriginatorContext = g
			out[n] = l
			n++
			took++
			used++
			bytes += uint64(d.Len)
			r.local++
		}
		r.publishConsumer()
		q.received.Add(uint64(took))
		if used < avail {
			break // the pool ran dry
		}
	}
	if n > 0 {
		p.rxPackets.Add(uint64(n))
		p.rxBytes.Add(bytes)
	}
	if offloaded > 0 {
		p.rxVLANOffloaded.Add(offloaded)
	}
	if unknown > 0 {
		p.rxVLANUnknown.Add(unknown)
	}
	return n, nil
}

// ReturnNetBufferList implements nbl.Originator: a received frame is done
// with, and its UMEM frame goes back to its fill ring at the next Receive.
// It may run on any worker.
func (p *Port) ReturnNetBufferList(l *nbl.NetBufferList) {
	g := l.OriginatorContext
	if !p.queues[p.queueOf(g)].returned.Enqueue(g) {
		// The ring holds every receive frame of its queue: it cannot be
		// full.
		p.badDescs.Add(1)
	}
}

// ownFrame reports whether the data of nb lies in one of this port's
// receive frames, and where: the slab frame and the offset in it.
func (p *Port) ownFrame(nb *nbl.NetBuffer) (g, off uint64, ok bool) {
	d, contiguous := nb.Data()
	if !contiguous || len(d) == 0 {
		return 0, 0, false
	}
	o := p.slab.Offset(d)
	if o < 0 {
		return 0, 0, false
	}
	g, off = uint64(o)>>p.shift, uint64(o)&(p.frameSize-1)
	if off+uint64(len(d)) > p.frameSize {
		return 0, 0, false
	}
	q := &p.queues[p.queueOf(g)]
	return g, off, g-q.start < p.rxFrames
}

// Send implements vswitch.Port. A frame whose data lies in one of this
// port's receive frames, and that no injector waits for, goes out from
// there on the socket of its queue: the port keeps its NBL until the
// completion ring gives the frame back. Any other frame is copied into a
// free transmit frame of the first queue (a partial checksum is completed
// on the way) and its NBL is finished at once. Frames longer than a frame
// or than the interface's MTU allows are refused: Send moves them to the
// end of in, behind the ones it took, so that the caller drops and counts
// them.
func (p *Port) Send(in []*nbl.NetBufferList) (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	p.reap()
	taken := 0
	refused := p.refused[:0]
	var bytes, zc, cp uint64
	q0 := &p.queues[0]
	i := 0
	for ; i < len(in); i++ {
		l := in[i]
		nb := l.FirstNetBuffer()
		n := uint64(nb.DataLength())
		if n == 0 || n > p.maxTx {
			if len(refused) == cap(refused) {
				break
			}
			refused = append(refused, l)
			continue
		}
		var q *queue
		var addr uint64
		if g, off, ok := p.ownFrame(nb); ok && p.txHeld[g] == nil && l.Completion.Owner == nil {
			q = &p.queues[p.queueOf(g)]
			if q.x.tx.free() == 0 {
				break
			}
			p.txHeld[g] = l
			p.held++
			addr = (g-q.start)<<p.shift + off
			zc++
		} else {
			q = q0
			if q.x.tx.free() == 0 {
				break
			}
			if len(p.txFree) == 0 {
				p.reap()
				if len(p.txFree) == 0 {
					break
				}
			}
			f := p.txFree[len(p.txFree)-1]
			p.txFree = p.txFree[:len(p.txFree)-1]
			buf := p.slab.Frame(int(f))[:n]
			nb.CopyOut(buf, 0)
			if l.Info.Checksum&nbl.ChecksumPartial != 0 {
				completeChecksum(buf, int(l.Info.CsumStart), int(l.Info.CsumOffset))
			}
			addr = uint64(f) << p.shift // queue 0's region starts the slab
			p.done = append(p.done, l)
			cp++
		}
		t := &q.x.tx
		t.descs[t.local&t.mask] = unix.XDPDesc{Addr: addr, Len: uint32(n)}
		t.local++
		q.txDirty = true
		in[taken] = l
		taken++
		bytes += n
	}
	// in[taken:i] held the taken frames' old places; the refused go there.
	copy(in[taken:i], refused)
	clear(refused)
	if len(refused) > 0 {
		p.txRefused.Add(uint64(len(refused)))
	}
	if taken == 0 {
		return 0, nil
	}
	p.txInFlight.Add(int64(taken))
	p.txPackets.Add(uint64(taken))
	p.txBytes.Add(bytes)
	if zc > 0 {
		p.txZeroCopy.Add(zc)
	}
	if cp > 0 {
		p.txCopied.Add(cp)
	}
	var err error
	for i := range p.queues {
		q := &p.queues[i]
		if q.txDirty {
			q.txDirty = false
			q.x.tx.publishProducer()
			if e := p.wake(q); e != nil {
				err = e
			}
		}
	}
	return taken, err
}

// wake kicks a queue's transmit path if the kernel asked (or always,
// without XDP_USE_NEED_WAKEUP).
func (p *Port) wake(q *queue) error {
	if !p.cfg.NoNeedWakeup && !q.x.tx.needWakeup() {
		return nil
	}
	p.txWakeups.Add(1)
	if err := q.x.kick(); err != nil {
		p.txErrors.Add(1)
		return fmt.Errorf("afxdp: wake TX of %s queue %d: %w", p.cfg.Interface, q.id, err)
	}
	return nil
}

// reap reads the completion rings: transmit frames go back on the free
// stack, and NBLs sent zero-copy are finished.
func (p *Port) reap() {
	for i := range p.queues {
		q := &p.queues[i]
		c := &q.x.comp
		n := c.ready()
		if n == 0 {
			continue
		}
		for range n {
			local := c.addrs[c.local&c.mask] >> p.shift
			c.local++
			g := q.start + local
			switch {
			case local >= q.frames:
				p.badDescs.Add(1)
			case local >= p.rxFrames:
				p.txFree = append(p.txFree, uint32(g))
			case p.txHeld[g] != nil:
				p.done = append(p.done, p.txHeld[g])
				p.txHeld[g] = nil
				p.held--
			default:
				p.badDescs.Add(1)
			}
		}
		c.publishConsumer()
		p.txCompleted.Add(uint64(n))
		p.txInFlight.Add(-int64(n))
	}
}

// Reclaim implements vswitch.Port: it reads the completion rings, wakes
// the kernel again where it left frames on a TX ring, and returns the NBLs
// whose transmission is finished.
func (p *Port) Reclaim(out []*nbl.NetBufferList) int {
	if p.closed.Load() {
		return 0
	}
	p.reap()
	for i := range p.queues {
		if q := &p.queues[i]; q.x.tx.pending() > 0 {
			_ = p.wake(q)
		}
	}
	n := copy(out, p.done)
	rest := copy(p.done, p.done[n:])
	clear(p.done[rest:])
	p.done = p.done[:rest]
	return n
}
