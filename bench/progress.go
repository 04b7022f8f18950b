package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// newProgress returns a function that shows the measurement under way on
// one line when w is a terminal, and does nothing otherwise. Calling it with
// "" clears the line.
func newProgress(w io.Writer) func(string) {
	f, ok := w.(*os.File)
	if !ok {
		return func(string) {}
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return func(string) {}
	}
	return func(name string) {
		if name == "" {
			fmt.Fprint(f, "\r\033[K")
			return
		}
		fmt.Fprintf(f, "\r\033[Kmeasuring %s ...", name)
	}
}
