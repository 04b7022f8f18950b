package netns

import (
	"strings"
	"testing"
)

func TestHostPing(t *testing.T) {
	Require(t, "ping")
	a := NewHost(t, "10.77.9.1/24")
	// The veth peer is in our namespace: give it an address and ping the
	// host through the pair.
	if _, err := Run("addr", "add", "10.77.9.2/24", "dev", a.Peer); err != nil {
		t.Fatal(err)
	}
	out, err := Exec(a.NS, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.9.2")
	if err != nil {
		t.Fatalf("ping failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping lost packets:\n%s", out)
	}
	if a.MAC == "" || a.PeerMAC == "" || a.MAC == a.PeerMAC {
		t.Fatalf("MACs %q %q", a.MAC, a.PeerMAC)
	}
}

func TestUnique(t *testing.T) {
	a, b := Unique("nblv"), Unique("nblv")
	if a == b || len(a) > 15 {
		t.Fatalf("Unique gave %q and %q", a, b)
	}
}
