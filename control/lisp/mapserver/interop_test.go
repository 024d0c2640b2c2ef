package mapserver

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

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

// TestExpiryQueue (issue 16): expiry goes by the queue — what expired
// goes, exactly once, a refreshed registration outlives its first expiry,
// and the queue holds exactly the live registrations (a refresh moves its
// entry and leaves nothing behind).
func TestExpiryQueue(t *testing.T) {
	sites := testSites()
	sites[0].AcceptMoreSpecifics = true
	s := newServer(t, func(c *Config) { c.Sites = sites })
	for i := range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)
		s.Handle(regA(t, uint64(i+1), regOpt{}, rec(p, nil, "192.0.2.10")), etrA, t0)
	}
	keep := rec(pfx("10.1.0.0/24"), nil, "192.0.2.10")
	s.Handle(regA(t, 1000, regOpt{}, keep), etrA, t0.Add(2*time.Minute)) // refresh of one
	if n := s.expiry.n; n != 200 {
		t.Fatalf("queue holds %d entries, want 200", n)
	}
	s.Tick(t0.Add(time.Minute))
	if st := s.Stats(); st.Expirations != 0 || s.expiry.n != 200 || s.swept != 0 {
		t.Fatalf("a Tick before any expiry changed things: %+v, queue %d, swept %d", st, s.expiry.n, s.swept)
	}
	s.Tick(t0.Add(DefaultRegistrationTTL))
	if st := s.Stats(); st.Expirations != 199 || len(s.Registrations(t0.Add(DefaultRegistrationTTL))) != 1 || s.expiry.n != 1 {
		t.Fatalf("after the first expiry: %+v, queue %d", st, s.expiry.n)
	}
	s.Tick(t0.Add(2*time.Minute + DefaultRegistrationTTL))
	s.Tick(t0.Add(time.Hour))
	if st := s.Stats(); st.Expirations != 200 || s.expiry.n != 0 || s.swept != 200 {
		t.Fatalf("refreshed registration: %+v, queue %d, swept %d", st, s.expiry.n, s.swept)
	}
}

// TestExpiryWorkIsExpiredOnly (issue 16): with 100 000 registrations a
// Tick when nothing has expired dequeues nothing, and the sweeps of a
// whole lifetime dequeue each registration exactly once, refreshed or not
// — the work is the number of expired entries, never the table (counted,
// not timed).
func TestExpiryWorkIsExpiredOnly(t *testing.T) {
	const n = 100_000
	sites := testSites()
	sites[1].AcceptMoreSpecifics = true
	s := newServer(t, func(c *Config) { c.Sites = sites })
	reg := func(i int, nonce uint64, at time.Time) {
		// Site b is 10.2.0.0/16: past 65536 /32s the ETR differs.
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 32)
		s.Handle(register(t, lisp.KeyIDHMACSHA1_96, keyB, nonce, regOpt{authLen: lisp.AuthLenSHA1Full}, rec(p, nil, "192.0.2.10")),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 16)}), 4342), at)
	}
	for i := range n {
		reg(i, uint64(i+1), t0)
	}
	if st := s.Stats(); st.Registrations != n || len(st.Refused) != 0 {
		t.Fatalf("setup: %+v", st)
	}
	for _, d := range []time.Duration{time.Second, time.Minute, DefaultRegistrationTTL - time.Millisecond} {
		s.Tick(t0.Add(d))
		if s.swept != 0 || s.expiry.n != n {
			t.Fatalf("Tick at +%v with nothing expired: %d entries dequeued, queue %d", d, s.swept, s.expiry.n)
		}
	}
	// Half are refreshed a minute in; at the first deadline the other half
	// goes, and only it.
	for i := 0; i < n; i += 2 {
		reg(i, uint64(n+i+1), t0.Add(time.Minute))
	}
	s.Tick(t0.Add(DefaultRegistrationTTL))
	if s.swept != n/2 || s.Stats().Expirations != n/2 || s.expiry.n != n/2 {
		t.Fatalf("first deadline: dequeued %d, expirations %d, queue %d; want %d each", s.swept, s.Stats().Expirations, s.expiry.n, n/2)
	}
	s.Tick(t0.Add(DefaultRegistrationTTL + 30*time.Second))
	if s.swept != n/2 {
		t.Fatalf("a Tick between deadlines dequeued %d", s.swept-n/2)
	}
	s.Tick(t0.Add(time.Minute + DefaultRegistrationTTL))
	s.Tick(t0.Add(time.Hour))
	if st := s.Stats(); s.swept != n || st.Expirations != n || s.expiry.n != 0 || s.regs.n != 0 {
		t.Fatalf("end: dequeued %d, expirations %d, queue %d, table %d; want %d, %d, 0, 0", s.swept, st.Expirations, s.expiry.n, s.regs.n, n, n)
	}
}

