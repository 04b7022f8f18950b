//go:build linux

package afpacket_test

import (
	"testing"

	"github.com/nblpipe/nblpipe/internal/clients"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

func TestPingThroughSwitch(t *testing.T) {
	h1, h2, sw, ports := bridge(t, afpacket.Config{}, clients.Options{})
	t.Logf("%s", clients.CheckPing(t, sw, h1, h2, 5))
	for i, p := range ports {
		if s := p.Stats(); s.TxErrors != 0 {
			t.Errorf("port %d: %d transmit errors", i, s.TxErrors)
		}
	}
}

func TestIperf3TCPThroughSwitch(t *testing.T) {
	netns.Require(t, "iperf3")
	h1, h2, _, _ := bridge(t, afpacket.Config{}, clients.Options{})
	t.Logf("iperf3 TCP with default offloads: %s", clients.Iperf3(t, h1, h2, 2))
}
