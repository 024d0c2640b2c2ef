package membership

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestRefusalsCounted(t *testing.T) {
	w := newWorld(t)
	a := edSigner(t, 0x11)
	b := ecSigner(t, 0x12)
	stranger := edSigner(t, 0x13)

	forged := w.rec(KindJoin, 64601, 0, 1, a, "10.1.0.0/16")
	sig, _ := stranger.Sign([]byte("anything"))
	forged.Signature = sig

	// A record signed by a key other than its own: the attacker puts the
	// victim's key in but can only sign with theirs.
	wrongSigner := w.unsigned(KindJoin, 64601, 0, 1, a, "10.1.0.0/16")
	msg, _ := wrongSigner.SignedBytes()
	wrongSigner.Signature, _ = stranger.Sign(msg)
	_ = wrongSigner.Endorse(w.comm[0])

	unendorsed := w.unsigned(KindJoin, 64601, 0, 1, a, "10.1.0.0/16")
	if err := unendorsed.Sign(a); err != nil {
		t.Fatal(err)
	}
	badEndorse := w.unsigned(KindJoin, 64601, 0, 1, a, "10.1.0.0/16")
	_ = badEndorse.Sign(a)
	_ = badEndorse.Endorse(w.comm[100]) // wrong community's key
	unknownComm := w.unsigned(KindJoin, 64601, 7, 1, a, "10.1.0.0/16")
	_ = unknownComm.Sign(a)
	_ = unknownComm.Endorse(w.comm[0])

	join1 := w.rec(KindJoin, 64601, 0, 1, a, "10.1.0.0/16")
	upd2 := w.rec(KindUpdate, 64601, 0, 2, a, "10.1.0.0/16", "10.9.0.0/16")
	exit3 := w.rec(KindExit, 64601, 0, 3, a)
	exit2 := w.rec(KindExit, 64601, 0, 2, a)
	rejoinOld := w.rec(KindJoin, 64601, 0, 2, a, "10.1.0.0/16")
	rejoinNew := w.rec(KindJoin, 64601, 0, 4, a, "10.1.0.0/16")
	other := w.rec(KindJoin, 64602, 100, 1, b, "10.2.0.0/16")
	grab := w.rec(KindUpdate, 64602, 100, 2, b, "10.2.0.0/16", "10.9.0.0/16")
	moreSpecific := w.rec(KindUpdate, 64602, 100, 2, b, "10.2.0.0/16", "10.9.1.0/24")
	covered := w.recWith(KindUpdate, 64602, 100, 2, b, func(r *Record) {
		if err := r.AddCover(64601, netip.MustParsePrefix("10.9.1.0/24"), a); err != nil {
			t.Fatal(err)
		}
	}, nil, "10.2.0.0/16", "10.9.1.0/24")

	s := NewSet(w.policy)
	steps := []struct {
		name string
		rec  Record
		want Reason // ReasonNone = accepted
	}{
		{"forged signature", forged, ReasonBadSignature},
		{"signed by someone else's key", wrongSigner, ReasonBadSignature},
		{"no endorsement", unendorsed, ReasonNoEndorsement},
		{"endorsed by wrong community", badEndorse, ReasonBadEndorsement},
		{"unknown community", unknownComm, ReasonUnknownCommunity},
		{"join", join1, ReasonNone},
		{"replayed join", join1, ReasonReplay},
		{"update", upd2, ReasonNone},
		{"stale join", join1, ReasonStaleVersion},
		{"other AS", other, ReasonNone},
		{"conflicting prefix", grab, ReasonConflictingPrefix},
		{"uncovered more-specific", moreSpecific, ReasonMoreSpecific},
		{"more-specific covered by its owner", covered, ReasonNone},
		{"exit", exit3, ReasonNone},
		{"replayed exit", exit3, ReasonReplay},
		{"older exit", exit2, ReasonReplay},
		{"resurrection by old join", rejoinOld, ReasonStaleVersion},
		{"replayed old update", upd2, ReasonStaleVersion},
		{"rejoin above tombstone", rejoinNew, ReasonNone},
	}
	want := map[Reason]uint64{}
	var accepted uint64
	for _, st := range steps {
		changed, err := s.Apply(st.rec)
		if got := ReasonOf(err); got != st.want {
			t.Fatalf("%s: reason %v (%v), want %v", st.name, got, err, st.want)
		}
		if changed != (st.want == ReasonNone) {
			t.Fatalf("%s: changed=%v", st.name, changed)
		}
		if st.want == ReasonNone {
			accepted++
		} else {
			want[st.want]++
		}
	}
	if _, err := s.ApplyBytes([]byte{1, 2, 3}); ReasonOf(err) != ReasonMalformed {
		t.Fatalf("garbage: %v", err)
	}
	want[ReasonMalformed]++
	c := s.Counters()
	if c.Accepted != accepted {
		t.Errorf("accepted %d, want %d", c.Accepted, accepted)
	}
	for _, r := range Reasons() {
		if c.Refused[r] != want[r] {
			t.Errorf("%v: counted %d, want %d", r, c.Refused[r], want[r])
		}
	}
	if n := len(s.Records()); n != 2 {
		t.Errorf("%d live members, want 2", n)
	}
}

