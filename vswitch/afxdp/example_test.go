//go:build linux

package afxdp_test

import (
	"errors"
	"log"

	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// Open an interface as a switch port with AF_XDP where it can be used,
// and with AF_PACKET otherwise, saying why. The port carries VLANs, so it
// must not lose the 802.1Q tags the driver holds out of band.
func ExampleNew() {
	var sw *vswitch.Switch // made with vswitch.New
	const ifname = "veth0"
	var port vswitch.Port
	p, err := afxdp.New(afxdp.Config{Interface: ifname, RequireVLAN: true})
	switch {
	case err == nil:
		log.Printf("%s: AF_XDP in %s mode, program in %s mode", ifname, p.Mode(), p.AttachMode())
		port = p
	case errors.Is(err, afxdp.ErrUnsupported), errors.Is(err, afxdp.ErrVLANUnsupported):
		log.Printf("%s: falling back to AF_PACKET: %v", ifname, err)
		if port, err = afpacket.New(afpacket.Config{Interface: ifname}); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatal(err)
	}
	if err := sw.AddPort(port, vswitch.PortConfig{ID: 1, Name: ifname}); err != nil {
		log.Fatal(err)
	}
}
