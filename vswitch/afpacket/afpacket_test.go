//go:build linux

package afpacket_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// bridge makes two hosts in their own namespaces and a switch whose two
// AF_PACKET ports own the hosts' veth peers.
func bridge(t *testing.T) (h1, h2 *netns.Host, sw *vswitch.Switch, ports [2]*afpacket.Port) {
	t.Helper()
	netns.Require(t, "ping")
	h1 = netns.NewHost(t, "10.78.0.1/24")
	h2 = netns.NewHost(t, "10.78.0.2/24")
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("0a0a0a0a-1111-2222-3333-444444444444")
	var err error
	sw, err = vswitch.New(vswitch.Config{ID: id, Stack: st, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []*netns.Host{h1, h2} {
		p, err := afpacket.New(afpacket.Config{Interface: h.Peer})
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
		if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), Name: h.Peer}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sw.CloseContext(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h1, h2, sw, ports
}

func TestPingThroughSwitch(t *testing.T) {
	h1, _, sw, ports := bridge(t)
	out, err := netns.Exec(h1.NS, "ping", "-c", "5", "-i", "0.2", "-W", "2", "10.78.0.2")
	if err != nil {
		t.Fatalf("ping through the switch failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping lost packets through the switch:\n%s", out)
	}
	t.Logf("%s", lastLine(out))
	st := sw.Stats()
	if st.Ports[0].RxPackets < 5 || st.Ports[1].TxPackets < 5 {
		t.Errorf("switch stats do not show the pings: %+v", st.Ports)
	}
	for i, p := range ports {
		if s := p.Stats(); s.TxErrors != 0 {
			t.Errorf("port %d: %d transmit errors", i, s.TxErrors)
		}
	}
}

func TestIperf3TCPThroughSwitch(t *testing.T) {
	netns.Require(t, "iperf3")
	h1, h2, _, _ := bridge(t)
	srv := exec.Command("ip", "netns", "exec", h2.NS, "iperf3", "-s", "-1", "-B", "10.78.0.2")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	out, err := netns.Exec(h1.NS, "iperf3", "-c", "10.78.0.2", "-t", "2", "-f", "g", "--connect-timeout", "3000")
	if err != nil {
		t.Fatalf("iperf3 through the switch failed: %v\n%s", err, out)
	}
	var summary string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "receiver") {
			summary = strings.TrimSpace(l)
		}
	}
	if summary == "" {
		t.Fatalf("no iperf3 receiver summary:\n%s", out)
	}
	t.Logf("iperf3 TCP with default offloads: %s", summary)
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}
