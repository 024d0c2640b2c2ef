package mapserver

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

func TestRegisterAccepted(t *testing.T) {
	s := newServer(t, nil)
	out := s.Handle(regA(t, 1, regOpt{}, rec(pfx("10.1.0.0/16"), nil, "192.0.2.10"), rec(pfx("10.1.5.0/24"), nil, "192.0.2.10")), etrA, t0)
	if len(out) != 0 {
		t.Fatalf("reply without M bit: %v", out)
	}
	regs := s.Registrations(t0)
	if len(regs) != 2 || regs[0].Site != "a" || regs[0].EID.Prefix != pfx("10.1.0.0/16") || regs[1].EID.Prefix != pfx("10.1.5.0/24") {
		t.Fatalf("registrations: %+v", regs)
	}
	if regs[0].ETR != etrA || !regs[0].Expires.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("registration: %+v", regs[0])
	}
	if st := s.Stats(); st.Registrations != 2 || len(st.Refused) != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRegisterRefused(t *testing.T) {
	in16 := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	cases := []struct {
		name string
		pkts func(t *testing.T) [][]byte // all but the last must be accepted
		want Reason
	}{
		{"wrong key", func(t *testing.T) [][]byte {
			return [][]byte{register(t, lisp.KeyIDHMACSHA256128, []byte("not-the-key"), 1, regOpt{}, in16)}
		}, ReasonAuthFailed},
		{"wrong key id", func(t *testing.T) [][]byte {
			return [][]byte{register(t, lisp.KeyIDHMACSHA1_96, keyA, 1, regOpt{}, in16)}
		}, ReasonBadKeyID},
		{"tampered", func(t *testing.T) [][]byte {
			b := regA(t, 1, regOpt{}, in16)
			b[len(b)-1] ^= 1 // last octet of the RLOC
			return [][]byte{b}
		}, ReasonAuthFailed},
		{"prefix outside site (second record)", func(t *testing.T) [][]byte {
			return [][]byte{regA(t, 1, regOpt{}, in16, rec(pfx("10.2.0.0/16"), nil, "192.0.2.10"))}
		}, ReasonPrefixNotAllowed},
		{"less specific than configured", func(t *testing.T) [][]byte {
			return [][]byte{regA(t, 1, regOpt{}, in16, rec(pfx("10.0.0.0/8"), nil, "192.0.2.10"))}
		}, ReasonPrefixNotAllowed},
		{"more specific without accept-more-specifics", func(t *testing.T) [][]byte {
			return [][]byte{register(t, lisp.KeyIDHMACSHA1_96, keyB, 1, regOpt{}, rec(pfx("10.2.3.0/24"), nil, "192.0.2.10"))}
		}, ReasonPrefixNotAllowed},
		{"prefix in another instance", func(t *testing.T) [][]byte {
			iid9 := func(a lisp.Address) lisp.Address { return lisp.InstanceIDAddr(9, 0, a) }
			return [][]byte{regA(t, 1, regOpt{}, in16, rec(pfx("10.1.0.0/16"), iid9, "192.0.2.10"))}
		}, ReasonPrefixNotAllowed},
		{"unknown site", func(t *testing.T) [][]byte {
			return [][]byte{regA(t, 1, regOpt{}, rec(pfx("203.0.113.0/24"), nil, "192.0.2.10"))}
		}, ReasonUnknownSite},
		{"replayed message", func(t *testing.T) [][]byte {
			b := regA(t, 5, regOpt{}, in16)
			return [][]byte{b, b}
		}, ReasonReplay},
		{"older nonce", func(t *testing.T) [][]byte {
			return [][]byte{regA(t, 5, regOpt{}, in16), regA(t, 4, regOpt{}, in16)}
		}, ReasonReplay},
		{"truncated", func(t *testing.T) [][]byte {
			b := regA(t, 1, regOpt{}, in16)
			return [][]byte{b[:len(b)-3]}
		}, ReasonMalformed},
		{"host bits set", func(t *testing.T) [][]byte {
			r := in16
			r.EID = lisp.IPAddr(netip.MustParseAddr("10.1.0.1"))
			return [][]byte{regA(t, 1, regOpt{}, r)}
		}, ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(t, nil)
			pkts := c.pkts(t)
			for i, p := range pkts {
				s.Handle(p, etrA, t0.Add(time.Duration(i)*time.Second))
			}
			st := s.Stats()
			if len(st.Refused) != 1 || st.Refused[c.want] != 1 {
				t.Fatalf("refused = %v, want {%s: 1}", st.Refused, c.want)
			}
			if want := len(pkts) - 1; len(s.Registrations(t0)) != want {
				t.Fatalf("registrations = %+v, want %d", s.Registrations(t0), want)
			}
		})
	}
}

