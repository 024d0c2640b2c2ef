package xtr

import (
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// xtrWithDatabase is an ETR and ITR: 203.0.113.0/24 → 192.0.2.1,
// registered with one Map-Server, resolving through it.
func xtrWithDatabase(t *testing.T, misses *[]engine.Miss, pub **engine.MapCache) *XTR {
	return itrFor(t, misses, pub, func(c *Config) {
		c.Database = []Mapping{{EID: pfx("203.0.113.0/24"), Locators: []Locator{{Addr: netip.MustParseAddr("192.0.2.1"), Priority: 1, Weight: 100}}}}
		c.MapServers = []MapServer{{Addr: netip.MustParseAddrPort("198.51.100.1:4342"), Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA1_96, Key: key}}}
	})
}

// split parses out into Map-Registers and plain Map-Requests.
func split(t *testing.T, out []lisp.Datagram) (regs []*lisp.MapRegister, reqs map[netip.AddrPort]*lisp.MapRequest) {
	t.Helper()
	reqs = map[netip.AddrPort]*lisp.MapRequest{}
	for _, o := range out {
		m, err := lisp.Parse(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *lisp.MapRegister:
			regs = append(regs, m)
		case *lisp.MapRequest:
			reqs[o.To] = m
		}
	}
	return regs, reqs
}

// TestSMRSentOnDatabaseChange: a database change (SetDatabase, a reload)
// is registered at once, and each up locator of each cached mapping gets
// an SMR (S bit, our changed prefix as source EID, its mapping's prefix
// as the record); a locator that sends an SMR-invoked Map-Request (s bit)
// for the prefix is not sent the SMR again, one that does not is, twice;
// an unchanged database sends nothing.
func TestSMRSentOnDatabaseChange(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := xtrWithDatabase(t, &misses, &pub)
	x.Tick(t0) // first registration
	resolve(t, x, &misses, t0, twoLocators()...)
	now := t0.Add(5 * time.Second)
	db := []Mapping{{EID: pfx("203.0.113.0/24"), Locators: []Locator{{Addr: netip.MustParseAddr("192.0.2.1"), Priority: 1, Weight: 100}}}}
	if err := x.SetDatabase(db); err != nil || x.Stats().DatabaseChanges != 0 {
		t.Fatalf("unchanged database: %v, %+v", err, x.Stats())
	}
	if regs, reqs := split(t, x.Tick(now)); len(regs) != 0 || len(reqs) != 0 {
		t.Fatalf("unchanged database: %d registers, %d requests", len(regs), len(reqs))
	}
	db[0].Locators = append(db[0].Locators, Locator{Addr: netip.MustParseAddr("192.0.2.9"), Priority: 2, Weight: 100})
	if err := x.SetDatabase(db); err != nil {
		t.Fatal(err)
	}
	if err := x.SetDatabase([]Mapping{{EID: pfx("203.0.113.0/24")}}); err == nil {
		t.Fatal("a mapping without locators taken")
	}
	regs, reqs := split(t, x.Tick(now))
	if len(regs) != 1 || len(regs[0].Records) != 1 || len(regs[0].Records[0].Locators) != 2 {
		t.Fatalf("registrations %+v, want the new mapping at once", regs)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d SMRs, want one per cached locator", len(reqs))
	}
	for _, to := range []netip.AddrPort{netip.AddrPortFrom(locA, 4342), netip.AddrPortFrom(locB, 4342)} {
		r := reqs[to]
		if r == nil || !r.SMR || r.Probe || r.SourceEID.IP != netip.MustParseAddr("203.0.113.0") || len(r.Records) != 1 ||
			r.Records[0].MaskLen != 24 || r.Records[0].EID.IP != netip.MustParseAddr("10.9.1.0") || len(r.ITRRLOCs) != 1 {
			t.Fatalf("SMR to %v: %+v", to, r)
		}
	}
	// A answers through the mapping system (an ECM from the Map-Server).
	ecm, err := lisp.Marshal(&lisp.ECM{Inner: lisp.InnerHeader{Source: netip.AddrPortFrom(locA, 4342), Destination: netip.MustParseAddrPort("203.0.113.0:4342"), TTL: 64},
		Message: &lisp.MapRequest{SMRInvoked: true, Nonce: 77, ITRRLOCs: []lisp.Address{lisp.IPAddr(locA)},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}}})
	if err != nil {
		t.Fatal(err)
	}
	if out := x.Handle(ecm, netip.MustParseAddrPort("198.51.100.1:4342"), now); len(out) != 1 || out[0].To != netip.AddrPortFrom(locA, 4342) {
		t.Fatalf("SMR-invoked Map-Request answered %v", out)
	}
	if x.Stats().SMRsAcked != 1 {
		t.Fatalf("%+v", x.Stats())
	}
	// The same ITR's request naming its EID (not B as ITR-RLOC) would
	// have acked both: checked on a fresh round below.
	resent := 0
	for i := 1; i <= 12; i++ {
		_, reqs := split(t, x.Tick(now.Add(time.Duration(i)*time.Second)))
		for to, r := range reqs {
			if !r.SMR || to.Addr() != locB {
				t.Fatalf("re-sent %+v to %v", r, to)
			}
			resent++
		}
	}
	if s := x.Stats(); resent != 2 || s.SMRsSent != 2 || s.SMRsResent != 2 || len(x.smrs) != 0 {
		t.Fatalf("%d re-sent, %+v", resent, s)
	}

	// Another change; the peer's SMR-invoked Map-Request names one
	// ITR-RLOC (A) but its source EID is in the cached mapping of both A
	// and B: neither is sent the SMR again.
	db[0].Locators = db[0].Locators[:1]
	if err := x.SetDatabase(db); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if _, reqs := split(t, x.Tick(now)); len(reqs) != 2 {
		t.Fatalf("%d SMRs", len(reqs))
	}
	ecm, err = lisp.Marshal(&lisp.ECM{Inner: lisp.InnerHeader{Source: netip.AddrPortFrom(locA, 4342), Destination: netip.MustParseAddrPort("203.0.113.0:4342"), TTL: 64},
		Message: &lisp.MapRequest{SMRInvoked: true, Nonce: 78, SourceEID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), ITRRLOCs: []lisp.Address{lisp.IPAddr(netip.MustParseAddr("198.51.100.99"))},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}}})
	if err != nil {
		t.Fatal(err)
	}
	x.Handle(ecm, netip.MustParseAddrPort("198.51.100.1:4342"), now)
	for i := 1; i <= 12; i++ {
		if _, reqs := split(t, x.Tick(now.Add(time.Duration(i)*time.Second))); len(reqs) != 0 {
			t.Fatalf("SMR re-sent after the source EID's ITR answered: %v", reqs)
		}
	}
	if s := x.Stats(); s.SMRsAcked != 3 {
		t.Fatalf("%+v", s)
	}
}

