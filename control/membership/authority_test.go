package membership

import (
	"bytes"
	"math"
	"net/netip"
	"reflect"
	"testing"
)

// authorityWorld: community 0 (the root) and community 7, as in issue 14's
// reproduction: AS65001 and AS65002 are community-0 members; the attacker
// holds community 7's key.
func authorityWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, comm: map[uint32]Signer{0: edSigner(t, 0xC0), 7: edSigner(t, 0xC7)}}
	p, err := NewPolicy(map[uint32][]PublicKey{0: {w.comm[0].Public()}, 7: {w.comm[7].Public()}})
	if err != nil {
		t.Fatal(err)
	}
	w.policy = p
	return w
}

// TestCommunityKeyAttacks is issue 14's must-show 2 at the library level:
// a community-7 key cannot rewrite, exit or burn the version of a
// community-0 member, nor take a more-specific of another member's /16 for
// a fresh AS; each attack is refused under its own reason and counted, the
// legitimate record stays in force and its owner's later versions are
// accepted.
func TestCommunityKeyAttacks(t *testing.T) {
	w := authorityWorld(t)
	k1, k2 := edSigner(t, 0x01), edSigner(t, 0x02)
	evil := edSigner(t, 0x66)
	s := NewSet(w.policy)
	legit1 := w.rec(KindJoin, 65001, 0, 1, k1, "192.0.2.0/24")
	for _, r := range []Record{legit1, w.rec(KindJoin, 65002, 0, 1, k2, "10.2.0.0/16")} {
		if _, err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	}

	// Claiming AS65001 for community 7 with root authority it does not have.
	fakeRoot := w.recWith(KindUpdate, 65001, 7, 2, evil, func(r *Record) { r.RequestAuthority(0) }, w.comm[7], "203.0.113.0/24")
	// Claiming community 0 with a community-7 endorsement.
	wrongEndorser := w.unsigned(KindUpdate, 65001, 0, 2, evil, "203.0.113.0/24")
	_ = wrongEndorser.Sign(evil)
	_ = wrongEndorser.Endorse(w.comm[7])
	// The root endorses a new key, but nobody asked the root to override
	// and the old key did not hand over.
	rootNoHandover := w.rec(KindUpdate, 65001, 0, 2, evil, "192.0.2.0/24")

	attacks := []struct {
		name string
		rec  Record
		want Reason
	}{
		{"community 7 rewrites AS65001 (new prefixes, new key)", w.rec(KindUpdate, 65001, 7, 2, evil, "198.51.100.0/24", "203.0.113.0/24"), ReasonForeignCommunity},
		{"community 7 exits AS65001 at 2^64-1", w.rec(KindExit, 65001, 7, math.MaxUint64, evil), ReasonForeignCommunity},
		{"community 7 forges a root override", fakeRoot, ReasonBadAuthority},
		{"community 7 endorses a community-0 record", wrongEndorser, ReasonBadEndorsement},
		{"new key without the old key's hand-over", rootNoHandover, ReasonWrongKey},
		{"AS65001's own key burns the version space", w.rec(KindExit, 65001, 0, math.MaxUint64, k1), ReasonVersionJump},
		{"fresh AS in community 7 takes a /25 of AS65002's /16", w.rec(KindJoin, 65077, 7, 1, evil, "10.2.3.0/25"), ReasonMoreSpecific},
	}
	for _, a := range attacks {
		changed, err := s.Apply(a.rec)
		if got := ReasonOf(err); got != a.want || changed {
			t.Fatalf("%s: changed=%v reason %v (%v), want %v", a.name, changed, got, err, a.want)
		}
		got, _ := s.Get(65001)
		if h, _ := got.Hash(); h != mustHash(t, legit1) {
			t.Fatalf("%s: AS65001's record replaced", a.name)
		}
	}
	want := map[Reason]uint64{ReasonForeignCommunity: 2, ReasonBadAuthority: 1, ReasonBadEndorsement: 1,
		ReasonWrongKey: 1, ReasonVersionJump: 1, ReasonMoreSpecific: 1}
	c := s.Counters()
	for _, r := range Reasons() {
		if c.Refused[r] != want[r] {
			t.Errorf("%v: counted %d, want %d", r, c.Refused[r], want[r])
		}
	}
	if _, ok := s.Get(65077); ok {
		t.Fatal("AS65077 entered the set")
	}

	// The owner's v2 and v3 are accepted: nothing burnt its versions.
	for _, r := range []Record{
		w.rec(KindUpdate, 65001, 0, 2, k1, "192.0.2.0/24", "198.51.100.0/24"),
		w.rec(KindUpdate, 65001, 0, 3, k1, "192.0.2.0/24"),
	} {
		if _, err := s.Apply(r); err != nil {
			t.Fatalf("legitimate v%d: %v", r.Version, err)
		}
	}
	if got, _ := s.Get(65001); got.Version != 3 || got.ASCN != 0 || !got.Key.Equal(k1.Public()) {
		t.Fatalf("held %+v", got)
	}
	// A version step of exactly MaxVersionStep is allowed.
	if _, err := s.Apply(w.rec(KindUpdate, 65001, 0, 3+MaxVersionStep, k1, "192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
}

func mustHash(t *testing.T, r Record) [32]byte {
	t.Helper()
	h, err := r.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestRootOverrideAndMove: the root (community 0) can replace a lost key
// and move an AS; the community an AS leaves can move it (but not replace
// its key); the community it joins must endorse it as always.
func TestRootOverrideAndMove(t *testing.T) {
	w := authorityWorld(t)
	lost, fresh, third := edSigner(t, 0x11), ecSigner(t, 0x12), edSigner(t, 0x13)
	s := NewSet(w.policy)
	if _, err := s.Apply(w.rec(KindJoin, 65010, 0, 1, lost, "10.10.0.0/16")); err != nil {
		t.Fatal(err)
	}
	// Recovery: the old key is lost; the root overrides.
	recovery := w.recWith(KindUpdate, 65010, 0, 2, fresh, func(r *Record) { r.RequestAuthority(0) }, w.comm[0], "10.10.0.0/16")
	if _, err := s.Apply(recovery); err != nil {
		t.Fatalf("root override: %v", err)
	}
	// An authority request without the authority's signature.
	unsigned := w.recWith(KindUpdate, 65010, 7, 3, fresh, func(r *Record) { r.RequestAuthority(0) }, nil, "10.10.0.0/16")
	if _, err := s.Apply(unsigned); ReasonOf(err) != ReasonBadAuthority {
		t.Fatalf("authority requested, not given: %v", err)
	}
	// Move to community 7 endorsed by the community it leaves (0): same
	// key, so no hand-over is needed.
	move := w.recWith(KindUpdate, 65010, 7, 3, fresh, func(r *Record) { r.RequestAuthority(0) }, w.comm[0], "10.10.0.0/16")
	if _, err := s.Apply(move); err != nil {
		t.Fatalf("move: %v", err)
	}
	// Community 7 cannot move it back to 0 on its own...
	if _, err := s.Apply(w.rec(KindUpdate, 65010, 0, 4, fresh, "10.10.0.0/16")); ReasonOf(err) != ReasonForeignCommunity {
		t.Fatalf("move without the old community: %v", err)
	}
	// ...but with its own authority (the community left) it can; a key
	// change then still needs the hand-over.
	noHandover := w.recWith(KindUpdate, 65010, 0, 4, third, func(r *Record) { r.RequestAuthority(7) }, w.comm[7], "10.10.0.0/16")
	if _, err := s.Apply(noHandover); ReasonOf(err) != ReasonWrongKey {
		t.Fatalf("non-root authority replaced the key: %v", err)
	}
	back := w.recWith(KindUpdate, 65010, 0, 4, third, func(r *Record) {
		r.RequestAuthority(7)
		_ = r.SignRotation(fresh)
	}, w.comm[7], "10.10.0.0/16")
	if _, err := s.Apply(back); err != nil {
		t.Fatalf("move back with hand-over: %v", err)
	}
	if got, _ := s.Get(65010); got.ASCN != 0 || !got.Key.Equal(third.Public()) || got.Version != 4 {
		t.Fatalf("held %+v", got)
	}
}

// TestCoverAndRPKI: a more-specific enters with the covering member's
// consent (signed by the key held for it) or with RPKI coverage for the new
// AS; a consent by the wrong key, or for another AS, does not count; a
// prefix the AS already holds is not re-judged on update.
func TestCoverAndRPKI(t *testing.T) {
	w := authorityWorld(t)
	owner, taker, other := edSigner(t, 0x21), edSigner(t, 0x22), edSigner(t, 0x23)
	s := NewSet(w.policy)
	if _, err := s.Apply(w.rec(KindJoin, 65002, 0, 1, owner, "10.2.0.0/16")); err != nil {
		t.Fatal(err)
	}
	slash25 := netip.MustParsePrefix("10.2.3.0/25")
	cover := func(by Signer, asn uint32) func(*Record) {
		return func(r *Record) {
			if err := r.AddCover(asn, slash25, by); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.Apply(w.recWith(KindJoin, 65077, 7, 1, taker, cover(other, 65002), nil, "10.2.3.0/25")); ReasonOf(err) != ReasonMoreSpecific {
		t.Fatalf("cover by the wrong key: %v", err)
	}
	// A cover made for another AS cannot be moved onto this one.
	forOther := w.recWith(KindJoin, 65088, 7, 1, other, cover(owner, 65002), nil, "10.2.3.0/25")
	stolen := w.recWith(KindJoin, 65077, 7, 1, taker, func(r *Record) { r.Covers = forOther.Covers }, nil, "10.2.3.0/25")
	if _, err := s.Apply(stolen); ReasonOf(err) != ReasonMoreSpecific {
		t.Fatalf("cover made for AS65088: %v", err)
	}
	if _, err := s.Apply(w.recWith(KindJoin, 65077, 7, 1, taker, cover(owner, 65002), nil, "10.2.3.0/25")); err != nil {
		t.Fatalf("covered by its owner: %v", err)
	}
	// The update keeps the /25 without carrying the cover again.
	if _, err := s.Apply(w.rec(KindUpdate, 65077, 7, 2, taker, "10.2.3.0/25", "10.77.0.0/16")); err != nil {
		t.Fatalf("held prefix re-judged: %v", err)
	}
	// RPKI coverage for the new AS lets a more-specific in without a cover.
	s.SetCoverCheck(func(asn uint32, p netip.Prefix) bool {
		return asn == 65099 && p == netip.MustParsePrefix("10.2.4.0/24")
	})
	if _, err := s.Apply(w.rec(KindJoin, 65099, 7, 1, other, "10.2.4.0/24")); err != nil {
		t.Fatalf("RPKI-covered more-specific: %v", err)
	}
	if _, err := s.Apply(w.rec(KindJoin, 65098, 7, 1, other, "10.2.5.0/24")); ReasonOf(err) != ReasonMoreSpecific {
		t.Fatalf("RPKI covers another prefix only: %v", err)
	}
	// A member sub-dividing its own space needs nobody.
	if _, err := s.Apply(w.rec(KindUpdate, 65002, 0, 2, owner, "10.2.0.0/16", "10.2.128.0/17")); err != nil {
		t.Fatal(err)
	}
	// Nor does a member of the same community: its community endorses
	// both records and is the authority over that space.
	if _, err := s.Apply(w.rec(KindJoin, 65003, 0, 1, other, "10.2.64.0/18")); err != nil {
		t.Fatalf("same-community more-specific: %v", err)
	}
}

// TestCommunityQuota: members and prefixes of one community are bounded;
// an update of a member already counted is judged on its new size; other
// communities are not affected.
func TestCommunityQuota(t *testing.T) {
	w := authorityWorld(t)
	if err := w.policy.SetQuotas(map[uint32]Quota{7: {MaxMembers: 2, MaxPrefixes: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := w.policy.SetQuotas(map[uint32]Quota{7: {MaxMembers: 0, MaxPrefixes: 3}}); err == nil {
		t.Fatal("quota 0 accepted")
	}
	if q := w.policy.Quota(0); q != DefaultQuota {
		t.Fatalf("community 0 quota %+v", q)
	}
	k := edSigner(t, 0x31)
	s := NewSet(w.policy)
	steps := []struct {
		rec  Record
		want Reason
	}{
		{w.rec(KindJoin, 1, 7, 1, k, "10.0.1.0/24"), ReasonNone},
		{w.rec(KindJoin, 2, 7, 1, k, "10.0.2.0/24", "10.0.3.0/24"), ReasonNone},
		{w.rec(KindJoin, 3, 7, 1, k, "10.0.4.0/24"), ReasonCommunityQuota},                  // a third member
		{w.rec(KindUpdate, 1, 7, 2, k, "10.0.1.0/24", "10.0.5.0/24"), ReasonCommunityQuota}, // a fourth prefix
		{w.rec(KindUpdate, 2, 7, 2, k, "10.0.2.0/24"), ReasonNone},                          // shrinks
		{w.rec(KindUpdate, 1, 7, 2, k, "10.0.1.0/24", "10.0.5.0/24"), ReasonNone},
		{w.rec(KindJoin, 4, 0, 1, k, "10.0.6.0/24"), ReasonNone}, // community 0: default quota
		{w.rec(KindExit, 2, 7, 3, k), ReasonNone},
		{w.rec(KindJoin, 3, 7, 1, k, "10.0.4.0/24"), ReasonNone}, // room again
	}
	for i, st := range steps {
		if _, err := s.Apply(st.rec); ReasonOf(err) != st.want {
			t.Fatalf("step %d: %v, want %v", i, err, st.want)
		}
	}
	if s.Counters().Refused[ReasonCommunityQuota] != 2 {
		t.Fatalf("counters %+v", s.Counters())
	}
}

// TestFormat2RoundTrip: a record with rotation, authority and covers
// encodes as format 2, decodes to the same record and survives the store;
// a record without them stays format 1 (TestGoldenEncoding); a format 2
// encoding with none of its fields is refused (it would have two
// encodings).
func TestFormat2RoundTrip(t *testing.T) {
	w := authorityWorld(t)
	k, old, coverer := ecSigner(t, 0x41), edSigner(t, 0x42), edSigner(t, 0x43)
	r := w.recWith(KindUpdate, 65020, 7, 5, k, func(r *Record) {
		_ = r.SignRotation(old)
		r.RequestAuthority(0)
		_ = r.AddCover(65021, netip.MustParsePrefix("2001:db8:1::/48"), coverer)
		_ = r.AddCover(65022, netip.MustParsePrefix("10.3.0.0/24"), coverer)
	}, w.comm[0], "10.3.0.0/24", "2001:db8:1::/48")
	b := mustEncode(t, r)
	if b[0] != FormatVersion2 {
		t.Fatalf("format %d", b[0])
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, r) {
		t.Fatalf("round trip:\n%+v\n%+v", d, r)
	}
	if reason, err := w.policy.Verify(&d); reason != ReasonNone {
		t.Fatal(reason, err)
	}
	// Tampering with any format 2 field breaks a signature.
	for name, mod := range map[string]func(*Record){
		"rotation":  func(r *Record) { r.Rotation = bytes.Repeat([]byte{1}, SigSize) },
		"authority": func(r *Record) { r.AuthorityASCN = 7 },
		"cover":     func(r *Record) { r.Covers = r.Covers[:1] },
	} {
		x, _ := Decode(b)
		mod(&x)
		if reason, _ := w.policy.Verify(&x); reason == ReasonNone {
			t.Errorf("%s tampered and still verifies", name)
		}
	}
	// Format 2 with no format 2 field.
	plain := mustEncode(t, w.rec(KindJoin, 65020, 7, 1, k, "10.3.0.0/24"))
	if plain[0] != FormatVersion {
		t.Fatalf("plain record is format %d", plain[0])
	}
	body := append([]byte{FormatVersion2}, plain[1:len(plain)-2*(2+SigSize)]...)
	body = append(body, 0, 0, 0, 0) // no rotation, no authority, no covers
	body = append(body, plain[len(plain)-2*(2+SigSize):]...)
	body = append(body, 0, 0) // no authority signature
	if _, err := Decode(body); err == nil {
		t.Fatal("empty format 2 decoded")
	}
	// The store keeps it.
	dir := t.TempDir()
	s, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(r); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Digest() != s.Digest() || len(s2.Quarantined()) != 0 {
		t.Fatal("format 2 record lost across restart")
	}
}

// TestPinnedMembers: an AS the configuration lists under a community
// (Policy.SetMembers) can only be a member of that community, on a set that
// has never held a record of it too, and no authority endorsement changes
// that; unlisted ASes are unaffected.
func TestPinnedMembers(t *testing.T) {
	w := authorityWorld(t)
	if err := w.policy.SetMembers(map[uint32]uint32{65001: 0}); err != nil {
		t.Fatal(err)
	}
	if err := w.policy.SetMembers(map[uint32]uint32{65001: 9}); err == nil {
		t.Fatal("pinned to an unconfigured community")
	}
	if ascn, ok := w.policy.CommunityOf(65001); !ok || ascn != 0 {
		t.Fatal(ascn, ok)
	}
	evil := edSigner(t, 0x66)
	s := NewSet(w.policy)
	for name, r := range map[string]Record{
		"first record, community 7": w.rec(KindJoin, 65001, 7, 1, evil, "192.0.2.0/24"),
		"with root authority":       w.recWith(KindJoin, 65001, 7, 1, evil, func(r *Record) { r.RequestAuthority(0) }, w.comm[0], "192.0.2.0/24"),
	} {
		if _, err := s.Apply(r); ReasonOf(err) != ReasonForeignCommunity {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := s.Apply(w.rec(KindJoin, 65001, 0, 1, edSigner(t, 1), "192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(w.rec(KindJoin, 65005, 7, 1, evil, "198.51.100.0/24")); err != nil {
		t.Fatalf("unpinned AS: %v", err)
	}
}