func TestReplayPolicies(t *testing.T) {
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	// Window: random nonces accepted, a repeat within 3 minutes refused, the
	// same nonce accepted again after the window.
	s := newServer(t, func(c *Config) { c.Replay = ReplayWindow })
	for i, n := range []uint64{900, 17, 900} {
		s.Handle(regA(t, n, regOpt{}, r), etrA, t0.Add(time.Duration(i)*time.Second))
	}
	if got := s.Stats().Refused[ReasonReplay]; got != 1 {
		t.Fatalf("window: replay refusals = %d, want 1", got)
	}
	s.Handle(regA(t, 900, regOpt{}, r), etrA, t0.Add(4*time.Minute))
	if got := s.Stats().Refused[ReasonReplay]; got != 1 {
		t.Fatalf("window: nonce refused after the window")
	}
	// Off: nonce 0 forever.
	s = newServer(t, func(c *Config) { c.Replay = ReplayOff })
	s.Handle(regA(t, 0, regOpt{}, r), etrA, t0)
	s.Handle(regA(t, 0, regOpt{}, r), etrA, t0.Add(time.Minute))
	if st := s.Stats(); len(st.Refused) != 0 || st.Refreshes != 1 {
		t.Fatalf("off: %+v", st)
	}
	// Monotonic state is per ETR: a second ETR may start low.
	s = newServer(t, nil)
	s.Handle(regA(t, 100, regOpt{}, r), etrA, t0)
	s.Handle(regA(t, 1, regOpt{}, r), netip.MustParseAddrPort("192.0.2.11:4342"), t0)
	if st := s.Stats(); len(st.Refused) != 0 || st.Registrations != 2 {
		t.Fatalf("monotonic per ETR: %+v", st)
	}
}

func TestExpiryAndRefresh(t *testing.T) {
	s := newServer(t, nil)
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	eid := netip.MustParseAddr("10.1.2.3")
	s.Handle(regA(t, 1, regOpt{}, r), etrA, t0)
	if _, ok := s.Lookup(0, eid, t0.Add(3*time.Minute-time.Nanosecond)); !ok {
		t.Fatal("registration gone before 3 minutes")
	}
	if _, ok := s.Lookup(0, eid, t0.Add(3*time.Minute)); ok {
		t.Fatal("registration alive after 3 minutes")
	}
	// A lookup after expiry is negative even before the sweep.
	if r := parseReply(t, onlyOne(t, request(t, s, "10.1.2.3", t0.Add(3*time.Minute)))); len(r.Records[0].Locators) != 0 {
		t.Fatalf("reply after expiry has locators: %+v", r)
	}
	s.Tick(t0.Add(3 * time.Minute))
	if st := s.Stats(); st.Expirations != 1 || len(s.Registrations(t0)) != 0 {
		t.Fatalf("expirations = %d, table %+v", st.Expirations, s.Registrations(t0))
	}

	// Refresh at 2 minutes keeps it until 5 minutes.
	s = newServer(t, nil)
	s.Handle(regA(t, 1, regOpt{}, r), etrA, t0)
	s.Handle(regA(t, 2, regOpt{}, r), etrA, t0.Add(2*time.Minute))
	s.Tick(t0.Add(4 * time.Minute))
	if _, ok := s.Lookup(0, eid, t0.Add(4*time.Minute)); !ok {
		t.Fatal("refreshed registration expired")
	}
	s.Handle(regA(t, 3, regOpt{}, rec(pfx("10.1.9.0/24"), nil, "192.0.2.10")), etrA, t0.Add(5*time.Minute)) // sweeps
	if st := s.Stats(); st.Refreshes != 1 || st.Expirations != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if regs := s.Registrations(t0.Add(5 * time.Minute)); len(regs) != 1 || regs[0].EID.Prefix != pfx("10.1.9.0/24") {
		t.Fatalf("table: %+v", regs)
	}
}

