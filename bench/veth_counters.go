//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nblpipe/nblpipe/internal/netns"
)

// linkCounters are an interface's packet counters.
type linkCounters struct {
	RxPackets, RxDropped uint64
	TxPackets, TxDropped uint64
}

// readLink reads the counters of ifname in namespace ns with
// ip -n NS -s -j link show dev IF.
func readLink(ns, ifname string) (linkCounters, error) {
	out, err := netns.Run("-n", ns, "-s", "-j", "link", "show", "dev", ifname)
	if err != nil {
		return linkCounters{}, err
	}
	return parseLinkJSON([]byte(out))
}

// parseLinkJSON reads the counters from ip -s -j link show output for one
// interface.
func parseLinkJSON(b []byte) (linkCounters, error) {
	var links []struct {
		Ifname  string `json:"ifname"`
		Stats64 *struct {
			Rx struct {
				Packets uint64 `json:"packets"`
				Dropped uint64 `json:"dropped"`
			} `json:"rx"`
			Tx struct {
				Packets uint64 `json:"packets"`
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return linkCounters{}, fmt.Errorf("ip -s -j link output: %w", err)
	}
	if len(links) != 1 || links[0].Stats64 == nil {
		return linkCounters{}, fmt.Errorf("ip -s -j link output: want one interface with stats64, got %d entries", len(links))
	}
	s := links[0].Stats64
	return linkCounters{RxPackets: s.Rx.Packets, RxDropped: s.Rx.Dropped, TxPackets: s.Tx.Packets, TxDropped: s.Tx.Dropped}, nil
}

// sysfsCounter reads counter name (rx_packets, tx_packets, ...) of
// interface ifname in this process's namespace.
func sysfsCounter(ifname, name string) (uint64, error) {
	bad := func(s string) bool { return s == "" || s == "." || s == ".." || strings.Contains(s, "/") }
	if bad(ifname) || bad(name) {
		return 0, fmt.Errorf("sysfsCounter: bad name %q/%q", ifname, name)
	}
	b, err := os.ReadFile("/sys/class/net/" + ifname + "/statistics/" + name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", ifname, name, err)
	}
	return n, nil
}

// userHZ is the unit of /proc/stat's CPU times: USER_HZ, which the kernel
// fixes at 100 for its user interface.
const userHZ = 100

// softirqTime returns the CPU time all CPUs spent in softirqs since boot,
// from /proc/stat.
func softirqTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseSoftirq(string(b))
}

// parseSoftirq reads the softirq field (the seventh number) of the "cpu"
// line of /proc/stat.
func parseSoftirq(stat string) (time.Duration, error) {
	for _, l := range strings.Split(stat, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 8 {
			return 0, fmt.Errorf("/proc/stat: short cpu line %q", l)
		}
		ticks, err := strconv.ParseUint(f[7], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat softirq: %w", err)
		}
		return time.Duration(ticks) * (time.Second / userHZ), nil
	}
	return 0, errors.New("/proc/stat: no cpu line")
}

// processCPU returns the user and system CPU time of this process, all
// its threads together (getrusage RUSAGE_SELF).
func processCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
