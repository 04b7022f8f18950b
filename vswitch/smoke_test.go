package vswitch_test

import (
	"testing"

	"github.com/nblpipe/nblpipe/vswitch"
)

// TestSmokeForward moves frames from a generator to a sink with the worker
// goroutines running, and checks that each arrived intact exactly once and
// came back to its port.
func TestSmokeForward(t *testing.T) {
	n := 10000
	if raceEnabled {
		n = 2000
	}
	r := newRig(t, vswitch.Config{})
	list, byID := idTemplates(t, 16, macN(1), macN(2), 64)
	gen := r.gen(uint64(n), vswitch.PortConfig{ID: 1, Name: "gen"}, list...)
	chk := newIDSink(byID)
	sink := r.port(memportSink(chk), vswitch.PortConfig{ID: 2, Name: "sink"})
	r.start()
	r.waitUntil("every frame at the sink", func() bool { return sink.Stats().Sent == uint64(n) })
	st := r.close()
	chk.check(t, n/16)
	tt := checkConservation(t, st, 0)
	if tt.tx != uint64(n) || tt.dropped != 0 || gen.Stats().Returned != uint64(n) {
		t.Errorf("%v; generator %+v", tt, gen.Stats())
	}
}
