package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// newProgress returns functions that show the measurement under way on one
// line when w is a terminal: the first names it ("" clears the line), the
// second updates it with the elapsed time, packets so far and the current
// rate. When w is not a terminal the first does nothing and the second is
// nil, so the scenarios do not even read their counters.
func newProgress(w io.Writer) (func(string), func(string, uint64, time.Duration)) {
	f, ok := w.(*os.File)
	if !ok {
		return func(string) {}, nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return func(string) {}, nil
	}
	name := func(n string) {
		if n == "" {
			fmt.Fprint(f, "\r\033[K")
			return
		}
		fmt.Fprintf(f, "\r\033[Kmeasuring %s ...", n)
	}
	live := func(n string, pkts uint64, e time.Duration) {
		fmt.Fprintf(f, "\r\033[K%s  %5.1fs  %d packets  %.2f Mpps", n, e.Seconds(), pkts, float64(pkts)/e.Seconds()/1e6)
	}
	return name, live
}
