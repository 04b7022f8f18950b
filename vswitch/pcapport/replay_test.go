package pcapport_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
	"github.com/nblpipe/nblpipe/vswitch/pcapport"
)

// addCallout registers the inspect callout of kind at the ingress layer.
// It returns a check, given the switch's counters after Close (exact
// then), that the callout injected every frame and nothing failed.
func addCallout(t *testing.T, sw *vswitch.Switch, st *inject.Stack, kind scenario.Kind) func(frames int, ss vswitch.Stats) {
	t.Helper()
	if kind == scenario.Forward {
		return func(int, vswitch.Stats) {}
	}
	h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Destroy() })
	c := &scenario.Callout{Handle: h, VSwitchID: sw.ID().Bytes(), Clone: kind == scenario.Clone}
	if err := sw.RegisterCallout(&vswitch.Callout{Key: "inspect", Classify: c.Classify, InjectionHandle: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
		Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"}); err != nil {
		t.Fatal(err)
	}
	return func(frames int, ss vswitch.Stats) {
		t.Helper()
		// The switch counts what the callout injected, at the port each
		// frame came in on.
		var injected uint64
		for _, ps := range ss.Ports {
			injected += ps.Injected
		}
		if failed := c.Failed.Load(); failed != 0 || injected != uint64(frames) {
			t.Errorf("callout: %d injected, %d failed, want %d injected", injected, failed, frames)
		}
	}
}

// stepUntilDone drives a manual switch until every source is done and a
// few Steps in a row move nothing.
func stepUntilDone(t *testing.T, sw *vswitch.Switch, srcs ...*pcapport.Port) {
	t.Helper()
	idle := 0
	for i := 0; idle < 4; i++ {
		if i == 1<<20 {
			t.Fatalf("the replay has not finished after %d steps", i)
		}
		moved := sw.Step()
		done := true
		for _, s := range srcs {
			select {
			case <-s.Done():
			default:
				done = false
			}
		}
		if moved || !done {
			idle = 0
		} else {
			idle++
		}
	}
}

// closeSwitch closes the switch, which fails if a port's frames or pool are
// not all back, checks that it dropped nothing, and returns its counters.
func closeSwitch(t *testing.T, sw *vswitch.Switch) vswitch.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := sw.CloseContext(ctx); err != nil {
		t.Fatalf("switch Close: %v", err)
	}
	if !sw.CopyPool().Full() {
		t.Errorf("copy pool: %d NBLs out", sw.CopyPool().InUse())
	}
	ss := sw.Stats()
	for i, ps := range append(ss.Ports, ss.Unknown) {
		if ps.Dropped() != 0 {
			t.Errorf("switch port %d dropped %v", i, ps.Drops)
		}
	}
	return ss
}

// Two hosts' captures replayed through a switch, one pcap port per host
// (each a source and a sink): each host's output holds exactly the frames
// the other host sent (its unicast UDP and its broadcast ARPs), byte for
// byte, once each, in order, with their capture timestamps; with no
// callout, with the inspect callout (absorb and reinject the original) and
// with the clone-and-reinject callout; in pcap and pcapng.
func TestReplayTwoHosts(t *testing.T) {
	aSends := hostTraffic(t, macA, macB, ipA, ipB, 300, 0)
	bSends := hostTraffic(t, macB, macA, ipB, ipA, 250, 100000)
	for _, kind := range []scenario.Kind{scenario.Forward, scenario.Inspect, scenario.Clone} {
		for _, format := range []pcapport.Format{pcapport.FormatPcap, pcapport.FormatPcapng} {
			t.Run(string(kind)+"/"+format.String(), func(t *testing.T) {
				sw, st := newSwitch(t, vswitch.Config{Manual: true, Burst: 32})
				encode := func(recs []record) []byte {
					if format == pcapport.FormatPcapng {
						return pcapngBytes(t, recs)
					}
					return pcapBytes(t, recs, true)
				}
				var outA, outB bytes.Buffer
				a := newPort(t, pcapport.Config{Input: bytes.NewReader(encode(aSends)), Output: &outA, OutputFormat: format, PoolSize: 128})
				b := newPort(t, pcapport.Config{Input: bytes.NewReader(encode(bSends)), Output: &outB, OutputFormat: format, PoolSize: 128})
				for i, p := range []*pcapport.Port{a, b} {
					if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), NicIndex: uint16(i), Name: []string{"a", "b"}[i]}); err != nil {
						t.Fatal(err)
					}
				}
				checkCallout := addCallout(t, sw, st, kind)
				if err := sw.Start(); err != nil {
					t.Fatal(err)
				}
				stepUntilDone(t, sw, a, b)
				ss := closeSwitch(t, sw)
				checkCallout(len(aSends)+len(bSends), ss)
				var absorbed uint64
				for _, ps := range ss.Ports {
					absorbed += ps.Absorbed
				}
				want := uint64(0) // every frame, once, with a callout
				if kind != scenario.Forward {
					want = uint64(len(aSends) + len(bSends))
				}
				if absorbed != want {
					t.Errorf("%d frames absorbed, want %d", absorbed, want)
				}
				sameRecords(t, "a's output", readCapture(t, outA.Bytes()), bSends, true)
				sameRecords(t, "b's output", readCapture(t, outB.Bytes()), aSends, true)
				for _, c := range []struct {
					p         *pcapport.Port
					in, reads int
				}{{a, len(aSends), len(bSends)}, {b, len(bSends), len(aSends)}} {
					s := c.p.Stats()
					if s.Received != uint64(c.in) || s.Returned != s.Received || s.Written != uint64(c.reads) || s.Reclaimed != s.Written || s.Dropped() != 0 {
						t.Errorf("port stats %+v", s)
					}
				}
			})
		}
	}
}

// A pcapng capture replayed into a memport sink, with workers running: the
// sink gets the frames in order, each once, with their timestamps in the
// NBLs; Done tells when the replay is over.
func TestReplayIntoMemport(t *testing.T) {
	recs := hostTraffic(t, macA, macB, ipA, ipB, 400, 0)
	sw, _ := newSwitch(t, vswitch.Config{})
	src := newPort(t, pcapport.Config{Input: bytes.NewReader(pcapngBytes(t, recs)), PoolSize: 64})
	var stamps []int64
	sink, err := memport.New(memport.Config{Capture: 1000, OnSend: func(l *nbl.NetBufferList) { stamps = append(stamps, l.Info.Timestamp) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort(src, vswitch.PortConfig{ID: 1, Name: "pcap"}); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort(sink, vswitch.PortConfig{ID: 2, Name: "mem"}); err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	<-src.Done()
	closeSwitch(t, sw)
	got := make([]record, 0, len(recs))
	for i, f := range sink.Captured() {
		got = append(got, record{ts: timeOf(stamps[i]), data: f, wire: len(f)})
	}
	sameRecords(t, "memport sink", got, recs, true)
	if s := src.Stats(); s.Returned != s.Received || s.Received != uint64(len(recs)) {
		t.Errorf("source stats %+v", s)
	}
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns).UTC() }
