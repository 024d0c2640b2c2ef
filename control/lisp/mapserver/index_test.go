package mapserver

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestIndexChurn: inserts, updates and deletions at random, through the
// index's growth, agree with a Go map at every step; deletion leaves no
// key unreachable (the backward shift). A small key space makes long
// probe runs and wrap-around at the end of the slots.
func TestIndexChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newTable()
	x := newIndex()
	want := map[regKey]ref{}
	keyOf := func(i int) regKey {
		return newRegKey(uint32(i%3), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	for step := range 200_000 {
		k := keyOf(rng.IntN(5000))
		switch r, ok := want[k]; {
		case ok && rng.IntN(3) == 0: // update: a new first entry
			nr := tab.alloc()
			tab.at(nr).k = k
			x.set(&tab, k, nr)
			tab.release(r)
			want[k] = nr
		case ok:
			x.del(&tab, k)
			tab.release(r)
			delete(want, k)
		default:
			nr := tab.alloc()
			tab.at(nr).k = k
			x.set(&tab, k, nr)
			want[k] = nr
		}
		if x.n != len(want) {
			t.Fatalf("step %d: %d keys, want %d", step, x.n, len(want))
		}
		if step%10_000 == 0 || step > 199_000 {
			for k, r := range want {
				if got, ok := x.get(&tab, k); !ok || got != r {
					t.Fatalf("step %d: %v → %d %v, want %d", step, k.prefix(), got, ok, r)
				}
			}
			seen := 0
			x.each(func(r ref) {
				if want[tab.at(r).k] != r {
					t.Fatalf("step %d: each gave a stale entry", step)
				}
				seen++
			})
			if seen != len(want) {
				t.Fatalf("step %d: each saw %d keys, want %d", step, seen, len(want))
			}
		}
	}
	for i := range 5000 {
		if _, in := want[keyOf(i)]; !in {
			if _, ok := x.get(&tab, keyOf(i)); ok {
				t.Fatalf("absent key %d found", i)
			}
		}
	}
}