func TestDeregistration(t *testing.T) {
	s := newServer(t, nil)
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	s.Handle(regA(t, 1, regOpt{}, r), etrA, t0)
	r.TTL = 0
	s.Handle(regA(t, 2, regOpt{}, r), etrA, t0)
	if st := s.Stats(); st.Deregistrations != 1 || len(s.Registrations(t0)) != 0 {
		t.Fatalf("stats %+v, table %+v", st, s.Registrations(t0))
	}
}

func TestMapNotify(t *testing.T) {
	s := newServer(t, nil)
	xtr := &lisp.XTRInfo{XTRID: [16]byte{1, 2, 3}, SiteID: 42}
	recs := []lisp.MappingRecord{rec(pfx("10.1.0.0/16"), nil, "192.0.2.10"), rec(pfx("2001:db8:1::/48"), nil, "2001:db8::10")}
	o := onlyOne(t, s.Handle(regA(t, 0xabc, regOpt{notify: true, xtr: xtr}, recs...), etrA, t0))
	if o.To != etrA {
		t.Fatalf("Map-Notify to %v, want %v", o.To, etrA)
	}
	if err := (lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: keyA}).Verify(o.Data); err != nil {
		t.Fatalf("Map-Notify auth: %v", err)
	}
	n, err := lisp.ParseMapNotify(o.Data)
	if err != nil {
		t.Fatal(err)
	}
	if n.Nonce != 0xabc || !reflect.DeepEqual(n.Records, recs) || *n.XTR != *xtr {
		t.Fatalf("Map-Notify: %+v", n)
	}
	if st := s.Stats(); st.MapNotifies != 1 {
		t.Fatalf("stats %+v", st)
	}
	// No Map-Notify-Ack configured: nothing retransmitted.
	if out := s.Tick(t0.Add(10 * time.Second)); len(out) != 0 {
		t.Fatalf("retransmitted without NotifyAck: %v", out)
	}
	// Registration with the xTR-ID keeps it, and the replay state follows
	// the xTR-ID rather than the address.
	if regs := s.Registrations(t0); len(regs) != 2 || regs[0].XTR == nil || regs[0].XTR.SiteID != 42 {
		t.Fatalf("registrations %+v", regs)
	}
	s.Handle(regA(t, 0xabc, regOpt{xtr: xtr}, recs...), netip.MustParseAddrPort("192.0.2.99:4342"), t0)
	if got := s.Stats().Refused[ReasonReplay]; got != 1 {
		t.Fatalf("replay from another address with the same xTR-ID not refused")
	}
}