// TestSMRInvokedRequest: an SMR (S bit) for a mapping in the map-cache is
// not answered; the ITR sends an SMR-invoked Map-Request (s bit) for the
// cached prefix through its Map-Resolver, keeps using the old entry
// meanwhile, and takes the reply's new locators. An SMR while that
// look-up is pending, one for an EID not cached and one without a source
// EID are ignored (counted).
func TestSMRInvokedRequest(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := xtrWithDatabase(t, &misses, &pub)
	x.Tick(t0)
	resolve(t, x, &misses, t0, twoLocators()[:1]...)
	smr := func(src string) []byte {
		m := &lisp.MapRequest{SMR: true, Nonce: 5, ITRRLOCs: []lisp.Address{lisp.IPAddr(locA)},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}}
		if src != "" {
			m.SourceEID = lisp.IPAddr(netip.MustParseAddr(src))
		}
		b, err := lisp.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := t0.Add(time.Second)
	if out := x.Handle(smr("10.9.1.0"), netip.AddrPortFrom(locA, 4342), now); len(out) != 0 {
		t.Fatalf("SMR answered: %v", out)
	}
	x.Handle(smr("10.9.1.0"), netip.AddrPortFrom(locA, 4342), now)  // pending already
	x.Handle(smr("10.99.0.1"), netip.AddrPortFrom(locA, 4342), now) // nothing cached
	x.Handle(smr(""), netip.AddrPortFrom(locA, 4342), now)          // no source EID
	if s := x.Stats(); s.SMRsReceived != 4 || s.SMRsIgnored != 3 {
		t.Fatalf("%+v", s)
	}
	out := x.Tick(now)
	if len(out) != 1 || out[0].To != netip.MustParseAddrPort("198.51.100.1:4342") {
		t.Fatalf("sent %v, want one Map-Request to the Map-Resolver", out)
	}
	ecm, err := lisp.ParseECM(out[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	req := ecm.Message.(*lisp.MapRequest)
	if !req.SMRInvoked || req.SMR || len(req.Records) != 1 || req.Records[0].MaskLen != 24 || req.Records[0].EID.IP != netip.MustParseAddr("10.9.1.0") {
		t.Fatalf("SMR-invoked request %+v", req)
	}
	if st := upState(t, x, now); !st[locA] || x.Stats().SMRInvokedSent != 1 {
		t.Fatal("old entry not kept while the SMR-invoked look-up is pending")
	}
	pub = nil
	x.Handle(replyFor(t, req.Nonce, lisp.MappingRecord{TTL: 60, EIDMaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")),
		Locators: []lisp.Locator{{Priority: 1, Weight: 100, Reachable: true, Address: lisp.IPAddr(locB)}}}), out[0].To, now)
	if st := upState(t, x, now); len(st) != 1 || !st[locB] || pub == nil {
		t.Fatalf("locators %v after the SMR-invoked reply, want only %v", st, locB)
	}
}
