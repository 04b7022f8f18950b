//go:build linux

package afxdp_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// Real clients (tcpreplay, tcpdump, ping) on two namespace hosts, switched
// by two AF_XDP ports: the tests of vswitch/afpacket's clients_test.go for
// this back end.

// ---- (a), (b): a pcap replayed with tcpreplay, captured with tcpdump ----

// TestReplayThroughSwitch replays 300 distinct UDP frames with correct
// checksums into h1, with the XDP program in driver and in generic mode:
// h2 captures each exactly once, byte for byte, and the port completes no
// checksum.
func TestReplayThroughSwitch(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 300
	for _, mode := range []afxdp.AttachMode{afxdp.AttachDriver, afxdp.AttachGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			h1, h2, sw, ports := bridge(t, afxdp.Config{Attach: mode}, clients.Options{})
			if got := ports[0].AttachMode(); got != mode {
				t.Fatalf("attached in %s mode, asked for %s", got, mode)
			}
			frames := clients.UDPFrames(t, n, clients.Between(t, h1, h2))
			clients.CheckExactlyOnce(t, frames, clients.ReplayCapture(t, h1, h2, frames, "udp and dst port 7777", n), clients.IDOffset)
			st := sw.Stats()
			if st.Ports[0].RxPackets < n || st.Ports[1].TxPackets < n {
				t.Errorf("switch counters do not show the frames: %+v", st.Ports)
			}
			if ps := ports[0].Stats(); ps.RxChecksumFixed != 0 || ps.KernelRxDropped != 0 {
				t.Errorf("receiving port completed %d checksums and the kernel dropped %d frames: %+v", ps.RxChecksumFixed, ps.KernelRxDropped, ps)
			}
		})
	}
}

func TestReplayThroughSwitchWithInspect(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 300
	for _, k := range []clients.Inspect{clients.InspectReinject, clients.InspectClone} {
		t.Run(k.String(), func(t *testing.T) {
			h1, h2, sw, _ := bridge(t, afxdp.Config{}, clients.Options{Setup: k.Setup})
			frames := clients.UDPFrames(t, n, clients.Between(t, h1, h2))
			clients.CheckExactlyOnce(t, frames, clients.ReplayCapture(t, h1, h2, frames, "udp and dst port 7777", n), clients.IDOffset)
			st := sw.Stats()
			if st.Ports[0].Absorbed < n || st.Ports[0].Injected < n {
				t.Errorf("the callout did not take the frames: absorbed %d, injected %d", st.Ports[0].Absorbed, st.Ports[0].Injected)
			}
		})
	}
}

// partial returns a copy of frame (Ethernet/IPv4/UDP) whose UDP checksum
// field holds only the pseudo-header sum, as a host with checksum offload
// hands it to its driver, and as tcpdump captures it on such a host.
func partial(frame []byte) []byte {
	f := bytes.Clone(frame)
	ip := f[14:]
	var s uint32 = 17 + uint32(binary.BigEndian.Uint16(ip[20+4:])) // protocol, UDP length
	for i := 12; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s>>16 != 0 {
		s = s&0xFFFF + s>>16
	}
	binary.BigEndian.PutUint16(ip[20+6:], uint16(s))
	return f
}

// TestReplayPartialChecksum replays UDP frames that carry partial
// checksums (as captured on a sending host with offload). An AF_PACKET
// port forwards them as they are; an AF_XDP port, by default, completes
// them (RxChecksumFixed), so h2 receives the frames with the correct
// checksum, every other byte the same. With NoChecksumFix they cross
// unchanged.
func TestReplayPartialChecksum(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	const n = 200
	for _, noFix := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoChecksumFix=%v", noFix), func(t *testing.T) {
			h1, h2, _, ports := bridge(t, afxdp.Config{NoChecksumFix: noFix}, clients.Options{})
			complete := clients.UDPFrames(t, n, clients.Between(t, h1, h2))
			sent := make([][]byte, n)
			for i, f := range complete {
				sent[i] = partial(f)
			}
			want, fixed := sent, uint64(0)
			if !noFix {
				want, fixed = complete, n
			}
			clients.CheckExactlyOnce(t, want, clients.ReplayCapture(t, h1, h2, sent, "udp and dst port 7777", n), clients.IDOffset)
			if got := ports[0].Stats().RxChecksumFixed; got != fixed {
				t.Errorf("receiving port completed %d checksums, want %d", got, fixed)
			}
		})
	}
}

