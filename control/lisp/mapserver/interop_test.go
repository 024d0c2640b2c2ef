package mapserver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// TestReplayRecentNonceSchemes (issue 16): under the default policy the
// refreshes of OOR (a random nonce each time), lispers.net (one constant
// nonce) and RFC 6833 ETRs (nonce 0) are all accepted and answered, while a
// replayed older message — one the ETR has since superseded — is refused.
func TestReplayRecentNonceSchemes(t *testing.T) {
	r1 := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	r2 := rec(pfx("10.1.0.0/16"), nil, "192.0.2.20") // the ETR moved its locator
	schemes := map[string]func(i int) uint64{
		"oor-random":         func(i int) uint64 { return 0x9e3779b97f4a7c15 * uint64(i+1) },
		"lispers-constant":   func(int) uint64 { return 0x1234 },
		"rfc6833-zero":       func(int) uint64 { return 0 },
		"psavd-incrementing": func(i int) uint64 { return uint64(100 + i) },
	}
	for name, nonce := range schemes {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, func(c *Config) { c.Replay = ReplayRecent })
			var old []byte
			for i := range 10 {
				m := regA(t, nonce(i), regOpt{notify: true, authLen: lisp.AuthLenSHA256Full}, r1)
				if i == 0 {
					old = m
				}
				onlyOne(t, s.Handle(m, etrA, t0.Add(time.Duration(i)*time.Minute)))
			}
			// The mapping changes; then the captured first message is
			// replayed.
			onlyOne(t, s.Handle(regA(t, nonce(10), regOpt{notify: true, authLen: lisp.AuthLenSHA256Full}, r2), etrA, t0.Add(10*time.Minute)))
			if out := s.Handle(old, etrA, t0.Add(11*time.Minute)); len(out) != 0 {
				t.Fatal("replayed old Map-Register answered")
			}
			st := s.Stats()
			if st.Refused[ReasonReplay] != 1 || st.MapNotifies != 11 {
				t.Fatalf("stats %+v, want 11 Map-Notifies and 1 replay refusal", st)
			}
			regs := s.Registrations(t0.Add(11 * time.Minute))
			if len(regs) != 1 || regs[0].Record.Locators[0].Address.IP.String() != "192.0.2.20" {
				t.Fatalf("registrations after the replay: %+v", regs)
			}
		})
	}
}

// TestNotifyAuthLengthAndKeyField: a Map-Notify carries the authentication
// length and the RFC 9301 Key ID / Algorithm ID of its Map-Register; a site
// with auth_length set refuses other lengths; a Key ID other than the
// site's is refused as bad-key-id.
func TestNotifyAuthLengthAndKeyField(t *testing.T) {
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	for _, n := range []int{lisp.AuthLenSHA256_128, lisp.AuthLenSHA256Full} {
		s := newServer(t, nil)
		o := onlyOne(t, s.Handle(regA(t, 1, regOpt{notify: true, authLen: n}, r), etrA, t0))
		if got := lisp.AuthDataLen(o.Data); got != n {
			t.Fatalf("Map-Notify auth length %d for a Map-Register with %d", got, n)
		}
	}
	sites := testSites()
	sites[0].SharedKeyID = 7
	sites[0].AuthLen = lisp.AuthLenSHA256Full
	s := newServer(t, func(c *Config) { c.Sites = sites })
	o := onlyOne(t, s.Handle(regA(t, 1, regOpt{notify: true, authLen: 32, sharedKeyID: 7}, r), etrA, t0))
	n, err := lisp.ParseMapNotify(o.Data)
	if err != nil {
		t.Fatal(err)
	}
	if id, alg := lisp.SplitKeyField(n.KeyID); id != 7 || alg != lisp.KeyIDHMACSHA256128 {
		t.Fatalf("Map-Notify key field %#04x", n.KeyID)
	}
	s.Handle(regA(t, 2, regOpt{notify: true, authLen: 32}, r), etrA, t0)
	s.Handle(regA(t, 3, regOpt{notify: true, authLen: 16, sharedKeyID: 7}, r), etrA, t0)
	if st := s.Stats(); st.Refused[ReasonBadKeyID] != 1 || st.Refused[ReasonAuthFailed] != 1 {
		t.Fatalf("refusals %v, want one bad-key-id (Key ID 0) and one auth-failed (length 16)", st.Refused)
	}
}

