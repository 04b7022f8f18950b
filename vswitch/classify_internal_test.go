package vswitch

import (
	"math/rand/v2"
	"testing"
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
