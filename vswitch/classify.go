package vswitch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
)

// Value is one incoming value (FWP_VALUE0): a type and either a number or
// bytes. Bytes alias the frame or the switch's memory: valid during the
// classify only.
type Value struct {
	Type  FWP_DATA_TYPE
	Uint  uint64
	Bytes []byte
}

// IncomingValues are the fields a classify sees (FWPS_INCOMING_VALUES0).
type IncomingValues struct {
	LayerID    uint16
	ValueCount uint32
	Values     [maxFields]Value

	// The switch's own: the frame's MAC addresses, copied here (the two
	// address values alias these bytes for good, so a frame costs no slice
	// stores), and the source port whose name value 9 holds.
	macs [12]byte
	src  *port
}

// IncomingValue returns field i (the incomingValue[i] of WFP).
func (v *IncomingValues) IncomingValue(i int) *Value { return &v.Values[i] }

// Metadata is the L2 part of FWPS_INCOMING_METADATA_VALUES0 that the
// vSwitch layers fill in; the presence bits say which fields are valid.
type Metadata struct {
	CurrentMetadataValues    uint32
	CurrentL2MetadataValues  uint32
	L2Flags                  uint32
	EthernetMacHeaderSize    uint32
	VSwitchSourcePortID      uint32
	VSwitchSourceNicIndex    uint16
	VSwitchDestinationPortID uint32

	// Cache is not part of WFP's metadata: it is the classifying worker's
	// NBL cache for the frame's pool (nil if it has none). A callout that
	// clones or allocates inside its classify can use it instead of the
	// pool's shared ring: it is valid during this classify, on this
	// goroutine, only.
	Cache *nbl.Cache

	pool *nbl.Pool // the pool Cache is for: set again only when it changes
}

// ClassifyOut is what a classify function writes (FWPS_CLASSIFY_OUT0).
type ClassifyOut struct {
	ActionType FWP_ACTION_TYPE
	OutContext uint64
	FilterID   uint64
	Rights     uint32
	Flags      uint32
	Reserved   uint32
}

// ClassifyFn is a callout's classify function (FWPS_CALLOUT_CLASSIFY_FN):
// it sees the incoming values and metadata, the NBL (layerData: its first
// NetBuffer starts at the Ethernet header), the filter that matched, the
// flow context, and writes its verdict into out. It runs on a switch worker
// goroutine, at the model's DISPATCH_LEVEL: it must not block.
//
// Returning FWP_ACTION_BLOCK with FWPS_CLASSIFY_OUT_FLAG_ABSORB absorbs the
// NBL: the switch stops processing it and releases it, so a callout that
// keeps it references it first (NetBufferList.Reference) and may clone it,
// queue it, and inject it or a clone later.
type ClassifyFn func(in *IncomingValues, meta *Metadata, l *nbl.NetBufferList, classifyContext any, filter *Filter, flowContext uint64, out *ClassifyOut)

// Notify types of a callout's notify function.
type FWPS_CALLOUT_NOTIFY_TYPE uint32

// Notify types (FWPS_CALLOUT_NOTIFY_*).
const (
	FWPS_CALLOUT_NOTIFY_ADD_FILTER    FWPS_CALLOUT_NOTIFY_TYPE = 1
	FWPS_CALLOUT_NOTIFY_DELETE_FILTER FWPS_CALLOUT_NOTIFY_TYPE = 2
)

// Callout is a classify function registered with a switch
// (FWPS_CALLOUT3, with FwpsCalloutRegister).
type Callout struct {
	// Key names the callout; filters refer to it.
	Key string
	// Classify is required.
	Classify ClassifyFn
	// Notify, if set, is told of filters that reference the callout being
	// added or deleted; an error refuses the addition.
	Notify func(notifyType FWPS_CALLOUT_NOTIFY_TYPE, filterKey string, filter *Filter) error
	// FlowDelete, if set, is called when the callout is unregistered, for
	// each flow context it had (the vSwitch layers have none: it is called
	// once with flowContext 0).
	FlowDelete func(layerID uint16, calloutID uint32, flowContext uint64)
	// Context is passed to Classify as classifyContext.
	Context any
	// InjectionHandle, if set, is the handle the callout injects with. The
	// switch uses it to tell frames injected by a handle that has a filter
	// at the ingress layer from those whose fate WFP leaves undefined
	// (conformance case 55, counted in Stats.InjectedWithoutFilter).
	InjectionHandle *inject.Handle

	id       uint32
	disabled atomic.Bool
	panics   atomic.Uint64
}

