package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/netns"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/afpacket"
)

// vethRuns measures real interfaces: two hosts in network namespaces made
// here, joined by veth pairs to, in turn, a kernel bridge and the switch on
// AF_PACKET ports (plain forwarding, then with the inspect callout). iperf3
// TCP runs between the hosts for the run's duration with the hosts' default
// offloads, and ping measures the round trip at a low rate. Everything made
// is removed when a path is done, also on error. It needs root, ip, ping
// and iperf3.
func vethRuns(o options, re *regexp.Regexp, progress func(string)) ([]Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("-ports veth needs root (network namespaces and packet sockets)")
	}
	for _, c := range []string{"ip", "ping", "iperf3"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("-ports veth needs %s (apt-get install iproute2 iputils-ping iperf3): %w", c, err)
		}
	}
	d := max(o.duration, 2*time.Second)
	var out []Result
	for _, path := range []string{"kernel-bridge", "afpacket/forward", "afpacket/inspect"} {
		name := "veth/" + path
		if !re.MatchString(name) {
			continue
		}
		progress(name)
		r, err := vethRun(path, d)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		r.Name, r.Group = name, "veth"
		out = append(out, r)
	}
	return out, nil
}

func vethRun(path string, d time.Duration) (res Result, err error) {
	h1, c1, err := netns.Make("10.81.0.1/24")
	defer c1()
	if err != nil {
		return res, err
	}
	h2, c2, err := netns.Make("10.81.0.2/24")
	defer c2()
	if err != nil {
		return res, err
	}
	var sw *vswitch.Switch
	var ports []*afpacket.Port
	if path == "kernel-bridge" {
		br := netns.Unique("nblbr")
		if _, err := netns.Run("link", "add", br, "type", "bridge"); err != nil {
			return res, err
		}
		defer netns.Run("link", "del", br)
		for _, s := range [][]string{{"link", "set", h1.Peer, "master", br}, {"link", "set", h2.Peer, "master", br}, {"link", "set", br, "up"}} {
			if _, err := netns.Run(s...); err != nil {
				return res, err
			}
		}
	} else {
		st := inject.NewStack()
		st.Start()
		id, _ := inject.ParseGUID("0b0b0b0b-2222-3333-4444-555555555555")
		sw, err = vswitch.New(vswitch.Config{ID: id, Stack: st, Workers: 1, ProfileLabels: []string{"scenario", "veth-" + path}})
		if err != nil {
			return res, err
		}
		for i, h := range []*netns.Host{h1, h2} {
			p, err := afpacket.New(afpacket.Config{Interface: h.Peer})
			if err != nil {
				sw.Close()
				return res, err
			}
			ports = append(ports, p)
			if err := sw.AddPort(p, vswitch.PortConfig{ID: uint32(i + 1), Name: h.Peer}); err != nil {
				sw.Close()
				return res, err
			}
		}
		if path == "afpacket/inspect" {
			h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
			if err != nil {
				return res, err
			}
			defer h.Destroy()
			c := &scenario.Callout{Handle: h, VSwitchID: id.Bytes()}
			if err := sw.RegisterCallout(&vswitch.Callout{Key: "inspect", Classify: c.Classify, InjectionHandle: h}); err != nil {
				return res, err
			}
			if _, err := sw.AddFilter(&vswitch.Filter{Key: "inspect-all", LayerID: vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET,
				Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "inspect"}); err != nil {
				return res, err
			}
		}
		if err := sw.Start(); err != nil {
			return res, err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = errors.Join(err, sw.CloseContext(ctx))
		}()
	}

	// Latency first, at a low rate, then throughput.
	out, err := netns.Exec(h1.NS, "ping", "-c", "20", "-i", "0.05", "-W", "2", "10.81.0.2")
	if err != nil {
		return res, fmt.Errorf("ping: %w", err)
	}
	if rtt, ok := pingAvg(out); ok {
		res.P50Ns = &rtt // the average round trip, in ns
	}
	srv := exec.Command("ip", "netns", "exec", h2.NS, "iperf3", "-s", "-1", "-B", "10.81.0.2")
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	out, err = netns.Exec(h1.NS, "iperf3", "-c", "10.81.0.2", "-t", secs, "-J", "--connect-timeout", "3000")
	if err != nil {
		return res, fmt.Errorf("iperf3: %w", err)
	}
	var ip struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Bytes         uint64  `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &ip); err != nil {
		return res, fmt.Errorf("iperf3 output: %w", err)
	}
	res.Gbps = ip.End.SumReceived.BitsPerSecond / 1e9
	res.Runs = 1
	if sw != nil {
		st := sw.Stats()
		var drops uint64
		for _, ps := range st.Ports {
			res.Packets += ps.TxPackets
			drops += ps.Dropped()
		}
		for _, p := range ports {
			ks := p.Stats()
			drops += ks.KernelDrops
		}
		if drops > 0 {
			res.Error = fmt.Sprintf("%d frames dropped (switch and kernel ring counters)", drops)
		}
	}
	return res, nil
}

// pingAvg reads the average of ping's "rtt min/avg/max/mdev = ..." line, in
// nanoseconds.
func pingAvg(out string) (float64, bool) {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "= "); strings.Contains(l, "min/avg/max") && i >= 0 {
			f := strings.Split(strings.Fields(l[i+2:])[0], "/")
			if len(f) >= 2 {
				ms, err := strconv.ParseFloat(f[1], 64)
				return ms * 1e6, err == nil
			}
		}
	}
	return 0, false
}

func printVeth(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tiperf3 TCP Gbit/s\tvs kernel bridge\tping avg RTT ms\tframes sent by the switch\t")
	var kernel float64
	for _, r := range results {
		if r.Name == "veth/kernel-bridge" {
			kernel = r.Gbps
		}
	}
	for _, r := range results {
		vs := "-"
		if kernel > 0 && r.Name != "veth/kernel-bridge" {
			vs = fmt.Sprintf("%.0f%%", 100*r.Gbps/kernel)
		}
		rtt := "-"
		if r.P50Ns != nil {
			rtt = fmt.Sprintf("%.3f", *r.P50Ns/1e6)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%d\t\n", r.Name, r.Gbps, vs, rtt, r.Packets)
		if r.Error != "" {
			fmt.Fprintf(tw, "  ^ %s\t\t\t\t\t\n", r.Error)
		}
	}
	tw.Flush()
}
