// Package cpu holds the cache-line facts nblpipe lays its shared structures
// out by, and a description of the processor for benchmark reports.
//
// CacheLinePadSize is a compile-time constant so that struct layouts can use
// it. It is 128 bytes, two 64-byte lines, because Intel processors prefetch
// the adjacent line in pairs (the "spatial prefetcher"): two indexes 64 bytes
// apart still share traffic. DPDK adds RTE_CACHE_GUARD for the same reason.
package cpu

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
)

// CacheLinePadSize is the distance kept between fields written by different
// cores: two 64-byte cache lines, against the adjacent-line prefetcher.
const CacheLinePadSize = 128

// CacheLineSize is the hardware cache-line size assumed for alignment of
// packet memory (frame strides are multiples of it).
const CacheLineSize = 64

// CacheLinePad is placed between fields that different cores write.
type CacheLinePad struct{ _ [CacheLinePadSize]byte }

// Info describes the processor the process runs on.
type Info struct {
	Model         string // brand string, e.g. "Intel(R) Xeon(R) ..."
	Vendor        string
	PhysicalCores int
	LogicalCores  int   // as cpuid reports them for the package
	NumCPU        int   // runtime.NumCPU: the CPUs this process may use
	CacheLine     int   // bytes, from cpuid (0 if unknown)
	L1D, L1I      int   // bytes per core (-1 if unknown)
	L2, L3        int   // bytes (-1 if unknown)
	Hz            int64 // nominal frequency (0 if unknown)
	Hypervisor    bool  // running under a hypervisor: expect noisy figures
}

// Detect reads the processor description from cpuid.
func Detect() Info {
	c := cpuid.CPU
	return Info{
		Model:         c.BrandName,
		Vendor:        c.VendorString,
		PhysicalCores: c.PhysicalCores,
		LogicalCores:  c.LogicalCores,
		NumCPU:        runtime.NumCPU(),
		CacheLine:     c.CacheLine,
		L1D:           c.Cache.L1D,
		L1I:           c.Cache.L1I,
		L2:            c.Cache.L2,
		L3:            c.Cache.L3,
		Hz:            c.Hz,
		Hypervisor:    c.Has(cpuid.HYPERVISOR),
	}
}

// String formats the description on one line for reports.
func (i Info) String() string {
	return fmt.Sprintf("%s; %d CPUs usable (%d physical cores, %d logical); cache line %d B; L1d %s, L2 %s, L3 %s",
		i.Model, i.NumCPU, i.PhysicalCores, i.LogicalCores, i.CacheLine,
		size(i.L1D), size(i.L2), size(i.L3))
}

func size(b int) string {
	switch {
	case b <= 0:
		return "unknown"
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<10:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d B", b)
}

// Isolated returns a slice of n zero elements with capacity c (c >= n)
// whose backing array shares no cache line, nor the adjacent-line pair,
// with any other allocation: CacheLinePadSize bytes of it on each side
// stay unused. The Go allocator places small objects of one size side by
// side, so two workers' scratch arrays made one after the other would
// otherwise share the line where one ends and the next begins, and each
// worker's writes would take it from the other. Appending past c
// reallocates without the padding.
func Isolated[T any](n, c int) []T {
	c = max(c, n)
	size := int(unsafe.Sizeof(*new(T)))
	if size == 0 {
		return make([]T, n, c)
	}
	pad := (CacheLinePadSize + size - 1) / size
	b := make([]T, pad+c+pad)
	return b[pad : pad+n : pad+c]
}

// Apart returns the distance in bytes between the words at a and b, and
// whether it is CacheLinePadSize or more: the tests' check that what two
// cores write shares no line (nor an adjacent pair).
func Apart(a, b unsafe.Pointer) (int64, bool) {
	d := int64(uintptr(a)) - int64(uintptr(b))
	if d < 0 {
		d = -d
	}
	return d, d >= CacheLinePadSize
}