func TestMapNotifyRetransmit(t *testing.T) {
	sites := testSites()
	sites[0].NotifyAck = true
	sites[0].AuthLen = lisp.AuthLenSHA256Full
	s := newServer(t, func(c *Config) { c.Sites = sites })
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	first := onlyOne(t, s.Handle(regA(t, 7, regOpt{notify: true, authLen: 32}, r), etrA, t0))
	if n, _ := lisp.ParseMapNotify(first.Data); len(n.AuthData) != 32 {
		t.Fatalf("auth length %d, want 32", len(n.AuthData))
	}
	if out := s.Tick(t0.Add(500 * time.Millisecond)); len(out) != 0 {
		t.Fatal("retransmitted early")
	}
	o := onlyOne(t, s.Tick(t0.Add(time.Second)))
	if o.To != etrA || string(o.Data) != string(first.Data) {
		t.Fatal("retransmission differs")
	}
	// An ack with the wrong key is refused and does not stop it.
	bad, _ := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: keyB}.Marshal(&lisp.MapNotifyAck{Nonce: 7, Records: []lisp.MappingRecord{r}})
	s.Handle(bad, etrA, t0.Add(1500*time.Millisecond))
	onlyOne(t, s.Tick(t0.Add(2*time.Second)))
	// A good ack stops it.
	ack, _ := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: keyA}.Marshal(&lisp.MapNotifyAck{Nonce: 7, Records: []lisp.MappingRecord{r}})
	s.Handle(ack, etrA, t0.Add(2500*time.Millisecond))
	if out := s.Tick(t0.Add(10 * time.Second)); len(out) != 0 {
		t.Fatal("retransmitted after ack")
	}
	s.Handle(ack, etrA, t0.Add(11*time.Second)) // duplicate
	st := s.Stats()
	if st.NotifyRetransmits != 2 || st.NotifyAcks != 1 || st.Refused[ReasonAuthFailed] != 1 || st.Refused[ReasonUnexpectedAck] != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Without an ack: NotifyMaxRetries retransmissions, then give up.
	s = newServer(t, func(c *Config) { c.Sites = sites })
	s.Handle(regA(t, 8, regOpt{notify: true, authLen: 32}, r), etrA, t0)
	n := 0
	for i := 1; i <= 10; i++ {
		n += len(s.Tick(t0.Add(time.Duration(i) * time.Second)))
	}
	if st := s.Stats(); n != DefaultNotifyMaxRetries || st.NotifyGiveUps != 1 {
		t.Fatalf("retransmits %d, stats %+v", n, st)
	}
}

func TestProxyReplyVsForward(t *testing.T) {
	s := newServer(t, nil)
	asn := func(a lisp.Address) lisp.Address { return lisp.ASNAddr(64500, a) }
	proxied := rec(pfx("10.1.1.0/24"), asn, "192.0.2.10")
	s.Handle(regA(t, 1, regOpt{proxy: true}, proxied), etrA, t0)
	etr2 := netip.MustParseAddrPort("192.0.2.20:61000")
	s.Handle(regA(t, 1, regOpt{}, rec(pfx("10.1.2.0/24"), nil, "192.0.2.20")), etr2, t0)

	// P bit: the Map-Server answers, to the ITR-RLOC and inner source port.
	o := onlyOne(t, request(t, s, "10.1.1.9", t0))
	if o.To != itr {
		t.Fatalf("proxy reply to %v, want %v", o.To, itr)
	}
	r := parseReply(t, o)
	want := proxied
	want.Authoritative = false
	if r.Nonce != 0x1234 || len(r.Records) != 1 || !reflect.DeepEqual(r.Records[0], want) {
		t.Fatalf("proxy reply %+v", r)
	}
	if r.Records[0].EID.LCAF == nil || r.Records[0].EID.LCAF.ASN != 64500 {
		t.Fatal("proxy reply lost the AS Number LCAF")
	}
	if reg, _ := s.Lookup(0, netip.MustParseAddr("10.1.1.9"), t0); !reg.HasASN || reg.ASN != 64500 {
		t.Fatalf("ASN not learned: %+v", reg)
	}

	// No P bit: the ECM goes unaltered to the ETR on the control port.
	req := ecmRequest(t, itr, lisp.IPAddr(netip.MustParseAddr("10.1.2.9")), netip.MustParseAddr("10.1.2.9"), 32, 99)
	o = onlyOne(t, s.Handle(req, itr, t0))
	if o.To != netip.AddrPortFrom(etr2.Addr(), 4342) || string(o.Data) != string(req) {
		t.Fatalf("forwarded to %v", o.To)
	}
	e, err := lisp.ParseECM(o.Data)
	if err != nil {
		t.Fatal(err)
	}
	if mr, ok := e.Message.(*lisp.MapRequest); !ok || mr.Nonce != 99 || e.Inner.Source.Port() != itr.Port() {
		t.Fatalf("forwarded ECM %+v", e)
	}
	if st := s.Stats(); st.MapRequests != 2 || st.ProxyReplies != 1 || st.Forwarded != 1 || st.NegativeReplies != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Non-ECM Map-Requests and Map-Replies are not for us.
	plain, _ := lisp.Marshal(&lisp.MapRequest{ITRRLOCs: []lisp.Address{lisp.IPAddr(itr.Addr())}, Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.IPAddr(netip.MustParseAddr("10.1.2.9"))}}})
	if out := s.Handle(plain, itr, t0); len(out) != 0 || s.Stats().Refused[ReasonUnsupported] != 1 {
		t.Fatal("plain Map-Request handled")
	}
}

