package membership

import (
	"errors"
	"net/netip"
	"testing"
)

// With a prefix check installed (RPKI), a join or update whose prefixes the
// check refuses is refused and counted as rpki-uncovered; exits are not
// checked; without a check nothing changes.
func TestPrefixCheck(t *testing.T) {
	w := newWorld(t)
	as := edSigner(t, 7)
	s := NewSet(w.policy)
	s.SetPrefixCheck(func(asn uint32, prefixes []netip.Prefix) error {
		for _, p := range prefixes {
			if p == netip.MustParsePrefix("203.0.113.0/24") {
				return errors.New("203.0.113.0/24 not covered by a ROA for AS65007")
			}
		}
		return nil
	})
	if _, err := s.Apply(w.rec(KindJoin, 65007, 0, 1, as, "198.51.100.0/24")); err != nil {
		t.Fatalf("covered join refused: %v", err)
	}
	_, err := s.Apply(w.rec(KindUpdate, 65007, 0, 2, as, "198.51.100.0/24", "203.0.113.0/24"))
	if ReasonOf(err) != ReasonRPKIUncovered {
		t.Fatalf("uncovered update: %v", err)
	}
	if s.Counters().Refused[ReasonRPKIUncovered] != 1 {
		t.Fatalf("counters %+v", s.Counters())
	}
	if _, err := s.Apply(w.rec(KindExit, 65007, 0, 3, as)); err != nil {
		t.Fatalf("exit refused: %v", err)
	}
	if ReasonRPKIUncovered.String() != "rpki-uncovered" {
		t.Fatal(ReasonRPKIUncovered.String())
	}
}
