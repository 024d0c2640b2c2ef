package adot

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// plainTarget is a clear-text UDP DNS server standing for the fallback
// target: it answers every A/AAAA query and reports each question it got.
type plainTarget struct {
	addr string
	got  chan dns.Question
}

func startPlainTarget(t *testing.T) *plainTarget {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	pt := &plainTarget{addr: pc.LocalAddr().String(), got: make(chan dns.Question, 64)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			pt.got <- q.Question[0]
			r := new(dns.Msg)
			r.SetReply(q)
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 198.51.100.7")
			if q.Question[0].Qtype == dns.TypeAAAA {
				rr, _ = dns.NewRR(q.Question[0].Name + " 60 IN AAAA 2001:db8::7")
			}
			r.Answer = append(r.Answer, rr)
			out, _ := r.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	return pt
}

// quiet fails if a clear-text query arrived (waiting a little for one in
// flight; this is not a timing assertion: the query was already sent or
// not when Lookup returned).
func (pt *plainTarget) quiet(t *testing.T, what string) {
	t.Helper()
	select {
	case q := <-pt.got:
		t.Fatalf("%s: clear-text query for %s %s was sent", what, q.Name, dns.TypeToString[q.Qtype])
	case <-time.After(200 * time.Millisecond):
	}
}

func (pt *plainTarget) expect(t *testing.T, name string, qtype uint16) {
	t.Helper()
	select {
	case q := <-pt.got:
		if q.Name != name || q.Qtype != qtype {
			t.Fatalf("fallback target got %s %s, want %s %s", q.Name, dns.TypeToString[q.Qtype], name, dns.TypeToString[qtype])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fallback target received nothing")
	}
}

// startAt starts our server on addr with certificates certs.
func startAt(t *testing.T, addr string, certs []tls.Certificate) *Server {
	t.Helper()
	z, err := ParseZone(testZone, zoneText())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Addr: addr, Certificates: certs, Zone: z})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestNoLeakyFallback (issue 17, must-show 1 in the library): clear text
// only for a (name, type) answered over TLS before, only when TLS was
// refused/unreachable/timed out, never after a certificate failure.
func TestNoLeakyFallback(t *testing.T) {
	pt := startPlainTarget(t)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens yet: TLS dial refused
	pki := newPKI(t, "", testServerName)
	mk := func(fallback string) *Client {
		c, err := NewClient(Config{Servers: []string{addr}, ServerName: testServerName, RootCAs: pki.CAPool,
			Fallback: fallback, FallbackServers: []string{pt.addr}, DialTimeout: time.Second, MaxCacheEntries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	name0, name1 := "0."+testZone, "1."+testZone

	off := mk("")
	for range 3 {
		if _, err := off.Lookup(ctx10(t), name0, dns.TypeA); CauseOf(err) != CauseRefused {
			t.Fatalf("fallback off: got %v, want refused (TLS dial)", err)
		}
	}
	pt.quiet(t, "fallback off")

	// Never answered over TLS: A and AAAA, asked again and again, stay
	// off the wire.
	on := mk(FallbackPlaintext)
	for range 3 {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if _, err := on.Lookup(ctx10(t), name1, qt); err == nil {
				t.Fatal("a query succeeded without TLS")
			}
		}
	}
	pt.quiet(t, "never answered over TLS")
	if n := on.Metrics().FallbackRefusedUnanswered.Load(); n != 6 {
		t.Fatalf("fallback refused (unanswered) %d, want 6", n)
	}

	// The server comes up; A is answered over TLS, AAAA is not asked.
	srv := startAt(t, addr, []tls.Certificate{pki.Cert})
	if a, info, err := on.LookupInfo(ctx10(t), name1, dns.TypeA); err != nil || info.Plaintext || len(a) != 1 {
		t.Fatalf("over TLS: %v %+v %v", a, info, err)
	}
	srv.Close() // refused again
	a, info, err := on.LookupInfo(ctx10(t), name1, dns.TypeA)
	if err != nil || !info.Plaintext || len(a) != 1 || a[0] != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("answered before, TLS refused: want the clear-text answer, got %v %+v %v", a, info, err)
	}
	pt.expect(t, name1, dns.TypeA)
	if _, err := on.Lookup(ctx10(t), name1, dns.TypeAAAA); err == nil {
		t.Fatal("AAAA (never answered over TLS) answered")
	}
	pt.quiet(t, "AAAA never answered over TLS")

	// A certificate the client's CA does not vouch for: no clear text, and
	// none either once the impostor is gone and TLS is merely refused.
	other := newPKI(t, "", testServerName)
	bad := startAt(t, addr, []tls.Certificate{other.Cert})
	if _, err := on.Lookup(ctx10(t), name1, dns.TypeA); CauseOf(err) != CauseTLS {
		t.Fatalf("impostor certificate: got %v, want a TLS failure", err)
	}
	pt.quiet(t, "after a certificate failure")
	bad.Close()
	if _, err := on.Lookup(ctx10(t), name1, dns.TypeA); err == nil {
		t.Fatal("answered after a certificate failure")
	}
	pt.quiet(t, "refused after a certificate failure")
	if n := on.Metrics().FallbackRefusedTLS.Load(); n != 2 {
		t.Fatalf("fallback refused (tls) %d, want 2", n)
	}
	// The genuine server back: a good handshake clears the TLS failure.
	good := startAt(t, addr, []tls.Certificate{pki.Cert})
	if _, err := on.Lookup(ctx10(t), name1, dns.TypeA); err != nil {
		t.Fatalf("genuine server back: %v", err)
	}
	good.Close()
	if _, info, err := on.LookupInfo(ctx10(t), name1, dns.TypeA); err != nil || !info.Plaintext {
		t.Fatalf("after a good handshake, TLS refused: want clear text, got %+v %v", info, err)
	}
	pt.expect(t, name1, dns.TypeA)
	if n := on.Metrics().Plaintext.Load(); n != 2 {
		t.Fatalf("plaintext counter %d, want 2", n)
	}
	if _, err := NewClient(Config{Servers: []string{addr}, ServerName: "x", Fallback: "udp"}); err == nil {
		t.Fatal("unknown fallback mode accepted")
	}
}
