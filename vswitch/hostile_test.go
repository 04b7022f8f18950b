package vswitch_test

// Hostile input: a port that floods the MAC table with made-up source
// addresses, and VLAN hopping with double tags.

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nblpipe/nblpipe/internal/ledger"
	"github.com/nblpipe/nblpipe/vswitch"
	"github.com/nblpipe/nblpipe/vswitch/memport"
)

// logRecorder is a slog handler that counts records by message.
type logRecorder struct {
	mu   sync.Mutex
	msgs map[string]int
}

func newLogRecorder() *logRecorder { return &logRecorder{msgs: map[string]int{}} }

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[r.Message]++
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns the number of records whose message contains sub, and the
// messages logged more than once.
func (h *logRecorder) count(sub string) (n int, repeated []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for m, k := range h.msgs {
		if strings.Contains(m, sub) {
			n += k
		}
		if k > 1 {
			repeated = append(repeated, fmt.Sprintf("%dx %q", k, m))
		}
	}
	return n, repeated
}

// TestHostileMACFlood: a port sends frames from thousands of made-up
// source addresses, in two waves. The switch refuses to learn beyond the
// port's share (or the table's room), counts each refusal, logs each kind
// of event once and not per frame, keeps the stations it learnt before the
// flood (a unicast to one still goes to its port only, not to the
// flooding port), and loses no frame.
func TestHostileMACFlood(t *testing.T) {
	const n = 3000
	for _, mode := range []string{"manual", "workers"} {
		for _, tc := range []struct {
			name            string
			size, portLimit int
			event           string // the log message of the refusal
		}{
			{"port-limit", 1024, 64, "reached its MAC address limit"},
			{"table-full", 16, 1000, "MAC table full"},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				logs := newLogRecorder()
				fx := newFixture(t, mode == "manual", vswitch.Config{FDBSize: tc.size, FDBPortLimit: tc.portLimit, Logger: slog.New(logs)})
				rng := rand.New(rand.NewPCG(7, uint64(tc.size)))
				frames := make([][]byte, n)
				for i := range frames {
					m := net.HardwareAddr{byte(rng.Uint32())&0xfc | 2, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(i >> 8), byte(i)}
					frames[i] = rawFrame(m, macN(500), 0x88B5, 64, uint32(i))
				}
				flood := fx.port(memport.Config{Frames: frames, PoolSize: 512}, vswitch.PortConfig{ID: 1, Name: "flood"})
				victim := fx.port(memport.Config{Frames: [][]byte{idFrame(t, macN(7), broadcast, 64, 1)}}, vswitch.PortConfig{ID: 2, Name: "victim"})
				other := fx.port(memport.Config{Frames: [][]byte{idFrame(t, macN(8), macN(7), 64, 2)}}, vswitch.PortConfig{ID: 3, Name: "other"})
				for _, p := range []*faultPort{flood, victim, other} {
					p.gated = true
				}
				fx.start()
				// The victim's station is learnt before the flood.
				victim.open(1)
				fx.run("the victim's broadcast", func() bool { return victim.Stats().Returned == 1 })
				for wave := 1; wave <= 2; wave++ {
					flood.open(n)
					fx.run(fmt.Sprintf("flood wave %d", wave), func() bool { return flood.Stats().Returned == uint64(wave*n) })
				}
				const m = 50
				other.open(m)
				fx.run("the unicasts to the victim", func() bool { return other.Stats().Returned == m })
				entries := fx.r.sw.FDBEntries(0)
				st := fx.close()

				refused := st.FDBPortLimit + st.FDBTableFull
				if tc.name == "port-limit" {
					if st.FDBPortLimit == 0 || entries > int64(tc.portLimit) {
						t.Errorf("%d port-limit refusals; the flooding port owns %d entries, its limit is %d", st.FDBPortLimit, entries, tc.portLimit)
					}
				} else if st.FDBTableFull == 0 {
					t.Error("no table-full refusal counted")
				}
				if refused < n { // the second wave is refused again, frame by frame
					t.Errorf("%d refusals for %d source addresses sent twice", refused, n)
				}
				if got, rep := logs.count(tc.event); got != 1 || len(rep) > 0 {
					t.Errorf("%q logged %d times, want once; repeated messages: %v", tc.event, got, rep)
				}
				if s := flood.Stats(); s.Sent != 1 {
					t.Errorf("the flooding port received %d frames, want the victim's broadcast only", s.Sent)
				}
				if s := victim.Stats(); s.Sent != 2*n+m {
					t.Errorf("the victim received %d frames, want %d (the flood's and the unicasts to it)", s.Sent, 2*n+m)
				}
				if tt := ledger.Sum(st); tt.Dropped != 0 {
					t.Errorf("%v", tt)
				}
			})
		}
	}
}

// dtag returns f with two tags after its addresses: outer, then inner,
// each a TPID and a TCI.
func dtag(f []byte, outerTPID, outerTCI, innerTPID, innerTCI uint16) []byte {
	out := append([]byte(nil), f[:12]...)
	out = binary.BigEndian.AppendUint16(out, outerTPID)
	out = binary.BigEndian.AppendUint16(out, outerTCI)
	out = binary.BigEndian.AppendUint16(out, innerTPID)
	out = binary.BigEndian.AppendUint16(out, innerTCI)
	return append(out, f[12:]...)
}

