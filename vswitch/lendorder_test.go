package vswitch_test

import (
	"sync/atomic"
	"testing"

	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// TestWorkersLendTheirOwnPools: a pool lends to one goroutine at a time,
// and every worker has a cache of every port's pool. Each worker lends
// the caches of its own ports' pools before any worker lends the rest, so
// a callout on the worker of a frame's port finds the frame's pool lent
// there (its Pool-level calls take no shared ring), whichever worker's
// goroutine starts first. Several starts, as that order varies.
func TestWorkersLendTheirOwnPools(t *testing.T) {
	const n = 300
	for range 8 {
		r := newRig(t, vswitch.Config{Workers: 2})
		ports := make([]*memport.Port, 2)
		for i := range ports {
			ports[i] = r.port(memport.Config{
				Frames:   [][]byte{idFrame(t, macN(i+1), macN(2-i), 64, uint32(i))},
				Limit:    n,
				TxQueues: true,
			}, vswitch.PortConfig{ID: uint32(i + 1)})
		}
		var lent, notLent [2]atomic.Uint64
		r.callout("lent", ingress, 1, nil, func(_ *vswitch.IncomingValues, meta *vswitch.Metadata, _ *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
			i := meta.VSwitchSourcePortID - 1
			if meta.Cache != nil && meta.Cache.Lent() {
				lent[i].Add(1)
			} else {
				notLent[i].Add(1)
			}
			out.ActionType = vswitch.FWP_ACTION_PERMIT
		})
		r.start()
		r.waitUntil("every frame back", func() bool {
			return ports[0].Stats().Returned == n && ports[1].Stats().Returned == n
		})
		r.close()
		for i := range ports {
			if lent[i].Load() != n || notLent[i].Load() != 0 {
				t.Fatalf("port %d: the frame's pool was lent to the classifying worker for %d frames and not for %d; want %d and 0",
					i+1, lent[i].Load(), notLent[i].Load(), n)
			}
		}
	}
}
