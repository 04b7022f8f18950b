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
