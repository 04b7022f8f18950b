//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// Exit codes.
const (
	exitOK    = 0 // clean shutdown: every frame accounted for
	exitError = 1 // a failure at start, while running or at shutdown
	exitUsage = 2 // bad command line
)

// switchID is the GUID the switch registers with its injection stack.
var switchID = inject.GUID{0x6e, 0x62, 0x6c, 0x73, 0x77, 0x69, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sigs))
}

// run is the daemon: it parses args, opens the ports, switches until a
// signal arrives on sigs, shuts down and returns the exit code.
func run(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "nblswitch: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	d := &daemon{o: o, log: log, stdout: stdout, start: time.Now()}
	if err := d.setup(); err != nil {
		log.Error("start failed", "err", err)
		if cerr := d.teardown(); cerr != nil {
			log.Error("cleanup after the failed start", "err", cerr)
		}
		return exitError
	}
	return d.serve(sigs)
}

// daemon is the running switch with its ports and callout.
type daemon struct {
	o       options
	log     *slog.Logger
	stdout  io.Writer
	start   time.Time
	prof    *os.File
	stack   *inject.Stack
	sw      *vswitch.Switch
	ports   []daemonPort
	backend string
	cs      *calloutSet
	// receiving turns false at shutdown: the ports' Receive then returns
	// nothing, and frames already in the switch can finish.
	stopRx      atomic.Bool
	capsDropped bool
}

// setup checks privileges, opens the ports, builds and starts the switch,
// then drops the capabilities.
func (d *daemon) setup() error {
	o := d.o
	if !o.keepCaps && builtWithCgo {
		return errCgo
	}
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if err := checkCaps(eff, requiredCaps(o.backend)); err != nil {
		return err
	}
	if !o.keepCaps && !eff.has(capSetpcap) {
		d.log.Warn("no CAP_SETPCAP: the capability bounding set cannot be dropped (the other sets will be)")
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		d.prof = f
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	d.stack = inject.NewStack()
	d.stack.Start()
	d.sw, err = vswitch.New(vswitch.Config{ID: switchID, Stack: d.stack, Workers: o.workers, Burst: o.burst, PinWorkers: o.pin, StormLimit: o.stormLimit,
		Logger: d.log, ProfileLabels: []string{"program", "nblswitch"}})
	if err != nil {
		return err
	}
	var used []string
	for i, ifname := range o.ports {
		p, stats, backend, err := openWithFallback(d.log, o.backend, ifname, o.port)
		if err != nil {
			return fmt.Errorf("port %s: %w", ifname, err)
		}
		pc := vswitch.PortConfig{ID: uint32(i + 1), NicIndex: uint16(i), Name: ifname}
		if v, ok := o.vlans[ifname]; ok {
			pc.Mode, pc.VLAN, pc.Allowed = v.mode, v.vlan, v.allowed
		}
		if err := d.sw.AddPort(&gatedPort{Port: p, stop: &d.stopRx}, pc); err != nil {
			return errors.Join(fmt.Errorf("port %s: %w", ifname, err), p.Close())
		}
		dp := daemonPort{name: ifname, id: pc.ID, backend: backend, stats: stats}
		if backend == backendAFXDP {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return fmt.Errorf("port %s: %w", ifname, err)
			}
			dp.ifindex = ifi.Index
		}
		d.ports = append(d.ports, dp)
		if !slices.Contains(used, backend) {
			used = append(used, backend)
		}
	}
	d.backend = strings.Join(used, ",")
	if d.cs, err = setupCallout(d.sw, d.stack, o.callout); err != nil {
		return err
	}
	if err := d.sw.Start(); err != nil {
		return err
	}
	if o.keepCaps {
		d.log.Info("capabilities kept (-keep-caps)", "effective", fmt.Sprintf("%016x", uint64(eff)))
		return nil
	}
	r, err := dropCaps()
	if err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}
	d.capsDropped = true
	d.log.Info("capabilities dropped", "threads", r.Threads, "effective_before", fmt.Sprintf("%016x", uint64(r.EffectiveBefore)),
		"all_threads_zero", r.AllZero, "no_new_privs", r.NoNewPrivs, "bounding_dropped", r.BoundingDropped,
		"bounding_after", fmt.Sprintf("%016x", uint64(r.BoundingAfter)), "bounding_kept", r.BoundingKeptWhy)
	return nil
}

// teardown releases what a failed setup made.
func (d *daemon) teardown() error {
	var errs []error
	if d.sw != nil {
		ctx, cancel := context.WithTimeout(context.Background(), d.o.shutdownTimeout)
		errs = append(errs, d.sw.CloseContext(ctx))
		if d.cs != nil {
			errs = append(errs, d.cs.close(ctx))
		}
		cancel()
	}
	if d.prof != nil {
		pprof.StopCPUProfile()
		errs = append(errs, d.prof.Close())
	}
	return errors.Join(errs...)
}

