package inject

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nblpipe/nblpipe/nbl"
)

// LendCredit reserves pending injections ahead for the calling goroutine:
// its fast-path injections take from the credit (the pending count stays),
// the rest of the credit goes back with ReturnCredit, and injections past
// the credit are reserved as usual. Each goroutine has its own slot, up to
// creditSlots; Destroy waits for lent credit; a closing handle refuses an
// injection with credit, keeping the credit, and lends none.
func TestLendCredit(t *testing.T) {
	r := newHoldingRig(t, 32)
	h, p, cache, q, hold, id := r.h, r.p, r.cache, r.q, r.hold, r.id
	o := newOriginator(p.Cap())
	var ls []*nbl.NetBufferList
	inj := func(n int) error {
		t.Helper()
		for range n {
			l := allocOriginal(t, p, o)
			l.Reference()
			if err := h.InjectVSwitchIngress(id, 1, 0, l, nil, Done{}); err != nil {
				l.Dereference()
				freeNBL(t, l)
				return err
			}
			ls = append(ls, l)
		}
		return nil
	}
	pending := func(want int64, when string) {
		t.Helper()
		if st := h.Stats(); st.Pending != want {
			t.Fatalf("%s: pending %d, want %d", when, st.Pending, want)
		}
	}
	// The first injection finds the switch (the general path); the
	// stack remembers it for the fast path, which uses credit.
	if err := inj(1); err != nil {
		t.Fatal(err)
	}
	pending(1, "one injection")
	if !h.LendCredit(4) || !h.LendCredit(4) {
		t.Fatal("LendCredit refused on an open handle")
	}
	pending(5, "credit of 4 lent (twice: the second call lends nothing more)")
	if err := inj(3); err != nil {
		t.Fatal(err)
	}
	pending(5, "3 injections from the credit")
	if err := inj(2); err != nil {
		t.Fatal(err)
	}
	pending(6, "the credit used up, one injection reserved")
	h.ReturnCredit()
	pending(6, "nothing left to return")
	h.LendCredit(4)
	pending(10, "credit lent again")
	h.ReturnCredit()
	pending(6, "unused credit returned")

	// Another goroutine has a slot of its own; this one's credit is not
	// its to use.
	h.LendCredit(2)
	var wg sync.WaitGroup
	wg.Add(1)
	var other error
	go func() {
		defer wg.Done()
		if !h.LendCredit(3) {
			other = errors.New("LendCredit refused to a second goroutine")
			return
		}
		other = inj(1)
		h.DropCredit()
	}()
	wg.Wait()
	if other != nil {
		t.Fatal(other)
	}
	pending(6+2+1, "this goroutine's credit, and the other goroutine's injection")
	h.ReturnCredit()
	pending(7, "after both returned")
	h.DropCredit() // this goroutine's slot, kept by ReturnCredit

	// creditSlots goroutines hold slots: one more gets none.
	release := make(chan struct{})
	got := make(chan bool, creditSlots+1)
	for range creditSlots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- h.LendCredit(1)
			<-release
			h.DropCredit()
		}()
	}
	for range creditSlots {
		if !<-got {
			t.Fatal("a slot refused while some were free")
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		got <- h.LendCredit(1)
		h.DropCredit()
	}()
	if <-got {
		t.Fatalf("LendCredit granted with all %d slots held", creditSlots)
	}
	close(release)
	wg.Wait()
	pending(7, "all slots dropped")

	// Completions delivered by a goroutine with credit become credit; they
	// count as completed when it returns the credit.
	h.LendCredit(4)
	hold.completeHeld(q)
	pending(11, "7 injections completed on the goroutine with credit 4")
	if st := h.Stats(); st.Completed != 0 {
		t.Fatalf("completions taken back as credit counted before ReturnCredit: %+v", st)
	}

	// Destroy waits for lent credit.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.DestroyContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DestroyContext with credit lent: %v", err)
	}
	if err := inj(1); !errors.Is(err, ErrHandleClosing) {
		t.Fatalf("injection with credit into a closing handle: %v", err)
	}
	pending(11, "the refused injection kept the credit")
	h.ReturnCredit()
	if st := h.Stats(); st.Pending != 0 || st.Completed != 7 {
		t.Fatalf("credit returned: %+v, want none pending and 7 completed", st)
	}
	destroyBounded(t, h)
	if h.LendCredit(1) {
		t.Fatal("LendCredit granted on a destroyed handle")
	}
	h.DropCredit()
	if st := h.Stats(); st.Pending != 0 || st.Completed != 7 || st.Injected != 7 {
		t.Fatalf("stats %+v, want 7 injected and completed", st)
	}
	for _, l := range ls {
		freeNBL(t, l)
	}
	checkFull(t, p, cache)
}