// ---- (c) VLANs ----

// TestVLANTrunk puts both ports in trunk mode carrying VLAN 100 (native
// VLAN 1). Frames tagged 100 replayed from h1 reach h2 tagged, each once
// and unchanged; frames tagged 200 do not cross and count as VLAN
// mismatches. A ping between VLAN 100 subinterfaces of the hosts passes,
// one over VLAN 200 does not, and untagged ping uses the native VLAN
// (clients.CheckTrunk). The frames' part holds too when h1 sends the tag
// out of band, as an 802.1Q interface on veth does.
func TestVLANTrunk(t *testing.T) {
	netns.Require(t, "tcpreplay", "tcpdump")
	h1, h2, sw, _ := bridge(t, afxdp.Config{}, clients.Options{Ports: clients.TrunkPorts()})
	const n = 200
	clients.CheckTrunk(t, sw, h1, h2, n)
	plain := clients.UDPFrames(t, n, clients.Between(t, h1, h2))
	// What an 802.1Q interface on veth sends: the tag beside the frame
	// (tx-vlan-hw-insert), for the receiving port to put back.
	t.Run("frames-vlan-100-offloaded", func(t *testing.T) {
		defer offloadTag(t, h1.NS, h1.If, 100)()
		got := clients.ReplayCapture(t, h1, h2, plain, "udp and dst port 7777 or (vlan and udp and dst port 7777)", n)
		clients.CheckExactlyOnce(t, clients.Tagged(plain, 100), got, clients.TaggedIDOffset)
	})
	t.Run("frames-vlan-200-offloaded", func(t *testing.T) {
		defer offloadTag(t, h1.NS, h1.If, 200)()
		before := sw.Stats().Ports[0].Drops[vswitch.DropVLANMismatch]
		if got := clients.ReplayCapture(t, h1, h2, plain, "udp and dst port 7777 or (vlan and udp and dst port 7777)", 0); len(got) != 0 {
			t.Errorf("%d frames sent on VLAN 200, which the trunks do not carry, reached h2", len(got))
		}
		clients.CheckVLANMismatches(t, sw, before, n)
	})
}

// offloadTag attaches to the egress of ifname in ns a TC program that gives
// every frame an 802.1Q tag of vid, priority 3 (the tag clients.Tagged
// writes), out of band (bpf_skb_vlan_push on an untagged skb sets
// skb->vlan_tci, as an 802.1Q interface on veth does), and returns a
// function that detaches it; cleanup detaches it too.
func offloadTag(t *testing.T, ns, ifname string, vid int32) func() {
	t.Helper()
	return offloadTCI(t, ns, ifname, 0x8100, 3<<13|vid)
}

// offloadTCI is offloadTag with any TPID and TCI.
func offloadTCI(t *testing.T, ns, ifname string, tpid uint16, tci int32) func() {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R2, int32(htons(tpid))), // r1 is the skb
		asm.Mov.Imm(asm.R3, tci),
		asm.FnSkbVlanPush.Call(),
		asm.Mov.Imm(asm.R0, 0), // TC_ACT_OK
		asm.Return(),
	}})
	if err != nil {
		t.Fatalf("load TC program: %v", err)
	}
	var l link.Link
	err = inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		return err
	})
	if err != nil {
		prog.Close()
		t.Fatalf("attach TC program to %s: %v", ifname, err)
	}
	detach := func() {
		if l != nil {
			l.Close()
			prog.Close()
			l = nil
		}
	}
	t.Cleanup(detach)
	return detach
}

// ---- (d) a flood of source MACs ----

// TestMACFlood replays 3000 frames from random source MACs into h1: the
// FDB stays within its size and the port's limit, counts what it refused,
// and the hosts still ping each other.
func TestMACFlood(t *testing.T) {
	netns.Require(t, "tcpreplay")
	clients.CheckMACFloods(t, 3000, "10.79.0.99", func(t *testing.T, o clients.Options) (*netns.Host, *netns.Host, *vswitch.Switch) {
		h1, h2, sw, ports := bridge(t, afxdp.Config{}, o)
		t.Cleanup(func() { // before the switch closes
			if t.Failed() {
				t.Logf("receiving port: %+v", ports[0].Stats())
			}
		})
		return h1, h2, sw
	})
}