// serve logs statistics until a signal, then shuts down.
func (d *daemon) serve(sigs <-chan os.Signal) int {
	d.log.Info("nblswitch running", "ports", strings.Join(d.o.ports, ","), "backend", d.backend, "callout", d.o.callout,
		"workers", d.o.workers, "burst", d.o.burst, "pid", os.Getpid())
	var tick <-chan time.Time
	if d.o.statsEvery > 0 {
		t := time.NewTicker(d.o.statsEvery)
		defer t.Stop()
		tick = t.C
	}
	var prev *snapshot
	for {
		select {
		case <-tick:
			s := takeSnapshot(d.sw, d.ports, d.cs, d.backend, d.o.workers, d.start)
			logSnapshot(d.log, "stats", &s, prev)
			prev = &s
		case sig := <-sigs:
			d.log.Info("shutting down", "signal", sig.String())
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case s := <-sigs:
					d.log.Error("second signal: exiting without finishing the shutdown", "signal", s.String())
					os.Exit(exitError)
				case <-done:
				}
			}()
			return d.shutdown()
		}
	}
}

// shutdown stops receiving, lets the frames in the switch finish (at most
// -drain-timeout), closes the switch (what is left is dropped and counted
// as closed), destroys the injection handle, writes the profile and the
// final statistics, and checks that every frame was accounted for.
func (d *daemon) shutdown() int {
	t0 := time.Now()
	d.stopRx.Store(true)
	quiet := d.waitQuiet(d.o.drainTimeout)
	d.log.Info("receiving stopped", "in_flight_finished", quiet, "waited", time.Since(t0).Round(time.Millisecond).String())
	ctx, cancel := context.WithTimeout(context.Background(), d.o.shutdownTimeout)
	defer cancel()
	closeErr := d.sw.CloseContext(ctx)
	closeErr = errors.Join(closeErr, d.cs.close(ctx), d.checkDetached())
	if d.prof != nil {
		pprof.StopCPUProfile()
		if err := d.prof.Close(); err != nil {
			closeErr = errors.Join(closeErr, fmt.Errorf("-cpuprofile: %w", err))
		} else {
			d.log.Info("CPU profile written", "file", d.o.cpuprofile)
		}
	}
	s := takeSnapshot(d.sw, d.ports, d.cs, d.backend, d.o.workers, d.start)
	s.Closed = closeErr == nil
	s.CapsDropped = d.capsDropped
	s.ShutdownSeconds = time.Since(t0).Seconds()
	if closeErr != nil {
		s.CloseError = closeErr.Error()
	}
	logSnapshot(d.log, "final stats", &s, nil)
	code := exitOK
	if closeErr != nil {
		d.log.Error("close", "err", closeErr)
		code = exitError
	}
	if !s.Balance.Balanced {
		d.log.Error("frames unaccounted for", "in", s.Balance.In, "out", s.Balance.Out)
		code = exitError
	}
	if f := s.InFlight; f.InjectionsPending != 0 || f.DescriptorsHeld != 0 || f.CopyPoolInUse != 0 || f.XDPTxInFlight != 0 {
		d.log.Error("frames still in flight after close", "injections_pending", f.InjectionsPending,
			"descriptors_held", f.DescriptorsHeld, "copy_pool_in_use", f.CopyPoolInUse, "xdp_tx_in_flight", f.XDPTxInFlight)
		code = exitError
	}
	if d.o.statsJSON {
		enc := json.NewEncoder(d.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			d.log.Error("-stats-json", "err", err)
			code = exitError
		}
	}
	d.log.Info("nblswitch stopped", "exit_code", code)
	return code
}

// checkDetached checks, once the ports closed, that no AF_XDP port left
// its XDP program on the interface. Closing the port's BPF link detaches
// the program without a capability; the check needs none either, so it
// shows that this holds after the capabilities were dropped.
func (d *daemon) checkDetached() error {
	var errs []error
	for _, p := range d.ports {
		if p.backend != backendAFXDP {
			continue
		}
		on, err := xdpAttached(p.ifindex)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("port %s: checking for an XDP program after close: %w", p.name, err))
		case on:
			errs = append(errs, fmt.Errorf("port %s: an XDP program is still attached after the port closed", p.name))
		default:
			d.log.Info("XDP program detached", "port", p.name, "caps_dropped", d.capsDropped)
		}
	}
	return errors.Join(errs...)
}

// waitQuiet waits until every frame in the switch has finished (the
// counters balance, no injection is pending, and both stay so for a few
// polls, since workers publish their counters every few bursts) or the
// timeout passes.
func (d *daemon) waitQuiet(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	var last balance
	stable := 0
	for {
		b := balanceOf(d.sw.Stats())
		if b.Balanced && d.cs.inFlight() == 0 && b == last {
			if stable++; stable >= 3 {
				return true
			}
		} else {
			stable = 0
		}
		last = b
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gatedPort is a port whose Receive returns nothing once stop is set, so
// that at shutdown the switch takes no new frames while the ones it has
// finish. It passes the port's pool and cache on to the switch.
type gatedPort struct {
	vswitch.Port
	stop *atomic.Bool
}

// Receive implements vswitch.Port.
func (g *gatedPort) Receive(out []*nbl.NetBufferList) (int, error) {
	if g.stop.Load() {
		return 0, nil
	}
	return g.Port.Receive(out)
}

// Pool returns the port's descriptor pool (nil if it has none).
func (g *gatedPort) Pool() *nbl.Pool {
	if p, ok := g.Port.(interface{ Pool() *nbl.Pool }); ok {
		return p.Pool()
	}
	return nil
}

// Cache returns the port's descriptor cache (nil if it has none).
func (g *gatedPort) Cache() *nbl.Cache {
	if p, ok := g.Port.(interface{ Cache() *nbl.Cache }); ok {
		return p.Cache()
	}
	return nil
}