// TestExpiryQueueOrder: a deadline earlier than the newest (the clock
// went back) is still taken in deadline order; deregistration and a site's
// removal take entries out of the queue.
func TestExpiryQueueOrder(t *testing.T) {
	sites := testSites()
	s := newServer(t, func(c *Config) { c.Sites = sites; c.Replay = ReplayOff })
	a := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	b := register(t, lisp.KeyIDHMACSHA1_96, keyB, 1, regOpt{}, rec(pfx("10.2.0.0/16"), nil, "192.0.2.20"))
	s.Handle(regA(t, 1, regOpt{}, a), etrA, t0.Add(2*time.Minute))
	s.Handle(b, etrA, t0) // earlier than the tail
	s.Tick(t0.Add(DefaultRegistrationTTL))
	regs := s.Registrations(t0.Add(DefaultRegistrationTTL))
	if s.swept != 1 || len(regs) != 1 || regs[0].Site != "a" {
		t.Fatalf("out-of-order deadline: dequeued %d, left %+v", s.swept, regs)
	}
	s.Handle(b, etrA, t0.Add(3*time.Minute))
	if s.expiry.n != 2 {
		t.Fatalf("queue %d, want 2", s.expiry.n)
	}
	dereg := a
	dereg.TTL = 0
	s.Handle(regA(t, 2, regOpt{}, dereg), etrA, t0.Add(3*time.Minute))
	if s.expiry.n != 1 || s.Stats().Deregistrations != 1 {
		t.Fatalf("after deregistration: queue %d, %+v", s.expiry.n, s.Stats())
	}
	if err := s.SetSites(sites[:1]); err != nil {
		t.Fatal(err)
	}
	if s.expiry.n != 0 || s.expiry.head != none || s.expiry.tail != none || s.regs.n != 0 || s.tab.live != 0 {
		t.Fatalf("after the site's removal: queue %d, table %d", s.expiry.n, s.regs.n)
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

// TestServeBatch (issue 16): a burst of Map-Registers sent with one
// sendmmsg, more than one recvmmsg batch, on IPv4 and IPv6 loopback, is
// answered in full: one Map-Notify per Map-Register, every nonce once
// (the batched reads and writes lose, duplicate and mix up nothing).
func TestServeBatch(t *testing.T) {
	for _, lo := range []string{"127.0.0.1", "[::1]"} {
		t.Run(lo, func(t *testing.T) {
			s, ms := startServer(t, lo, 0, nil)
			c := listen(t, lo+":0")
			const n = 3*batchSize + 5
			msgs := make([]ipv4.Message, n)
			to := net.UDPAddrFromAddrPort(ms)
			for i := range msgs {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24)
				msgs[i] = ipv4.Message{Buffers: [][]byte{regA(t, uint64(i+1), regOpt{notify: true}, rec(p, nil, "192.0.2.10"))}, Addr: to}
			}
			var pc interface {
				WriteBatch([]ipv4.Message, int) (int, error)
			} = ipv4.NewPacketConn(c)
			if ms.Addr().Is6() {
				pc = ipv6.NewPacketConn(c)
			}
			for sent := 0; sent < n; {
				k, err := pc.WriteBatch(msgs[sent:], 0)
				if err != nil {
					t.Fatal(err)
				}
				sent += k
			}
			seen := map[uint64]bool{}
			for range n {
				b, _ := recv(t, c)
				m, err := lisp.ParseMapNotify(b)
				if err != nil || seen[m.Nonce] || m.Nonce == 0 || m.Nonce > n {
					t.Fatalf("Map-Notify %v %+v (seen %d)", err, m, len(seen))
				}
				seen[m.Nonce] = true
			}
			if st := s.Stats(); st.Registrations != n || len(st.Refused) != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestReplayRecentRing: the ring keeps exactly the last RecentMessages
// messages of an ETR, also after it wrapped: a replay of one of them is
// refused, one older than that is beyond the policy's memory.
func TestReplayRecentRing(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Replay = ReplayRecent })
	var msgs [][]byte
	n := RecentMessages + RecentMessages/2
	for i := range n {
		m := regA(t, uint64(i), regOpt{notify: true}, rec(pfx("10.1.0.0/16"), nil, fmt.Sprintf("192.0.2.%d", i%250+1)))
		msgs = append(msgs, m)
		onlyOne(t, s.Handle(m, etrA, t0.Add(time.Duration(i)*time.Second)))
	}
	at := t0.Add(time.Duration(n) * time.Second)
	for _, i := range []int{n - 2, n - RecentMessages/4, n - RecentMessages + 1} {
		if out := s.Handle(msgs[i], etrA, at); len(out) != 0 {
			t.Fatalf("message %d of %d replayed and answered", i, n)
		}
	}
	if got := s.Stats().Refused[ReasonReplay]; got != 3 {
		t.Fatalf("%d replays refused, want 3", got)
	}
	if out := s.Handle(msgs[n-1], etrA, at); len(out) != 1 {
		t.Fatal("the latest message repeated was not answered")
	}
	if out := s.Handle(msgs[n-RecentMessages-1], etrA, at); len(out) != 1 {
		t.Fatal("a message older than the ring was refused: the ring holds more than RecentMessages")
	}
}
