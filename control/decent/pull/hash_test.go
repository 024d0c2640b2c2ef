package pull

import (
	"net/netip"
	"testing"
)

// The vectors of docs/wire.md §3.4 (suffix map-server.example.test).
func TestIndexVectors(t *testing.T) {
	for _, v := range []struct {
		input      string
		mask       int
		draft      [3]uint64 // mod 4, 8, 16
		lispersNet [3]uint64
	}{
		{"[0]240.0.1.0/24", 8, [3]uint64{0, 0, 8}, [3]uint64{3, 7, 15}},
		{"[0]240.0.1.1/32", 8, [3]uint64{0, 0, 8}, [3]uint64{2, 6, 14}},
		{"[0]10.1.0.0/16", 0, [3]uint64{0, 4, 4}, [3]uint64{1, 5, 13}},
		{"[0]2001:db8::/32", 0, [3]uint64{0, 4, 12}, [3]uint64{2, 6, 6}},
	} {
		for i, mod := range []uint64{4, 8, 16} {
			if got, _ := Index(ModeDraft, v.input, v.mask, mod); got != v.draft[i] {
				t.Errorf("draft %s mask %d mod %d = %d, want %d", v.input, v.mask, mod, got, v.draft[i])
			}
			// lispers.net has no mask: the vectors' mask must not matter.
			if got, _ := Index(ModeLispersNet, v.input, v.mask, mod); got != v.lispersNet[i] {
				t.Errorf("lispers.net %s mod %d = %d, want %d", v.input, mod, got, v.lispersNet[i])
			}
		}
	}
	if n := Name(8, "map-server.example.test"); n != "8.map-server.example.test" {
		t.Fatal(n)
	}
}

// With the mask, a more-specific EID hashes like its covering prefix as long
// as the strings agree on their first mask octets — the point of the mask.
func TestMaskLandsMoreSpecificOnCoveringPrefix(t *testing.T) {
	cover, _ := Index(ModeDraft, EIDString(0, netip.MustParsePrefix("240.0.1.0/24")), 8, 1<<20)
	more, _ := Index(ModeDraft, EIDString(0, netip.MustParsePrefix("240.0.1.77/32")), 8, 1<<20)
	if cover != more {
		t.Fatalf("mask 8: covering %d, more specific %d", cover, more)
	}
	unmasked, _ := Index(ModeDraft, EIDString(0, netip.MustParsePrefix("240.0.1.77/32")), 0, 1<<20)
	if unmasked == cover {
		t.Fatal("without a mask the indexes should (almost surely) differ")
	}
}

func TestEIDStrings(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{EIDString(0, netip.MustParsePrefix("2001:DB8:0:0::/32")), "[0]2001:db8::/32"},                // RFC 5952
		{EIDString(7, netip.MustParsePrefix("240.0.1.9/24")), "[7]240.0.1.0/24"},                      // masked
		{EIDString(0, netip.MustParsePrefix("2001:db8:0:0:1:0:0:1/128")), "[0]2001:db8::1:0:0:1/128"}, // longest zero run first
		{MulticastEIDString(ModeDraft, 0, netip.MustParsePrefix("224.1.1.1/32"), netip.MustParsePrefix("10.0.0.1/32")), "[0]224.1.1.1/32-10.0.0.1/32"},
		{MulticastEIDString(ModeDraft, 5, netip.MustParsePrefix("ff0e::1/128"), netip.MustParsePrefix("::/0")), "[5]ff0e::1/128-::/0"},
		// lispers.net: the group address alone, at its host length.
		{MulticastEIDString(ModeLispersNet, 0, netip.MustParsePrefix("224.1.1.1/32"), netip.MustParsePrefix("10.0.0.1/32")), "[0]224.1.1.1/32"},
		{MulticastEIDString(ModeLispersNet, 5, netip.MustParsePrefix("ff0e::1/128"), netip.MustParsePrefix("::/0")), "[5]ff0e::1/128"},
		{MulticastEIDString(ModeLispersNet, 0, netip.MustParsePrefix("239.255.0.1/16"), netip.MustParsePrefix("::/0")), "[0]239.255.0.1/32"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	// lispers.net's (S, G) indexes, computed with its formula (first 12 hex
	// digits of hmac-sha256("lisp-decent", string), mod the modulus).
	for _, v := range []struct {
		input   string
		modulus uint64
		want    uint64
	}{
		{"[3]224.1.1.1/32", 16, 7}, {"[0]224.1.1.1/32", 4, 2}, {"[5]ff0e::1/128", 16, 3}, {"[0]239.255.0.1/32", 16, 3},
	} {
		if got, _ := Index(ModeLispersNet, v.input, 0, v.modulus); got != v.want {
			t.Errorf("lispers.net %s mod %d = %d, want %d", v.input, v.modulus, got, v.want)
		}
	}
	if _, err := Index(ModeDraft, "x", 0, 0); err == nil {
		t.Error("modulus 0 accepted")
	}
	if _, err := ParseMode("sha1"); err == nil {
		t.Error("unknown mode accepted")
	}
}
