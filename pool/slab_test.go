package pool

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"unsafe"
)

// newTestSlab returns a slab that is closed when the test ends.
func newTestSlab(t testing.TB, cfg SlabConfig) *Slab {
	t.Helper()
	s, err := NewSlab(cfg)
	if err != nil {
		t.Fatalf("NewSlab(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestNewSlabErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  SlabConfig
	}{
		{"framesZero", SlabConfig{Frames: 0, FrameSize: 2048}},
		{"framesNegative", SlabConfig{Frames: -1, FrameSize: 2048}},
		{"frameSizeZero", SlabConfig{Frames: 4, FrameSize: 0}},
		{"frameSizeNegative", SlabConfig{Frames: 4, FrameSize: -64}},
		{"headroomEqual", SlabConfig{Frames: 4, FrameSize: 256, Headroom: 256}},
		{"headroomAbove", SlabConfig{Frames: 4, FrameSize: 256, Headroom: 300}},
		{"headroomAboveButBelowStride", SlabConfig{Frames: 4, FrameSize: 100, Headroom: 100}}, // stride 128
		{"headroomNegative", SlabConfig{Frames: 4, FrameSize: 256, Headroom: -1}},
		{"tooLarge", SlabConfig{Frames: 1 << 20, FrameSize: 1 << 17}}, // 128 GiB
		{"tooLargeOneFrame", SlabConfig{Frames: 1, FrameSize: MaxSlabBytes + 1}},
		{"framesMaxInt", SlabConfig{Frames: math.MaxInt, FrameSize: 64}},
		// Rounding FrameSize up to 64 must not overflow into a negative stride.
		{"frameSizeMaxInt", SlabConfig{Frames: 1, FrameSize: math.MaxInt}},
		{"frameSizeMaxIntTwoFrames", SlabConfig{Frames: 2, FrameSize: math.MaxInt - 1, Headroom: 64}},
		{"frameSizeMaxSlabBytesTwoFrames", SlabConfig{Frames: 2, FrameSize: MaxSlabBytes}},
		{"hugeTooLarge", SlabConfig{Frames: 1 << 20, FrameSize: 1 << 17, HugePages: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSlab(tc.cfg)
			if !errors.Is(err, ErrSlabConfig) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("NewSlab(%+v) error = %v, want ErrSlabConfig", tc.cfg, err)
			}
			if s != nil {
				t.Fatalf("NewSlab(%+v) returned a slab with an error", tc.cfg)
			}
		})
	}
}

func TestSlabStride(t *testing.T) {
	tests := []struct{ frameSize, headroom, stride int }{
		{1, 0, 64},
		{63, 0, 64},
		{64, 0, 64},
		{65, 64, 128},
		{128, 127, 128},
		{1500, 0, 1536},
		{2048, 256, 2048},
		{2049, 256, 2112},
		{9000, 128, 9024},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.frameSize), func(t *testing.T) {
			const frames = 5
			s := newTestSlab(t, SlabConfig{Frames: frames, FrameSize: tc.frameSize, Headroom: tc.headroom})
			if s.Stride() != tc.stride {
				t.Fatalf("Stride() = %d, want %d", s.Stride(), tc.stride)
			}
			if s.Headroom() != tc.headroom || s.Frames() != frames {
				t.Fatalf("Headroom() = %d, Frames() = %d; want %d, %d", s.Headroom(), s.Frames(), tc.headroom, frames)
			}
			if b := s.Bytes(); len(b) != frames*tc.stride || cap(b) != len(b) {
				t.Fatalf("Bytes() has len %d, cap %d; want %d", len(b), cap(b), frames*tc.stride)
			}
			if s.Pages() != PagesNormal {
				t.Fatalf("Pages() = %q without HugePages, want %q", s.Pages(), PagesNormal)
			}
		})
	}
}

