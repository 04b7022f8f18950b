// Command nblswitch is a switch daemon: it bridges real interfaces through a
// vswitch.Switch, with an optional callout at the vSwitch layers, and
// accounts for every frame.
//
// # Usage
//
//	nblswitch -port IF -port IF [-port IF ...]
//	          [-backend afpacket|afxdp] [-callout none|count|reinject|inspect]
//	          [-workers N] [-burst N] [-pin] [-storm-limit N]
//	          [-vlan IF=access:VID] [-vlan IF=trunk:NATIVE:VID,VID-VID,...]
//	          [-stats 10s] [-stats-json] [-log-level info]
//	          [-cpuprofile FILE] [-keep-caps]
//	          [-drain-timeout 1s] [-shutdown-timeout 5s]
//	          [-afpacket-blocks N] [-afpacket-block-size BYTES]
//	          [-afxdp-mode auto|copy|zero-copy] [-afxdp-attach auto|driver|generic]
//
// Build it without cgo, so that it can drop its capabilities on every
// thread (see Privileges):
//
//	CGO_ENABLED=0 go build -o nblswitch ./cmd/nblswitch
//
// Example: two network namespaces joined by veth pairs whose other ends,
// veth-a and veth-b, the switch owns; every frame goes through the inspect
// callout, statistics are logged every second:
//
//	sudo ./nblswitch -port veth-a -port veth-b -callout inspect -stats 1s
//
// # Ports and back ends
//
// Each -port is a switch port, with port ID 1, 2, ... in the order given
// (port 0, the switch's unfiltered default port, is not used), its NIC
// index 0, 1, ..., and the interface name as its name. -backend afpacket
// (the default) opens each as a TPACKET_V3 AF_PACKET socket
// (vswitch/afpacket), with PACKET_VNET_HDR so that TCP works with the
// hosts' offloads left on. -backend afxdp opens each as an AF_XDP port
// (vswitch/afxdp): one socket per receive queue over a UMEM, and an XDP
// program, attached to the interface through a BPF link, that redirects
// every frame to them. -afxdp-mode chooses the sockets' binding (auto:
// zero-copy where the driver has it, else copy; veth has only copy) and
// -afxdp-attach where the program runs (auto: in the driver, else
// generic; on veth TCP needs driver mode, see vswitch/afxdp). Each port
// logs at start the back end it got, and for AF_XDP the modes
// (xdp_mode, xdp_attach) and its number of queues.
//
// Where AF_XDP cannot be used on an interface — afxdp.Available or
// afxdp.New reports afxdp.ErrUnsupported: the kernel lacks AF_XDP or BPF,
// the process lacks CAP_NET_ADMIN, CAP_NET_RAW, or CAP_BPF and
// CAP_SYS_ADMIN, or the UMEM does not fit RLIMIT_MEMLOCK without
// CAP_IPC_LOCK — the daemon logs a warning with afxdp's reason ("AF_XDP
// back end unavailable, falling back to AF_PACKET", port=..., reason=...)
// and opens that port with AF_PACKET; the report's backend then lists
// both when ports differ. Other errors (no such interface, a bad mode)
// stop the start. The opening of ports lives in backend.go (openPort),
// where a back end plugs in.
//
// -vlan gives a port 802.1Q modes: access:VID carries one VLAN untagged;
// trunk:NATIVE:LIST carries the listed VLANs tagged and NATIVE untagged (0:
// untagged frames are dropped). Ports without -vlan are access ports of
// VLAN 1.
//
// # Callouts
//
//   - none: plain forwarding (learn, look up, transmit).
//   - count: a callout with a filter at the ingress and the egress layer
//     (72 and 73) that permits every frame and counts frames and bytes per
//     layer.
//   - inspect: the WFP inspect pattern at the ingress layer, written
//     against the WFP-named API: it clones every frame it did not inject
//     (FwpsAllocateCloneNetBufferList0, from a pool of its own), references
//     and absorbs the original, and injects the clone with
//     FwpsInjectvSwitchEthernetIngressAsync0 and a completion function that
//     frees the clone and dereferences the original; back at ingress,
//     FwpsQueryPacketInjectionState0 says FWPS_PACKET_INJECTED_BY_SELF and
//     the clone passes.
//   - reinject: the same pattern without clones, with internal/scenario's
//     Callout: it references and absorbs every frame it did not inject and
//     reinjects the original itself (the injection takes the reference
//     over).
//
// A frame a callout cannot clone or inject is blocked and counted
// (callout-block), never lost.
//
// # Loops
//
// Two of the switch's ports joined outside it (a cable, a bridge) make a
// loop in which a broadcast would circle for ever. -storm-limit (default
// 100000) bounds the frames each port may have flooded per second; the
// excess is dropped and counted as storm, and logged once.
//
// # Statistics
//
// Every -stats interval the daemon logs, per port: the switch's counters
// (received, transmitted, injected, absorbed, drops by reason), the rates
// since the last line, and the back end's own (for AF_PACKET the kernel's
// PACKET_STATISTICS: packets, drops for a full ring, queue freezes;
// receive calls cut short for want of a descriptor, transmit errors, and
// the descriptors held; for AF_XDP the modes and the kernel's
// XDP_STATISTICS: rx_dropped, rx_invalid_descs, tx_invalid_descs,
// rx_ring_full, fill_ring_empty, tx_ring_empty, with the port's own
// transmit figures: refused frames, frames in flight, partial checksums
// completed; the -stats-json report has them under backend_stats.xdp);
// then a line for the switch: flooding, the callout's counters, injections
// pending, descriptors held, copy NBLs in use (and AF_XDP frames posted
// for transmission and not completed), and the accounting identity
//
//	in  = received + injected + flood copies   (summed over ports)
//	out = transmitted + dropped + absorbed
//
// which holds whenever nothing is in flight. The same figures are logged
// at exit; -stats-json also writes them as one JSON object to stdout.
// Logs are log/slog text lines on stderr, at -log-level.
//
// # Shutdown
//
// SIGINT or SIGTERM stops the daemon: the ports stop receiving (new frames
// wait in the kernel), the frames already in the switch are given up to
// -drain-timeout to be transmitted and their injections to complete, then
// the switch closes within -shutdown-timeout (Switch.CloseContext): what
// is still queued is dropped and counted as closed, every injection
// completes, the ports close and their descriptors must all be back (an
// AF_XDP port also detaches its XDP program, which the daemon checks, and
// must have no transmission left uncompleted). The
// injection handle is destroyed, the CPU profile (-cpuprofile) is written,
// and the final statistics are logged. The exit code is 0 when all of this
// succeeded, the counters balance and nothing is left in flight; 1
// otherwise (and for failures at start); 2 for a bad command line. A second
// signal during the shutdown exits at once with 1.
//
// # Privileges
//
// AF_PACKET sockets need CAP_NET_RAW; AF_XDP needs CAP_NET_RAW,
// CAP_NET_ADMIN (to attach the XDP program), CAP_BPF or CAP_SYS_ADMIN (to
// load it and its XSKMAP), and CAP_IPC_LOCK or an RLIMIT_MEMLOCK that
// holds the UMEM (the kernel charges it there). At start the daemon reads
// its effective capability set (capget) and, without CAP_NET_RAW, which
// either back end needs, exits naming it and what for. What AF_XDP needs
// beyond that it leaves to afxdp.Available, port by port: without it the
// port falls back to AF_PACKET (see Ports and back ends), so that
//
//	sudo setpriv --inh-caps=-all --bounding-set=-bpf,-sys_admin -- ./nblswitch -backend afxdp ...
//
// runs on AF_PACKET and says why.
//
// Once every socket is open it needs no capability at all, so it gives them
// up. AF_XDP included: the sockets, the XSKMAP and the program are
// descriptors the process holds, and the program is attached through a BPF
// link (bpf_link_create, Linux 5.9), not a netlink request; closing the
// link's descriptor at shutdown detaches it without CAP_NET_ADMIN or
// CAP_BPF, and so does the kernel when the process dies, even by SIGKILL.
// Once the ports closed, the daemon asks the kernel (RTM_GETLINK, which
// needs no capability either) whether each AF_XDP port's interface still
// has an XDP program, logs "XDP program detached" for each, and exits 1 if
// one is left; the tests also check with ip -d link show, after a shutdown
// and after SIGKILL.
//
// To give them up it sets PR_SET_NO_NEW_PRIVS, clears the ambient set,
// drops the whole bounding set (PR_CAPBSET_DROP; this needs CAP_SETPCAP,
// and is skipped with a warning without it) and clears the effective,
// permitted and inheritable sets (capset). Capabilities belong to threads and the Go
// runtime has several, so each step runs on every thread with
// syscall.AllThreadsSyscall; threads made later inherit the result. It then
// reads /proc/self/task/*/status, checks that every thread's CapEff,
// CapPrm, CapInh and CapAmb are 0 and NoNewPrivs is 1, and logs the
// result; any thread left with a capability is a fatal error.
// syscall.AllThreadsSyscall does not work in a program linked with cgo, so
// a cgo build refuses to start unless -keep-caps is given; -keep-caps
// skips the drop altogether. The process keeps its user ID: as root
// without capabilities it still owns root's files.
//
// # Profiling
//
// -cpuprofile FILE records a CPU profile (runtime/pprof) from start to
// shutdown; the switch's workers carry the pprof labels stage=vswitch-worker,
// worker=N and program=nblswitch.
package main
