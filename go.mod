module github.com/nblpipe/nblpipe

go 1.24.0

require (
	github.com/google/gopacket v1.1.19
	github.com/klauspost/cpuid/v2 v2.4.2
	golang.org/x/sys v0.41.0
)
