//go:build !linux

package main

import (
	"errors"
	"io"
	"regexp"
)

// vethRuns needs Linux: network namespaces, veth pairs and packet sockets.
func vethRuns(options, *regexp.Regexp, func(string)) ([]Result, error) {
	return nil, errors.New("-ports veth needs Linux (network namespaces and packet sockets)")
}

func printVeth(io.Writer, []Result) {}
