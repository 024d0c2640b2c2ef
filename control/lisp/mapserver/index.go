package mapserver

import (
	"math/bits"
	"math/rand/v2"
)

// index maps a registration key to the first entry of its list: open
// addressing with linear probing over one array of 8-octet slots, each a
// 32-bit hash of the key and the entry's ref; the key itself is the
// entry's. A look-up with 1 M registrations then reads one slot (one cache
// line, usually) and the entry it names, which a refresh reads anyway; Go's
// map read a control word and a 32-octet slot in another line first, and
// was the largest single cost of a Map-Register with a large table
// (docs/perf.md). Deletion shifts the following slots back (no tombstones),
// so a table that churns does not fill up with them. The hash is keyed
// with a random seed: keys come from authenticated Map-Registers, but a
// site should not be able to choose colliding prefixes either.
type index struct {
	slots []uint64 // 0: empty; else hash<<32 | ref+1
	n     int
	seed  [3]uint64
}

func newIndex() index {
	return index{seed: [3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}}
}

// mix is a 64×64→128 multiply folded to 64 bits (wyhash's mum).
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (x *index) hash(k regKey) uint32 {
	h := mix(k.hi^x.seed[0], k.lo^x.seed[1]) ^ mix(k.meta^x.seed[2], 0x9e3779b97f4a7c15)
	return uint32(h ^ h>>32)
}

func slotOf(h uint32, r ref) uint64 { return uint64(h)<<32 | uint64(uint32(r)+1) }
func (x *index) ref(i int) ref      { return ref(uint32(x.slots[i]) - 1) }

// find returns the slot holding k, or the empty slot where it would go.
func (x *index) find(t *table, k regKey, h uint32) (int, bool) {
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) == h && t.at(x.ref(i)).k == k {
			return i, true
		}
	}
}

func (x *index) get(t *table, k regKey) (ref, bool) {
	if x.n == 0 {
		return none, false
	}
	i, ok := x.find(t, k, x.hash(k))
	if !ok {
		return none, false
	}
	return x.ref(i), true
}

// set makes r the first entry of k (r's entry holds k).
func (x *index) set(t *table, k regKey, r ref) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	h := x.hash(k)
	i, ok := x.find(t, k, h)
	if !ok {
		x.n++
	}
	x.slots[i] = slotOf(h, r)
}

// del removes k, moving back the slots after it that probed past it.
func (x *index) del(t *table, k regKey) {
	if x.n == 0 {
		return
	}
	i, ok := x.find(t, k, x.hash(k))
	if !ok {
		return
	}
	mask := len(x.slots) - 1
	for j := (i + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		home := int(x.slots[j]>>32) & mask
		// The slot at j may move to i unless its home lies cyclically in
		// (i, j]: then i is before where its probe starts.
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = 0
	x.n--
}

// grow doubles the slots (the stored hashes place every key again
// without reading an entry).
func (x *index) grow() {
	old := x.slots
	x.slots = make([]uint64, max(2*len(old), 1024))
	mask := len(x.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(s>>32) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s
	}
}

// each calls f with every key's first entry.
func (x *index) each(f func(r ref)) {
	for i, s := range x.slots {
		if s != 0 {
			f(x.ref(i))
		}
	}
}
