//go:build linux

package afxdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
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

// program is the loaded XSKMAP and XDP program, and the link that attaches
// the program to an interface.
type program struct {
	xsks   *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
	driver bool // attached in driver (native) mode, else generic (skb) mode
}

// loadProgram makes the XSKMAP with room for queues entries and loads the
// program over it. It attaches nothing.
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
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "nbl_xsk_redir",
		Type:         ebpf.XDP,
		Instructions: redirectInstructions(m.FD()),
		License:      "GPL",
	})
	if err != nil {
		m.Close()
		return nil, &stepError{"load XDP program", err}
	}
	return &program{xsks: m, prog: prog}, nil
}

// register puts the socket fd at the queue's key of the XSKMAP.
func (p *program) register(queue uint32, fd int) error {
	if err := p.xsks.Update(queue, uint32(fd), ebpf.UpdateAny); err != nil {
		return &stepError{"add the socket to the XSKMAP", err}
	}
	return nil
}

// attach links the program to the interface, in driver mode when the
// driver has native XDP and in generic mode otherwise, or only in the mode
// asked for.
func (p *program) attach(ifindex int, mode AttachMode) error {
	var errs []error
	if mode == AttachAuto || mode == AttachDriver {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			p.link, p.driver = l, true
			return nil
		}
		errs = append(errs, fmt.Errorf("driver mode: %w", err))
	}
	if mode == AttachAuto || mode == AttachGeneric {
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPGenericMode})
		if err == nil {
			p.link = l
			return nil
		}
		errs = append(errs, fmt.Errorf("generic mode: %w", err))
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
