//go:build linux

package afxdp

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// XDP verdicts (enum xdp_action).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// offRxQueueIndex is the offset of rx_queue_index in struct xdp_md.
const offRxQueueIndex = 16

// redirectInstructions is the XDP program, written out in eBPF assembly:
//
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//
// bpf_redirect_map returns XDP_REDIRECT when the XSKMAP has a socket for
// the frame's receive queue and otherwise the low bits of its flags
// argument, XDP_PASS (kernel 5.3 and later): frames of queues no port
// serves go on to the kernel's stack as if no program were there.
func redirectInstructions(mapFD int) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, offRxQueueIndex, asm.Word), // r2 = ctx->rx_queue_index
		asm.LoadMapPtr(asm.R1, mapFD),                          // r1 = &xsks
		asm.Mov.Imm(asm.R3, xdpPass),                           // r3 = fallback verdict
		asm.FnRedirectMap.Call(),                               // r0 = bpf_redirect_map(r1, r2, r3)
		asm.Return(),
	}
}

// The XDP metadata the VLAN program writes in front of each frame it
// redirects, and Receive reads back (Documentation/networking/
// xdp-rx-metadata.rst: AF_XDP has no length for the metadata, so its size
// is a contract between the program and the port). Eight bytes, in host
// order except the TPID:
//
//	data-8: uint32 word: metaMagic | flags
//	data-4: uint16 TPID, network order, as the kfunc gives it (0 if no tag)
//	data-2: uint16 TCI, host order (PCP, DEI, VID; 0 if no tag)
//
// The word always has metaWritten set, so a frame whose metadata the
// program did not write (a word Receive does not recognise) is told apart
// from a frame without a tag. Refill zeroes the word before a frame goes
// back to the kernel, so no word survives from an earlier frame.
const (
	metaSize    = 8
	metaMagic   = 0x4e424c00 // "NBL" and a byte of flags
	metaWritten = 1 << 0
	metaTagged  = 1 << 1 // the kfunc returned a tag
	metaFailed  = 1 << 2 // the kfunc failed with another error than -ENODATA

	metaNoTag = metaMagic | metaWritten
	metaTag   = metaMagic | metaWritten | metaTagged
	metaError = metaMagic | metaWritten | metaFailed
)

// Offsets in struct xdp_md.
const (
	offData     = 0
	offDataMeta = 8
)

// bpf_xdp_metadata_rx_vlan_tag, the XDP RX metadata kfunc for the VLAN tag
// (Linux 6.8 and later), and the errno it returns for a frame without one.
const (
	vlanKfunc = "bpf_xdp_metadata_rx_vlan_tag"
	enodata   = 61
)

