package cpu

import (
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

func TestPadSize(t *testing.T) {
	if unsafe.Sizeof(CacheLinePad{}) != CacheLinePadSize || CacheLinePadSize%CacheLineSize != 0 {
		t.Fatalf("CacheLinePad is %d bytes, want %d (a multiple of %d)", unsafe.Sizeof(CacheLinePad{}), CacheLinePadSize, CacheLineSize)
	}
}

func TestDetect(t *testing.T) {
	i := Detect()
	if i.NumCPU != runtime.NumCPU() {
		t.Errorf("NumCPU %d, runtime says %d", i.NumCPU, runtime.NumCPU())
	}
	if i.CacheLine != 0 && i.CacheLine > CacheLinePadSize {
		t.Errorf("cache line %d exceeds the padding %d", i.CacheLine, CacheLinePadSize)
	}
	s := i.String()
	if !strings.Contains(s, "CPUs usable") || !strings.Contains(s, "cache line") {
		t.Errorf("String() = %q", s)
	}
}

func TestPin(t *testing.T) {
	done := make(chan error)
	go func() {
		unpin, err := Pin(0)
		defer unpin()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Skipf("pinning to CPU 0 not permitted here: %v", err)
	}
	done2 := make(chan error)
	go func() {
		unpin, err := Pin(1 << 20) // no such CPU
		defer unpin()
		done2 <- err
	}()
	if err := <-done2; err == nil {
		t.Fatal("Pin to a CPU that does not exist succeeded")
	}
}

// TestIsolated: the slice has the length and capacity asked for, and two
// made one after the other (which the allocator would otherwise place side
// by side) are at least the padding apart, in either order.
func TestIsolated(t *testing.T) {
	a := Isolated[uint64](1, 3)
	b := Isolated[uint64](1, 3)
	if len(a) != 1 || cap(a) != 3 || a[0] != 0 {
		t.Fatalf("len %d cap %d, want 1 and 3", len(a), cap(a))
	}
	checkApart(t, "two isolated arrays", unsafe.Pointer(&a[:3][2]), unsafe.Pointer(&b[0]))
	checkApart(t, "two isolated arrays", unsafe.Pointer(&b[:3][2]), unsafe.Pointer(&a[0]))
	type big [200]byte
	if c := Isolated[big](2, 1); len(c) != 2 || cap(c) != 2 {
		t.Fatalf("capacity below the length: len %d cap %d, want 2 and 2", len(c), cap(c))
	}
	if z := Isolated[struct{}](4, 4); len(z) != 4 {
		t.Fatalf("zero-size elements: len %d", len(z))
	}
}

// checkApart fails unless the words at a and b are CacheLinePadSize bytes
// apart or more.
func checkApart(t *testing.T, what string, a, b unsafe.Pointer) {
	t.Helper()
	if d, ok := Apart(a, b); !ok {
		t.Errorf("%s: %d bytes apart, want at least %d", what, d, CacheLinePadSize)
	}
}
