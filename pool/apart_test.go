package pool

import (
	"testing"
	"unsafe"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// TestCachesApart: caches made one after the other, as a program makes one
// per worker, keep what their workers write (the count, the two ends of
// the stack of objects) a padding apart, so that one worker's Get and Put
// do not take another's cache line.
func TestCachesApart(t *testing.T) {
	p := newItemPool(t, 64)
	a, b := newItemCache(t, p, 4), newItemCache(t, p, 4)
	apart(t, "the counts of two caches", unsafe.Pointer(&a.n), unsafe.Pointer(&b.n))
	apart(t, "the end of one cache's stack and the start of the next's", unsafe.Pointer(&a.objs[len(a.objs)-1]), unsafe.Pointer(&b.objs[0]))
	apart(t, "the end of one cache's stack and the start of the next's", unsafe.Pointer(&b.objs[len(b.objs)-1]), unsafe.Pointer(&a.objs[0]))
	apart(t, "a cache's count and the next cache's stack", unsafe.Pointer(&a.n), unsafe.Pointer(&b.objs[0]))
}

func apart(t *testing.T, what string, x, y unsafe.Pointer) {
	t.Helper()
	if d, ok := cpu.Apart(x, y); !ok {
		t.Errorf("%s: %d bytes apart, want at least %d", what, d, cpu.CacheLinePadSize)
	}
}
