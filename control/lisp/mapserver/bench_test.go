package mapserver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// Run on one core: go test -run '^$' -bench . -cpu 1 ./control/lisp/mapserver

func benchRecs() []lisp.MappingRecord {
	asn := func(a lisp.Address) lisp.Address { return lisp.ASNAddr(64500, a) }
	return []lisp.MappingRecord{rec(pfx("10.1.1.0/24"), asn, "192.0.2.10")}
}

// registers returns n Map-Registers (HMAC-SHA-256-128) with increasing
// nonces starting at first.
func registers(b *testing.B, first uint64, n int, o regOpt) [][]byte {
	recs := benchRecs()
	out := make([][]byte, n)
	for i := range out {
		out[i] = regA(b, first+uint64(i), o, recs...)
	}
	return out
}

func benchHandleRegister(b *testing.B, o regOpt) {
	s := newServer(b, nil)
	const chunk = 4096
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		pkts := registers(b, uint64(done)+1, min(chunk, b.N-done), o)
		b.StartTimer()
		for _, p := range pkts {
			s.Handle(p, etrA, now)
		}
		done += len(pkts)
	}
	b.StopTimer()
	if st := s.Stats(); len(st.Refused) != 0 || st.Registrations+st.Refreshes != uint64(b.N) {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
}

// BenchmarkHandleMapRegister: verify SHA-256-128, check prefixes and
// nonce, refresh the registration (no socket).
func BenchmarkHandleMapRegister(b *testing.B) { benchHandleRegister(b, regOpt{}) }

// BenchmarkHandleMapRegisterNotify adds building and signing the
// Map-Notify.
func BenchmarkHandleMapRegisterNotify(b *testing.B) { benchHandleRegister(b, regOpt{notify: true}) }

// pipeline sends n messages from c to `to` keeping `window` outstanding and
// waits for one answer each.
func pipeline(b *testing.B, c *net.UDPConn, to netip.AddrPort, msg func(i int) []byte, n int) {
	const window = 32
	buf := make([]byte, 2048)
	sent := 0
	for ; sent < window && sent < n; sent++ {
		if _, err := c.WriteToUDPAddrPort(msg(sent), to); err != nil {
			b.Fatal(err)
		}
	}
	for got := 0; got < n; got++ {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatalf("after %d of %d answers: %v", got, n, err)
		}
		if sent < n {
			if _, err := c.WriteToUDPAddrPort(msg(sent), to); err != nil {
				b.Fatal(err)
			}
			sent++
		}
	}
}