// ID returns the run-time ID the switch gave the callout.
func (c *Callout) ID() uint32 { return c.id }

// Panics returns the number of classifies of this callout that panicked.
// A callout that panics is disabled: its filters then match nothing.
func (c *Callout) Panics() uint64 { return c.panics.Load() }

// Disabled reports whether the callout was disabled after a panic.
func (c *Callout) Disabled() bool { return c.disabled.Load() }

// Match types of a condition (FWP_MATCH_TYPE).
type FWP_MATCH_TYPE uint32

// Match types supported.
const (
	FWP_MATCH_EQUAL            FWP_MATCH_TYPE = 0
	FWP_MATCH_GREATER          FWP_MATCH_TYPE = 1
	FWP_MATCH_LESS             FWP_MATCH_TYPE = 2
	FWP_MATCH_GREATER_OR_EQUAL FWP_MATCH_TYPE = 3
	FWP_MATCH_LESS_OR_EQUAL    FWP_MATCH_TYPE = 4
	FWP_MATCH_RANGE            FWP_MATCH_TYPE = 5
	FWP_MATCH_FLAGS_ALL_SET    FWP_MATCH_TYPE = 6
	FWP_MATCH_FLAGS_ANY_SET    FWP_MATCH_TYPE = 7
	FWP_MATCH_FLAGS_NONE_SET   FWP_MATCH_TYPE = 8
	FWP_MATCH_NOT_EQUAL        FWP_MATCH_TYPE = 10
)

// Condition is one filter condition (FWPM_FILTER_CONDITION0): the field
// (incoming value index), how to compare, and the value. For
// FWP_MATCH_RANGE, Uint and High bound the range. Byte fields compare
// Bytes for equality only.
type Condition struct {
	Field int
	Match FWP_MATCH_TYPE
	Uint  uint64
	High  uint64
	Bytes []byte
}

func (c *Condition) matches(v *Value) bool {
	if v.Type == FWP_BYTE_ARRAY6_TYPE || v.Type == FWP_BYTE_BLOB_TYPE {
		eq := bytes.Equal(v.Bytes, c.Bytes)
		switch c.Match {
		case FWP_MATCH_EQUAL:
			return eq
		case FWP_MATCH_NOT_EQUAL:
			return !eq
		}
		return false
	}
	x := v.Uint
	switch c.Match {
	case FWP_MATCH_EQUAL:
		return x == c.Uint
	case FWP_MATCH_NOT_EQUAL:
		return x != c.Uint
	case FWP_MATCH_GREATER:
		return x > c.Uint
	case FWP_MATCH_LESS:
		return x < c.Uint
	case FWP_MATCH_GREATER_OR_EQUAL:
		return x >= c.Uint
	case FWP_MATCH_LESS_OR_EQUAL:
		return x <= c.Uint
	case FWP_MATCH_RANGE:
		return x >= c.Uint && x <= c.High
	case FWP_MATCH_FLAGS_ALL_SET:
		return x&c.Uint == c.Uint
	case FWP_MATCH_FLAGS_ANY_SET:
		return x&c.Uint != 0
	case FWP_MATCH_FLAGS_NONE_SET:
		return x&c.Uint == 0
	}
	return false
}

// Filter is a rule at a vSwitch layer (FWPM_FILTER0 as the engine sees
// it): when every condition matches, its action applies. Filters of a layer
// are evaluated from the highest weight down.
type Filter struct {
	Key        string
	LayerID    uint16
	Weight     uint64
	Conditions []Condition
	// Action is FWP_ACTION_PERMIT, FWP_ACTION_BLOCK,
	// FWP_ACTION_CALLOUT_TERMINATING, FWP_ACTION_CALLOUT_INSPECTION or
	// FWP_ACTION_CALLOUT_UNKNOWN; the callout ones name CalloutKey.
	Action     FWP_ACTION_TYPE
	CalloutKey string
	// Flags: FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT.
	Flags uint32
	// Context is the filter's context (filter->context in WFP).
	Context uint64

	id      uint64
	callout *Callout
	conds   []cond // Conditions, compiled by AddFilter
}

// ID returns the run-time ID the switch gave the filter.
func (f *Filter) ID() uint64 { return f.id }

