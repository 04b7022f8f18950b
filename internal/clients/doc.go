// Package clients drives real network clients (tcpreplay, tcpdump, ping,
// iperf3) on hosts in network namespaces (internal/netns) against a switch
// whose ports own the hosts' veth peers, for the tests of every port back
// end (vswitch/afpacket, vswitch/afxdp).
//
// It builds numbered Ethernet/IPv4/UDP frames with gopacket, writes and
// reads pcap files, replays a file into a host with tcpreplay while tcpdump
// (in immediate mode) captures what reaches another, and checks that each
// frame arrived exactly once, byte for byte. It also makes the switch
// between two hosts (the back end opens the ports), with the inspect
// callout of internal/scenario if asked, and holds the checks that do not
// depend on the back end: ping through the switch and over 802.1Q
// subinterfaces, iperf3, and a flood of source MACs.
//
// Every function takes the test's testing.TB, bounds every wait and every
// command in time, and removes what it made (processes, interfaces,
// namespaces) through tb.Cleanup, also when the test fails. The functions
// that run commands in namespaces need root; callers skip without it with
// netns.Require. Frame building, pcap files and the exactly-once check need
// nothing.
package clients