// TestEveryRecordAnsweredLBitClear (issue 16): a Map-Request with two
// records gets both answered in one Map-Reply — a proxy record, whose
// locators no longer carry the L bit (they are not the Map-Server's own),
// and a negative one outside EID space with the 15-minute TTL.
func TestEveryRecordAnsweredLBitClear(t *testing.T) {
	s := newServer(t, nil)
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	r.Locators[0].Local = true
	s.Handle(regA(t, 1, regOpt{proxy: true}, r), etrA, t0)
	a, b := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("172.16.0.1")
	pkt, err := lisp.Marshal(&lisp.ECM{
		Inner: lisp.InnerHeader{Source: netip.AddrPortFrom(itr.Addr(), itr.Port()), Destination: netip.AddrPortFrom(a, 4342), TTL: 64},
		Message: &lisp.MapRequest{Nonce: 9, ITRRLOCs: []lisp.Address{lisp.IPAddr(itr.Addr())},
			Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.IPAddr(a)}, {MaskLen: 32, EID: lisp.IPAddr(b)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := parseReply(t, onlyOne(t, s.Handle(pkt, itr, t0)))
	if len(rep.Records) != 2 {
		t.Fatalf("%d records answered, want 2", len(rep.Records))
	}
	p, n := rep.Records[0], rep.Records[1]
	if len(p.Locators) != 1 || p.Locators[0].Local || !p.Locators[0].Reachable {
		t.Fatalf("proxy record %+v: want one locator, L clear", p)
	}
	if len(n.Locators) != 0 || n.TTL != DefaultNegativeTTLOutside {
		t.Fatalf("negative record %+v", n)
	}
	if regs := s.Registrations(t0); !regs[0].Record.Locators[0].Local {
		t.Fatal("the stored registration was altered")
	}
}

// TestExpiryHeap (issue 16): expiry goes by the heap — what expired goes,
// a refreshed registration outlives its first expiry, and the heap holds
// only live items plus superseded ones not yet due (Tick visits those
// alone, not the table).
func TestExpiryHeap(t *testing.T) {
	sites := testSites()
	sites[0].AcceptMoreSpecifics = true
	s := newServer(t, func(c *Config) { c.Sites = sites })
	for i := range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)
		s.Handle(regA(t, uint64(i+1), regOpt{}, rec(p, nil, "192.0.2.10")), etrA, t0)
	}
	keep := rec(pfx("10.1.0.0/24"), nil, "192.0.2.10")
	s.Handle(regA(t, 1000, regOpt{}, keep), etrA, t0.Add(2*time.Minute)) // refresh of one
	if n := len(s.expiry); n != 201 {
		t.Fatalf("heap holds %d items, want 201", n)
	}
	s.Tick(t0.Add(time.Minute))
	if st := s.Stats(); st.Expirations != 0 || len(s.expiry) != 201 {
		t.Fatalf("a Tick before any expiry changed things: %+v, heap %d", st, len(s.expiry))
	}
	s.Tick(t0.Add(DefaultRegistrationTTL))
	if st := s.Stats(); st.Expirations != 199 || len(s.Registrations(t0.Add(DefaultRegistrationTTL))) != 1 || len(s.expiry) != 1 {
		t.Fatalf("after the first expiry: %+v, heap %d", st, len(s.expiry))
	}
	s.Tick(t0.Add(2*time.Minute + DefaultRegistrationTTL))
	if st := s.Stats(); st.Expirations != 200 || len(s.expiry) != 0 {
		t.Fatalf("refreshed registration: %+v, heap %d", st, len(s.expiry))
	}
}

// TestServeWildcardSocket: on a dual-stack wildcard socket (where replies
// are not batched) an IPv4 ETR's Map-Register is answered, as on the
// specific-address sockets TestServeLoopback batches on.
func TestServeWildcardSocket(t *testing.T) {
	s, ms := startServer(t, "[::]", 4342, nil)
	etr := listen(t, "127.0.0.1:0")
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ms.Port())
	etr.WriteToUDPAddrPort(regA(t, 1, regOpt{notify: true}, rec(pfx("10.1.1.0/24"), nil, "127.0.0.1")), to)
	b, _ := recv(t, etr)
	if n, err := lisp.ParseMapNotify(b); err != nil || n.Nonce != 1 || s.Stats().MapNotifies != 1 {
		t.Fatalf("Map-Notify %v %+v", err, n)
	}
}
