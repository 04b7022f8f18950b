package pool

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/cpu"
)

// Page modes a Slab can end up with; see Slab.Pages.
const (
	PagesHugeTLB = "hugetlb"     // explicit 2 MiB huge pages (MAP_HUGETLB)
	PagesTHP     = "thp-advised" // normal pages with MADV_HUGEPAGE advice
	PagesNormal  = "normal"      // normal pages
)

// HugePageSize is the huge-page size a Slab asks for.
const HugePageSize = 2 << 20

// MaxSlabBytes bounds one slab's size: 64 GiB, or less where an int is
// smaller (a 32-bit platform).
const MaxSlabBytes = min(64<<30, math.MaxInt>>1)

var (
	// ErrSlabConfig is returned by NewSlab for a configuration it cannot
	// honour; the wrapped text says which field is wrong.
	ErrSlabConfig = errors.New("pool: bad slab configuration")
)

// SlabConfig describes a frame slab.
type SlabConfig struct {
	// Frames is the number of frames (at least 1).
	Frames int
	// FrameSize is the size of each frame in bytes, headroom included. It is
	// rounded up to a multiple of the cache-line size (64); the result is
	// the stride between frames.
	FrameSize int
	// Headroom is the number of bytes at the start of each frame kept free
	// for headers prepended later (encapsulation, a VLAN tag). It must be
	// smaller than FrameSize.
	Headroom int
	// HugePages asks for explicit huge pages (MAP_HUGETLB) when the slab is
	// at least one huge page large. When the system has none reserved the
	// slab falls back to normal pages with transparent-huge-page advice;
	// Pages says which it got.
	HugePages bool
}

// Slab is packet memory: one anonymous mmap'd region outside the Go heap,
// cut into Frames frames of Stride bytes, each starting on a cache-line
// boundary. The garbage collector never scans it, and a frame is named by
// its index as well as by its bytes, which is what AF_XDP's UMEM and the
// nbl package need.
//
// Frames are handed out by index; Slab does not track which are free (put
// the indexes, or descriptors that carry them, in a Pool). The byte slices
// it returns are valid until Close; using one after Close faults.
type Slab struct {
	mem      []byte // the frames: len = cap = Frames*Stride
	mapping  []byte // the mapping as mmap returned it, for munmap
	stride   int
	headroom int
	frames   int
	pages    string
	mu       sync.Mutex
	closed   bool
}

// NewSlab maps the memory for a slab and touches every page of it, so that
// the first packets do not pay for page faults.
func NewSlab(cfg SlabConfig) (*Slab, error) {
	if cfg.Frames < 1 {
		return nil, fmt.Errorf("%w: Frames must be at least 1, got %d", ErrSlabConfig, cfg.Frames)
	}
	if cfg.FrameSize < 1 || cfg.FrameSize > MaxSlabBytes {
		return nil, fmt.Errorf("%w: FrameSize must be between 1 and %d, got %d", ErrSlabConfig, MaxSlabBytes, cfg.FrameSize)
	}
	if cfg.Headroom < 0 || cfg.Headroom >= cfg.FrameSize {
		return nil, fmt.Errorf("%w: Headroom must be in [0, FrameSize), got %d with FrameSize %d", ErrSlabConfig, cfg.Headroom, cfg.FrameSize)
	}
	stride := (cfg.FrameSize + cpu.CacheLineSize - 1) &^ (cpu.CacheLineSize - 1)
	if stride > MaxSlabBytes/cfg.Frames {
		return nil, fmt.Errorf("%w: %d frames of %d bytes exceed %d bytes", ErrSlabConfig, cfg.Frames, stride, MaxSlabBytes)
	}
	size := stride * cfg.Frames
	s := &Slab{stride: stride, headroom: cfg.Headroom, frames: cfg.Frames}

	var err error
	if cfg.HugePages && size >= HugePageSize {
		mapped := (size + HugePageSize - 1) &^ (HugePageSize - 1)
		s.mapping, err = unix.Mmap(-1, 0, mapped, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_HUGETLB|unix.MAP_POPULATE)
		if err == nil {
			s.pages = PagesHugeTLB
		}
	}
	if s.mapping == nil {
		s.mapping, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("pool: mmap %d bytes for a slab: %w", size, err)
		}
		s.pages = PagesNormal
		if cfg.HugePages && size >= HugePageSize && unix.Madvise(s.mapping, unix.MADV_HUGEPAGE) == nil {
			s.pages = PagesTHP
		}
	}
	s.mem = s.mapping[:size:size]
	return s, nil
}

// Frames returns the number of frames.
func (s *Slab) Frames() int { return s.frames }

// Stride returns the distance in bytes between the starts of two frames,
// which is also the full size of a frame.
func (s *Slab) Stride() int { return s.stride }

// Headroom returns the bytes kept free at the start of each frame.
func (s *Slab) Headroom() int { return s.headroom }

// Pages reports what backs the slab: PagesHugeTLB, PagesTHP or PagesNormal.
func (s *Slab) Pages() string { return s.pages }

// Bytes returns the whole region (for registering it with the kernel, as
// an AF_XDP UMEM).
func (s *Slab) Bytes() []byte { return s.mem }

// Frame returns frame i, headroom included: Stride bytes with capacity
// Stride, so an append cannot run into the next frame. It panics if i is out
// of range.
func (s *Slab) Frame(i int) []byte {
	off := i * s.stride
	return s.mem[off : off+s.stride : off+s.stride]
}

// Data returns frame i after its headroom.
func (s *Slab) Data(i int) []byte {
	off := i * s.stride
	return s.mem[off+s.headroom : off+s.stride : off+s.stride]
}

// Index returns the number of the frame that holds b[0], or -1 if b is empty
// or does not start inside the slab.
func (s *Slab) Index(b []byte) int {
	if len(b) == 0 || len(s.mem) == 0 {
		return -1
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(s.mem)))
	if off >= uintptr(len(s.mem)) {
		return -1
	}
	return int(off) / s.stride
}

// Offset returns the byte offset of b[0] from the start of the slab, or -1
// as for Index. AF_XDP descriptors carry such offsets.
func (s *Slab) Offset(b []byte) int {
	if s.Index(b) < 0 {
		return -1
	}
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(s.mem))))
}

// Close unmaps the memory. Every slice obtained from the slab must be out of
// use by then. Close is idempotent; later calls return nil.
func (s *Slab) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.mem = nil
	mapping := s.mapping
	s.mapping = nil
	if err := unix.Munmap(mapping); err != nil {
		return fmt.Errorf("pool: munmap slab: %w", err)
	}
	return nil
}
