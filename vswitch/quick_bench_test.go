package vswitch_test

import (
	"net"
	"runtime"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

func BenchmarkQuickForward(b *testing.B) {
	st := inject.NewStack()
	st.Start()
	id, _ := inject.ParseGUID("11111111-2222-3333-4444-555555555556")
	sw, _ := vswitch.New(vswitch.Config{ID: id, Stack: st})
	a := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	c := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	gen, _ := memport.New(memport.Config{Frames: [][]byte{udpFrame(b, a, c, 64)}, Limit: uint64(b.N)})
	sink, _ := memport.New(memport.Config{})
	sw.AddPort(gen, vswitch.PortConfig{ID: 1, Name: "gen"})
	sw.AddPort(sink, vswitch.PortConfig{ID: 2, Name: "sink"})
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0 := ms.Mallocs
	b.ResetTimer()
	sw.Start()
	for sink.Stats().Sent < uint64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	sw.Close()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
	b.ReportMetric(float64(ms.Mallocs-m0)/float64(b.N), "allocs/pkt")
}
