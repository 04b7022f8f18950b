package vswitch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/vswitch"
)

// TestInjectionCreditSettles: a worker keeps the injection credit it was
// lent (inject.Handle.LendCredit) from step to step while frames flow, and
// takes its completions back as credit; it gives all of it back when it
// goes idle, so that the handle's counts are exact while the switch still
// runs, and at once when the handle closes, so that Destroy returns while
// frames still flow.
func TestInjectionCreditSettles(t *testing.T) {
	const n = 5000
	r := newRig(t, vswitch.Config{Workers: 1})
	h := r.handle()
	x := &reinjector{h: h, swID: r.id.Bytes()}
	gen := r.gen(n, vswitch.PortConfig{ID: 1}, idFrame(t, macN(1), macN(2), 64, 0))
	r.sink(0, vswitch.PortConfig{ID: 2})
	r.callout("reinject", ingress, 1, h, x.classify, fromGen()...)
	r.start()
	r.waitUntil("every frame back", func() bool { return gen.Stats().Returned == n })
	r.waitUntil("the credit back, the switch running", func() bool { return h.Stats().Pending == 0 })
	if st := h.Stats(); st.Injected != n || st.Completed != n {
		t.Fatalf("handle %+v, want %d injected and completed", st, n)
	}
	r.close()
	if x.absorbed != n || x.failed != 0 {
		t.Fatalf("absorbed %d, failed %d; want %d and 0", x.absorbed, x.failed, n)
	}

	// Destroy while frames flow (a generator without a limit): the worker
	// drops its credit at the end of the step that sees the handle close.
	r = newRig(t, vswitch.Config{Workers: 1})
	h = r.handle()
	x = &reinjector{h: h, swID: r.id.Bytes()}
	gen = r.gen(0, vswitch.PortConfig{ID: 1}, idFrame(t, macN(1), macN(2), 64, 0))
	r.sink(0, vswitch.PortConfig{ID: 2})
	r.callout("reinject", ingress, 1, h, x.classify, fromGen()...)
	r.start()
	r.waitUntil("frames flowing", func() bool { return h.Stats().Completed > 1000 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.DestroyContext(ctx); err != nil {
		t.Fatalf("Destroy while frames flow: %v (%+v)", err, h.Stats())
	}
	if st := h.Stats(); st.Pending != 0 || st.Injected != st.Completed {
		t.Fatalf("after Destroy: %+v", st)
	}
	returned := gen.Stats().Returned
	r.waitUntil("frames still flowing after Destroy", func() bool { return gen.Stats().Returned > returned+1000 })
	r.close()
	if x.failed == 0 {
		t.Error("no injection into the destroyed handle was refused")
	}
}
