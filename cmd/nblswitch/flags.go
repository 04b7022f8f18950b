//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afxdp"
)

// options are the parsed command line.
type options struct {
	ports           []string
	backend         string
	callout         string
	workers         int
	burst           int
	stormLimit      int
	pin             bool
	statsEvery      time.Duration
	statsJSON       bool
	cpuprofile      string
	logLevel        slog.Level
	keepCaps        bool
	vlans           map[string]vlanSpec
	drainTimeout    time.Duration
	shutdownTimeout time.Duration
	port            portOptions
}

// vlanSpec is a port's 802.1Q configuration from -vlan.
type vlanSpec struct {
	mode    vswitch.VLANMode
	vlan    uint16
	allowed []uint16
}

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// maxIfName is IFNAMSIZ-1: the longest interface name Linux takes.
const maxIfName = 15

// parseFlags parses args (without the program name). Usage and errors go
// to stderr; flag.ErrHelp is returned for -h.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("nblswitch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ports, vlans listFlag
	fs.Var(&ports, "port", "interface to bridge (repeat for each port, at least two)")
	fs.StringVar(&o.backend, "backend", backendAFPacket, "port back end: "+strings.Join(backends, " or ")+" (afxdp falls back to afpacket where it cannot be used)")
	fs.StringVar(&o.callout, "callout", calloutNone, "callout at the vSwitch layers: "+strings.Join(callouts, ", "))
	fs.IntVar(&o.workers, "workers", 1, "switch worker goroutines (port i is served by worker i % N)")
	fs.IntVar(&o.burst, "burst", 32, "frames per receive call and per step")
	fs.IntVar(&o.stormLimit, "storm-limit", 100000, "frames one port may have flooded (broadcast, multicast, unknown unicast) per second; the excess is dropped as storm (0: no limit)")
	fs.BoolVar(&o.pin, "pin", false, "pin worker i to CPU i")
	fs.DurationVar(&o.statsEvery, "stats", 10*time.Second, "log per-port statistics at this interval (0: only at exit)")
	fs.BoolVar(&o.statsJSON, "stats-json", false, "write the final statistics as JSON to stdout at exit")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to this file (written at shutdown)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.keepCaps, "keep-caps", false, "keep the process's capabilities after the sockets are open")
	fs.Var(&vlans, "vlan", "a port's VLANs: IF=access:VID or IF=trunk:NATIVE:VID,VID-VID,... (NATIVE 0: untagged frames dropped); repeatable")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", time.Second, "at shutdown, how long to let frames already in the switch finish after receiving stops")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 5*time.Second, "bound on closing the switch and its injection handle")
	fs.IntVar(&o.port.Blocks, "afpacket-blocks", 0, "AF_PACKET receive ring blocks (0: the back end's default)")
	fs.IntVar(&o.port.BlockSize, "afpacket-block-size", 0, "AF_PACKET receive ring block size in bytes (0: the back end's default)")
	xdpMode := fs.String("afxdp-mode", "auto", "AF_XDP socket mode: auto (zero-copy where the driver has it, else copy), copy or zero-copy")
	xdpAttach := fs.String("afxdp-attach", "auto", "XDP attach mode: auto (driver, else generic), driver or generic")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments: %q (interfaces are given with -port)", fs.Args())
	}
	o.ports = ports
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("-log-level: %w", err)
	}
	var errs []error
	if len(o.ports) < 2 {
		errs = append(errs, fmt.Errorf("at least two -port interfaces are needed, got %d", len(o.ports)))
	}
	for i, p := range o.ports {
		if err := checkIfName(p); err != nil {
			errs = append(errs, fmt.Errorf("-port %q: %w", p, err))
		}
		if slices.Contains(o.ports[:i], p) {
			errs = append(errs, fmt.Errorf("-port %q given twice", p))
		}
	}
	if !slices.Contains(backends, o.backend) {
		errs = append(errs, fmt.Errorf("-backend %q: want one of %v", o.backend, backends))
	}
	if !slices.Contains(callouts, o.callout) {
		errs = append(errs, fmt.Errorf("-callout %q: want one of %v", o.callout, callouts))
	}
	if o.workers < 1 || o.workers > 1024 {
		errs = append(errs, fmt.Errorf("-workers %d: want 1-1024", o.workers))
	}
	if o.burst < 1 || o.burst > 1024 {
		errs = append(errs, fmt.Errorf("-burst %d: want 1-1024", o.burst))
	}
	if o.stormLimit < 0 || o.stormLimit > 1<<30 {
		errs = append(errs, fmt.Errorf("-storm-limit %d: want 0-%d", o.stormLimit, 1<<30))
	}
	if o.statsEvery < 0 || o.statsEvery > 0 && o.statsEvery < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-stats %v: want 0 or at least 10ms", o.statsEvery))
	}
	if o.drainTimeout < 0 || o.shutdownTimeout <= 0 {
		errs = append(errs, errors.New("-drain-timeout must not be negative and -shutdown-timeout must be positive"))
	}
	if o.port.Blocks < 0 || o.port.BlockSize < 0 {
		errs = append(errs, errors.New("-afpacket-blocks and -afpacket-block-size must not be negative"))
	}
	var err error
	if o.port.XDPMode, err = parseXDPMode(*xdpMode); err != nil {
		errs = append(errs, fmt.Errorf("-afxdp-mode: %w", err))
	}
	if o.port.XDPAttach, err = parseXDPAttach(*xdpAttach); err != nil {
		errs = append(errs, fmt.Errorf("-afxdp-attach: %w", err))
	}
	o.vlans = map[string]vlanSpec{}
	for _, v := range vlans {
		ifname, spec, err := parseVLAN(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("-vlan %q: %w", v, err))
		case !slices.Contains(o.ports, ifname):
			errs = append(errs, fmt.Errorf("-vlan %q: %s is not a -port", v, ifname))
		default:
			if _, dup := o.vlans[ifname]; dup {
				errs = append(errs, fmt.Errorf("-vlan given twice for %s", ifname))
			}
			o.vlans[ifname] = spec
		}
	}
	return o, errors.Join(errs...)
}

