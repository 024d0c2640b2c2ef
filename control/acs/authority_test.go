package acs

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/internal/promtext"
)

// signedRecord builds a record of asn in community ascn, signed by as and
// endorsed by comm.
func signedRecord(t *testing.T, l *lab, as, comm membership.Signer, kind membership.Kind, asn, ascn uint32, ver uint64, prefixes ...string) []byte {
	t.Helper()
	r := membership.Record{Kind: kind, ASN: asn, ASCN: ascn, Version: ver, Key: as.Public()}
	for _, p := range prefixes {
		r.Prefixes = append(r.Prefixes, netip.MustParsePrefix(p))
	}
	if kind != membership.KindExit {
		r.ACS = []netip.AddrPort{netip.MustParseAddrPort(l.addr(asn))}
	}
	r.Canonicalize()
	if err := r.Sign(as); err != nil {
		t.Fatal(err)
	}
	if err := r.Endorse(comm); err != nil {
		t.Fatal(err)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seeded(t *testing.T, b byte) membership.Signer {
	t.Helper()
	s, err := membership.NewEd25519SignerFromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCommunityKeyAttacks is issue 14's must-show 2 through real ACS: two
// ACS (AS65001, AS65002, both community-0 members) hold each other's
// records; the holder of community 7's key runs a third ACS (AS64507) whose
// store carries an exit of AS65001 at version 2^64−1 and a fresh AS65077
// with a /25 of AS65002's /16, and submits a rewrite of AS65001 (new
// prefixes, new key) and a version-burning exit. Every attack is refused —
// over the peer sessions and at submission — under its own reason, counted
// in the set and exported in /metrics (psavd_membership_refused_total);
// AS65001's record stays in force on both ACS, and its owner's v2 and v3
// are then accepted and flooded.
func TestCommunityKeyAttacks(t *testing.T) {
	l := newLab(t)
	l.manual = true
	comm7 := seeded(t, 0xC7)
	pol, err := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {l.comm.Public()}, 7: {comm7.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	l.policy = pol
	l.mesh(65001, 65002)
	a, b := l.nodes[65001], l.nodes[65002]
	k1 := seeded(t, 0x01) // AS65001's own key
	evil := seeded(t, 0x66)

	legit1 := signedRecord(t, l, k1, l.comm, membership.KindJoin, 65001, 0, 1, "10.1.0.0/16")
	for at, rec := range map[*Node][]byte{a: legit1, b: l.record(membership.KindJoin, 65002, 1, "10.2.0.0/16")} {
		if changed, err := at.Publish(rec); err != nil || !changed {
			t.Fatalf("publish: %v %v", changed, err)
		}
	}
	bothHold := func(asn uint32, ver uint64) func() bool {
		return func() bool {
			for _, n := range []*Node{a, b} {
				if r, ok := n.Membership().Get(asn); !ok || r.Version != ver {
					return false
				}
			}
			return a.Membership().Digest() == b.Membership().Digest()
		}
	}
	waitFor(t, "both joins on both ACS", func() bool { return bothHold(65001, 1)() && bothHold(65002, 1)() })

	// The attacker's ACS: a valid certificate of AS64507, and a store its
	// own set accepts (it holds nothing of AS65001 or AS65002).
	dir := t.TempDir()
	for name, rec := range map[string][]byte{
		"AS65001.rec": signedRecord(t, l, evil, comm7, membership.KindExit, 65001, 7, math.MaxUint64),
		"AS65077.rec": signedRecord(t, l, evil, comm7, membership.KindJoin, 65077, 7, 1, "10.2.3.0/25"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.dirs[64507] = dir
	// It peers with AS65002 only: its own set holds AS65001's forged exit,
	// so an unmodified ACS would not talk to AS65001 (an exited AS).
	attacker := l.start(64507, []uint32{65002, 64507})
	// (It may already have learnt AS65002's record from its peers.)
	r1, ok1 := attacker.Membership().Get(65001)
	_, ok2 := attacker.Membership().Get(65077)
	if !ok1 || r1.Version != math.MaxUint64 || !ok2 || len(attacker.Membership().Quarantined()) != 0 {
		t.Fatalf("attacker's ACS did not load its records: %+v", attacker.Membership().All())
	}
	refused := func(n *Node, r membership.Reason) uint64 { return n.Membership().Counters().Refused[r] }
	waitFor(t, "the attacker's records refused over the session", func() bool {
		for _, n := range []*Node{b} {
			if refused(n, membership.ReasonForeignCommunity) == 0 || refused(n, membership.ReasonMoreSpecific) == 0 {
				return false
			}
		}
		return true
	})

	// Submitted directly: a rewrite of AS65001 by community 7, and an exit
	// at 2^64−1 with AS65001's own key (a version it could never leave).
	for _, c := range []struct {
		name string
		at   *Node
		rec  []byte
		want membership.Reason
	}{
		{"community 7 rewrites AS65001", b, signedRecord(t, l, evil, comm7, membership.KindUpdate, 65001, 7, 2, "198.51.100.0/24", "203.0.113.0/24"), membership.ReasonForeignCommunity},
		{"community 7 exits AS65001 at 2^64-1", a, signedRecord(t, l, evil, comm7, membership.KindExit, 65001, 7, math.MaxUint64), membership.ReasonForeignCommunity},
		{"exit at 2^64-1", a, signedRecord(t, l, k1, l.comm, membership.KindExit, 65001, 0, math.MaxUint64), membership.ReasonVersionJump},
		{"fresh AS takes a /25 of AS65002's /16", b, signedRecord(t, l, evil, comm7, membership.KindJoin, 65078, 7, 1, "10.2.4.0/25"), membership.ReasonMoreSpecific},
	} {
		before := refused(c.at, c.want)
		changed, err := c.at.Publish(c.rec)
		if changed || membership.ReasonOf(err) != c.want {
			t.Fatalf("%s: changed=%v %v, want %v", c.name, changed, err, c.want)
		}
		if refused(c.at, c.want) <= before {
			t.Fatalf("%s: not counted", c.name)
		}
	}
	for _, n := range []*Node{a, b} {
		got, ok := n.Membership().Encoded(65001)
		if !ok || !bytes.Equal(got, legit1) {
			t.Fatalf("AS%d: AS65001's record replaced", n.cfg.ASN)
		}
		for _, asn := range []uint32{65077, 65078} {
			if _, ok := n.Membership().Get(asn); ok {
				t.Fatalf("AS%d holds AS%d", n.cfg.ASN, asn)
			}
		}
	}

	// The refusals are in /metrics, by reason.
	for _, n := range []*Node{a, b} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector(n))
		hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
		ss, err := promtext.Scrape(t.Context(), http.DefaultClient, hs.URL)
		hs.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range membership.Reasons() {
			if _, ok := ss.Series(`psavd_membership_refused_total{reason="` + r.String() + `"}`); !ok {
				t.Errorf("AS%d: no series for %v", n.cfg.ASN, r)
			}
		}
		reasons := []membership.Reason{membership.ReasonForeignCommunity, membership.ReasonMoreSpecific}
		if n == a {
			reasons = reasons[:1] // the more-specific went to AS65002 only
		}
		for _, r := range reasons {
			if v := ss.Sum("psavd_membership_refused_total", map[string]string{"reason": r.String()}); v < 1 {
				t.Errorf("AS%d: psavd_membership_refused_total{reason=%q} = %v", n.cfg.ASN, r, v)
			}
		}
		if n == a {
			if v := ss.Sum("psavd_membership_refused_total", map[string]string{"reason": "version-jump"}); v != 1 {
				t.Errorf("version-jump = %v", v)
			}
		}
	}

	// The owner's next versions are accepted and flooded: nothing burnt them.
	if changed, err := a.Publish(signedRecord(t, l, k1, l.comm, membership.KindUpdate, 65001, 0, 2, "10.1.0.0/16", "10.11.0.0/16")); err != nil || !changed {
		t.Fatalf("legitimate v2: %v %v", changed, err)
	}
	waitFor(t, "v2 on both ACS", bothHold(65001, 2))
	if changed, err := b.Publish(signedRecord(t, l, k1, l.comm, membership.KindUpdate, 65001, 0, 3, "10.1.0.0/16")); err != nil || !changed {
		t.Fatalf("legitimate v3: %v %v", changed, err)
	}
	waitFor(t, "v3 on both ACS", bothHold(65001, 3))
	if r, _ := a.Membership().Get(65001); r.ASCN != 0 || !r.Key.Equal(k1.Public()) {
		t.Fatalf("AS65001 held as %+v", r)
	}
}