// cond is a condition compiled when its filter is added: the field's
// kind is known from the layer, and a 6-byte value (a MAC address) compared
// for equality is one integer compare instead of a byte comparison.
type cond struct {
	field int
	mac   bool // a 6-byte field compared for (in)equality with key
	neq   bool // with mac: FWP_MATCH_NOT_EQUAL
	key   uint64
	c     Condition
}

// mac48 packs 6 bytes into an integer.
func mac48(b []byte) uint64 {
	_ = b[5]
	return uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint16(b[4:]))<<32
}

// byteField reports whether field i of a layer holds bytes (a MAC address
// or a blob): the types initValues gives the fields.
func byteField(layer uint16, i int) bool {
	switch i {
	case 0, 2, 7, 9, 11:
		return true
	case 12, 14:
		return layer == FWPS_LAYER_EGRESS_VSWITCH_ETHERNET
	}
	return false
}

// compile prepares f's conditions for matching (AddFilter has checked
// their fields).
func (f *Filter) compile() {
	f.conds = make([]cond, len(f.Conditions))
	for i, c := range f.Conditions {
		k := cond{field: c.Field, c: c}
		k.c.Bytes = slices.Clone(c.Bytes)
		if byteField(f.LayerID, c.Field) && len(c.Bytes) == 6 && (c.Match == FWP_MATCH_EQUAL || c.Match == FWP_MATCH_NOT_EQUAL) {
			k.mac, k.neq, k.key = true, c.Match == FWP_MATCH_NOT_EQUAL, mac48(c.Bytes)
		}
		f.conds[i] = k
	}
}

func (f *Filter) matches(in *IncomingValues) bool {
	for i := range f.conds {
		c := &f.conds[i]
		v := &in.Values[c.field]
		if c.mac && len(v.Bytes) == 6 {
			if (mac48(v.Bytes) == c.key) == c.neq {
				return false
			}
			continue
		}
		if !c.c.matches(v) {
			return false
		}
	}
	return true
}

// engine is an immutable snapshot of the filters and callouts; changes
// build a new one and swap it in atomically, so workers never wait.
type engine struct {
	ingress, egress []*Filter // by weight, highest first
	callouts        map[string]*Callout
	// Derived from the lists when the snapshot is published (publish):
	// injectors holds the IDs of the injection handles of the ingress
	// callouts (for hasInjectorFilter); ingressValues and egressValues
	// report whether a layer has a filter that reads incoming values (a
	// condition or a callout): without one, no values are built.
	injectors                   []uint64
	ingressValues, egressValues bool
}

// publish derives n's indexes from its lists and makes it the snapshot
// workers see. The caller holds e.mu.
func (e *filterEngine) publish(n *engine) {
	n.injectors = nil
	for _, f := range n.ingress {
		if c := f.callout; c != nil && c.InjectionHandle != nil && !slices.Contains(n.injectors, c.InjectionHandle.ID()) {
			n.injectors = append(n.injectors, c.InjectionHandle.ID())
		}
	}
	n.ingressValues, n.egressValues = readsValues(n.ingress), readsValues(n.egress)
	e.snap.Store(n)
}

// readsValues reports whether a filter of fs has conditions or a callout.
func readsValues(fs []*Filter) bool {
	for _, f := range fs {
		if len(f.conds) > 0 || f.callout != nil {
			return true
		}
	}
	return false
}

type filterEngine struct {
	mu       sync.Mutex
	snap     atomic.Pointer[engine]
	nextID   uint64
	calloutN uint32
}

func (e *filterEngine) init() {
	e.snap.Store(&engine{callouts: map[string]*Callout{}})
}

var (
	// ErrExists is returned when a filter or callout key is taken.
	ErrExists = errors.New("vswitch: key already registered")
	// ErrUnknown is returned for a filter or callout key that is not
	// registered.
	ErrUnknown = errors.New("vswitch: no such key")
)

func (e *filterEngine) clone() *engine {
	old := e.snap.Load()
	n := &engine{
		ingress:  slices.Clone(old.ingress),
		egress:   slices.Clone(old.egress),
		callouts: make(map[string]*Callout, len(old.callouts)+1),
	}
	for k, v := range old.callouts {
		n.callouts[k] = v
	}
	return n
}

