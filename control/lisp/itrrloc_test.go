package lisp

import (
	"net/netip"
	"testing"
)

// A reply goes to the ITR-RLOC of the family the request came by, else the
// first one; IPv4-mapped addresses count as IPv4.
func TestITRRLOCFor(t *testing.T) {
	a := func(s string) Address { return Address{IP: netip.MustParseAddr(s)} }
	req := &MapRequest{ITRRLOCs: []Address{a("2001:db8::1"), a("::ffff:192.0.2.1"), a("192.0.2.2")}}
	for _, c := range []struct{ from, want string }{
		{"198.51.100.1", "192.0.2.1"},
		{"::ffff:198.51.100.1", "192.0.2.1"},
		{"2001:db8::99", "2001:db8::1"},
	} {
		if got, ok := req.ITRRLOCFor(netip.MustParseAddr(c.from)); !ok || got != netip.MustParseAddr(c.want) {
			t.Errorf("from %s: %v %v, want %s", c.from, got, ok, c.want)
		}
	}
	only6 := &MapRequest{ITRRLOCs: []Address{a("2001:db8::1")}}
	if got, ok := only6.ITRRLOCFor(netip.MustParseAddr("192.0.2.9")); !ok || got != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("no RLOC of the family: %v %v, want the first", got, ok)
	}
	if _, ok := (&MapRequest{}).ITRRLOCFor(netip.MustParseAddr("192.0.2.9")); ok {
		t.Error("no ITR-RLOC at all, yet one was picked")
	}
}
