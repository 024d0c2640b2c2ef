package adot

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// answerAll asks z for every owner name and a few others, with several
// types, and checks that each answer packs.
func answerAll(t *testing.T, z *Zone) {
	names := []string{z.Origin(), "nope." + z.Origin(), "a.b.c." + z.Origin(), "example.org."}
	for n := range z.names {
		names = append(names, n, "x."+n)
	}
	for _, n := range names {
		if _, ok := dns.IsDomainName(n); !ok || strings.Contains(n, "..") {
			continue
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeDS, dns.TypeCNAME} {
			q := new(dns.Msg)
			q.SetQuestion(n, qt)
			r := z.Answer(q)
			if r == nil {
				t.Fatal("nil answer")
			}
			if _, err := r.Pack(); err != nil {
				t.Fatalf("answer to %s/%d does not pack: %v", n, qt, err)
			}
			if !dns.IsSubDomain(z.Origin(), dns.CanonicalName(n)) && r.Rcode != dns.RcodeRefused {
				t.Fatalf("out-of-zone %s answered rcode %d", n, r.Rcode)
			}
		}
	}
}

// FuzzParseZone: zone text from configuration must never panic the
// parser or the answer path; a zone that parses obeys the invariants.
func FuzzParseZone(f *testing.F) {
	f.Add(testZone, zoneText())
	f.Add("example.test.", "@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nsub NS ns.sub\nns.sub A 192.0.2.2\nw CNAME ns\n")
	f.Add("example.test", "$TTL 0\n@ SOA . . 0 0 0 0 0\na.b.c TXT \"x;y\"\n")
	f.Add(".", "@ SOA . . 1 1 1 1 1\n")
	f.Fuzz(func(t *testing.T, origin, text string) {
		if len(text) > 4096 {
			return
		}
		z, err := ParseZone(origin, text)
		if err != nil {
			return
		}
		if z.soa == nil || z.soa.Hdr.Name != z.Origin() {
			t.Fatal("zone without an apex SOA accepted")
		}
		for n := range z.names {
			if !dns.IsSubDomain(z.Origin(), n) {
				t.Fatalf("name %s outside %s accepted", n, z.Origin())
			}
		}
		if z.Len() <= 1000 { // $GENERATE can legitimately make large zones
			answerAll(t, z)
		}
	})
}

// FuzzZoneFromMap: map-form records (owner, value) from configuration.
func FuzzZoneFromMap(f *testing.F) {
	f.Add("0", "A 192.0.2.1")
	f.Add("@", "NS ns.example.test.")
	f.Add("x.example.test.", "60 AAAA 2001:db8::1")
	f.Add("$INCLUDE", "/etc/passwd")
	f.Add("a", "TXT \"a\nb\"")
	f.Fuzz(func(t *testing.T, owner, value string) {
		z, err := ZoneFromMap("example.test.", 60, map[string][]string{owner: {value}, "@": {"NS ns.example.test."}})
		if err != nil {
			return
		}
		if z.Len() < 2 || z.Len() > 3 {
			t.Fatalf("one entry produced %d records", z.Len())
		}
		answerAll(t, z)
	})
}

// FuzzServerRespond: whatever arrives in a DoT frame, the server answers
// (or drops the connection) without panicking, and echoes the ID — also a
// zone transfer to an allowed secondary (every message parses, IDs echoed).
func FuzzServerRespond(f *testing.F) {
	z, err := ParseZone(testZone, zoneText())
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Certificates: []tls.Certificate{{}}, Zone: z,
		TransferFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		f.Fatal(err)
	}
	secondary := &peer{ip: netip.MustParseAddr("127.0.0.1"), state: tls.ConnectionState{NegotiatedProtocol: "dot"}}
	m := new(dns.Msg)
	m.SetQuestion("0."+testZone, dns.TypeA)
	m.SetEdns0(1232, true)
	b, _ := m.Pack()
	f.Add(b)
	m.SetQuestion(testZone, dns.TypeAXFR)
	b, _ = m.Pack()
	f.Add(b)
	m.SetIxfr(testZone, 7, "ns.", "hm.")
	b, _ = m.Pack()
	f.Add(b)
	f.Add([]byte(strings.Repeat("\x00", 12)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, p := range []*peer{nil, secondary} {
			for _, out := range s.respond(in, p) {
				r := new(dns.Msg)
				if err := r.Unpack(out); err != nil {
					t.Fatalf("server produced an unparsable answer: %v", err)
				}
				if len(in) >= 2 && r.Id != uint16(in[0])<<8|uint16(in[1]) {
					t.Fatal("ID not echoed")
				}
			}
		}
	})
}