// parseXDPMode parses an afxdp.Mode by its name.
func parseXDPMode(s string) (afxdp.Mode, error) {
	for _, m := range []afxdp.Mode{afxdp.Auto, afxdp.Copy, afxdp.ZeroCopy} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%q: want auto, copy or zero-copy", s)
}

// parseXDPAttach parses an afxdp.AttachMode by its name.
func parseXDPAttach(s string) (afxdp.AttachMode, error) {
	for _, m := range []afxdp.AttachMode{afxdp.AttachAuto, afxdp.AttachDriver, afxdp.AttachGeneric} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%q: want auto, driver or generic", s)
}

// checkIfName rejects names Linux would not take.
func checkIfName(n string) error {
	switch {
	case n == "":
		return errors.New("empty interface name")
	case len(n) > maxIfName:
		return fmt.Errorf("interface name longer than %d bytes", maxIfName)
	case n == "." || n == "..":
		return errors.New("not an interface name")
	case strings.ContainsAny(n, "/: \t\n\x00"):
		return errors.New("interface name with '/', ':', a space or a NUL")
	}
	return nil
}

// parseVLAN parses IF=access:VID or IF=trunk:NATIVE:LIST, where LIST is
// VIDs and ranges (a-b) separated by commas; VIDs are 1-4094, NATIVE 0-4094.
func parseVLAN(s string) (string, vlanSpec, error) {
	var v vlanSpec
	ifname, rest, ok := strings.Cut(s, "=")
	if !ok {
		return "", v, errors.New("want IF=access:VID or IF=trunk:NATIVE:VIDS")
	}
	if err := checkIfName(ifname); err != nil {
		return "", v, err
	}
	parts := strings.Split(rest, ":")
	vid := func(s string, lo int) (uint16, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > 4094 {
			return 0, fmt.Errorf("VLAN %q: want a number %d-4094", s, lo)
		}
		return uint16(n), nil
	}
	var err error
	switch {
	case parts[0] == "access" && len(parts) == 2:
		v.mode = vswitch.Access
		v.vlan, err = vid(parts[1], 1)
		return ifname, v, err
	case parts[0] == "trunk" && len(parts) == 3:
		v.mode = vswitch.Trunk
		if v.vlan, err = vid(parts[1], 0); err != nil {
			return "", v, err
		}
		var seen [4095]bool
		for _, item := range strings.Split(parts[2], ",") {
			lo, hi, isRange := strings.Cut(item, "-")
			a, err := vid(lo, 1)
			if err != nil {
				return "", v, err
			}
			b := a
			if isRange {
				if b, err = vid(hi, 1); err != nil {
					return "", v, err
				}
				if b < a {
					return "", v, fmt.Errorf("VLAN range %q runs backwards", item)
				}
			}
			for x := a; x <= b; x++ {
				if !seen[x] {
					seen[x] = true
					v.allowed = append(v.allowed, x)
				}
			}
		}
		return ifname, v, nil
	}
	return "", v, errors.New("want access:VID or trunk:NATIVE:VIDS after '='")
}
