package vswitch

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
)

// TestByteFieldMatchesInitValues: the compiled conditions take a field's
// kind from byteField; it must agree with the types initValues gives.
func TestByteFieldMatchesInitValues(t *testing.T) {
	w := &worker{sw: &Switch{}}
	w.initValues()
	for _, in := range []*IncomingValues{&w.inIngress, &w.inEgress} {
		for i := 0; i < int(in.ValueCount); i++ {
			ty := in.Values[i].Type
			want := ty == FWP_BYTE_ARRAY6_TYPE || ty == FWP_BYTE_BLOB_TYPE
			if got := byteField(in.LayerID, i); got != want {
				t.Errorf("layer %d field %d (type %d): byteField %v, want %v", in.LayerID, i, ty, got, want)
			}
		}
	}
}

// TestCompiledConditionsMatchReference: a filter's compiled conditions
// decide as the plain conditions do, over random conditions and values
// that often collide (equal MACs, MACs one byte apart, short blobs).
func TestCompiledConditionsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	macs := [][]byte{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {3, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0}, {}, {2, 0, 0, 0, 0, 1, 0}}
	w := &worker{sw: &Switch{}}
	w.initValues()
	matches := []FWP_MATCH_TYPE{FWP_MATCH_EQUAL, FWP_MATCH_NOT_EQUAL, FWP_MATCH_GREATER, FWP_MATCH_RANGE, FWP_MATCH_FLAGS_ANY_SET}
	mismatch := 0
	for iter := 0; iter < 20000; iter++ {
		in := &w.inIngress
		max := FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_MAX
		if r.IntN(2) == 1 {
			in, max = &w.inEgress, FWPS_FIELD_EGRESS_VSWITCH_ETHERNET_MAX
		}
		for i := 0; i < max; i++ {
			in.Values[i].Bytes = macs[r.IntN(len(macs))]
			in.Values[i].Uint = uint64(r.IntN(4))
		}
		f := &Filter{LayerID: in.LayerID}
		for range 1 + r.IntN(3) {
			f.Conditions = append(f.Conditions, Condition{Field: r.IntN(max), Match: matches[r.IntN(len(matches))],
				Uint: uint64(r.IntN(4)), High: uint64(r.IntN(4)), Bytes: macs[r.IntN(len(macs))]})
		}
		f.compile()
		want := true
		for i := range f.Conditions {
			c := &f.Conditions[i]
			want = want && c.matches(&in.Values[c.Field])
		}
		if got := f.matches(in); got != want {
			mismatch++
			if mismatch < 5 {
				t.Errorf("filter %+v over %+v: compiled %v, reference %v", f.Conditions, in.Values, got, want)
			}
		}
	}
	if mismatch > 0 {
		t.Errorf("%d of 20000 filters decided differently", mismatch)
	}
}

// TestEngineIndexes: what publish derives from the filter lists follows
// every change: the injectors of the ingress callouts (one entry per
// handle), and whether a layer has a filter that reads incoming values.
func TestEngineIndexes(t *testing.T) {
	st := inject.NewStack()
	st.Start()
	s, err := New(Config{ID: inject.GUID{0x1e}, Stack: st, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Destroy()
	check := func(step string, injectors []uint64, ingress, egress bool) {
		t.Helper()
		e := s.engine.snap.Load()
		if !slices.Equal(e.injectors, injectors) || e.ingressValues != ingress || e.egressValues != egress {
			t.Errorf("%s: injectors %v, values ingress %v egress %v; want %v, %v, %v", step, e.injectors, e.ingressValues, e.egressValues, injectors, ingress, egress)
		}
	}
	add := func(f *Filter) {
		t.Helper()
		if _, err := s.AddFilter(f); err != nil {
			t.Fatal(err)
		}
	}
	check("empty", nil, false, false)
	add(&Filter{Key: "block", LayerID: FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, Action: FWP_ACTION_BLOCK})
	check("a plain BLOCK filter", nil, false, false)
	add(&Filter{Key: "ether", LayerID: FWPS_LAYER_EGRESS_VSWITCH_ETHERNET, Action: FWP_ACTION_PERMIT,
		Conditions: []Condition{{Field: FWPS_FIELD_INGRESS_VSWITCH_ETHERNET_ETHER_TYPE, // field 4 is the EtherType at both layers
			Match: FWP_MATCH_EQUAL, Uint: 0x0800}}})
	check("an egress condition", nil, false, true)
	nop := func(*IncomingValues, *Metadata, *nbl.NetBufferList, any, *Filter, uint64, *ClassifyOut) {}
	if err := s.RegisterCallout(&Callout{Key: "c", Classify: nop, InjectionHandle: h}); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterCallout(&Callout{Key: "anon", Classify: nop}); err != nil {
		t.Fatal(err)
	}
	check("callouts registered, no filter", nil, false, true)
	add(&Filter{Key: "c1", LayerID: FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, Action: FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "c"})
	add(&Filter{Key: "c2", LayerID: FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, Action: FWP_ACTION_CALLOUT_INSPECTION, CalloutKey: "c", Weight: 9})
	add(&Filter{Key: "a1", LayerID: FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, Action: FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: "anon"})
	check("two filters of one injecting callout, one of a callout without a handle", []uint64{h.ID()}, true, true)
	for _, k := range []string{"c1", "c2", "ether"} {
		if err := s.DeleteFilter(k); err != nil {
			t.Fatal(err)
		}
	}
	check("injecting callout's filters and the condition deleted", nil, true, false)
	if err := s.DeleteFilter("a1"); err != nil {
		t.Fatal(err)
	}
	check("only the BLOCK filter left", nil, false, false)
}
