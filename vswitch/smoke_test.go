package vswitch_test

import (
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

func udpFrame(t testing.TB, src, dst net.HardwareAddr, size int) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	udp.SetNetworkLayerForChecksum(ip)
	pay := make([]byte, max(0, size-14-20-8))
	f, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(pay))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSmokeForward(t *testing.T) {
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("11111111-2222-3333-4444-555555555555")
	sw, err := vswitch.New(vswitch.Config{ID: id, Stack: st})
	if err != nil {
		t.Fatal(err)
	}
	a := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	b := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	const N = 10000
	gen, _ := memport.New(memport.Config{Frames: [][]byte{udpFrame(t, a, b, 64)}, Limit: N})
	sink, _ := memport.New(memport.Config{})
	sw.AddPort(gen, vswitch.PortConfig{ID: 1, Name: "gen"})
	sw.AddPort(sink, vswitch.PortConfig{ID: 2, Name: "sink"})
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sink.Stats().Sent < N && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	s := sw.Stats()
	t.Logf("gen %+v sink %+v ports %+v", gen.Stats(), sink.Stats(), s.Ports)
	if sink.Stats().Sent != N || gen.Stats().Returned != N {
		t.Fatalf("sent %d returned %d", sink.Stats().Sent, gen.Stats().Returned)
	}
}