// stag returns f with one tag after its addresses.
func stag(f []byte, tpid, tci uint16) []byte {
	out := append([]byte(nil), f[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, tci)
	return append(out, f[12:]...)
}

// TestHostileVLANDoubleTag: frames with two tags, the classic VLAN hop (an
// attacker on an access port of VLAN 10 sends a frame tagged 10 outside
// and 20 inside; a switch that strips the outer tag and sends the frame
// untagged on a trunk whose native VLAN is 10 puts the VLAN 20 tag first
// on that wire, and the next switch delivers it into VLAN 20). This switch
// does not tunnel double-tagged (QinQ) frames: whatever port they arrive
// on, a frame still tagged under its outer tag (0x8100 or 0x88A8) is
// dropped as a VLAN mismatch and logged once. Single-tagged frames follow
// the port rules: a trunk's tagged native-VLAN frame is accepted, an
// untagged frame on a trunk without a native VLAN is not.
func TestHostileVLANDoubleTag(t *testing.T) {
	ledger.Goroutines(t)
	r := manualRig(t, vswitch.Config{})
	l := ledger.New(t)
	const q, ad = 0x8100, 0x88A8
	base := func(src, id int) []byte { return rawFrame(macN(src), broadcast, 0x88B5, 60, uint32(id)) }
	// stripped is a frame as the switch switches it: the outer tag gone.
	stripped := func(f []byte) []byte { return append(append([]byte(nil), f[:12]...), f[16:]...) }

	f1 := dtag(base(1, 1), q, 10, q, 20)  // own VLAN outside, VLAN 20 inside
	f2 := dtag(base(1, 2), q, 20, q, 10)  // another VLAN outside
	f3 := dtag(base(1, 3), q, 0, q, 20)   // a priority tag outside
	f4 := dtag(base(1, 4), ad, 10, q, 20) // an 802.1ad S-tag of its own VLAN outside
	f5 := dtag(base(1, 5), ad, 20, q, 10) // an S-tag of another VLAN outside
	g1 := dtag(base(2, 11), q, 20, q, 10) // from the trunk: VLAN 20 outside
	g2 := dtag(base(2, 12), q, 30, q, 10) // a VLAN the trunk does not allow
	g3 := base(2, 13)                     // untagged, on a trunk without a native VLAN
	g4 := dtag(base(2, 14), ad, 10, q, 20)
	g5 := stag(base(2, 15), q, 10)

	specs := []struct {
		name   string
		cfg    vswitch.PortConfig
		frames [][]byte
	}{
		{"A10", vswitch.PortConfig{ID: 1, Mode: vswitch.Access, VLAN: 10}, [][]byte{f1, f2, f3, f4, f5}},
		{"B10", vswitch.PortConfig{ID: 2, Mode: vswitch.Access, VLAN: 10}, nil},
		{"C20", vswitch.PortConfig{ID: 3, Mode: vswitch.Access, VLAN: 20}, nil},
		{"TN", vswitch.PortConfig{ID: 4, Mode: vswitch.Trunk, VLAN: 10, Allowed: []uint16{20}}, nil},
		{"TT", vswitch.PortConfig{ID: 5, Mode: vswitch.Trunk, VLAN: 0, Allowed: []uint16{10, 20}}, [][]byte{g1, g2, g3, g4, g5}},
	}
	ports := map[string]*memport.Port{}
	for _, s := range specs {
		s.cfg.Name = s.name
		ports[s.name] = r.port(memport.Config{Frames: s.frames, Limit: uint64(len(s.frames)), Capture: 32}, s.cfg)
	}
	r.start()
	l.Switch(r.sw, r.ports...)
	r.settle()
	st := r.close()
	l.CheckClosed()

	// Only g5, a plain tagged frame of VLAN 10 from the trunk, is switched:
	// untagged to the VLAN 10 access ports and the native trunk.
	want := map[string][][]byte{
		"A10": {stripped(g5)},
		"B10": {stripped(g5)},
		"C20": nil,
		"TN":  {stripped(g5)},
		"TT":  nil,
	}
	for name, w := range want {
		got := ports[name].Captured()
		if !sameFrames(got, w) {
			t.Errorf("%s transmitted %d frames:\n%s\nwant %d:\n%s", name, len(got), hexList(got), len(w), hexList(w))
		}
	}
	if d := st.Ports[0].Drops[vswitch.DropVLANMismatch]; d != 5 {
		t.Errorf("A10: %d VLAN mismatches, want 5 (every double-tagged frame)", d)
	}
	if d := st.Ports[4].Drops[vswitch.DropVLANMismatch]; d != 4 {
		t.Errorf("TT: %d VLAN mismatches, want 4 (three double-tagged, one untagged without a native VLAN)", d)
	}
	// No frame leaves any port with a VLAN tag the switch did not put there
	// as its first tag.
	for name, p := range ports {
		for _, b := range p.Captured() {
			if et := binary.BigEndian.Uint16(b[12:14]); et == q || et == ad {
				if name != "TT" || binary.BigEndian.Uint16(b[16:18]) == q || binary.BigEndian.Uint16(b[16:18]) == ad {
					t.Errorf("%s sent a frame with a tag first on the wire that is not the switch's own:\n%s", name, hexList([][]byte{b}))
				}
			}
		}
	}
}

// sameFrames reports whether two lists hold the same frames, in any order.
func sameFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(l [][]byte) []string {
		s := make([]string, len(l))
		for i, f := range l {
			s[i] = string(f)
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(key(a), key(b))
}

func hexList(l [][]byte) string {
	var b strings.Builder
	for _, f := range l {
		fmt.Fprintf(&b, "  % x\n", f[:min(len(f), 24)])
	}
	return b.String()
}
