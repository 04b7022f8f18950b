package nbl_test

import "testing"

// FuzzNBLOps runs the model-checking driver of property_test.go over the
// fuzzer's bytes: each byte string is a sequence of NBL operations. The
// seeds below run with every `go test`; `go test -fuzz FuzzNBLOps` explores
// further.
func FuzzNBLOps(f *testing.F) {
	// Opcodes (first byte of each operation, mod 16): 0/1 Allocate through
	// the cache/pool, 2 AllocateBurst, 3 AllocateAround, 4 an NBL over
	// caller MDLs, 5 Clone, 6 Reference, 7 Dereference, 8 Retreat,
	// 9 Advance, 10 CopyIn, 11 Release, 12 Free, 13 FreeClone,
	// 14 AppendNetBuffer, 15 NBL-wide retreat/advance, SetDataLength,
	// AdjustCurrentMdl.
	f.Add([]byte{})
	// Allocate, write, clone, write through the clone, free both.
	f.Add([]byte{0, 32, 64, 0, 10, 0, 0, 40, 5, 0, 0, 1, 10, 1, 0, 5, 9, 13, 1, 0, 12, 0, 0})
	// Allocate with no backfill, retreat beyond it (prepends), clone,
	// advance back with and without freeMdl, release with references.
	f.Add([]byte{0, 0, 100, 0, 8, 0, 0, 14, 0, 0, 10, 0, 0, 0, 14, 5, 0, 0, 1, 6, 0, 9, 0, 0, 14, 1, 0, 11, 0, 13, 1, 0, 7, 0})
	// Caller MDL chain, walk across MDL boundaries, clone across MDLs.
	f.Add([]byte{4, 2, 5, 7, 11, 0, 0, 3, 17, 8, 0, 0, 2, 0, 0, 9, 0, 0, 1, 0, 0, 9, 0, 0, 7, 1, 0, 5, 0, 0, 10, 0, 0, 2, 9, 15, 0, 2, 0, 15, 0, 0, 9, 8, 1})
	// Multi-NetBuffer NBL, NBL-wide retreat and advance, clone of it,
	// clone of the clone, FreeClone refused while the grandchild lives.
	f.Add([]byte{0, 40, 20, 1, 14, 0, 30, 3, 20, 14, 0, 30, 0, 10, 15, 0, 0, 6, 1, 15, 0, 1, 4, 0, 0,
		5, 0, 0, 5, 1, 0, 13, 1, 0, 13, 2, 0, 13, 1, 0, 12, 0, 0})
	// Exhaust the pool with bursts, then clone and allocate into ErrResources.
	f.Add([]byte{2, 3, 50, 2, 3, 50, 2, 3, 50, 5, 0, 0, 0, 10, 10, 0, 1, 10, 10, 1, 3, 10, 0, 5, 0, 11, 0, 11, 1, 12, 0, 1})
	// Dereference without Reference (must panic and change nothing),
	// Reference/Release/Dereference ordering.
	f.Add([]byte{0, 5, 5, 1, 7, 0, 6, 0, 6, 0, 11, 0, 7, 0, 5, 0, 1, 7, 0, 13, 1, 0})
	// Retreats that exceed HeaderBufferSize or exhaust the extra MDLs.
	f.Add([]byte{1, 0, 10, 0, 8, 0, 0, 47, 3, 1, 8, 0, 0, 40, 3, 0, 8, 0, 0, 30, 0, 0, 8, 0, 0, 30, 0, 1,
		8, 0, 0, 30, 0, 0, 8, 0, 0, 30, 0, 1, 8, 0, 0, 30, 0, 0, 9, 0, 0, 200, 1, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		newDriver(t, ops).run()
	})
}
