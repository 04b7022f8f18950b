package vswitch_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// The incoming values and metadata follow each frame, though the switch
// writes the source port's name and the metadata's cache only when they
// change: frames from two ports with different addresses interleave with
// frames injected from another pool, with a known and an unknown source
// port, and every classify, at both layers, sees the values of its own
// frame.
func TestValuesFollowEachFrame(t *testing.T) {
	r := manualRig(t, vswitch.Config{})
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	const perGen = 40
	r.gen(perGen, vswitch.PortConfig{ID: 1, Name: "vm-a"}, idFrame(t, macN(1), macN(3), 64, 1), idFrame(t, macN(1), bcast, 64, 2))
	r.gen(perGen, vswitch.PortConfig{ID: 2, Name: "vm-b"}, idFrame(t, macN(2), mcast, 64, 3))
	r.sink(0, vswitch.PortConfig{ID: 3, Name: "vm-c"})
	names := map[uint32]string{1: "vm-a", 2: "vm-b", 3: "vm-c"}

	var problems []string
	fail := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	typ := func(mac []byte) uint64 {
		switch {
		case bytes.Equal(mac, bcast):
			return uint64(vswitch.DlBroadcast)
		case mac[0]&1 != 0:
			return uint64(vswitch.DlMulticast)
		}
		return uint64(vswitch.DlUnicast)
	}
	calls := map[uint16]int{}
	withCache := 0
	check := func(layer string, in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList) {
		calls[in.LayerID]++
		f := nblBytes(l)
		if v := in.IncomingValue(0).Bytes; !bytes.Equal(v, f[6:12]) {
			fail("%s: source address % x, frame's % x", layer, v, f[6:12])
		}
		if v := in.IncomingValue(2).Bytes; !bytes.Equal(v, f[0:6]) {
			fail("%s: destination address % x, frame's % x", layer, v, f[0:6])
		}
		if v, w := in.IncomingValue(1).Uint, typ(f[6:12]); v != w {
			fail("%s: source address type %d, want %d", layer, v, w)
		}
		if v, w := in.IncomingValue(3).Uint, typ(f[0:6]); v != w {
			fail("%s: destination address type %d, want %d", layer, v, w)
		}
		if v, w := in.IncomingValue(4).Uint, uint64(f[12])<<8|uint64(f[13]); v != w {
			fail("%s: EtherType 0x%x, want 0x%x", layer, v, w)
		}
		want := names[meta.VSwitchSourcePortID] // "" for an unknown port
		if v := in.IncomingValue(9).Bytes; string(v) != want {
			fail("%s: source interface %q for source port %d, want %q", layer, v, meta.VSwitchSourcePortID, want)
		}
		if meta.VSwitchSourcePortID != l.Info.Switch.SourcePortID {
			fail("%s: metadata source port %d, frame's %d", layer, meta.VSwitchSourcePortID, l.Info.Switch.SourcePortID)
		}
		if c := meta.Cache; c != nil {
			withCache++
			if c.Pool() != l.Pool() {
				fail("%s: metadata cache of another pool than the frame's", layer)
			}
		}
	}
	r.callout("in", ingress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		check("ingress", in, meta, l)
		permit(out)
	})
	r.callout("out", egress, 1, nil, func(in *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
		check("egress", in, meta, l)
		if v, w := string(in.IncomingValue(vswitch.FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_VSWITCH_DESTINATION_INTERFACE_ID).Bytes), names[meta.VSwitchDestinationPortID]; v != w || w == "" {
			fail("egress: destination interface %q for port %d", v, meta.VSwitchDestinationPortID)
		}
		permit(out)
	})
	r.start()
	h := r.handle()
	pool := r.pool(8)
	f := &freer{pool: pool}
	// Frames injected between the ports' bursts: from a pool the workers
	// have no cache for, with an unknown source port (99) and a known one.
	injected := 0
	for i := range 6 {
		r.sw.Step()
		src := uint32(99)
		if i%2 == 1 {
			src = 2
		}
		frame := idFrame(t, macN(10+i), macN(3), 64, uint32(100+i))
		if st := inject.FwpsInjectvSwitchEthernetIngressAsync0(h, nil, 0, 0, r.id.Bytes(), src, 0, alloc(t, pool, frame), f.fn, nil); st != inject.STATUS_SUCCESS {
			t.Fatal(st)
		}
		injected++
	}
	r.stepUntil("every frame through", func() bool {
		return f.count() == injected && calls[ingress] == 2*perGen+injected
	})
	r.settle()
	r.close()
	for _, p := range problems {
		t.Error(p)
	}
	// Ingress: every frame once. Egress: unicast to a learnt or unknown
	// address, broadcast and multicast flood: at least one per frame.
	if calls[ingress] != 2*perGen+injected || calls[egress] < calls[ingress] {
		t.Errorf("%d ingress and %d egress classifies for %d frames", calls[ingress], calls[egress], 2*perGen+injected)
	}
	if withCache == 0 {
		t.Error("no classify saw a worker cache in its metadata")
	}
}
