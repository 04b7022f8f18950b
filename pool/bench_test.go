package pool

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// benchObj is the element of every benchmark, the pools' and sync.Pool's
// alike: a packet buffer.
type benchObj [2048]byte

const benchCacheSize = 256

// benchPool returns a pool big enough for every goroutine RunParallel
// starts to fill its cache and hold a bulk of 32 on top.
func benchPool(b *testing.B) *Pool[benchObj] {
	b.Helper()
	n := max(1024, 2*runtime.GOMAXPROCS(0)*(benchCacheSize+32))
	p, err := New[benchObj](n, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// reportPerObj adds the time per object moved, for operations that move
// perOp objects each (a Get+Put of a bulk of 32 moves 32).
func reportPerObj(b *testing.B, perOp int) {
	if b.N > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(perOp), "ns/obj")
	}
}

// benchSizes are the bulk sizes; 1 means single Get and Put.
var benchSizes = []int{1, 8, 32}

func sizeName(k int) string {
	if k == 1 {
		return "single"
	}
	return fmt.Sprintf("bulk%d", k)
}

// BenchmarkPool measures a Get and a Put (or a GetBulk and a PutBulk of
// 8 or 32) on the pool directly and through a cache of 256, on one
// goroutine and on GOMAXPROCS goroutines sharing the pool (each with its
// own cache).
func BenchmarkPool(b *testing.B) {
	for _, via := range []string{"pool", "cache"} {
		for _, k := range benchSizes {
			b.Run(via+"/"+sizeName(k)+"/1goroutine", func(b *testing.B) {
				p := benchPool(b)
				c, err := p.NewCache(benchCacheSize)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]*benchObj, k)
				b.ReportAllocs()
				switch {
				case via == "pool" && k == 1:
					for b.Loop() {
						v, ok := p.Get()
						if !ok {
							b.Fatal("Get failed")
						}
						p.Put(v)
					}
				case via == "pool":
					for b.Loop() {
						if !p.GetBulk(buf) {
							b.Fatal("GetBulk failed")
						}
						p.PutBulk(buf)
					}
				case k == 1:
					for b.Loop() {
						v, ok := c.Get()
						if !ok {
							b.Fatal("Get failed")
						}
						c.Put(v)
					}
				default:
					for b.Loop() {
						if !c.GetBulk(buf) {
							b.Fatal("GetBulk failed")
						}
						c.PutBulk(buf)
					}
				}
				reportPerObj(b, k)
				c.Flush()
				if p.InUse() != 0 {
					b.Fatalf("InUse() = %d after the benchmark", p.InUse())
				}
			})

			b.Run(via+"/"+sizeName(k)+"/parallel", func(b *testing.B) {
				p := benchPool(b)
				b.ReportAllocs()
				b.ResetTimer() // b.Loop does this; RunParallel does not
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]*benchObj, k)
					var c *Cache[benchObj]
					if via == "cache" {
						var err error
						if c, err = p.NewCache(benchCacheSize); err != nil {
							b.Error(err)
							return
						}
						defer c.Flush()
					}
					for pb.Next() {
						switch {
						case c == nil && k == 1:
							v, ok := p.Get()
							if !ok {
								b.Error("Get failed")
								return
							}
							p.Put(v)
						case c == nil:
							if !p.GetBulk(buf) {
								b.Error("GetBulk failed")
								return
							}
							p.PutBulk(buf)
						case k == 1:
							v, ok := c.Get()
							if !ok {
								b.Error("Get failed")
								return
							}
							c.Put(v)
						default:
							if !c.GetBulk(buf) {
								b.Error("GetBulk failed")
								return
							}
							c.PutBulk(buf)
						}
					}
				})
				reportPerObj(b, k)
				if p.InUse() != 0 {
					b.Fatalf("InUse() = %d after the benchmark", p.InUse())
				}
			})
		}
	}
}

// BenchmarkBaseline is what BenchmarkPool is compared with: sync.Pool's Get
// and Put of the same element type.
func BenchmarkBaseline(b *testing.B) {
	newPool := func() *sync.Pool {
		return &sync.Pool{New: func() any { return new(benchObj) }}
	}
	b.Run("syncpool/single/1goroutine", func(b *testing.B) {
		sp := newPool()
		b.ReportAllocs()
		for b.Loop() {
			v := sp.Get().(*benchObj)
			sp.Put(v)
		}
		reportPerObj(b, 1)
	})
	b.Run("syncpool/single/parallel", func(b *testing.B) {
		sp := newPool()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v := sp.Get().(*benchObj)
				sp.Put(v)
			}
		})
		reportPerObj(b, 1)
	})
}
