//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "nblswitch: AF_PACKET and AF_XDP ports need Linux")
	os.Exit(1)
}
