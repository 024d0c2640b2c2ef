package lisp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// TestDistinguishedNameAFI (issue 16): AFI 17 — lispers.net's named RLOCs —
// decodes (hand-built octets), re-encodes to the same octets, and a
// message carrying it is no longer refused as a whole; names that are not
// NUL-terminated printable ASCII are refused.
func TestDistinguishedNameAFI(t *testing.T) {
	want := []byte{0x00, 0x11, 'r', 't', 'r', '-', '1', 0x00}
	a, n, err := ParseAddress(want)
	if err != nil || n != len(want) || a.Name != "rtr-1" || a.AFI() != AFIDistinguishedName {
		t.Fatalf("ParseAddress = %+v, %d, %v", a, n, err)
	}
	got, err := AppendAddress(nil, a)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendAddress = %x, %v", got, err)
	}
	for _, bad := range [][]byte{
		{0x00, 0x11, 'a', 'b'},        // no NUL
		{0x00, 0x11, 0x00},            // empty
		{0x00, 0x11, 'a', 0x07, 0x00}, // not printable
	} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
	if _, err := AppendAddress(nil, Address{Name: "x", IP: netip.MustParseAddr("10.0.0.1")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("name and IP together: %v", err)
	}
	// A Map-Reply whose second locator is named.
	rep := &MapReply{Nonce: 7, Records: []MappingRecord{{TTL: 10, EIDMaskLen: 24, EID: IPAddr(netip.MustParseAddr("10.1.2.0")),
		Locators: []Locator{{Priority: 1, Weight: 50, Reachable: true, Address: IPAddr(netip.MustParseAddr("192.0.2.1"))},
			{Priority: 1, Weight: 50, Reachable: true, Address: Address{Name: "rtr-1"}}}}}}
	b, err := Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.(*MapReply); r.Records[0].Locators[1].Address.Name != "rtr-1" || r.Records[0].Locators[0].Address.IP != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("decoded %+v", r.Records[0].Locators)
	}
}