func TestNegativeReply(t *testing.T) {
	s := newServer(t, nil)
	s.Handle(regA(t, 1, regOpt{}, rec(pfx("10.1.1.0/24"), nil, "192.0.2.10"), rec(pfx("2001:db8:1::/48"), nil, "192.0.2.10")), etrA, t0)
	iid7 := func(a lisp.Address) lisp.Address { return lisp.InstanceIDAddr(7, 0, a) }
	cases := []struct {
		eid  string
		wrap func(lisp.Address) lisp.Address
		want string
	}{
		{"10.1.2.5", nil, "10.1.2.0/23"}, // inside configured 10.1/16, beside registered 10.1.1/24
		{"10.1.0.1", nil, "10.1.0.0/24"}, // 10.1.0/24 is the largest part not touching 10.1.1/24
		{"10.1.200.1", nil, "10.1.128.0/17"},
		{"10.2.3.4", nil, "10.2.0.0/16"},    // configured for site b, not registered
		{"11.0.0.1", nil, "11.0.0.0/8"},     // beside 10/8's EID space
		{"192.0.2.1", nil, "128.0.0.0/1"},   // nothing in the upper half
		{"10.128.0.1", nil, "10.128.0.0/9"}, // 10.1/16 and 10.2/16 are in 10.0/9
		{"10.1.1.5", iid7, "10.1.0.0/16"},   // IID 7: site b's configured prefix
		{"10.3.0.1", iid7, "10.2.0.0/15"},   // IID 7: beside it
		{"2001:db8:2::1", nil, "2001:db8:2::/47"},
		{"2001:db8:1:8000::", nil, "<positive>"},
		{"3000::1", nil, "3000::/4"},
		{"2001:db8::1", nil, "2001:db8::/48"},
		{"::1", iid7, "::/0"}, // nothing IPv6 in IID 7
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.eid)
		eid := lisp.IPAddr(a)
		if c.wrap != nil {
			eid = c.wrap(eid)
		}
		o := onlyOne(t, s.Handle(ecmRequest(t, itr, eid, a, uint8(a.BitLen()), 5), itr, t0))
		if c.want == "<positive>" { // registered without P: forwarded
			if _, err := lisp.ParseECM(o.Data); err != nil || o.To.Addr() != etrA.Addr() {
				t.Errorf("%s: not forwarded to the ETR", c.eid)
			}
			continue
		}
		r := parseReply(t, o)
		rr := r.Records[0]
		iid, ip, hasIID, _ := requestEID(rr.EID)
		got := netip.PrefixFrom(ip, int(rr.EIDMaskLen))
		if got.String() != c.want || hasIID != (c.wrap != nil) || (c.wrap != nil && iid != 7) {
			t.Errorf("%s: negative prefix [%d]%v (IID LCAF %v), want %s", c.eid, iid, got, hasIID, c.want)
		}
		// Inside a site's configured prefixes: 1 minute (a registration
		// may come); outside EID space: 15 minutes (issue 16).
		wantTTL := uint32(DefaultNegativeTTLOutside)
		for _, site := range testSites() {
			for _, p := range site.EIDPrefixes {
				if p.IID == iid && p.Prefix.Contains(a) {
					wantTTL = DefaultNegativeTTL
				}
			}
		}
		if len(rr.Locators) != 0 || rr.Action != lisp.ActionNativelyForward || rr.TTL != wantTTL || r.Nonce != 5 {
			t.Errorf("%s: record %+v", c.eid, rr)
		}
	}
}

