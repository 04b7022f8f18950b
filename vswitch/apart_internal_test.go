package vswitch

import (
	"testing"
	"unsafe"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/cpu"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// TestWorkersApart: Start makes the workers one after the other, and with
// them the arrays each writes on every burst; they keep a padding apart,
// so that two workers' writes never share a cache line.
func TestWorkersApart(t *testing.T) {
	st := inject.NewStack()
	st.Start()
	sw, err := New(Config{ID: inject.GUID{0xa9, 1}, Stack: st, Workers: 2, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p, err := memport.New(memport.Config{TxQueues: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.AddPort(p, PortConfig{ID: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sw.Close(); err != nil {
			t.Error(err)
		}
	}()
	a, b := sw.workers[0], sw.workers[1]
	for _, pair := range [][2]*worker{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		apart(t, "a worker's last field and the other's first", unsafe.Pointer(&x.slotted), unsafe.Pointer(&y.sw))
		for _, arr := range []struct {
			what string
			x, y unsafe.Pointer
		}{
			{"queued", lastOf(x.queued), unsafe.Pointer(&y.queued[0])},
			{"counts", lastOf(x.counts), unsafe.Pointer(&y.counts[0])},
			{"pub", lastOf(x.pub), unsafe.Pointer(&y.pub[0])},
			{"free", lastOf(x.free), unsafe.Pointer(&y.free[:1][0])},
			{"local", lastOf(x.local), unsafe.Pointer(&y.local[:1][0])},
			{"credited", lastOf(x.credited), unsafe.Pointer(&y.credited[:1][0])},
			{"the staged frames", lastOf(x.stage[1].buf), unsafe.Pointer(&y.stage[0].buf[0])},
		} {
			apart(t, "the ends of two workers' "+arr.what, arr.x, arr.y)
		}
	}
}

// lastOf returns the address of the last byte of s's capacity.
func lastOf[T any](s []T) unsafe.Pointer {
	s = s[:cap(s)]
	return unsafe.Add(unsafe.Pointer(&s[len(s)-1]), unsafe.Sizeof(s[0])-1)
}

func apart(t *testing.T, what string, x, y unsafe.Pointer) {
	t.Helper()
	if d, ok := cpu.Apart(x, y); !ok {
		t.Errorf("%s: %d bytes apart, want at least %d", what, d, cpu.CacheLinePadSize)
	}
}