// BenchmarkUDPMapRegister: Map-Register (SHA-256-128, M bit) → Map-Notify
// over loopback UDP, 32 in flight.
func BenchmarkUDPMapRegister(b *testing.B) {
	s, ms := startServer(b, "127.0.0.1", 0, nil)
	c := listen(b, "127.0.0.1:0")
	pkts := registers(b, 1, b.N, regOpt{notify: true})
	b.ResetTimer()
	pipeline(b, c, ms, func(i int) []byte { return pkts[i] }, b.N)
	b.StopTimer()
	if st := s.Stats(); len(st.Refused) != 0 {
		b.Fatalf("refused %v", st.Refused)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
}

func benchUDPRequest(b *testing.B, eid string, proxy bool) {
	s, ms := startServer(b, "127.0.0.1", 0, nil)
	c := listen(b, "127.0.0.1:0")
	s.Handle(regA(b, 1, regOpt{proxy: proxy}, benchRecs()...), etrA, time.Now())
	a := netip.MustParseAddr(eid)
	req := ecmRequest(b, localAP(c), lisp.IPAddr(a), a, 32, 7)
	b.ResetTimer()
	pipeline(b, c, ms, func(int) []byte { return req }, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
}

// BenchmarkUDPMapRequestProxy: Encapsulated Map-Request → proxy Map-Reply
// over loopback UDP.
func BenchmarkUDPMapRequestProxy(b *testing.B) { benchUDPRequest(b, "10.1.1.1", true) }

// BenchmarkUDPMapRequestNegative: Encapsulated Map-Request → negative
// Map-Reply over loopback UDP.
func BenchmarkUDPMapRequestNegative(b *testing.B) { benchUDPRequest(b, "10.9.9.9", true) }

// BenchmarkHandleMapRequestProxy: the same without the socket.
func BenchmarkHandleMapRequestProxy(b *testing.B) {
	s := newServer(b, nil)
	s.Handle(regA(b, 1, regOpt{proxy: true}, benchRecs()...), etrA, t0)
	benchHandleRequest(b, s, "10.1.1.1")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
}

// benchHandleRequest times Handle on an Encapsulated Map-Request for eid,
// each answered by one datagram.
func benchHandleRequest(b *testing.B, s *Server, eid string) {
	a := netip.MustParseAddr(eid)
	req := ecmRequest(b, itr, lisp.IPAddr(a), a, 32, 7)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(s.Handle(req, itr, t0)) != 1 {
			b.Fatal("no reply")
		}
	}
	b.StopTimer()
}

// fill1M registers 10.0.0.0/12's /32s (1 048 576) but those in skip.
func fill1M(s *Server, skip netip.Prefix) {
	fill(s, 1<<20, func(i int) netip.Prefix {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if skip.Contains(a) {
			return netip.Prefix{}
		}
		return netip.PrefixFrom(a, 32)
	})
}

// fill registers prefix(i) for i < n (none where it is invalid) for the
// first site, from etrA, through upsert: no messages to build or verify.
func fill(s *Server, n int, prefix func(i int) netip.Prefix) {
	site := s.sites[0]
	m := &lisp.MapRegister{}
	etr := etrOf(m, etrA)
	for i := range n {
		p := prefix(i)
		if !p.IsValid() {
			continue
		}
		r := rec(p, nil, "192.0.2.10")
		enc, err := lisp.AppendMappingRecord(nil, &r)
		if err != nil {
			panic(err)
		}
		s.upsert(site, etr, etrA, newRegKey(0, p), &r, enc, 0, false, m, t0, t0.Add(s.cfg.RegistrationTTL))
	}
}

// BenchmarkHandleRegisterSHA1New is the load of bench/lispload without
// the socket: Map-Registers with the M bit, HMAC-SHA-1 with 20 octets, a
// new /32 each (up to 65536, then refreshes), answered by a Map-Notify.
func BenchmarkHandleRegisterSHA1New(b *testing.B) {
	sites := testSites()
	sites[1].AcceptMoreSpecifics = true
	s := newServer(b, func(c *Config) { c.Sites = sites })
	const chunk = 4096
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		pkts := make([][]byte, min(chunk, b.N-done))
		for i := range pkts {
			n := done + i
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(n >> 8), byte(n)}), 32)
			pkts[i] = register(b, lisp.KeyIDHMACSHA1_96, keyB, uint64(n+1), regOpt{notify: true, authLen: lisp.AuthLenSHA1Full}, rec(p, nil, "192.0.2.10"))
		}
		b.StartTimer()
		for _, p := range pkts {
			if len(s.Handle(p, etrA, t0)) != 1 {
				b.Fatal("no Map-Notify")
			}
		}
		done += len(pkts)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registers/s")
}

// BenchmarkTickIdle1M: Tick with 1 048 576 registrations of which none
// has expired — what an idle Map-Server does every TickInterval. It
// reports the share of a core that costs at the default 10 Ticks/s
// (docs/perf.md measures the whole idle process).
func BenchmarkTickIdle1M(b *testing.B) {
	s := newServer(b, nil)
	fill1M(s, netip.Prefix{})
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.Tick(now)
	}
	b.StopTimer()
	if s.swept != 0 || s.expiry.n != 1<<20 {
		b.Fatalf("dequeued %d, queue %d", s.swept, s.expiry.n)
	}
	perTick := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(100*perTick*float64(time.Second/DefaultTickInterval), "%core@10Hz")
}

// BenchmarkHandleMapRequestNegative1M: Encapsulated Map-Request for an
// unregistered EID inside a site's prefix, with ~1 M /32 registrations
// around it — what an unauthenticated Map-Request may cost (negativeBound:
// index probes near the EID, not a pass over the table).
func BenchmarkHandleMapRequestNegative1M(b *testing.B) {
	s := newServer(b, nil)
	fill1M(s, netip.MustParsePrefix("10.1.128.0/17"))
	benchHandleRequest(b, s, "10.1.200.1")
	if st := s.Stats(); st.NegativeReplies != uint64(b.N) {
		b.Fatalf("%d negative replies of %d", st.NegativeReplies, b.N)
	}
}
