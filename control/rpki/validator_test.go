package rpki

import (
	"net/netip"
	"slices"
	"testing"
)

func TestValidatorRFC6811(t *testing.T) {
	mp := netip.MustParsePrefix
	v := NewValidator([]VRP{
		{mp("192.0.2.0/24"), 24, 64500},
		{mp("198.51.100.0/22"), 24, 64500},
		{mp("198.51.100.0/22"), 22, 64500}, // smaller duplicate: the larger max length wins
		{mp("203.0.113.0/24"), 24, 64501},
		{mp("2001:db8::/32"), 48, 64500},
		{mp("10.0.0.0/8"), 8, 0},        // AS0 ROA: never valid
		{mp("192.0.2.1/24"), 24, 64502}, // host bits: skipped
		{mp("192.0.2.0/24"), 23, 64502}, // max length < length: skipped
	})
	if v.Len() != 6 {
		t.Fatalf("Len = %d, want 6", v.Len())
	}
	cases := []struct {
		asn  uint32
		p    string
		want State
	}{
		{64500, "192.0.2.0/24", Valid},
		{64500, "192.0.2.0/25", Invalid},  // longer than max length
		{64500, "192.0.2.0/23", NotFound}, // less specific: nothing covers it
		{64500, "198.51.101.0/24", Valid}, // inside /22 with max 24
		{64500, "198.51.100.0/22", Valid}, // exact
		{64500, "198.51.100.0/26", Invalid},
		{64501, "192.0.2.0/24", Invalid},   // wrong ASN
		{64502, "192.0.2.0/24", Invalid},   // skipped VRPs do not count
		{64500, "203.0.113.0/24", Invalid}, // someone else's
		{64500, "2001:db8:1::/48", Valid},
		{64500, "2001:db8::/49", Invalid},
		{64500, "2001:db9::/32", NotFound},
		{0, "10.0.0.0/8", Invalid},
		{64500, "10.1.0.0/16", Invalid},
		{64500, "::ffff:192.0.2.0/120", NotFound}, // mapped: never matches
		{64500, "192.0.2.77/24", Valid},           // unmasked input is masked
	}
	for _, tc := range cases {
		if got := v.State(tc.asn, mp(tc.p)); got != tc.want {
			t.Errorf("State(AS%d, %s) = %v, want %v", tc.asn, tc.p, got, tc.want)
		}
	}
	ok, unc := v.Covered(64500, []netip.Prefix{mp("192.0.2.0/24"), mp("192.0.2.0/25"), mp("2001:db8::/32"), mp("203.0.113.0/24")})
	if ok || !slices.Equal(unc, []netip.Prefix{mp("192.0.2.0/25"), mp("203.0.113.0/24")}) {
		t.Fatalf("Covered = %v %v", ok, unc)
	}
	if ok, unc := v.Covered(64500, []netip.Prefix{mp("192.0.2.0/24"), mp("2001:db8::/40")}); !ok || unc != nil {
		t.Fatalf("Covered all = %v %v", ok, unc)
	}
	var nilV *Validator
	if ok, unc := nilV.Covered(64500, []netip.Prefix{mp("192.0.2.0/24")}); ok || len(unc) != 1 || nilV.Len() != 0 {
		t.Fatalf("nil Covered = %v %v", ok, unc)
	}
	got := v.VRPs()
	if len(got) != 5 || got[0].Prefix != mp("10.0.0.0/8") || got[2].MaxLen != 24 {
		t.Fatalf("VRPs = %v", got)
	}
}
