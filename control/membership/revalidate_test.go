package membership

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// coverage is a stand-in RPKI view: the prefixes each ASN may hold.
type coverage map[uint32][]netip.Prefix

func (c coverage) check(asn uint32, prefixes []netip.Prefix) error {
	for _, p := range prefixes {
		if !slices.Contains(c[asn], p) {
			return errors.New("not covered: " + p.String())
		}
	}
	return nil
}

func asns(recs []Record) []uint32 {
	var out []uint32
	for _, r := range recs {
		out = append(out, r.ASN)
	}
	return out
}

// Fail closed: a held record the check no longer accepts leaves Records,
// All, Digest and Get, keeps its prefixes and its version, survives on disk,
// and comes back when covered again; fail open keeps it and reports it.
func TestRevalidate(t *testing.T) {
	w := newWorld(t)
	a, b := edSigner(t, 1), edSigner(t, 2)
	dir := t.TempDir()
	s, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	mp := netip.MustParsePrefix
	for _, r := range []Record{
		w.rec(KindJoin, 65001, 0, 3, a, "192.0.2.0/24"),
		w.rec(KindJoin, 65002, 0, 1, b, "198.51.100.0/24"),
	} {
		if _, err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	both := s.Digest()
	cov := coverage{65001: {mp("192.0.2.0/24")}, 65002: {mp("198.51.100.0/24")}}
	if res := s.Revalidate(cov.check, true); len(res.SetAside)+len(res.Readmitted)+len(res.Uncovered)+res.Aside != 0 {
		t.Fatalf("all covered: %+v", res)
	}

	delete(cov, 65001) // the ROA of AS65001 is withdrawn
	if res := s.Revalidate(cov.check, false); !slices.Equal(res.Uncovered, []uint32{65001}) || res.Aside != 0 {
		t.Fatalf("fail open: %+v", res)
	}
	if got := asns(s.Records()); !slices.Equal(got, []uint32{65001, 65002}) {
		t.Fatalf("fail open dropped a record: %v", got)
	}
	res := s.Revalidate(cov.check, true)
	if !slices.Equal(res.SetAside, []uint32{65001}) || res.Aside != 1 {
		t.Fatalf("fail closed: %+v", res)
	}
	if got := asns(s.Records()); !slices.Equal(got, []uint32{65002}) {
		t.Fatalf("records in force %v", got)
	}
	if _, ok := s.Get(65001); ok || len(s.All()) != 1 || s.Digest() == both {
		t.Fatal("the record held aside is still in force")
	}
	if got := asns(s.Aside()); !slices.Equal(got, []uint32{65001}) {
		t.Fatalf("aside %v", got)
	}
	// Held aside, it still owns its prefix and sets the version to beat.
	c := edSigner(t, 3)
	if _, err := s.Apply(w.rec(KindJoin, 65003, 0, 1, c, "192.0.2.0/24")); ReasonOf(err) != ReasonConflictingPrefix {
		t.Fatalf("prefix of a record held aside taken: %v", err)
	}
	if _, err := s.Apply(w.rec(KindUpdate, 65001, 0, 2, a, "192.0.2.0/24")); ReasonOf(err) != ReasonStaleVersion {
		t.Fatalf("older record over one held aside: %v", err)
	}
	// A restart loads it from disk; the next pass holds it aside again.
	s2, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if r := s2.Revalidate(cov.check, true); !slices.Equal(r.SetAside, []uint32{65001}) {
		t.Fatalf("after restart: %+v", r)
	}

	cov[65001] = []netip.Prefix{mp("192.0.2.0/24")} // covered again
	if r := s.Revalidate(cov.check, true); !slices.Equal(r.Readmitted, []uint32{65001}) || r.Aside != 0 {
		t.Fatalf("readmission: %+v", r)
	}
	if s.Digest() != both {
		t.Fatal("readmitted set differs from the original")
	}

	// A newer record of an AS held aside replaces it.
	delete(cov, 65002)
	s.Revalidate(cov.check, true)
	cov[65002] = []netip.Prefix{mp("203.0.113.0/24")}
	if _, err := s.Apply(w.rec(KindUpdate, 65002, 0, 2, b, "203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if len(s.Aside()) != 0 || !slices.Equal(asns(s.Records()), []uint32{65001, 65002}) {
		t.Fatalf("update over a record held aside: aside %v, records %v", asns(s.Aside()), asns(s.Records()))
	}
}
