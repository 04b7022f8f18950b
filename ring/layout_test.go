package ring

import (
	"testing"
	"unsafe"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// TestLayout checks the padding doc.go promises: the read-only fields, the
// producer indexes and the consumer indexes each keep cpu.CacheLinePadSize
// bytes from one another and from whatever follows the ring in memory.
func TestLayout(t *testing.T) {
	const pad = cpu.CacheLinePadSize
	if pad < 128 {
		t.Fatalf("cpu.CacheLinePadSize = %d, want at least 128", pad)
	}
	var r Ring[*int]
	end := func(off, size uintptr) uintptr { return off + size }

	readOnly := []struct {
		name string
		end  uintptr
	}{
		{"slots", end(unsafe.Offsetof(r.slots), unsafe.Sizeof(r.slots))},
		{"mask", end(unsafe.Offsetof(r.mask), unsafe.Sizeof(r.mask))},
		{"capacity", end(unsafe.Offsetof(r.capacity), unsafe.Sizeof(r.capacity))},
		{"mode", end(unsafe.Offsetof(r.mode), unsafe.Sizeof(r.mode))},
		{"mp", end(unsafe.Offsetof(r.mp), unsafe.Sizeof(r.mp))},
		{"mc", end(unsafe.Offsetof(r.mc), unsafe.Sizeof(r.mc))},
	}
	prod := unsafe.Offsetof(r.prod)
	prodEnd := end(prod, unsafe.Sizeof(r.prod))
	cons := unsafe.Offsetof(r.cons)
	consEnd := end(cons, unsafe.Sizeof(r.cons))
	size := unsafe.Sizeof(r)
	t.Logf("Ring[*int]: read-only fields end at %d, prod [%d, %d), cons [%d, %d), size %d",
		readOnly[len(readOnly)-1].end, prod, prodEnd, cons, consEnd, size)

	for _, f := range readOnly {
		if f.end > prod || prod-f.end < pad {
			t.Errorf("%s ends at %d, prod starts at %d: want at least %d bytes between", f.name, f.end, prod, pad)
		}
	}
	if cons < prodEnd || cons-prodEnd < pad {
		t.Errorf("prod ends at %d, cons starts at %d: want at least %d bytes between", prodEnd, cons, pad)
	}
	if cons < prod || cons-prod < pad {
		t.Errorf("prod at %d and cons at %d are less than %d bytes apart", prod, cons, pad)
	}
	if consEnd > size || size-consEnd < pad {
		t.Errorf("cons ends at %d, the struct at %d: want at least %d bytes after cons", consEnd, size, pad)
	}
}
