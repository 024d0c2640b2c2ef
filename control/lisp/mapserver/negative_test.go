package mapserver

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/psavd/psavd/control/lisp"
)

// exactNeed is negativePrefix's answer length over the registration table
// alone, by brute force over keys (family and IID of addr).
func exactNeed(s *Server, iid uint32, addr netip.Addr, length int) (n int, any bool) {
	s.regs.each(func(r ref) {
		k := s.tab.at(r).k
		if k.iid() == iid && k.v4() == addr.Is4() && (length < 0 || int(k.bits()) == length) {
			n, any = max(n, need(addr, k.prefix())), true
		}
	})
	return n, any
}

// TestNegativeBound: the probed bound of a large table is, for every mask
// length, the exact contribution where a registration lies within
// negativeProbeDepth levels of addr and m-negativeProbeDepth where none
// does — so never below the exact answer (a negative prefix never covers
// a registration).
func TestNegativeBound(t *testing.T) {
	s := newServer(t, nil)
	rnd := rand.New(rand.NewPCG(16, 6))
	var regd []netip.Prefix
	for msg := range 40 {
		var recs []lisp.MappingRecord
		for range 20 {
			var p netip.Prefix
			if rnd.IntN(2) == 0 {
				a := [4]byte{10, 1, byte(rnd.IntN(256)), byte(rnd.IntN(256))}
				p = netip.PrefixFrom(netip.AddrFrom4(a), 17+rnd.IntN(16)).Masked()
			} else {
				a := netip.MustParseAddr("2001:db8:1::").As16()
				for i := 6; i < 16; i++ {
					a[i] = byte(rnd.IntN(256))
				}
				p = netip.PrefixFrom(netip.AddrFrom16(a), 49+rnd.IntN(80)).Masked()
			}
			regd = append(regd, p)
			recs = append(recs, rec(p, nil, "192.0.2.10"))
		}
		s.Handle(regA(t, uint64(msg+1), regOpt{}, recs...), etrA, t0)
	}
	if s.regs.n < 600 {
		t.Fatalf("%d registrations", s.regs.n)
	}
	var found, bounded int
	for i := range 4000 {
		// Addresses near registrations (a few low bits changed) and
		// anywhere in or beside the sites' space.
		p := regd[rnd.IntN(len(regd))]
		a := p.Addr().As16()
		flip := rnd.IntN(24)
		if i%4 == 0 {
			flip = rnd.IntN(128)
		}
		bit := a[:]
		if p.Addr().Is4() {
			bit = a[12:]
		}
		if flip < len(bit)*8 {
			bit[len(bit)-1-flip/8] ^= 1 << (flip % 8)
		}
		addr := netip.AddrFrom16(a)
		if p.Addr().Is4() {
			addr = netip.AddrFrom4([4]byte(a[12:]))
		}
		want := 0
		for m := 0; m <= addr.BitLen(); m++ {
			c, any := exactNeed(s, 0, addr, m)
			if !any {
				continue
			}
			if c < m-negativeProbeDepth+1 && m > negativeProbeDepth {
				c = m - negativeProbeDepth
				bounded++
			} else {
				found++
			}
			want = max(want, c)
		}
		got := s.negativeBound(0, addr)
		exact, _ := exactNeed(s, 0, addr, -1)
		if got != want || got < exact {
			t.Fatalf("%v: bound %d, want %d (exact %d)", addr, got, want, exact)
		}
	}
	if found == 0 || bounded == 0 {
		t.Fatalf("cases not both exercised: %d exact, %d bounded", found, bounded)
	}
}

