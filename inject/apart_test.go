package inject

import (
	"testing"
	"unsafe"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// TestCompletionQueuesApart: completion queues made one after the other,
// one per worker, keep what their workers write (the flush position, the
// ends of the queued NBLs) a padding apart.
func TestCompletionQueuesApart(t *testing.T) {
	s := newStack(t)
	a, err := NewCompletionQueue(s, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCompletionQueue(s, 4)
	if err != nil {
		t.Fatal(err)
	}
	apart(t, "two queues' positions", unsafe.Pointer(&a.pos), unsafe.Pointer(&b.pos))
	apart(t, "a queue's last field and the next queue's first", unsafe.Pointer(&a.panics), unsafe.Pointer(&b.nbls))
	apart(t, "a queue's last field and the next queue's first", unsafe.Pointer(&b.panics), unsafe.Pointer(&a.nbls))
	apart(t, "the end of one queue's NBLs and the start of the next's", unsafe.Pointer(&a.nbls[:cap(a.nbls)][cap(a.nbls)-1]), unsafe.Pointer(&b.nbls[:1][0]))
	apart(t, "the end of one queue's NBLs and the start of its batch", unsafe.Pointer(&a.nbls[:cap(a.nbls)][cap(a.nbls)-1]), unsafe.Pointer(&a.batch[:1][0]))
	// And a handle's credit slots: each goroutine's its own.
	h := &Handle{}
	for i := 1; i < creditSlots; i++ {
		apart(t, "two credit slots", unsafe.Pointer(&h.credits[i-1].credit), unsafe.Pointer(&h.credits[i].credit))
	}
	apart(t, "the slot owners and the first slot", unsafe.Pointer(&h.owners[creditSlots-1]), unsafe.Pointer(&h.credits[0].credit))
}

func apart(t *testing.T, what string, x, y unsafe.Pointer) {
	t.Helper()
	if d, ok := cpu.Apart(x, y); !ok {
		t.Errorf("%s: %d bytes apart, want at least %d", what, d, cpu.CacheLinePadSize)
	}
}