func TestInstanceID(t *testing.T) {
	s := newServer(t, nil)
	iid7 := func(a lisp.Address) lisp.Address { return lisp.InstanceIDAddr(7, 0, a) }
	both := func(a lisp.Address) lisp.Address { return lisp.InstanceIDAddr(7, 0, lisp.ASNAddr(64501, a)) }
	// The same prefix in IID 0 belongs to site a and in IID 7 to site b.
	s.Handle(register(t, lisp.KeyIDHMACSHA1_96, keyB, 1, regOpt{proxy: true}, rec(pfx("10.1.0.0/16"), both, "192.0.2.30")), etrA, t0)
	if st := s.Stats(); len(st.Refused) != 0 || st.Registrations != 1 {
		t.Fatalf("IID 7 registration: %+v", st)
	}
	reg, ok := s.Lookup(7, netip.MustParseAddr("10.1.3.3"), t0)
	if !ok || reg.Site != "b" || reg.ASN != 64501 || reg.EID != (EIDPrefix{7, pfx("10.1.0.0/16")}) {
		t.Fatalf("lookup: %+v %v", reg, ok)
	}
	if _, ok := s.Lookup(0, netip.MustParseAddr("10.1.3.3"), t0); ok {
		t.Fatal("IID 7 registration visible in IID 0")
	}
	a := netip.MustParseAddr("10.1.3.3")
	r := parseReply(t, onlyOne(t, s.Handle(ecmRequest(t, itr, iid7(lisp.IPAddr(a)), a, 32, 1), itr, t0)))
	if len(r.Records[0].Locators) != 1 {
		t.Fatalf("IID 7 request: %+v", r)
	}
	r = parseReply(t, onlyOne(t, s.Handle(ecmRequest(t, itr, lisp.IPAddr(a), a, 32, 1), itr, t0)))
	if len(r.Records[0].Locators) != 0 {
		t.Fatalf("IID 0 request answered from IID 7: %+v", r)
	}
}

func TestNewRejects(t *testing.T) {
	bad := []Site{
		{Name: "x", Key: keyA, KeyID: 3, EIDPrefixes: []EIDPrefix{{0, pfx("10.0.0.0/8")}}},
		{Name: "x", Key: keyA, KeyID: 1, EIDPrefixes: []EIDPrefix{{0, netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8)}}},
		{Name: "x", KeyID: 1, EIDPrefixes: []EIDPrefix{{0, pfx("10.0.0.0/8")}}},
		{Name: "x", Key: keyA, KeyID: 1, AuthLen: 16, EIDPrefixes: []EIDPrefix{{0, pfx("10.0.0.0/8")}}},
		{Name: "x", Key: keyA, KeyID: 1},
	}
	for i, site := range bad {
		if _, err := New(Config{Sites: []Site{site}}); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	if _, err := New(Config{Sites: append(testSites(), testSites()[0])}); err == nil {
		t.Error("duplicate site name accepted")
	}
}

