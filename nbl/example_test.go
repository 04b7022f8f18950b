package nbl_test

import (
	"fmt"
	"net"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/nbl"
)

// Allocate a frame, clone it, write through the clone, and free both: the
// pool is full again at the end.
func Example() {
	p, err := nbl.NewPool(nbl.Config{NBLs: 64})
	if err != nil {
		panic(err)
	}
	defer p.Close()
	c, err := p.NewCache(16)
	if err != nil {
		panic(err)
	}

	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	frame, err := nbl.BuildFrame(
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload("hello"),
	)
	if err != nil {
		panic(err)
	}
	orig, err := c.AllocateCopy(frame)
	if err != nil {
		panic(err)
	}
	clone, err := c.Clone(orig)
	if err != nil {
		panic(err)
	}
	fmt.Println("clone's parent is orig:", clone.Parent() == orig, "children:", orig.ChildRefCount())

	// The clone shares the bytes: set the destination MAC through it.
	clone.FirstNetBuffer().CopyIn(0, []byte{2, 0, 0, 0, 0, 9})
	d := nbl.NewDecoder(0)
	if err := d.Decode(orig.FirstNetBuffer()); err != nil {
		panic(err)
	}
	fmt.Println("orig sees:", d.Ethernet.DstMAC, d.IPv4.DstIP, d.UDP.DstPort)

	if err := c.FreeClone(clone); err != nil {
		panic(err)
	}
	if err := c.Free(orig); err != nil {
		panic(err)
	}
	c.Flush()
	fmt.Println("pool full:", p.Full())
	// Output:
	// clone's parent is orig: true children: 1
	// orig sees: 02:00:00:00:00:09 10.0.0.2 2000(cisco-sccp)
	// pool full: true
}