func TestSlabLayout(t *testing.T) {
	const frames, frameSize, headroom = 37, 2000, 128
	s := newTestSlab(t, SlabConfig{Frames: frames, FrameSize: frameSize, Headroom: headroom})
	stride := s.Stride()
	base := addr(s.Bytes())
	if base%64 != 0 {
		t.Fatalf("slab starts at %#x, not 64-byte aligned", base)
	}
	for i := range frames {
		f := s.Frame(i)
		if len(f) != stride || cap(f) != stride {
			t.Fatalf("Frame(%d) has len %d, cap %d; want %d, %d", i, len(f), cap(f), stride, stride)
		}
		if a := addr(f); a%64 != 0 || a != base+uintptr(i*stride) {
			t.Fatalf("Frame(%d) starts at %#x (base %#x): misaligned or not at i*Stride", i, a, base)
		}
		d := s.Data(i)
		if len(d) != stride-headroom || cap(d) != stride-headroom {
			t.Fatalf("Data(%d) has len %d, cap %d; want %d", i, len(d), cap(d), stride-headroom)
		}
		if addr(d) != addr(f)+headroom {
			t.Fatalf("Data(%d) starts %d bytes into the frame, want %d", i, addr(d)-addr(f), headroom)
		}
	}
	for _, i := range []int{-1, frames, frames + 1} {
		for name, f := range map[string]func(int) []byte{"Frame": s.Frame, "Data": s.Data} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s(%d) did not panic", name, i)
					}
				}()
				f(i)
			}()
		}
	}
}

func TestSlabFramesDoNotOverlap(t *testing.T) {
	const frames = 50
	s := newTestSlab(t, SlabConfig{Frames: frames, FrameSize: 1000, Headroom: 64})
	for _, b := range s.Bytes() {
		if b != 0 {
			t.Fatal("fresh slab memory is not zero")
		}
	}
	pattern := func(i, j int) byte { return byte(i*131 + j*7 + 1) }
	for i := range frames {
		f := s.Frame(i)
		for j := range f {
			f[j] = pattern(i, j)
		}
	}
	for i := range frames {
		f := s.Frame(i)
		for j := range f {
			if f[j] != pattern(i, j) {
				t.Fatalf("frame %d byte %d = %d, want %d: overwritten by another frame", i, j, f[j], pattern(i, j))
			}
		}
		d := s.Data(i)
		if d[0] != pattern(i, s.Headroom()) || d[len(d)-1] != pattern(i, s.Stride()-1) {
			t.Fatalf("Data(%d) does not see frame %d's bytes", i, i)
		}
	}
	// Bytes covers the frames, in order, and nothing else.
	all := s.Bytes()
	for k := range all {
		if i, j := k/s.Stride(), k%s.Stride(); all[k] != pattern(i, j) {
			t.Fatalf("Bytes()[%d] = %d, want frame %d byte %d = %d", k, all[k], i, j, pattern(i, j))
		}
	}
}

func TestSlabIndexOffset(t *testing.T) {
	const frames = 20
	s := newTestSlab(t, SlabConfig{Frames: frames, FrameSize: 300, Headroom: 40}) // stride 320
	other := newTestSlab(t, SlabConfig{Frames: frames, FrameSize: 300, Headroom: 40})
	stride, head := s.Stride(), s.Headroom()
	check := func(name string, b []byte, idx, off int) {
		t.Helper()
		if got := s.Index(b); got != idx {
			t.Errorf("Index(%s) = %d, want %d", name, got, idx)
		}
		if got := s.Offset(b); got != off {
			t.Errorf("Offset(%s) = %d, want %d", name, got, off)
		}
	}
	for i := range frames {
		f := s.Frame(i)
		check(fmt.Sprintf("Frame(%d)", i), f, i, i*stride)
		check(fmt.Sprintf("Data(%d)", i), s.Data(i), i, i*stride+head)
		check(fmt.Sprintf("Frame(%d)[mid]", i), f[stride/2:stride/2+10], i, i*stride+stride/2)
		check(fmt.Sprintf("Frame(%d)[last]", i), f[stride-1:], i, i*stride+stride-1)
		check(fmt.Sprintf("Frame(%d)[:0]", i), f[:0], -1, -1)
		check(fmt.Sprintf("Frame(%d)[end:]", i), f[stride:], -1, -1)
		// The frame found by Index is the one the slice came from.
		if addr(s.Frame(s.Index(f[100:]))) != addr(f) {
			t.Fatalf("Frame(Index(Frame(%d)[100:])) is another frame", i)
		}
		check(fmt.Sprintf("other.Frame(%d)", i), other.Frame(i), -1, -1)
	}
	check("heap slice", make([]byte, 64), -1, -1)
	var onStack [16]byte
	check("stack array", onStack[:], -1, -1)
	check("nil", nil, -1, -1)
	check("empty", []byte{}, -1, -1)
	// A slice that runs past the slab's end still starts in it.
	check("Bytes()[last:]", s.Bytes()[len(s.Bytes())-1:], frames-1, frames*stride-1)
}