// vlanRedirectInstructions is the program of a port that recovers
// out-of-band VLAN tags, for a device-bound load:
//
//	struct { __be16 proto; __u16 tci; } v = {0, 0};
//	int err = bpf_xdp_metadata_rx_vlan_tag(ctx, &v.proto, &v.tci);
//	if (bpf_xdp_adjust_meta(ctx, -8) == 0) {
//		__u32 *m = (void *)(long)ctx->data_meta;
//		if ((void *)(m + 2) <= (void *)(long)ctx->data) {
//			if (err == 0)              { m[0] = metaTag;   memcpy(&m[1], &v, 4); }
//			else if (err == -ENODATA)  { m[0] = metaNoTag; m[1] = 0; }
//			else                       { m[0] = metaError; m[1] = 0; }
//		}
//	}
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//
// kfuncID is the kfunc's BTF type ID in vmlinux. When the metadata cannot
// be reserved the frame is redirected without it; Receive sees no word.
// err is an int: it is compared in 32 bits.
func vlanRedirectInstructions(mapFD int, kfuncID int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),            // r6 = ctx
		asm.StoreImm(asm.RFP, -8, 0, asm.Word), // v = {0, 0} at fp-8
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8), // r2 = &v.proto
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -6), // r3 = &v.tci
		kfuncCall(kfuncID),      // r0 = bpf_xdp_metadata_rx_vlan_tag(ctx, r2, r3)
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, -metaSize),
		asm.FnXdpAdjustMeta.Call(),                         // r0 = bpf_xdp_adjust_meta(ctx, -8)
		asm.JNE.Imm(asm.R0, 0, "redirect"),                 // no room: no metadata
		asm.LoadMem(asm.R2, asm.R6, offDataMeta, asm.Word), // r2 = m
		asm.LoadMem(asm.R3, asm.R6, offData, asm.Word),     // r3 = ctx->data
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, metaSize),
		asm.JGT.Reg(asm.R4, asm.R3, "redirect"), // the bounds check the verifier wants
		asm.JEq.Imm32(asm.R7, 0, "tag"),
		asm.Mov.Imm(asm.R5, metaNoTag),
		asm.JEq.Imm32(asm.R7, -enodata, "notag"),
		asm.Mov.Imm(asm.R5, metaError),
		asm.StoreImm(asm.R2, 4, 0, asm.Word).WithSymbol("notag"), // m[1] = 0
		asm.Ja.Label("word"),
		asm.LoadMem(asm.R4, asm.RFP, -8, asm.Word).WithSymbol("tag"), // r4 = the bytes of v
		asm.StoreMem(asm.R2, 4, asm.R4, asm.Word),                    // m[1] = r4
		asm.Mov.Imm(asm.R5, metaTag),
		asm.StoreMem(asm.R2, 0, asm.R5, asm.Word).WithSymbol("word"), // m[0] = r5
		asm.LoadMem(asm.R2, asm.R6, offRxQueueIndex, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, mapFD), // r1 = &xsks
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(), // r0 = bpf_redirect_map(r1, r2, r3)
		asm.Return(),
	}
}

// kfuncCall calls the kfunc of vmlinux BTF type ID id (BPF_PSEUDO_KFUNC_CALL
// with offset 0: the kfunc is in vmlinux, not in a module).
func kfuncCall(id int32) asm.Instruction {
	return asm.Instruction{
		OpCode:   asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call),
		Src:      asm.PseudoKfuncCall,
		Constant: int64(id),
	}
}

// kfuncIDs caches the BTF type ID of the VLAN kfunc, looked up once in the
// kernel's BTF (/sys/kernel/btf/vmlinux).
var kfuncIDs struct {
	once sync.Once
	id   btf.TypeID
	err  error
}

// vlanKfuncID returns the VLAN kfunc's BTF type ID, or why there is none.
func vlanKfuncID() (btf.TypeID, error) {
	kfuncIDs.once.Do(func() {
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			kfuncIDs.err = fmt.Errorf("no kernel BTF (CONFIG_DEBUG_INFO_BTF): %w", err)
			return
		}
		var fn *btf.Func
		if err := spec.TypeByName(vlanKfunc, &fn); err != nil {
			kfuncIDs.err = fmt.Errorf("the kernel has no %s (Linux 6.8 or later): %w", vlanKfunc, err)
			return
		}
		kfuncIDs.id, kfuncIDs.err = spec.TypeID(fn)
	})
	return kfuncIDs.id, kfuncIDs.err
}

// program is the loaded XSKMAP and XDP program, and the link that attaches
// the program to an interface.
type program struct {
	xsks   *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
	driver bool // attached in driver (native) mode, else generic (skb) mode
	// vlan is true when prog is the device-bound VLAN program, which
	// writes the metadata; noVLAN says why it is not.
	vlan   bool
	noVLAN error
}

// loadProgram makes the XSKMAP with room for queues entries and loads the
// plain redirect program over it. It attaches nothing.
func loadProgram(queues int) (*program, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "nbl_xsks",
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(queues),
	})
	if err != nil {
		return nil, &stepError{"create XSKMAP", err}
	}
	p := &program{xsks: m}
	if err := p.loadPlain(); err != nil {
		m.Close()
		return nil, err
	}
	return p, nil
}

// loadPlain loads the plain redirect program in place of any other.
func (p *program) loadPlain() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "nbl_xsk_redir",
		Type:         ebpf.XDP,
		Instructions: redirectInstructions(p.xsks.FD()),
		License:      "GPL",
	})
	if err != nil {
		return &stepError{"load XDP program", err}
	}
	if p.prog != nil {
		p.prog.Close()
	}
	p.prog, p.vlan = prog, false
	return nil
}

