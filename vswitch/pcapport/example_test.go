package pcapport_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// Replay a capture through a switch and capture what comes out of another
// port: a pcap source port and a pcap sink port, the switch's worker
// running, Done telling when the replay is over.
func Example() {
	dir, err := os.MkdirTemp("", "pcapport")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcap")
	writeCapture(in)

	st := inject.NewStack()
	st.Start()
	sw, err := vswitch.New(vswitch.Config{ID: inject.GUID{0xe1}, Stack: st})
	if err != nil {
		panic(err)
	}
	src, err := pcapport.New(pcapport.Config{InputFile: in})
	if err != nil {
		panic(err)
	}
	dst, err := pcapport.New(pcapport.Config{OutputFile: out})
	if err != nil {
		panic(err)
	}
	if err := sw.AddPort(src, vswitch.PortConfig{ID: 1, Name: "replay"}); err != nil {
		panic(err)
	}
	if err := sw.AddPort(dst, vswitch.PortConfig{ID: 2, Name: "capture"}); err != nil {
		panic(err)
	}
	if err := sw.Start(); err != nil {
		panic(err)
	}

	<-src.Done() // every frame read came back from the switch
	// Close stops the worker and closes the ports: the sink flushes its file.
	if err := sw.Close(); err != nil {
		panic(err)
	}
	if err := src.Err(); err != nil {
		panic(err)
	}

	f, err := os.Open(out)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		panic(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		fmt.Println(ci.Timestamp.Format(time.StampMicro), len(data), eth.SrcMAC, "->", eth.DstMAC, p.Layers()[1].LayerType())
	}
	fmt.Printf("read %d, written %d\n", src.Stats().Received, dst.Stats().Written)
	// Output:
	// Jan  1 00:00:00.000000 60 02:00:00:00:00:01 -> ff:ff:ff:ff:ff:ff ARP
	// Jan  1 00:00:00.000250 64 02:00:00:00:00:01 -> 02:00:00:00:00:02 IPv4
	// Jan  1 00:00:00.000500 1000 02:00:00:00:00:01 -> 02:00:00:00:00:02 IPv4
	// read 3, written 3
}

// writeCapture writes a capture of an ARP request and two UDP frames.
func writeCapture(path string) {
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		panic(err)
	}
	a, b := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ipA, ipB := net.IP{192, 0, 2, 1}, net.IP{192, 0, 2, 2}
	arp, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: a, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: a, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	if err != nil {
		panic(err)
	}
	frames := [][]byte{arp}
	for _, size := range []int{64, 1000} {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB}
		udp := &layers.UDP{SrcPort: 5000, DstPort: 5001}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			panic(err)
		}
		f, err := nbl.BuildFrame(&layers.Ethernet{SrcMAC: a, DstMAC: b, EthernetType: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(make([]byte, size-42)))
		if err != nil {
			panic(err)
		}
		frames = append(frames, f)
	}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * 250 * time.Microsecond), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			panic(err)
		}
	}
}