func TestSlabAppendReallocates(t *testing.T) {
	s := newTestSlab(t, SlabConfig{Frames: 3, FrameSize: 128, Headroom: 16})
	next := s.Frame(1)
	for j := range next {
		next[j] = 0x5a
	}
	for name, b := range map[string][]byte{"Frame(0)": s.Frame(0), "Data(0)": s.Data(0), "Frame(2)": s.Frame(2)} {
		grown := append(b, 0xa5, 0xa5, 0xa5)
		if addr(grown) == addr(b) {
			t.Fatalf("append to %s wrote in place, past the frame", name)
		}
		if s.Index(grown) != -1 {
			t.Fatalf("append to %s returned memory inside the slab", name)
		}
		if len(grown) != len(b)+3 {
			t.Fatalf("append to %s: len %d", name, len(grown))
		}
	}
	for j, v := range s.Frame(1) {
		if v != 0x5a {
			t.Fatalf("append to frame 0 changed frame 1 byte %d to %#x", j, v)
		}
	}
}

func TestSlabHugePages(t *testing.T) {
	pageModes := map[string]bool{PagesHugeTLB: true, PagesTHP: true, PagesNormal: true}
	tests := []struct {
		name string
		cfg  SlabConfig
	}{
		// Exactly one huge page, and a size that is not a multiple of one.
		{"2MiB", SlabConfig{Frames: 1024, FrameSize: 2048, Headroom: 256, HugePages: true}},
		{"3MiB", SlabConfig{Frames: 1536, FrameSize: 2048, Headroom: 256, HugePages: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSlab(t, tc.cfg)
			if !pageModes[s.Pages()] {
				t.Fatalf("Pages() = %q, not one of the page modes", s.Pages())
			}
			t.Logf("Pages() = %q", s.Pages())
			if len(s.Bytes()) != tc.cfg.Frames*s.Stride() {
				t.Fatalf("len(Bytes()) = %d, want %d", len(s.Bytes()), tc.cfg.Frames*s.Stride())
			}
			// The whole region is usable memory, frame by frame.
			for i := range s.Frames() {
				f := s.Frame(i)
				f[0], f[len(f)-1] = byte(i), byte(i>>8)
			}
			for i := range s.Frames() {
				f := s.Frame(i)
				if f[0] != byte(i) || f[len(f)-1] != byte(i>>8) {
					t.Fatalf("frame %d lost its contents", i)
				}
				if s.Index(f) != i {
					t.Fatalf("Index(Frame(%d)) = %d", i, s.Index(f))
				}
			}
		})
	}
	t.Run("belowOneHugePage", func(t *testing.T) {
		// Too small for a huge page: HugePages is ignored.
		s := newTestSlab(t, SlabConfig{Frames: 8, FrameSize: 2048, HugePages: true})
		if s.Pages() != PagesNormal {
			t.Fatalf("Pages() = %q for a 16 KiB slab, want %q", s.Pages(), PagesNormal)
		}
	})
}

func TestSlabClose(t *testing.T) {
	s, err := NewSlab(SlabConfig{Frames: 4, FrameSize: 256, Headroom: 32})
	if err != nil {
		t.Fatal(err)
	}
	s.Frame(3)[0] = 1
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d after the first: %v", i+2, err)
		}
	}
	for name, f := range map[string]func(int) []byte{"Frame": s.Frame, "Data": s.Data} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s(0) after Close did not panic", name)
				}
			}()
			b := f(0)
			t.Errorf("%s(0) after Close returned %d bytes", name, len(b))
		}()
	}
	if len(s.Bytes()) != 0 {
		t.Fatalf("Bytes() after Close has %d bytes", len(s.Bytes()))
	}
	if s.Index(make([]byte, 1)) != -1 || s.Offset(make([]byte, 1)) != -1 {
		t.Fatal("Index/Offset after Close not -1")
	}
	// The geometry stays readable.
	if s.Frames() != 4 || s.Stride() != 256 || s.Headroom() != 32 {
		t.Fatalf("Frames %d, Stride %d, Headroom %d after Close", s.Frames(), s.Stride(), s.Headroom())
	}
}

func TestSlabCloseConcurrent(t *testing.T) {
	for _, huge := range []bool{false, true} {
		s, err := NewSlab(SlabConfig{Frames: 1024, FrameSize: 2048, HugePages: huge})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Close()
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("HugePages %v: concurrent Close %d: %v", huge, i, err)
			}
		}
	}
}
