package ring

import (
	"testing"
)

// FuzzRingOps decodes ops into calls on a ring and checks every result
// against a slice model (see harness): return values, counts, the items and
// their order, Len, Free, the indexes and the slots.
//
// capLog picks the capacity 1<<(capLog%7), 1 to 64; mode is taken modulo 4;
// start is the initial index. Each byte of ops is one call: the low 3 bits
// choose it and the high 5 bits give a size k from 0 to 31 for the bulk
// and burst forms, so sizes of 0 and above the capacity occur.
func FuzzRingOps(f *testing.F) {
	f.Add([]byte{0, 3}, uint8(0), uint8(0), uint64(0))
	f.Add([]byte{0, 0, 0, 3, 3, 3, 8 | 1, 8 | 4}, uint8(0), uint8(3), ^uint64(0))
	f.Add([]byte{5<<3 | 1, 3<<3 | 4, 7<<3 | 2, 9<<3 | 5, 2<<3 | 5, 31<<3 | 2, 31<<3 | 5, 0<<3 | 1, 0<<3 | 2, 0<<3 | 4, 0<<3 | 5},
		uint8(3), uint8(1), ^uint64(0)-5)
	f.Add([]byte{16<<3 | 2, 7<<3 | 4, 12<<3 | 1, 16<<3 | 5, 16<<3 | 2, 16<<3 | 5, 6, 6, 7, 7},
		uint8(4), uint8(2), ^uint64(0)-8)
	f.Add([]byte{31<<3 | 2, 31<<3 | 5, 1<<3 | 1, 0, 3, 1<<3 | 4, 2<<3 | 2, 1<<3 | 5, 6<<3 | 1, 6<<3 | 4},
		uint8(6), uint8(3), ^uint64(0)-32)
	f.Add([]byte{1<<3 | 1, 1<<3 | 1, 2<<3 | 4, 1<<3 | 2, 1<<3 | 2, 2<<3 | 5, 0, 0, 3, 3},
		uint8(1), uint8(2), uint64(1)<<63-1)

	f.Fuzz(func(t *testing.T, ops []byte, capLog, mode uint8, start uint64) {
		if len(ops) > 1024 {
			ops = ops[:1024]
		}
		h := newHarness(t, 1<<(capLog%7), Mode(mode%4), start)
		for _, b := range ops {
			k := int(b >> 3)
			switch b & 7 {
			case 0:
				h.enqueue()
			case 1:
				h.enqueueBulk(k)
			case 2:
				h.enqueueBurst(k)
			case 3:
				h.dequeue()
			case 4:
				h.dequeueBulk(k)
			case 5:
				h.dequeueBurst(k)
			case 6:
				// Fill with single calls until full.
				for h.enqueue() {
				}
			case 7:
				// Empty with single calls.
				h.drain()
			}
		}
		h.drain()
		if h.nextOut != h.nextIn {
			t.Fatalf("dequeued %d items, enqueued %d", h.nextOut, h.nextIn)
		}
	})
}