// TestTieBreakByHash: two different records at one version; whichever
// order they arrive in, the one with the lower hash is held.
func TestTieBreakByHash(t *testing.T) {
	w := newWorld(t)
	a := ecSigner(t, 0x21)
	x := w.rec(KindJoin, 64700, 0, 5, a, "10.70.0.0/16")
	y := w.rec(KindJoin, 64700, 0, 5, a, "10.71.0.0/16")
	hx, _ := x.Hash()
	hy, _ := y.Hash()
	win, lose := x, y
	if bytes.Compare(hy[:], hx[:]) < 0 {
		win, lose = y, x
	}
	for _, order := range [][2]Record{{win, lose}, {lose, win}} {
		s := NewSet(w.policy)
		if _, err := s.Apply(order[0]); err != nil {
			t.Fatal(err)
		}
		_, err := s.Apply(order[1])
		got, _ := s.Get(64700)
		gh, _ := got.Hash()
		wh, _ := win.Hash()
		if gh != wh {
			t.Fatal("lower hash did not win")
		}
		if order[1].Prefixes[0] == lose.Prefixes[0] && ReasonOf(err) != ReasonStaleVersion {
			t.Fatalf("loser refused as %v", ReasonOf(err))
		}
	}
}

// TestKeyRotation: an update carries the new key, is signed by it, by the
// old key (the hand-over) and endorsed by the community; without the old
// key's signature it is refused; afterwards the old key cannot update.
func TestKeyRotation(t *testing.T) {
	w := newWorld(t)
	old, neu := edSigner(t, 0x31), ecSigner(t, 0x32)
	s := NewSet(w.policy)
	if _, err := s.Apply(w.rec(KindJoin, 64800, 100, 1, old, "10.80.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(w.rec(KindUpdate, 64800, 100, 2, neu, "10.80.0.0/16")); ReasonOf(err) != ReasonWrongKey {
		t.Fatalf("rotation without the old key: %v", err)
	}
	stranger := edSigner(t, 0x33)
	if _, err := s.Apply(w.recWith(KindUpdate, 64800, 100, 2, neu, rotation(t, stranger), nil, "10.80.0.0/16")); ReasonOf(err) != ReasonWrongKey {
		t.Fatalf("rotation signed by another key: %v", err)
	}
	for _, r := range []Record{
		w.recWith(KindUpdate, 64800, 100, 2, neu, rotation(t, old), nil, "10.80.0.0/16"),
	} {
		if _, err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Get(64800)
	if !got.Key.Equal(neu.Public()) {
		t.Fatal("key not rotated")
	}
	// An old-version record with the old key stays stale.
	if _, err := s.Apply(w.rec(KindUpdate, 64800, 100, 1, old, "10.81.0.0/16")); ReasonOf(err) != ReasonStaleVersion {
		t.Fatal(err)
	}
	if _, err := s.Apply(w.rec(KindUpdate, 64800, 100, 3, old, "10.81.0.0/16")); ReasonOf(err) != ReasonWrongKey {
		t.Fatalf("old key after rotation: %v", err)
	}
}

func TestDiffAndDigest(t *testing.T) {
	w := newWorld(t)
	a, b := NewSet(w.policy), NewSet(w.policy)
	if a.Digest() != b.Digest() {
		t.Fatal("empty digests differ")
	}
	k := edSigner(t, 0x41)
	r1 := w.rec(KindJoin, 1, 0, 1, k, "10.0.1.0/24")
	r2 := w.rec(KindJoin, 2, 0, 1, k, "10.0.2.0/24")
	r2b := w.rec(KindUpdate, 2, 0, 2, k, "10.0.3.0/24")
	a.Apply(r1)
	a.Apply(r2)
	b.Apply(r2b)
	need, send := a.Diff(b.Summary())
	if len(need) != 1 || need[0] != 2 || len(send) != 1 {
		t.Fatalf("need %v, send %d", need, len(send))
	}
	for _, m := range send {
		if _, err := b.ApplyBytes(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, asn := range need {
		m, _ := b.Encoded(asn)
		if _, err := a.ApplyBytes(m); err != nil {
			t.Fatal(err)
		}
	}
	if a.Digest() != b.Digest() {
		t.Fatal("digests differ after anti-entropy")
	}
}