// RegisterCallout adds a callout (FwpsCalloutRegister). Safe while traffic
// flows.
func (s *Switch) RegisterCallout(c *Callout) error {
	if c == nil || c.Key == "" || c.Classify == nil {
		return fmt.Errorf("vswitch: a callout needs a Key and a Classify function")
	}
	e := &s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.clone()
	if _, dup := n.callouts[c.Key]; dup {
		return fmt.Errorf("%w: callout %q", ErrExists, c.Key)
	}
	e.calloutN++
	c.id = e.calloutN
	n.callouts[c.Key] = c
	e.publish(n)
	return nil
}

// UnregisterCallout removes a callout (FwpsCalloutUnregisterByKey0). It
// fails while filters still refer to it. A worker may be running its
// classify at this moment; the switch stops calling it from the next burst.
func (s *Switch) UnregisterCallout(key string) error {
	e := &s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.clone()
	c, ok := n.callouts[key]
	if !ok {
		return fmt.Errorf("%w: callout %q", ErrUnknown, key)
	}
	for _, f := range append(slices.Clone(n.ingress), n.egress...) {
		if f.callout == c {
			return fmt.Errorf("vswitch: callout %q is in use by filter %q", key, f.Key)
		}
	}
	delete(n.callouts, key)
	e.publish(n)
	if c.FlowDelete != nil {
		c.FlowDelete(FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, c.id, 0)
	}
	return nil
}

// AddFilter adds a filter at the ingress or egress layer (FwpmFilterAdd0).
// Safe while traffic flows: workers see it from their next burst. The
// filter must not be changed afterwards.
func (s *Switch) AddFilter(f *Filter) (uint64, error) {
	if f == nil || f.Key == "" {
		return 0, fmt.Errorf("vswitch: a filter needs a Key")
	}
	if f.LayerID != FWPS_LAYER_INGRESS_VSWITCH_ETHERNET && f.LayerID != FWPS_LAYER_EGRESS_VSWITCH_ETHERNET {
		return 0, fmt.Errorf("vswitch: filter %q at layer %d: want 72 (ingress) or 73 (egress)", f.Key, f.LayerID)
	}
	max := FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX
	if f.LayerID == FWPS_LAYER_EGRESS_VSWITCH_ETHERNET {
		max = FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX
	}
	for _, c := range f.Conditions {
		if c.Field < 0 || c.Field >= max {
			return 0, fmt.Errorf("vswitch: filter %q: condition field %d outside the layer's %d fields", f.Key, c.Field, max)
		}
	}
	e := &s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.clone()
	for _, g := range append(slices.Clone(n.ingress), n.egress...) {
		if g.Key == f.Key {
			return 0, fmt.Errorf("%w: filter %q", ErrExists, f.Key)
		}
	}
	switch f.Action {
	case FWP_ACTION_PERMIT, FWP_ACTION_BLOCK:
	case FWP_ACTION_CALLOUT_TERMINATING, FWP_ACTION_CALLOUT_INSPECTION, FWP_ACTION_CALLOUT_UNKNOWN:
		c, ok := n.callouts[f.CalloutKey]
		if !ok {
			return 0, fmt.Errorf("%w: filter %q names callout %q", ErrUnknown, f.Key, f.CalloutKey)
		}
		f.callout = c
	default:
		return 0, fmt.Errorf("vswitch: filter %q: action 0x%x is not a filter action", f.Key, uint32(f.Action))
	}
	e.nextID++
	f.id = e.nextID
	f.compile()
	if f.callout != nil && f.callout.Notify != nil {
		if err := f.callout.Notify(FWPS_CALLOUT_NOTIFY_ADD_FILTER, f.Key, f); err != nil {
			return 0, fmt.Errorf("vswitch: callout %q refused filter %q: %w", f.CalloutKey, f.Key, err)
		}
	}
	list := &n.ingress
	if f.LayerID == FWPS_LAYER_EGRESS_VSWITCH_ETHERNET {
		list = &n.egress
	}
	*list = append(*list, f)
	slices.SortStableFunc(*list, func(a, b *Filter) int {
		switch {
		case a.Weight > b.Weight:
			return -1
		case a.Weight < b.Weight:
			return 1
		}
		return 0
	})
	e.publish(n)
	return f.id, nil
}