// TestNegativeReplyLargeTable: with more than exactScanLimit registrations
// a negative Map-Reply comes from index probes: exact next to a
// registration, bounded (a /24 beside /32s) farther away, and never
// covering a registration.
func TestNegativeReplyLargeTable(t *testing.T) {
	s := newServer(t, nil)
	const n = exactScanLimit + 904 // 10.1.0.0 - 10.1.19.135
	for i := 0; i < n; i += 50 {
		var recs []lisp.MappingRecord
		for j := i; j < min(n, i+50); j++ {
			recs = append(recs, rec(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(j >> 8), byte(j)}), 32), nil, "192.0.2.10"))
		}
		s.Handle(regA(t, uint64(i+1), regOpt{}, recs...), etrA, t0)
	}
	if s.regs.n != n {
		t.Fatalf("%d registrations, want %d", s.regs.n, n)
	}
	ask := func(eid, want string) {
		t.Helper()
		a := netip.MustParseAddr(eid)
		r := parseReply(t, onlyOne(t, s.Handle(ecmRequest(t, itr, lisp.IPAddr(a), a, 32, 5), itr, t0)))
		_, ip, _, _ := requestEID(r.Records[0].EID)
		got := netip.PrefixFrom(ip, int(r.Records[0].EIDMaskLen))
		if got.String() != want || len(r.Records[0].Locators) != 0 {
			t.Errorf("%s: negative %v, want %s", eid, got, want)
		}
		s.regs.each(func(x ref) {
			if k := s.tab.at(x).k; got.Overlaps(k.prefix()) {
				t.Fatalf("%s: negative %v covers registered %v", eid, got, k.prefix())
			}
		})
	}
	ask("10.1.19.200", "10.1.19.192/26") // beside 10.1.19.135: exact
	ask("10.1.128.1", "10.1.128.0/24")   // bounded; exact would be 10.1.128.0/17
	ask("10.2.3.4", "10.2.3.0/24")       // site b's space: probed, bounded too
	ask("11.0.0.1", "11.0.0.0/8")        // outside EID space: no probe needed, exact

	// Site a narrowed to 10.1.0.0/20: 10.1.16.0-10.1.19.135 stay until
	// they expire, outside any configured prefix, so outside EID space is
	// probed as well; and once a's prefix is back, it is not.
	narrowed := testSites()
	narrowed[0].EIDPrefixes[0].Prefix = pfx("10.1.0.0/20")
	if err := s.SetSites(narrowed); err != nil {
		t.Fatal(err)
	}
	if s.outside != 3*256+136 {
		t.Fatalf("%d registrations outside the sites' prefixes, want %d", s.outside, 3*256+136)
	}
	ask("10.1.19.200", "10.1.19.192/26")
	ask("11.0.0.1", "11.0.0.0/24")
	if err := s.SetSites(testSites()); err != nil {
		t.Fatal(err)
	}
	if s.outside != 0 {
		t.Fatalf("%d registrations outside after the prefix came back", s.outside)
	}
	ask("11.0.0.1", "11.0.0.0/8")
}

// FuzzHandle: no datagram makes Handle panic, with a table large enough
// that negative answers come from index probes, and the table stays
// consistent (every key's list reachable from the index, counts equal).
func FuzzHandle(f *testing.F) {
	a := netip.MustParseAddr("10.1.200.1")
	f.Add(ecmRequest(f, itr, lisp.IPAddr(a), a, 32, 7))
	f.Add(ecmRequest(f, itr, lisp.InstanceIDAddr(7, 0, lisp.IPAddr(a)), a, 32, 8))
	v6 := netip.MustParseAddr("2001:db8:1::9")
	f.Add(ecmRequest(f, itr, lisp.IPAddr(v6), v6, 128, 9))
	f.Add(regA(f, 1, regOpt{notify: true}, rec(pfx("10.1.1.0/24"), nil, "192.0.2.10")))
	s := newServer(f, nil)
	fill(s, exactScanLimit+100, func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
	})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		s.Handle(pkt, itr, t0)
		s.Handle(pkt, etrA, t0)
		n := 0
		s.regs.each(func(r ref) {
			for x := r; x != none; x = s.tab.at(x).same {
				n++
			}
		})
		if n != s.tab.live {
			t.Fatalf("%d entries reachable from the index, %d live", n, s.tab.live)
		}
	})
}
