package mapserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

var (
	keyA = []byte("site-a-secret")
	keyB = []byte("site-b-secret")
	t0   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	etrA = netip.MustParseAddrPort("192.0.2.10:40001")
	itr  = netip.MustParseAddrPort("198.51.100.7:50007")
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func testSites() []Site {
	return []Site{
		{
			Name: "a", Key: keyA, KeyID: lisp.KeyIDHMACSHA256128, AcceptMoreSpecifics: true,
			EIDPrefixes: []EIDPrefix{{0, pfx("10.1.0.0/16")}, {0, pfx("2001:db8:1::/48")}},
		},
		{
			Name: "b", Key: keyB, KeyID: lisp.KeyIDHMACSHA1_96,
			EIDPrefixes: []EIDPrefix{{0, pfx("10.2.0.0/16")}, {7, pfx("10.1.0.0/16")}},
		},
	}
}

func newServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Sites: testSites()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rec builds a mapping record for prefix p (optionally wrapped) with one
// RLOC.
func rec(p netip.Prefix, wrap func(lisp.Address) lisp.Address, rloc string) lisp.MappingRecord {
	eid := lisp.IPAddr(p.Addr())
	if wrap != nil {
		eid = wrap(eid)
	}
	return lisp.MappingRecord{
		TTL: 1440, EIDMaskLen: uint8(p.Bits()), Authoritative: true, EID: eid,
		Locators: []lisp.Locator{{Priority: 1, Weight: 100, Reachable: true, Address: lisp.IPAddr(netip.MustParseAddr(rloc))}},
	}
}

type regOpt struct {
	proxy, notify bool
	xtr           *lisp.XTRInfo
	authLen       int   // 0: RFC length
	sharedKeyID   uint8 // RFC 9301 Key ID
}

func register(t testing.TB, keyID uint16, key []byte, nonce uint64, o regOpt, recs ...lisp.MappingRecord) []byte {
	t.Helper()
	b, err := lisp.AuthConfig{KeyID: keyID, SharedKeyID: o.sharedKeyID, Key: key, AuthLen: o.authLen}.Marshal(&lisp.MapRegister{
		ProxyReply: o.proxy, WantMapNotify: o.notify, Nonce: nonce, Records: recs, XTR: o.xtr,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func regA(t testing.TB, nonce uint64, o regOpt, recs ...lisp.MappingRecord) []byte {
	return register(t, lisp.KeyIDHMACSHA256128, keyA, nonce, o, recs...)
}

// ecmRequest builds an Encapsulated Map-Request from the ITR for eid/mask;
// dst is the inner destination (the EID's IP).
func ecmRequest(t testing.TB, from netip.AddrPort, eid lisp.Address, dst netip.Addr, mask uint8, nonce uint64) []byte {
	t.Helper()
	src := from.Addr()
	if src.Is4() != dst.Is4() {
		src = netip.IPv6Loopback()
		if dst.Is4() {
			src = netip.MustParseAddr("127.0.0.1")
		}
	}
	b, err := lisp.Marshal(&lisp.ECM{
		Inner: lisp.InnerHeader{Source: netip.AddrPortFrom(src, from.Port()), Destination: netip.AddrPortFrom(dst, 4342), TTL: 64},
		Message: &lisp.MapRequest{
			Nonce: nonce, SourceEID: lisp.Address{}, ITRRLOCs: []lisp.Address{lisp.IPAddr(from.Addr())},
			Records: []lisp.EIDRecord{{MaskLen: mask, EID: eid}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func request(t testing.TB, s *Server, ip string, now time.Time) []lisp.Datagram {
	t.Helper()
	a := netip.MustParseAddr(ip)
	return s.Handle(ecmRequest(t, itr, lisp.IPAddr(a), a, uint8(a.BitLen()), 0x1234), itr, now)
}

func onlyOne(t testing.TB, out []lisp.Datagram) lisp.Datagram {
	t.Helper()
	if len(out) != 1 {
		t.Fatalf("got %d outgoing datagrams, want 1", len(out))
	}
	return out[0]
}

func parseReply(t testing.TB, o lisp.Datagram) *lisp.MapReply {
	t.Helper()
	r, err := lisp.ParseMapReply(o.Data)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return r
}
