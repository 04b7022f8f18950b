// Package afxdp is a switch port on a real Linux interface through AF_XDP
// sockets, a sibling of vswitch/afpacket with the same shape: it
// implements vswitch.Port (Receive, Send, Reclaim, Close), offers Pool and
// Cache to the worker that serves it, and takes its frames back as their
// nbl.Originator.
//
// # The model
//
// The UMEM is one pool.Slab: memory mapped outside the Go heap and cut into
// frames of Config.FrameSize bytes. The port opens one socket per receive
// queue of the interface (Config.Queues, by default all of them); each
// socket registers its own region of the slab (XDP_UMEM_REG) and maps its
// four rings from the kernel: fill, completion, RX and TX. A region holds
// Config.RxFrames receive frames; the first queue's also holds
// Config.TxFrames transmit frames.
//
// An XDP program sends each frame to the socket of the queue it arrived on:
//
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//
// (or, where it can, a program that also reads the VLAN tag the driver
// holds out of band: see below). It is written in eBPF assembly with
// github.com/cilium/ebpf/asm when the port opens (no clang, no object
// file), loaded with an XSKMAP, and attached with a BPF link
// (link.AttachXDP) in driver mode, or in generic mode when the driver has
// no native XDP. A queue with no socket falls
// back to XDP_PASS: its frames go on to the kernel's stack. Close detaches
// the program; the kernel also drops the link if the process dies.
//
// Receive turns RX-ring descriptors into NBLs that point straight into
// their UMEM frames: no copy. The 256 bytes the kernel leaves in front of a
// received frame (XDP_PACKET_HEADROOM) are the NBL's backfill, so a VLAN
// tag or a header can be pushed in place. When the switch releases such an
// NBL, ReturnNetBufferList (on any worker) queues its frame on a lock-free
// ring, and the next Receive moves the queued frames to the fill ring in
// bursts, with one index store per burst.
//
// Send looks at each frame's memory. A frame whose data still lies in one
// of this port's receive frames (sent back out of the port it came in on,
// or a clone of such a frame), and that no injector waits for, is sent
// from there, zero-copy: the port keeps its NBL until the completion ring
// returns the frame, and Reclaim hands it back then. Any other frame is
// copied into a free transmit frame, completing a partial checksum
// (nbl.ChecksumPartial, as AF_PACKET ports deliver TCP) on the way, and
// its NBL is finished at once. A frame longer than a UMEM frame or than
// the interface's MTU allows (the kernel would drop it silently) is
// refused: Send moves it behind the frames it took, and the switch counts
// it as a tx-error drop. Completion-ring entries are read in bursts at
// each Send and Reclaim: transmit frames go back on the free stack.
//
// The sockets use XDP_USE_NEED_WAKEUP: the port makes a system call only
// when the kernel sets XDP_RING_NEED_WAKEUP on a ring (sendto for TX,
// recvfrom for the fill ring), and counts the calls (Stats.TxWakeups,
// RxWakeups). In copy mode the kernel transmits inside that sendto, so it
// asks every time, up to 32 frames a call; Reclaim wakes it again while
// frames wait on a TX ring.
//
// # Copy and zero-copy mode
//
// XDP_ZEROCOPY lets the driver DMA straight into and out of the UMEM; only
// some drivers have it (ice, i40e, ixgbe, mlx5 and a few more). Config.Mode
// Auto, the default, tries it and falls back to XDP_COPY, which every
// driver supports: the kernel copies each received frame into a UMEM frame
// and each transmitted frame into a socket buffer. Mode and Stats.ZeroCopy
// say which the sockets got. veth, the interfaces of the tests, has no
// zero-copy mode. "Zero-copy" in the description of Receive and Send above
// means that this package copies nothing; what the kernel copies depends
// on the mode.
//
// # veth, and what this kernel needs
//
// Measured on Linux 6.18 with the veth pairs of internal/netns (the port
// on one end, a host's stack on the other):
//
//   - Driver mode works with nothing on the peer: the program redirects
//     into a socket, not into a veth (a devmap redirect into a veth is what
//     needs an XDP program or GRO on that veth's peer), and the port
//     transmits through the socket's skb path, which needs nothing either.
//     Attaching a native program to a veth makes the kernel take software
//     GSO off the peer's features and cap its MTU, so the host sends
//     MTU-sized frames, which fit a UMEM frame.
//   - Generic mode keeps the peer's GSO: TCP segments of up to 64 KiB do
//     not fit a UMEM frame, the kernel drops them (KernelRxDropped) and TCP
//     stalls unless the host turns TSO and GSO off (ethtool -K eth0 tso off
//     gso off). AttachAuto therefore tries driver mode first. Ping and
//     other small frames work in both modes.
//   - In both modes veth hands frames its peer sent with CHECKSUM_PARTIAL
//     (TCP and UDP with checksum offload, the default) to XDP as they are:
//     the checksum field holds only the pseudo-header sum, and a host
//     receiving such a frame from the port would drop it. The port spots
//     these frames (the field equals the pseudo-header sum and the full
//     checksum does not verify) and completes their checksums on receive
//     (Stats.RxChecksumFixed); Config.NoChecksumFix turns this off.
//     Frames whose checksums verify are not touched, and on a physical NIC
//     no partial checksum arrives.
//
// # VLAN tags held out of band
//
// A sending host may hand a frame's 802.1Q tag to the device beside the
// frame instead of in its bytes (skb->vlan_tci: what an 802.1Q interface
// on veth does, and what NICs with receive VLAN offload do). An AF_PACKET
// port reads that tag from tp_vlan_tci; an XDP program sees only the
// frame's bytes, and a socket only what the program redirects. Unless the
// program fetches the tag, the frame arrives untagged: frames of every
// VLAN land in the port's native VLAN, and frames of VLANs a trunk does
// not carry are delivered instead of dropped.
//
// So where it can, New loads a second program, device-bound to the
// interface (BPF_F_XDP_DEV_BOUND_ONLY), that calls the XDP RX metadata
// kfunc bpf_xdp_metadata_rx_vlan_tag and passes its answer to the port
// in 8 bytes of XDP metadata (bpf_xdp_adjust_meta), which the socket
// delivers right in front of the frame in the UMEM:
//
//	data-8: uint32 0x4e424c00 | flags, host order (1: written,
//	        2: tagged, 4: the kfunc failed with another error than -ENODATA)
//	data-4: uint16 TPID, network order (0 without a tag)
//	data-2: uint16 TCI, host order (0 without a tag)
//
// Receive reads it and fills Info.Ieee8021Q (VlanID, Priority, CFI,
// Present, TPID) as an AF_PACKET port does, and counts the frames
// (Stats.RxVLANOffloaded). The word tells "no tag" from "tag unknown":
// a frame whose word is missing or says the kfunc failed is counted in
// Stats.RxVLANUnknown, and delivered as its bytes show it, or dropped
// with Config.RequireVLAN. Before a frame goes back to the fill ring the
// port zeroes the word, so that none outlives its frame. The kernel turns
// the kfunc into a call of the driver's own function when it loads the
// device-bound program: one call per frame.
//
// This needs Linux 6.8 or later with kernel BTF (the kfunc is resolved in
// /sys/kernel/btf/vmlinux), a driver that implements the kfunc (the
// netdev netlink family's xdp-rx-metadata-features lists vlan-tag; veth
// does), and the program in driver mode: generic mode takes no
// device-bound program. Where any is missing, New
// falls back to the plain program and out-of-band tags are LOST (tags in
// the frame's bytes still arrive); New logs a warning (Config.Logger),
// Capabilities().VLAN is false and VLANReason says why. VLANAvailable checks an
// interface beforehand. A port that switches VLANs should set
// Config.RequireVLAN, which makes New fail with ErrVLANUnsupported
// instead; the caller can then open an AF_PACKET port. There is no way
// to spot such a frame after the fact: without the kfunc, an untagged
// frame and one whose tag was lost look the same.
//
// Measured on Linux 6.18 with veth: the kfunc is in vmlinux, veth's
// xdp-rx-metadata-features are 0x7 (timestamp, hash, vlan-tag), the
// verifier refuses the kfunc in a program that is not device-bound
// ("metadata kfuncs require device-bound program"), attaching the
// device-bound program in generic mode or to another interface fails
// (EINVAL), BPF_PROG_TEST_RUN refuses it (EINVAL), and a veth given a tag
// with bpf_skb_vlan_push on its peer hands it to the kfunc with its TPID
// (0x8100 or 0x88a8), PCP, DEI and VID (TestVLANTrunk, TestVLANOutOfBand).
//
// Without multi-buffer support a received frame must fit FrameSize-256
// bytes, and a transmitted one FrameSize bytes and the MTU; larger frames
// are dropped by the kernel on receive (KernelRxDropped) and refused on
// transmit (TxRefused).
//
// # Requirements
//
// Linux 5.9 or later (BPF links for XDP; the XDP_PASS fallback of
// bpf_redirect_map needs 5.3, XDP_USE_NEED_WAKEUP 5.4; out-of-band VLAN
// tags need 6.8, see above), built with
// CONFIG_XDP_SOCKETS and CONFIG_BPF_SYSCALL, and a process with
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN), such as root.
// Available(ifname) checks all of this without touching the interface and
// says what is missing in an error that wraps ErrUnsupported; New returns
// such errors too, so a daemon can fall back to an AF_PACKET port and log
// why. The package has no cgo and loads no file at run time.
//
// # Threads and accounting
//
// Receive, Send and Reclaim run on one goroutine (the switch worker that
// serves the port) and allocate nothing; ReturnNetBufferList may run on
// any; Stats on any, at any time; Close once the worker has stopped.
// Every frame is delivered, refused (counted by the switch), or dropped by
// the kernel and counted in Stats (the kernel's XDP_STATISTICS, which
// Stats keeps after Close, so they never go back). TxInFlight is the
// number of frames posted and not yet completed; Close waits up to
// Config.CloseTimeout for the ones sent zero-copy, and releases whatever
// NBLs it still holds, so that every NBL is back in its pool.
package afxdp
