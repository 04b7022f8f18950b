//go:build linux

package main

import (
	"io"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// FuzzParseVLAN: any -vlan value is either refused or gives a port
// configuration the switch accepts, with each allowed VLAN once.
func FuzzParseVLAN(f *testing.F) {
	for _, s := range []string{"eth1=access:10", "v=trunk:0:1,2-5,4094", "x=trunk:1:5-3", "=access:1", "a=access:", "a=trunk:1:1-4094"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ifname, v, err := parseVLAN(s)
		if err != nil {
			return
		}
		if checkIfName(ifname) != nil {
			t.Fatalf("%q: accepted interface name %q", s, ifname)
		}
		seen := map[uint16]bool{}
		for _, a := range v.allowed {
			if a < 1 || a > 4094 || seen[a] {
				t.Fatalf("%q: allowed VLAN %d out of range or repeated", s, a)
			}
			seen[a] = true
		}
		sw, err := vswitch.New(vswitch.Config{ID: switchID, CopyPoolSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sw.Close()
		pc := vswitch.PortConfig{ID: 1, Name: ifname, Mode: v.mode, VLAN: v.vlan, Allowed: v.allowed}
		if err := sw.AddPort(nopPort{}, pc); err != nil {
			t.Fatalf("%q: parsed %+v, which the switch refuses: %v", s, v, err)
		}
	})
}

// FuzzParseStatus: a /proc status file of any content is parsed or
// refused, never a crash.
func FuzzParseStatus(f *testing.F) {
	f.Add(statusSample)
	f.Add("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\n")
	f.Add("CapEff: ffffffffffffffffff\n")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := parseStatus(s)
		if err == nil && !strings.Contains(s, "CapEff") {
			t.Fatalf("accepted a status without CapEff: %+v", tc)
		}
	})
}

// FuzzParseFlags: any command line (arguments separated by NUL) is parsed
// or refused with an error, never a crash; an accepted one has at least two
// distinct valid ports.
func FuzzParseFlags(f *testing.F) {
	f.Add("-port\x00a\x00-port\x00b")
	f.Add("-port\x00a\x00-port\x00b\x00-vlan\x00a=trunk:0:1-3\x00-callout\x00clone")
	f.Add("-workers\x00-1")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseFlags(strings.Split(s, "\x00"), io.Discard)
		if err != nil {
			return
		}
		if len(o.ports) < 2 {
			t.Fatalf("accepted %d ports", len(o.ports))
		}
		for _, p := range o.ports {
			if checkIfName(p) != nil {
				t.Fatalf("accepted port %q", p)
			}
		}
	})
}

// nopPort is a port with nothing to send or receive.
type nopPort struct{}

func (nopPort) Receive([]*nbl.NetBufferList) (int, error) { return 0, nil }
func (nopPort) Send([]*nbl.NetBufferList) (int, error)    { return 0, nil }
func (nopPort) Reclaim([]*nbl.NetBufferList) int          { return 0 }
func (nopPort) Close() error                              { return nil }

// FuzzXDPAttachedAttr: any IFLA_XDP payload gives an answer or an error,
// never a panic.
func FuzzXDPAttachedAttr(f *testing.F) {
	f.Add([]byte{5, 0, 2, 0, 1, 0, 0, 0})
	f.Add([]byte{8, 0, 4, 0, 7, 0, 0, 0, 5, 0, 2, 0, 0, 0, 0, 0})
	f.Add([]byte{3, 0, 2, 0})
	f.Add([]byte{0xff, 0xff, 2, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = xdpAttachedAttr(b)
	})
}
