// Package inject models the WFP packet-injection engine: the stack and its
// data paths, injection handles, injection-state tags and queries, and
// completions delivered in batches.
//
// # The stack
//
// A Stack stands for the TCP/IP stack with its filter engine. It is not
// ready until Start. Data paths register with it as injection targets: a
// virtual switch by its GUID (RegisterVSwitch; package vswitch does this),
// an IP, stream or MAC data path by kind (RegisterDataPath). Until a data
// path is registered, the injection functions for it validate their
// arguments and then return STATUS_FWP_TCPIP_NOT_READY; they never pretend
// to inject. inject never imports vswitch.
//
// Default is the stack the WFP-named functions use.
//
// # Handles
//
// CreateHandle (FwpsInjectionHandleCreate0) makes a handle for an address
// family and a set of injection types (STREAM, TRANSPORT, NETWORK, FORWARD,
// L2, VSWITCH_TRANSPORT; 0 means transport+stream+forward). An injection
// function given a handle without the type it needs returns
// STATUS_FWP_INJECT_HANDLE_STALE. Destroy (FwpsInjectionHandleDestroy0)
// makes later injections fail with STATUS_FWP_INJECT_HANDLE_CLOSING and
// returns when every injection accepted before has completed.
//
// # Tags and queries
//
// Every injected NBL is tagged with the injecting handle and its
// injectionContext; the handle that injected it before moves into the tag's
// history, and a hop count goes up. QueryState
// (FwpsQueryPacketInjectionState0) compares the tag with the asking handle:
// NOT_INJECTED, INJECTED_BY_SELF (with the context), INJECTED_BY_OTHER, or
// PREVIOUSLY_INJECTED_BY_SELF when the data was injected by this handle
// earlier and then cloned and injected by another. Identity is per handle,
// not per program. Clones carry their parent's tag.
//
// # Ownership and completion
//
//   - On success an injection function takes the whole chain; the data path
//     completes each NBL exactly once, through a CompletionQueue, with the
//     NBL's Status set (a negative code for a failure found after the call
//     returned).
//   - On error nothing is taken, nothing is completed, and nothing is
//     changed: the caller still owns every NBL.
//   - A completion function is required for clones and for NBLs the caller
//     allocated, in which it frees them. It may be nil for unaltered
//     originals (NBLs lent by a port) on which the injector holds a
//     reference (a callout takes one before it absorbs the NBL): the
//     injection takes the reference over and drops it at completion, after
//     which the original goes back to its originator once nothing else
//     holds it.
//   - Completions are batched: a worker gathers finished NBLs in its
//     CompletionQueue and flushes at the end of each burst; a flush runs
//     the completion functions, then updates each handle's pending count
//     once per run of that handle's NBLs. A BatchCompletion receives a
//     run of NBLs in one call.
//
// # Threading
//
// Handles and the Stack are safe for concurrent use. A CompletionQueue
// belongs to the goroutine that flushes it. Worker goroutines mark
// themselves with Stack.EnterDispatch, the model of running at
// DISPATCH_LEVEL: their completions report dispatchLevel true, and they may
// not create or destroy handles (WFP requires PASSIVE_LEVEL for both, and a
// worker waiting in Destroy for completions it must deliver itself would
// deadlock).
//
// # Names
//
// The methods of Handle and Stack are the idiomatic API; fwps.go holds the
// WFP-named functions (FwpsInjectionHandleCreate0, ...,
// FwpsInjectvSwitchEthernetIngressAsync0) with the WDK's parameter order and
// NTSTATUS codes. Status is nbl.Status: returning one never allocates.
package inject
