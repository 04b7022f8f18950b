package ledger

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/vswitch"
)

// recorder is a T that records reports.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) want(t *testing.T, ok bool, sub string) {
	t.Helper()
	got := strings.Join(r.errs, "\n")
	switch {
	case sub == "" && (!ok || got != ""):
		t.Errorf("reported (ok %v):\n%s", ok, got)
	case sub != "" && (ok || !strings.Contains(got, sub)):
		t.Errorf("reported (ok %v):\n%s\nwant a failure mentioning %q", ok, got, sub)
	}
}

func stats(ports ...vswitch.PortStats) vswitch.Stats { return vswitch.Stats{Ports: ports} }

// TestLedgerBalance: the switch-wide balance holds with flood copies and
// every kind of exit, and fails by one frame either way.
func TestLedgerBalance(t *testing.T) {
	var drops [vswitch.NumDropReasons]uint64
	drops[vswitch.DropTxError] = 2
	balanced := stats(
		vswitch.PortStats{RxPackets: 10, TxPackets: 5, Absorbed: 1},
		vswitch.PortStats{RxPackets: 5, Injected: 2, TxPackets: 11, Drops: drops},
	)
	balanced.Unknown = vswitch.PortStats{Injected: 1, TxPackets: 1}
	balanced.FloodCopies = 0
	// in: 10+5+2+1 = 18; out: 5+1 + 11+2 + 1 = 20: two flood copies short.
	r := &recorder{}
	r.want(t, CheckBalance(r, "s", balanced), "= 18, but transmitted")
	balanced.FloodCopies = 2
	r = &recorder{}
	r.want(t, CheckBalance(r, "s", balanced), "")
	balanced.Ports[1].Drops[vswitch.DropPoolEmpty]++
	r = &recorder{}
	r.want(t, CheckBalance(r, "s", balanced), "dropped 3")
}

// TestLedgerCountersGoBack: a counter that decreases between two Checks,
// or more floods than copies, fails.
func TestLedgerCountersGoBack(t *testing.T) {
	prev := stats(vswitch.PortStats{RxPackets: 10, TxPackets: 10})
	prev.Ports[0].Drops[vswitch.DropRingFull] = 4
	now := stats(vswitch.PortStats{RxPackets: 12, TxPackets: 11})
	now.Ports[0].Drops[vswitch.DropRingFull] = 4
	r := &recorder{}
	r.want(t, checkRunning(r, "s", &prev, &now), "")
	now.Ports[0].Drops[vswitch.DropRingFull] = 3
	r = &recorder{}
	r.want(t, checkRunning(r, "s", &prev, &now), "port 0 drops ring-full went back from 4 to 3")
	now = prev
	now.Flooded, now.FloodCopies = 3, 2
	r = &recorder{}
	r.want(t, checkRunning(r, "s", nil, &now), "3 frames flooded with 2 copies")
}

// TestLedgerHandleBooks: a negative pending count, a completed count that
// goes back, and a mismatch after close fail.
func TestLedgerHandleBooks(t *testing.T) {
	r := &recorder{}
	r.want(t, checkHandleRunning(r, 1, inject.HandleStats{}, inject.HandleStats{Injected: 3, Completed: 3, Pending: -1}), "-1 pending")
	r = &recorder{}
	r.want(t, checkHandleRunning(r, 1, inject.HandleStats{Completed: 5}, inject.HandleStats{Completed: 4}), "went back")
	r = &recorder{}
	r.want(t, checkHandleClosed(r, 1, inject.HandleStats{Injected: 4, Completed: 4}, 4, true), "")
	r = &recorder{}
	r.want(t, checkHandleClosed(r, 1, inject.HandleStats{Injected: 4, Completed: 4}, 5, true), "5 injections accepted, 4 completed")
	r = &recorder{}
	r.want(t, checkHandleClosed(r, 1, inject.HandleStats{Injected: 4, Completed: 3, Pending: 1}, 0, false), "1 pending after close")
}

// TestLedgerPortBooks: a memport's books fail on frames returned twice,
// more out than its pool, frames not back after close, and counts that
// differ from the switch's.
func TestLedgerPortBooks(t *testing.T) {
	r := &recorder{}
	r.want(t, checkPortRunning(r, "p", portReading{Generated: 5, Returned: 6}, 8), "6 frames returned of 5 generated")
	r = &recorder{}
	r.want(t, checkPortRunning(r, "p", portReading{Generated: 20, Returned: 5, Out: 15}, 8), "15 frames out")
	r = &recorder{}
	r.want(t, checkPortRunning(r, "p", portReading{Sent: 5, Reclaimed: 7}, 8), "7 frames reclaimed of 5 sent")
	r = &recorder{}
	r.want(t, checkPortMonotonic(r, "p", portReading{Sent: 5}, portReading{Sent: 4}), "went back")
	r = &recorder{}
	r.want(t, checkPortClosed(r, "p", Books{Generated: 5, Returned: 5, Sent: 3, Reclaimed: 3}, vswitch.PortStats{RxPackets: 5, TxPackets: 3}), "")
	r = &recorder{}
	r.want(t, checkPortClosed(r, "p", Books{Generated: 5, Returned: 4}, vswitch.PortStats{RxPackets: 5}), "5 frames generated, 4 returned")
	r = &recorder{}
	r.want(t, checkPortClosed(r, "p", Books{Generated: 5, Returned: 5, Sent: 3, Reclaimed: 3}, vswitch.PortStats{RxPackets: 5, TxPackets: 4}), "the switch transmitted 4 frames, the port took 3")
}
