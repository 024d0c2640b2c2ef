package membership

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestConvergence simulates five ACS flooding records through a queue that
// reorders, duplicates and drops messages, with forged, unendorsed, stale
// and replayed records injected, then repairs losses with anti-entropy
// (Summary/Diff). Every ACS must end with the digest of a reference set
// that applied the genuine records in order.
func TestConvergence(t *testing.T) {
	for seedN := uint64(1); seedN <= 25; seedN++ {
		t.Run(fmt.Sprint(seedN), func(t *testing.T) { converge(t, seedN) })
	}
}

type msg struct {
	to int
	b  []byte
}

func converge(t *testing.T, seedN uint64) {
	const nodes = 5
	w := newWorld(t)
	rng := rand.New(rand.NewPCG(seedN, 0xACE))

	keys := map[uint32]Signer{}
	for asn := uint32(1); asn <= 10; asn++ {
		if asn%2 == 0 {
			keys[asn] = ecSigner(t, byte(asn))
		} else {
			keys[asn] = edSigner(t, byte(asn))
		}
	}
	ascn := func(asn uint32) uint32 { return map[bool]uint32{true: 0, false: 100}[asn <= 5] }
	pfx := func(asn uint32, i int) string { return fmt.Sprintf("10.%d.%d.0/24", asn, i) }

	// Genuine history, in causal order.
	var genuine []Record
	for asn := uint32(1); asn <= 10; asn++ {
		genuine = append(genuine, w.rec(KindJoin, asn, ascn(asn), 1, keys[asn], pfx(asn, 0)))
	}
	genuine = append(genuine, w.rec(KindJoin, 5, ascn(5), 1, keys[5], pfx(5, 0), "172.16.0.0/16"))
	for asn := uint32(1); asn <= 4; asn++ {
		genuine = append(genuine, w.rec(KindUpdate, asn, ascn(asn), 2, keys[asn], pfx(asn, 0), pfx(asn, 1)))
	}
	rotated := edSigner(t, 0x99)
	// Key rotation, signed by the old key too; an ACS that holds v1 or v2
	// checks the hand-over against it, one that holds nothing needs none.
	genuine = append(genuine, w.recWith(KindUpdate, 2, ascn(2), 3, rotated, rotation(t, keys[2]), nil, pfx(2, 2)))
	// A prefix moves from AS5 to AS6: order-dependent conflict that
	// anti-entropy must heal.
	genuine = append(genuine,
		w.rec(KindUpdate, 5, ascn(5), 2, keys[5], pfx(5, 0)),
		w.rec(KindUpdate, 6, ascn(6), 2, keys[6], pfx(6, 0), "172.16.0.0/16"))
	exit := w.rec(KindExit, 3, ascn(3), 3, keys[3])
	genuine = append(genuine, exit)

	ref := NewSet(w.policy)
	for _, r := range genuine {
		if _, err := ref.Apply(r); err != nil && ReasonOf(err) != ReasonStaleVersion {
			t.Fatalf("reference refused AS%d v%d: %v", r.ASN, r.Version, err)
		}
	}

	// Attacks, injected at random nodes.
	forged := w.rec(KindUpdate, 7, ascn(7), 9, keys[7], "192.0.2.0/24")
	forged.Signature, _ = edSigner(t, 0x66).Sign([]byte("x"))
	unendorsed := w.unsigned(KindUpdate, 8, ascn(8), 9, keys[8], "192.0.2.0/24")
	_ = unendorsed.Sign(keys[8])
	attacks := []Record{forged, unendorsed, genuine[0], exit}

	sets := make([]*Set, nodes)
	for i := range sets {
		sets[i] = NewSet(w.policy)
	}
	origin := func(asn uint32) int { return int(asn) % nodes }
	var queue []msg
	for _, r := range genuine {
		queue = append(queue, msg{origin(r.ASN), mustEncode(t, r)})
	}
	for _, r := range attacks {
		queue = append(queue, msg{rng.IntN(nodes), mustEncode(t, r)})
	}

	// Flooding: deliver in random order; 20% duplicated, 10% dropped; a
	// node forwards only what changed its set.
	for len(queue) > 0 {
		i := rng.IntN(len(queue))
		m := queue[i]
		queue[i] = queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		switch p := rng.Float64(); {
		case p < 0.1:
			continue
		case p < 0.3:
			queue = append(queue, m)
		}
		if changed, _ := sets[m.to].ApplyBytes(m.b); changed {
			for j := range sets {
				if j != m.to {
					queue = append(queue, msg{j, m.b})
				}
			}
		}
	}

	// Anti-entropy: each ACS re-announces its own ASes' latest records (a
	// record its own ACS refused, e.g. for a transient prefix conflict, is
	// otherwise held nowhere) and pairs exchange what Diff says.
	latest := map[uint32][]byte{}
	for _, r := range genuine {
		latest[r.ASN] = mustEncode(t, r)
	}
	converged := false
	for round := 0; round < 10 && !converged; round++ {
		for asn, b := range latest {
			sets[origin(asn)].ApplyBytes(b)
		}
		for i := range sets {
			for j := range sets {
				if i == j || sets[i].Digest() == sets[j].Digest() {
					continue
				}
				need, send := sets[i].Diff(sets[j].Summary())
				for _, b := range send {
					sets[j].ApplyBytes(b)
				}
				for _, asn := range need {
					if b, ok := sets[j].Encoded(asn); ok {
						sets[i].ApplyBytes(b)
					}
				}
			}
		}
		converged = true
		for _, s := range sets {
			if s.Digest() != ref.Digest() {
				converged = false
			}
		}
	}
	if !converged {
		for i, s := range sets {
			t.Errorf("node %d digest %x, ref %x", i, s.Digest(), ref.Digest())
		}
		t.FailNow()
	}

	// Same membership, and the attacks were refused and counted somewhere.
	if _, ok := sets[0].Get(3); !ok {
		t.Fatal("exit tombstone missing")
	}
	if n := len(sets[0].Records()); n != 9 {
		t.Fatalf("%d live members, want 9", n)
	}
	total := map[Reason]uint64{}
	for _, s := range sets {
		for r, n := range s.Counters().Refused {
			total[r] += n
		}
	}
	t.Logf("refusals during flooding and anti-entropy: %v", total)
	for _, r := range []Reason{ReasonStaleVersion, ReasonReplay} {
		if total[r] == 0 {
			t.Errorf("no %v counted", r)
		}
	}
	// The queue may have dropped the injected attacks; replay them once
	// more against a converged node, where each has exactly one reason.
	want := []Reason{ReasonBadSignature, ReasonNoEndorsement, ReasonStaleVersion, ReasonReplay}
	for i, r := range attacks {
		s := sets[rng.IntN(nodes)]
		before := s.Counters().Refused[want[i]]
		if _, err := s.ApplyBytes(mustEncode(t, r)); ReasonOf(err) != want[i] {
			t.Errorf("attack %d: %v, want %v", i, err, want[i])
		}
		if s.Counters().Refused[want[i]] != before+1 {
			t.Errorf("attack %d not counted", i)
		}
		if s.Digest() != ref.Digest() {
			t.Errorf("attack %d changed the set", i)
		}
	}
}