// DeleteFilter removes a filter by key (FwpmFilterDeleteByKey0). Safe while
// traffic flows.
func (s *Switch) DeleteFilter(key string) error {
	e := &s.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.clone()
	for _, list := range []*[]*Filter{&n.ingress, &n.egress} {
		for i, f := range *list {
			if f.Key == key {
				*list = slices.Delete(*list, i, i+1)
				e.publish(n)
				if f.callout != nil && f.callout.Notify != nil {
					_ = f.callout.Notify(FWPS_CALLOUT_NOTIFY_DELETE_FILTER, f.Key, f)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("%w: filter %q", ErrUnknown, key)
}

// verdict is the outcome of classifying one NBL at one layer.
type verdict uint8

const (
	verdictPermit       verdict = iota
	verdictBlock                // by a static filter
	verdictCalloutBlock         // by a callout
	verdictAbsorb               // BLOCK + ABSORB: the callout owns the NBL now
)

// classify runs the filters of one layer over an NBL, from the highest
// weight down:
//   - a BLOCK, from a filter or a callout, ends it: a veto is always
//     honoured (with ABSORB from a callout, the callout owns the NBL);
//   - a PERMIT ends it while the write right is held; a filter with
//     FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT, or a callout that clears the
//     right in its output, lets the permit stand but leaves the later
//     filters only a veto. A PERMIT written without the right is ignored
//     and counted (conformance case 38);
//   - a callout that returns FWP_ACTION_CONTINUE passes to the next filter.
//
// No filter deciding means PERMIT.
func (w *worker) classify(filters []*Filter, in *IncomingValues, meta *Metadata, l *nbl.NetBufferList, idx int) verdict {
	w.inIdx = idx
	rights := FWPS_RIGHT_ACTION_WRITE
	for _, f := range filters {
		if len(f.conds) > 0 && !f.matches(in) {
			continue
		}
		c := f.callout
		if c == nil {
			if f.Action == FWP_ACTION_BLOCK {
				return verdictBlock
			}
			if rights == 0 {
				continue
			}
			if f.Flags&FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT == 0 {
				return verdictPermit
			}
			rights = 0
			continue
		}
		if c.disabled.Load() {
			continue
		}
		out := &w.out // field by field: cheaper than a composite literal
		out.ActionType, out.OutContext, out.FilterID, out.Rights, out.Flags, out.Reserved = FWP_ACTION_CONTINUE, 0, f.id, rights, 0, 0
		// Inside the callout, a panic is put on it and on l (see
		// ingressBurst).
		if h := c.InjectionHandle; h != nil && h != w.lastCredited {
			w.credit(h)
		}
		w.inCallout, w.inFrame, w.calling = c, l, true
		c.Classify(in, meta, l, c.Context, f, 0, out)
		w.calling = false // inCallout and inFrame stay: clearing them costs write barriers
		switch out.ActionType {
		case FWP_ACTION_BLOCK:
			if out.Flags&FWPS_CLASSIFY_OUT_FLAG_ABSORB != 0 {
				return verdictAbsorb
			}
			return verdictCalloutBlock
		case FWP_ACTION_PERMIT:
			if rights == 0 {
				w.stats.rightsViolations++
				continue
			}
			if out.Rights&FWPS_RIGHT_ACTION_WRITE != 0 {
				return verdictPermit
			}
		}
		rights &= out.Rights
	}
	return verdictPermit
}

func addrType(mac []byte) uint64 {
	switch {
	case mac[0]&1 == 0:
		return uint64(DlUnicast)
	case mac[0] == 0xFF && mac[1] == 0xFF && mac[2] == 0xFF && mac[3] == 0xFF && mac[4] == 0xFF && mac[5] == 0xFF:
		return uint64(DlBroadcast)
	}
	return uint64(DlMulticast)
}

// initValues fills the fields that do not change from frame to frame, once,
// in both layers' scratch values and metadata; fillCommon then writes only
// the others. Callouts must not change incoming values or metadata (they
// are an input, const in WFP).
func (w *worker) initValues() {
	for _, in := range []*IncomingValues{&w.inIngress, &w.inEgress} {
		v := &in.Values
		v[0] = Value{Type: FWP_BYTE_ARRAY6_TYPE, Bytes: in.macs[6:12]}
		v[1] = Value{Type: FWP_UINT8}
		v[2] = Value{Type: FWP_BYTE_ARRAY6_TYPE, Bytes: in.macs[0:6]}
		v[3] = Value{Type: FWP_UINT8}
		v[4] = Value{Type: FWP_UINT16}
		v[5] = Value{Type: FWP_UINT16}
		v[6] = Value{Type: FWP_UINT16}
		v[7] = Value{Type: FWP_BYTE_BLOB_TYPE, Bytes: w.sw.idBytes[:]}
		v[8] = Value{Type: FWP_UINT8, Uint: uint64(w.sw.cfg.NetworkType)}
		v[9] = Value{Type: FWP_BYTE_BLOB_TYPE}
		v[10] = Value{Type: FWP_UINT8}
		v[11] = Value{Type: FWP_BYTE_BLOB_TYPE}
	}
	w.inIngress.LayerID = FWPS_LAYER_INGRESS_VSWITCH_ETHERNET
	w.inIngress.ValueCount = FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX
	v := &w.inIngress.Values
	v[12] = Value{Type: FWP_UINT32, Uint: uint64(FWP_CONDITION_L2_IS_NATIVE_ETHERNET)}
	v[13] = Value{Type: FWP_UINT32, Uint: 1}
	w.inEgress.LayerID = FWPS_LAYER_EGRESS_VSWITCH_ETHERNET
	w.inEgress.ValueCount = FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX
	v = &w.inEgress.Values
	v[12] = Value{Type: FWP_BYTE_BLOB_TYPE}
	v[13] = Value{Type: FWP_UINT8}
	v[14] = Value{Type: FWP_BYTE_BLOB_TYPE}
	v[15] = Value{Type: FWP_UINT32, Uint: uint64(FWP_CONDITION_L2_IS_NATIVE_ETHERNET)}
	v[16] = Value{Type: FWP_UINT32, Uint: 1}
	base := FWPS_L2_METADATA_FIELD_ETHERNET_MAC_HEADER_SIZE |
		FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_PORT_ID | FWPS_L2_METADATA_FIELD_VSWITCH_SOURCE_NIC_INDEX
	w.metaIn = Metadata{CurrentL2MetadataValues: base, EthernetMacHeaderSize: 14}
	w.metaOut = Metadata{CurrentL2MetadataValues: base | FWPS_L2_METADATA_FIELD_VSWITCH_DESTINATION_PORT_ID, EthernetMacHeaderSize: 14}
}

// fillCommon writes the per-frame fields 0-5 and 9 of in, and those of m.
// The addresses are copied into in.macs, which values 0 and 2 alias; the
// source port's name and the pool's cache are written only when they
// change.
func (w *worker) fillCommon(in *IncomingValues, m *Metadata, l *nbl.NetBufferList, d []byte, vlan uint16, src *port) {
	v := &in.Values
	h := (*[14]byte)(d)
	in.macs = [12]byte(h[:12])
	v[1].Uint = addrType(h[6:12])
	v[3].Uint = addrType(h[0:6])
	v[4].Uint = uint64(h[12])<<8 | uint64(h[13])
	v[5].Uint = uint64(vlan&0x0FFF) | uint64(l.Info.Ieee8021Q.Priority&7)<<13
	if src != in.src {
		w.setSource(in, src)
	}
	m.VSwitchSourcePortID = l.Info.Switch.SourcePortID
	m.VSwitchSourceNicIndex = l.Info.Switch.SourceNicIndex
	if p := l.Pool(); p != m.pool {
		m.pool, m.Cache = p, w.cacheFor(p)
	}
}

// setSource puts src's name (nil for an unknown port) into value 9.
func (w *worker) setSource(in *IncomingValues, src *port) {
	in.src = src
	if src != nil {
		in.Values[9].Bytes = src.name
	} else {
		in.Values[9].Bytes = nil
	}
}

// fillIngress builds the incoming values and metadata of the ingress layer
// in the worker's scratch space: nothing is allocated.
func (w *worker) fillIngress(l *nbl.NetBufferList, d []byte, vlan uint16, src *port) {
	w.fillCommon(&w.inIngress, &w.metaIn, l, d, vlan, src)
}

// fillEgress builds the incoming values and metadata of the egress layer
// for destination port p.
func (w *worker) fillEgress(l *nbl.NetBufferList, vlan uint16, p *port, multiDest bool) {
	d := w.header(l.FirstNetBuffer())
	var src *port
	if i, ok := w.sw.portIndex(l.Info.Switch.SourcePortID); ok {
		src = w.sw.ports[i]
	}
	w.fillCommon(&w.inEgress, &w.metaOut, l, d, vlan, src)
	w.inEgress.Values[12].Bytes = p.name
	w.metaOut.VSwitchDestinationPortID = p.cfg.ID
	w.metaOut.L2Flags = 0
	if multiDest {
		w.metaOut.L2Flags = FWPS_L2_INCOMING_FLAG_RECLASSIFY_MULTI_DESTINATION
	}
}