// TestRecordStorage: a record too long for its entry is kept aside and
// given back whole; a refresh with a short one brings it back inline,
// and nothing stays aside once registrations are gone. Several ETRs of
// one prefix share its key: removing one leaves the others.
func TestRecordStorage(t *testing.T) {
	s := newServer(t, nil)
	long := rec(pfx("10.1.0.0/16"), func(a lisp.Address) lisp.Address { return lisp.InstanceIDAddr(0, 0, a) }, "192.0.2.10")
	for i := range 6 {
		long.Locators = append(long.Locators, lisp.Locator{Priority: 2, Weight: uint8(i), Reachable: true,
			Address: lisp.IPAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))})
	}
	if b, _ := lisp.AppendMappingRecord(nil, &long); len(b) <= recInline {
		t.Fatalf("the long record is %d octets, not over %d", len(b), recInline)
	}
	short := rec(pfx("10.1.0.0/16"), nil, "192.0.2.11")
	etrB := netip.MustParseAddrPort("192.0.2.99:4342")
	s.Handle(regA(t, 1, regOpt{}, long), etrA, t0)
	s.Handle(regA(t, 1, regOpt{}, short), etrB, t0.Add(time.Second))
	regs := s.Registrations(t0.Add(time.Second))
	if len(regs) != 2 || len(s.tab.long) != 1 || s.tab.live != 2 || s.regs.n != 1 {
		t.Fatalf("registrations %d, aside %d, live %d, keys %d", len(regs), len(s.tab.long), s.tab.live, s.regs.n)
	}
	byETR := map[netip.AddrPort]lisp.MappingRecord{}
	for _, r := range regs {
		byETR[r.ETR] = r.Record
	}
	if !reflect.DeepEqual(byETR[etrA], long) || !reflect.DeepEqual(byETR[etrB], short) {
		t.Fatalf("records given back differ:\n%+v\n%+v", byETR[etrA], byETR[etrB])
	}
	// The most recent ETR answers for the prefix.
	if r, ok := s.Lookup(0, netip.MustParseAddr("10.1.2.3"), t0.Add(time.Second)); !ok || r.ETR != etrB {
		t.Fatalf("lookup: %+v %v", r, ok)
	}
	// etrA refreshes with a short record: back inline.
	s.Handle(regA(t, 2, regOpt{}, rec(pfx("10.1.0.0/16"), nil, "192.0.2.12")), etrA, t0.Add(2*time.Second))
	if len(s.tab.long) != 0 || s.tab.live != 2 {
		t.Fatalf("after the short refresh: aside %d, live %d", len(s.tab.long), s.tab.live)
	}
	// etrB deregisters; etrA's registration stays and answers.
	dereg := short
	dereg.TTL = 0
	s.Handle(regA(t, 2, regOpt{}, dereg), etrB, t0.Add(3*time.Second))
	if r, ok := s.Lookup(0, netip.MustParseAddr("10.1.2.3"), t0.Add(3*time.Second)); !ok || r.ETR != etrA || s.tab.live != 1 {
		t.Fatalf("after etrB left: %+v %v, live %d", r, ok, s.tab.live)
	}
	// Both gone: the slot is reused by the next registration.
	s.Handle(regA(t, 3, regOpt{}, long), etrA, t0.Add(4*time.Second))
	s.Tick(t0.Add(time.Hour))
	if s.tab.live != 0 || len(s.tab.long) != 0 || s.regs.n != 0 || s.expiry.n != 0 {
		t.Fatalf("after expiry: live %d, aside %d, keys %d, queue %d", s.tab.live, len(s.tab.long), s.regs.n, s.expiry.n)
	}
	s.Handle(regA(t, 4, regOpt{}, short), etrA, t0.Add(time.Hour))
	if s.tab.slots != 2 {
		t.Fatalf("%d slots handed out, want the 2 freed ones reused", s.tab.slots)
	}
}
