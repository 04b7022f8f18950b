package vswitch

import (
	"sync/atomic"
)

// fdb is the MAC learning table: a fixed open-addressing hash table of
// (VLAN, MAC) -> port, shared by the workers without locks. Its size never
// changes, every port may own at most portLimit entries, and entries not
// refreshed for the ageing time are free to be taken over, so a flood of
// source addresses cannot grow memory or evict the table's other ports
// beyond their share.
type fdb struct {
	keys    []atomic.Uint64 // (vlan<<48 | mac) + 1; 0 = empty
	vals    []atomic.Uint64 // fdbValid | port index << 32 | last seen (seconds); 0 while not valid
	mask    uint64
	probe   int
	limits  []int64 // per port
	ageing  uint32  // seconds
	perPort []atomic.Int64
	// gen changes whenever an entry is inserted, moves, or is removed, so
	// that a worker's memo of a result knows when it may be stale.
	gen atomic.Uint64
}

const fdbProbe = 8

// fdbValid marks a value as the entry's: a slot's key and value are two
// words, written one after the other. Whoever takes a slot first clears
// its value (so that a reader of the new key never sees the previous
// station's port, nor a zero that reads as port 0), then sets the key, then
// the value with this bit. A reader that finds the key with a value
// without it treats the address as unknown (the frame floods) until the
// value lands.
const fdbValid = 1 << 63

func fdbPort(v uint64) int { return int(v >> 32 & 0x7FFFFFFF) }

// newFDB makes a table of size entries (rounded up to a power of two) for
// len(limits) ports, port i owning at most limits[i] entries.
func newFDB(size int, limits []int64, ageingSeconds uint32) *fdb {
	n := 1
	for n < size {
		n <<= 1
	}
	return &fdb{
		keys:    make([]atomic.Uint64, n),
		vals:    make([]atomic.Uint64, n),
		mask:    uint64(n - 1),
		probe:   min(fdbProbe, n),
		limits:  limits,
		ageing:  ageingSeconds,
		perPort: make([]atomic.Int64, len(limits)),
	}
}

func fdbKey(vlan uint16, mac []byte) uint64 {
	k := uint64(vlan&0xFFF)<<48 | uint64(mac[0])<<40 | uint64(mac[1])<<32 | uint64(mac[2])<<24 |
		uint64(mac[3])<<16 | uint64(mac[4])<<8 | uint64(mac[5])
	return k + 1
}

func fdbHash(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	return k
}

// lookup returns the port index for (vlan, mac), or -1.
func (t *fdb) lookup(vlan uint16, mac []byte, now uint32) int {
	k := fdbKey(vlan, mac)
	h := fdbHash(k)
	for i := 0; i < t.probe; i++ {
		j := (h + uint64(i)) & t.mask
		switch t.keys[j].Load() {
		case k:
			v := t.vals[j].Load()
			if v&fdbValid == 0 || now-uint32(v) > t.ageing {
				return -1
			}
			return fdbPort(v)
		case 0:
			return -1
		}
	}
	return -1
}

// learnResult says what learn did.
type learnResult uint8

const (
	learnKnown     learnResult = iota // entry present and current
	learnUpdated                      // refreshed or moved
	learnInserted                     // new entry
	learnTableFull                    // no slot in the probe window
	learnPortLimit                    // the port owns its share already
)

// learn records that mac was seen on port in vlan.
func (t *fdb) learn(vlan uint16, mac []byte, port int, now uint32) learnResult {
	k := fdbKey(vlan, mac)
	h := fdbHash(k)
	want := fdbValid | uint64(port)<<32 | uint64(now)
	free := -1
	for i := 0; i < t.probe; i++ {
		j := (h + uint64(i)) & t.mask
		kj := t.keys[j].Load()
		if kj == k {
			v := t.vals[j].Load()
			if v&fdbValid == 0 {
				return learnKnown // another worker is inserting it right now
			}
			old := fdbPort(v)
			if old == port {
				if now-uint32(v) < 1 {
					return learnKnown
				}
				// Refresh the age; a lost race with another refresh or a
				// move is harmless.
				t.vals[j].CompareAndSwap(v, want)
				return learnUpdated
			}
			// A station moved: the entry changes hands, within the new
			// port's share, and only once if several workers see it move.
			if t.perPort[port].Load() >= t.limits[port] {
				return learnPortLimit
			}
			if !t.vals[j].CompareAndSwap(v, want) {
				return learnKnown // another worker moved or refreshed it first
			}
			t.perPort[old].Add(-1)
			t.perPort[port].Add(1)
			t.gen.Add(1)
			return learnUpdated
		}
		if free < 0 {
			// Empty, or an entry aged out (not one being inserted).
			if v := t.vals[j].Load(); kj == 0 || v&fdbValid != 0 && now-uint32(v) > t.ageing {
				free = int(j)
			}
		}
		if kj == 0 {
			break
		}
	}
	if free < 0 {
		return learnTableFull
	}
	if t.perPort[port].Load() >= t.limits[port] {
		return learnPortLimit
	}
	j := uint64(free)
	old := t.keys[j].Load()
	oldVal := t.vals[j].Load()
	if old != 0 {
		// Take over an aged entry: invalidate its value first (a refresh
		// or another taker then fails its CAS), then change the key.
		if oldVal&fdbValid == 0 || now-uint32(oldVal) <= t.ageing || !t.vals[j].CompareAndSwap(oldVal, 0) {
			return learnTableFull // taken or refreshed meanwhile
		}
		if !t.keys[j].CompareAndSwap(old, k) {
			return learnTableFull // flushed meanwhile; learn next time
		}
		t.perPort[fdbPort(oldVal)].Add(-1)
	} else if oldVal != 0 || !t.keys[j].CompareAndSwap(0, k) {
		return learnTableFull // another worker won the slot; learn next time
	}
	t.vals[j].Store(want)
	t.perPort[port].Add(1)
	t.gen.Add(1)
	return learnInserted
}

// entries returns the number of entries learnt per port (aged ones
// included until their slot is reused).
func (t *fdb) entries(port int) int64 { return t.perPort[port].Load() }
