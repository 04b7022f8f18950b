// Package pcapport is a switch port backed by capture files: a source that
// replays a pcap or pcapng file into a vswitch.Switch, a sink that writes
// what the switch transmits on the port into a pcap or pcapng file, or
// both at once. It reads and writes through gopacket's pcapgo.
//
// # Source
//
// Config.Input (an io.Reader) or Config.InputFile names the capture. New
// reads its header and tells the format by its magic number: pcap (micro-
// or nanosecond timestamps, either byte order), pcapng, or either one
// gzip-compressed. A pcap file must have the Ethernet link type
// (ErrLinkType); in a pcapng file, packets from interfaces of another link
// type are dropped and counted (DropLinkType).
//
// Receive copies each record into an NBL from the port's pool with the record's capture time in Info.Timestamp
// (nanoseconds since the Unix epoch; 0 when the record has none, as in a
// pcapng simple packet block). Records that cannot be switched are dropped
// and counted under a DropReason: shorter than an Ethernet header
// (DropRunt), longer than Config.MaxFrameSize (DropOversize), or captured
// short of their length on the wire (DropTruncated; Config.KeepTruncated
// forwards the captured part instead).
//
// Config.Pace releases each frame no earlier than its capture time relative
// to the first frame of the pass, divided by Config.Speed (gaps in the
// capture are replayed as they are); Receive never blocks, it returns the
// frames that are due. Config.Loop replays the input several times (or,
// negative, until Close), rewinding it with Seek.
//
// Nothing is allocated per frame: records are read into the reader's
// buffer (pcapgo's ZeroCopyReadPacketData) and copied into pool frames. A
// new pass over a pcap input allocates nothing either; over a pcapng or a
// gzipped input it allocates a few small objects (pcapgo reads the
// section's strings again; gzip resets its decompressor).
//
// # End of input
//
// The end of a replay shows in Receive's error, which the switch counts
// (vswitch.PortStats.RxErrors), and beside it:
//
//   - once the input is exhausted, Receive returns the last frames with
//     io.EOF, and (0, io.EOF) on every later call, which costs nothing;
//     the switch stops polling a port once it returned io.EOF;
//   - a corrupt record ends the input the same way, with an error that
//     matches ErrCorrupt instead of io.EOF, also returned by Err; the frames
//     before it were delivered (the switch counts the error and polls on);
//   - Done is closed when the input has ended and every frame the port
//     handed to the switch has come back to it (or when the port closes).
//
// With one switch worker (the default), or when every frame has a single
// destination, Done means every frame of the replay has been transmitted,
// absorbed or dropped, so a replay finishes cleanly with
//
//	<-src.Done()
//	sw.Close()
//
// A manual switch (vswitch.Config.Manual) is stepped until Done is closed
// and a Step moves nothing. With several workers, flooded copies made by
// another worker may still wait in a transmit ring when Done closes; wait
// for the sinks' counters to settle before closing the switch.
//
// # Sink
//
// Config.Output (an io.Writer) or Config.OutputFile makes the port a sink.
// Send writes each frame as a record of Config.OutputFormat, stamped with
// the NBL's Info.Timestamp when it has one and Config.Now otherwise, and
// truncated to Config.Snaplen; Reclaim then gives the frames back to the
// switch, which completes them. Writes go through a buffer, flushed by
// Close: a write error shows at Close (and stops the sink if it shows in
// Send: later frames are refused, and the switch counts them as tx-error
// drops). A port that is not a sink refuses every frame (ErrNotSink).
//
// # Ownership and threads
//
// The port is the Originator of the NBLs it receives: they come back to it
// (Stats.Returned) and then to its pool. Receive, Send and Reclaim are
// called by the switch worker that owns the port; Stats, Done and Err are
// safe from any goroutine. Close returns the port's NBLs to its pool,
// flushes and closes the files it opened, and fails if frames were never
// reclaimed or, for a pool the port made, if NBLs are still out. Inputs
// and outputs passed as io.Reader and io.Writer stay the caller's.
//
// # Robustness
//
// Every length in a capture is checked before it is trusted: a pcap record
// whose captured length exceeds the file's snapshot length (MaxSnaplen for
// a file that announces more, or 0) or its wire length, a pcapng block
// longer than MaxSnaplen plus 64 KiB of options, and a pcapng block whose
// length, options or captured length do not add up end the input with
// ErrCorrupt; so does a truncated file. pcapng files pass through a block validator before
// pcapgo.NgReader parses them, because NgReader trusts the file's block
// lengths for its allocations and divides by the interface's timestamp
// resolution (a crafted if_tsresol makes that zero).
package pcapport