// loadVLANProgram loads the VLAN program bound to the interface, over the
// program's XSKMAP. It fails, and leaves the program as it was, when the
// kernel has no VLAN kfunc, the driver does not implement it, or the
// kernel refuses a device-bound load; the error says which.
func loadVLANProgram(xsks *ebpf.Map, ifindex int) (*ebpf.Program, error) {
	id, err := vlanKfuncID()
	if err != nil {
		return nil, err
	}
	feats, err := xdpRxMetadataFeatures(ifindex)
	if err != nil {
		return nil, fmt.Errorf("cannot ask the kernel which XDP RX metadata the driver gives (netlink netdev family): %w", err)
	}
	if feats&xdpRxMetadataVLANTag == 0 {
		return nil, fmt.Errorf("the driver does not give the VLAN tag to XDP (xdp-rx-metadata-features %#x lacks vlan-tag)", feats)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "nbl_xsk_vlan",
		Type:         ebpf.XDP,
		Instructions: vlanRedirectInstructions(xsks.FD(), int32(id)),
		License:      "GPL",
		Ifindex:      uint32(ifindex),
		Flags:        unix.BPF_F_XDP_DEV_BOUND_ONLY,
	})
	if err != nil {
		return nil, fmt.Errorf("the kernel refused the device-bound VLAN program: %w", err)
	}
	return prog, nil
}

// register puts the socket fd at the queue's key of the XSKMAP.
func (p *program) register(queue uint32, fd int) error {
	if err := p.xsks.Update(queue, uint32(fd), ebpf.UpdateAny); err != nil {
		return &stepError{"add the socket to the XSKMAP", err}
	}
	return nil
}

// useVLAN replaces the plain program with the VLAN program bound to the
// interface, when the kernel and the driver allow it; otherwise it keeps
// the plain one and records why in noVLAN. mode is the attach mode asked
// for: generic mode runs no device-bound program.
func (p *program) useVLAN(ifindex int, mode AttachMode) {
	if mode == AttachGeneric {
		p.noVLAN = errors.New("the XDP program runs in generic (skb) mode, which takes no device-bound program, so it cannot read the driver's VLAN tag")
		return
	}
	prog, err := loadVLANProgram(p.xsks, ifindex)
	if err != nil {
		p.noVLAN = err
		return
	}
	p.prog.Close()
	p.prog, p.vlan, p.noVLAN = prog, true, nil
}

// attach links the program to the interface, in driver mode when the
// driver has native XDP and in generic mode otherwise, or only in the mode
// asked for. The VLAN program is device-bound, which generic mode refuses:
// if it does not attach in driver mode, attach falls back to the plain
// program (in driver mode, then in generic mode for AttachAuto) and
// records in noVLAN that tags are not recovered.
func (p *program) attach(ifindex int, mode AttachMode) error {
	var errs []error
	try := func(flags link.XDPAttachFlags, what string) bool {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return false
		}
		p.link, p.driver = l, flags == link.XDPDriverMode
		return true
	}
	if mode == AttachAuto || mode == AttachDriver {
		if p.vlan {
			if try(link.XDPDriverMode, "driver mode, VLAN program") {
				return nil
			}
			if err := p.loadPlain(); err != nil {
				return err
			}
			p.noVLAN = fmt.Errorf("the device-bound VLAN program did not attach in driver mode: %w", errs[len(errs)-1])
		}
		if try(link.XDPDriverMode, "driver mode") {
			return nil
		}
	}
	if (mode == AttachAuto || mode == AttachGeneric) && try(link.XDPGenericMode, "generic mode") {
		return nil
	}
	return &stepError{"attach the XDP program", errors.Join(errs...)}
}

// close detaches the program and frees the program and the map.
func (p *program) close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
		p.prog = nil
	}
	if p.xsks != nil {
		errs = append(errs, p.xsks.Close())
		p.xsks = nil
	}
	return errors.Join(errs...)
}
