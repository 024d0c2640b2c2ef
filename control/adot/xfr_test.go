package adot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/internal/testtool"
)

// bigZone is the test zone with n more names, so that a transfer needs
// several messages.
func bigZone(t *testing.T, n int) *Zone {
	t.Helper()
	recs := map[string][]string{"@": {"NS ns.example.test."}}
	for i := range n {
		recs[fmt.Sprintf("host-%05d", i)] = []string{fmt.Sprintf("A 10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			"TXT \"padding padding padding padding padding padding\""}
	}
	z, err := ZoneFromMap(testZone, 60, recs)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// xfrConn dials the server over TLS (ALPN dot unless alpn says otherwise)
// from local (nil: any), with client certificate cert if given.
func xfrConn(t *testing.T, b backend, local net.Addr, alpn []string, cert *tls.Certificate) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	cfg := &tls.Config{ServerName: testServerName, RootCAs: b.pki.CAPool, MinVersion: tls.VersionTLS13, NextProtos: alpn}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(d, "tcp", b.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readTransfer sends q on c and reads messages until the closing SOA (or
// a single-message refusal or current-SOA answer; one message for a
// query that is not a transfer).
func readTransfer(t *testing.T, c net.Conn, q *dns.Msg) []*dns.Msg {
	t.Helper()
	wire, _ := q.Pack()
	if err := writeFramed(c, wire); err != nil {
		t.Fatal(err)
	}
	var msgs []*dns.Msg
	soas := 0
	for {
		b, err := readFramed(c)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if len(b) > dns.MaxMsgSize {
			t.Fatalf("message of %d octets", len(b))
		}
		msgs = append(msgs, r)
		if qt := q.Question[0].Qtype; r.Rcode != dns.RcodeSuccess || (qt != dns.TypeAXFR && qt != dns.TypeIXFR) {
			return msgs
		}
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == dns.TypeSOA {
				soas++
			}
		}
		if soas == 2 || (q.Question[0].Qtype == dns.TypeIXFR && len(msgs) == 1 && len(r.Answer) == 1 && soas == 1) {
			return msgs
		}
	}
}

func axfrQuery(zone string) *dns.Msg {
	q := new(dns.Msg)
	q.SetAxfr(zone)
	return q
}

// TestXoTAXFR: an allowed secondary transfers a zone that needs several
// messages: every message has the query's ID, is authoritative and NOERROR;
// the question is in the first; the first record is the SOA, the last is
// the same SOA, nothing else is an SOA, and the records in between are
// exactly the zone's. The connection serves ordinary queries afterwards.
func TestXoTAXFR(t *testing.T) {
	z := bigZone(t, 2000)
	s, b := startOwn(t, func(c *ServerConfig) {
		c.Zone = z
		c.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	c := xfrConn(t, b, nil, []string{"dot"}, nil)
	q := axfrQuery(testZone)
	msgs := readTransfer(t, c, q)
	if len(msgs) < 3 {
		t.Fatalf("%d messages for %d records: want the transfer split", len(msgs), z.Len())
	}
	var rrs []dns.RR
	for i, m := range msgs {
		if m.Id != q.Id || !m.Response || !m.Authoritative || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("message %d: id %d (want %d) qr %v aa %v rcode %s", i, m.Id, q.Id, m.Response, m.Authoritative, dns.RcodeToString[m.Rcode])
		}
		if (i == 0) != (len(m.Question) == 1) {
			t.Fatalf("message %d: %d questions", i, len(m.Question))
		}
		rrs = append(rrs, m.Answer...)
	}
	first, ok1 := rrs[0].(*dns.SOA)
	last, ok2 := rrs[len(rrs)-1].(*dns.SOA)
	if !ok1 || !ok2 || first.String() != last.String() || first.Serial != s.Zone().Serial() {
		t.Fatalf("first %v, last %v: want the zone's SOA (serial %d) both", rrs[0], rrs[len(rrs)-1], s.Zone().Serial())
	}
	for _, rr := range rrs[1 : len(rrs)-1] {
		if rr.Header().Rrtype == dns.TypeSOA {
			t.Fatalf("SOA inside the transfer: %v", rr)
		}
	}
	if got, want := len(rrs)-1, z.Len(); got != want {
		t.Fatalf("%d records transferred, zone has %d", got, want)
	}
	if got := s.Metrics().Transfers[xfrAXFR].Load(); got != 1 {
		t.Fatalf("Transfers[AXFR] = %d", got)
	}
	// The same connection then answers a query.
	a := new(dns.Msg)
	a.SetQuestion("host-00042."+testZone, dns.TypeA)
	if r := readTransfer(t, c, a); len(r) != 1 || len(r[0].Answer) != 1 {
		t.Fatalf("query after the transfer: %v", r)
	}
}

// TestXoTIXFR: IXFR with an older serial gets the whole zone AXFR-style
// (RFC 1995 §4), with the current serial the SOA alone.
func TestXoTIXFR(t *testing.T) {
	s, b := startOwn(t, func(c *ServerConfig) {
		c.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	c := xfrConn(t, b, nil, []string{"dot"}, nil)
	serial := s.Zone().Serial()
	q := new(dns.Msg)
	q.SetIxfr(testZone, serial-1, "ns.example.test.", "hostmaster.example.test.")
	msgs := readTransfer(t, c, q)
	var n int
	for _, m := range msgs {
		n += len(m.Answer)
	}
	if n != s.Zone().Len()+1 {
		t.Fatalf("IXFR from an old serial: %d records, want the zone (%d) and the closing SOA", n, s.Zone().Len())
	}
	q.SetIxfr(testZone, serial, "ns.example.test.", "hostmaster.example.test.")
	msgs = readTransfer(t, c, q)
	if len(msgs) != 1 || len(msgs[0].Answer) != 1 || msgs[0].Answer[0].(*dns.SOA).Serial != serial {
		t.Fatalf("IXFR from the current serial: %v, want the SOA alone", msgs)
	}
	if got := s.Metrics().Transfers[xfrIXFR].Load(); got != 2 {
		t.Fatalf("Transfers[IXFR] = %d", got)
	}
}

// TestXoTRefused: AXFR is REFUSED to a client outside TransferFrom, without
// ALPN dot, for another zone, and with TransferCAs to a client without a
// certificate of those CAs (with one it transfers); a server without
// TransferFrom refuses everyone. Each refusal is counted.
func TestXoTRefused(t *testing.T) {
	dir := t.TempDir()
	clientCA, err := testpki.NewCA("secondaries")
	if err != nil {
		t.Fatal(err)
	}
	good, err := clientCA.Issue(testpki.Request{CommonName: "secondary"})
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t, dir, "impostor")
	s, b := startOwn(t, func(c *ServerConfig) {
		c.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.TransferCAs = clientCA.Pool()
	})
	refused := func(what string, c net.Conn, zone string) {
		t.Helper()
		msgs := readTransfer(t, c, axfrQuery(zone))
		if len(msgs) != 1 || msgs[0].Rcode != dns.RcodeRefused || len(msgs[0].Answer) != 0 {
			t.Fatalf("%s: %v, want REFUSED", what, msgs)
		}
	}
	from2 := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	refused("from 127.0.0.2", xfrConn(t, b, from2, []string{"dot"}, &good), testZone)
	refused("no client certificate", xfrConn(t, b, nil, []string{"dot"}, nil), testZone)
	refused("a certificate of another CA", xfrConn(t, b, nil, []string{"dot"}, &other.Cert), testZone)
	refused("no ALPN", xfrConn(t, b, nil, nil, &good), testZone)
	refused("another zone", xfrConn(t, b, nil, []string{"dot"}, &good), "example.org.")
	if got := s.Metrics().TransfersRefused.Load(); got != 5 {
		t.Fatalf("TransfersRefused = %d, want 5", got)
	}
	// The CA's certificate from the allowed address: transferred.
	if msgs := readTransfer(t, xfrConn(t, b, nil, []string{"dot"}, &good), axfrQuery(testZone)); msgs[0].Rcode != dns.RcodeSuccess {
		t.Fatalf("allowed secondary: %v", msgs)
	}
	// Ordinary DoT clients (no certificate) are still answered.
	c := xfrConn(t, b, nil, []string{"dot"}, nil)
	a := new(dns.Msg)
	a.SetQuestion("0."+testZone, dns.TypeA)
	if r := readTransfer(t, c, a); len(r[0].Answer) != 1 {
		t.Fatalf("query without a client certificate: %v", r)
	}

	_, b2 := startOwn(t, nil)
	refused("no transfer_from", xfrConn(t, b2, nil, []string{"dot"}, nil), testZone)
}

// TestXoTClearText: the zone is never sent in clear text: there is no UDP
// listener on the server's port, and an AXFR written in clear on its TCP
// port gets no DNS answer (the TLS handshake fails, the connection closes).
func TestXoTClearText(t *testing.T) {
	_, b := startOwn(t, func(c *ServerConfig) {
		c.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	wire, _ := axfrQuery(testZone).Pack()

	tc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeFramed(tc, wire); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(tc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("clear-text AXFR: the connection stayed open")
	}
	if r := new(dns.Msg); len(got) > 2 && r.Unpack(got[2:]) == nil {
		t.Fatalf("clear-text AXFR answered: %v", r)
	}

	u, err := net.Dial("udp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(time.Second))
	if _, err := u.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if n, err := u.Read(buf); err == nil {
		t.Fatalf("UDP AXFR answered (%d octets)", n)
	}
}

// TestSerialStamp: a made-up SOA serves the clock's serial; every SetZone
// raises it, also when the new zone's own serial is lower or the clock has
// not moved; a written SOA keeps its serial while it is higher.
func TestSerialStamp(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	z1 := bigZone(t, 1)
	a := stamp(z1, nil, now)
	if a.Serial() != 1_800_000_000 || z1.Serial() != 1 {
		t.Fatalf("made-up SOA: %d (input now %d)", a.Serial(), z1.Serial())
	}
	b := stamp(bigZone(t, 2), a, now)
	if b.Serial() != a.Serial()+1 {
		t.Fatalf("same second: %d after %d", b.Serial(), a.Serial())
	}
	written, err := ParseZone(testZone, zoneText()) // serial 1
	if err != nil {
		t.Fatal(err)
	}
	if c := stamp(written, b, now); c.Serial() != b.Serial()+1 {
		t.Fatalf("written serial 1 after %d: %d", b.Serial(), c.Serial())
	}
	if c := stamp(written.WithSerial(2_000_000_000), b, now); c.Serial() != 2_000_000_000 {
		t.Fatalf("written higher serial: %d", c.Serial())
	}
	if !serialLess(0xffffffff, 1) || serialLess(1, 0xffffffff) {
		t.Fatal("RFC 1982 wrap-around")
	}
	// WithSerial leaves the original alone and answers with the new SOA.
	q := new(dns.Msg)
	q.SetQuestion(testZone, dns.TypeSOA)
	if r := b.Answer(q); r.Answer[0].(*dns.SOA).Serial != b.Serial() || a.Answer(q).Answer[0].(*dns.SOA).Serial != a.Serial() {
		t.Fatal("SOA answers do not follow the serials")
	}
}

// TestNotify: a change sends NOTIFY (opcode NOTIFY, AA, the zone's SOA
// question and the new SOA as answer) to every target; one that answers
// is acked at once, one that stays silent is retried NotifyAttempts times
// and then given up; the start announces the initial zone.
func TestNotify(t *testing.T) {
	answering, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer answering.Close()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	got := make(chan *dns.Msg, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := answering.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			got <- q
			r := new(dns.Msg)
			r.SetReply(q)
			out, _ := r.Pack()
			_, _ = answering.WriteTo(out, from)
		}
	}()
	ap := func(c net.PacketConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
	s, _ := startOwn(t, func(c *ServerConfig) {
		c.Notify = []netip.AddrPort{ap(answering), ap(silent)}
		c.NotifyAttempts = 3
		c.NotifyTimeout = 20 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunNotify(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(serial uint32) {
		t.Helper()
		select {
		case q := <-got:
			soa, ok := q.Answer[0].(*dns.SOA)
			if q.Opcode != dns.OpcodeNotify || !q.Authoritative || len(q.Question) != 1 || q.Question[0].Qtype != dns.TypeSOA ||
				q.Question[0].Name != testZone || !ok || soa.Serial != serial {
				t.Fatalf("NOTIFY %v, want serial %d", q, serial)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no NOTIFY for serial %d", serial)
		}
	}
	wait(s.Zone().Serial())
	z2 := bigZone(t, 3)
	s.SetZone(z2)
	wait(s.Zone().Serial())
	m := s.Metrics()
	deadline := time.Now().Add(30 * time.Second)
	for m.NotifyFailed.Load() < 2 || m.NotifyAcked.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("acked %d failed %d, want 2 and 2", m.NotifyAcked.Load(), m.NotifyFailed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Per round: 1 to the answering target, 3 to the silent one (2 retries).
	if m.NotifySent.Load() != 8 || m.NotifyRetries.Load() != 4 {
		t.Fatalf("sent %d retried %d, want 8 and 4", m.NotifySent.Load(), m.NotifyRetries.Load())
	}
}

// TestXoTBINDSecondary: BIND 9.18 as a secondary of our server over XoT
// (strict TLS: ca-file and remote-hostname) takes the zone and serves it;
// after SetZone, NOTIFY makes it transfer the new zone (new serial, new
// records, removed records gone). TestXoTBINDSecondaryMutualTLS: the same
// with TransferCAs, BIND presenting a client certificate. Skipped without
// named.
func TestXoTBINDSecondary(t *testing.T) { bindSecondary(t, false) }

func TestXoTBINDSecondaryMutualTLS(t *testing.T) { bindSecondary(t, true) }

func bindSecondary(t *testing.T, mutual bool) {
	testtool.Path(t, "named", "bind9")
	dir := t.TempDir()
	z := bigZone(t, 3)
	clientCA, err := testpki.NewCA("secondaries")
	if err != nil {
		t.Fatal(err)
	}
	s, b := startOwn(t, func(c *ServerConfig) {
		c.Zone = z
		c.TransferFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.NotifyTimeout = 200 * time.Millisecond
		if mutual {
			c.TransferCAs = clientCA.Pool()
		}
	})
	caFile := dir + "/primary-ca.crt"
	if err := os.WriteFile(caFile, b.pki.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	secCfg := &bindserver.Secondary{Primary: b.addr, ServerName: testServerName, CAFile: caFile}
	if mutual {
		cert, err := clientCA.Issue(testpki.Request{CommonName: "secondary"})
		if err != nil {
			t.Fatal(err)
		}
		secCfg.CertFile, secCfg.KeyFile = dir+"/client.crt", dir+"/client.key"
		if err := testpki.WriteFiles(cert, secCfg.CertFile, secCfg.KeyFile); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := bindserver.Start("", bindserver.Options{ServerName: "secondary.example.test", Zone: testZone, Secondary: secCfg})
	if errors.Is(err, bindserver.ErrNoNamed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sec.Stop()
	// Start notifying only now that BIND listens.
	s.cfg.Notify = []netip.AddrPort{netip.MustParseAddrPort(sec.ClearAddr)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunNotify(ctx) }()
	defer func() { cancel(); <-done }()

	ask := func(name string, qt uint16) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(name, qt)
		r, err := dns.Exchange(q, sec.ClearAddr)
		if err != nil {
			return nil
		}
		return r
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s; named:\n%s", what, sec.Log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	hasA := func(name, addr string) func() bool {
		return func() bool {
			r := ask(name+"."+testZone, dns.TypeA)
			return r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == addr
		}
	}
	serial := func(want uint32) func() bool {
		return func() bool {
			r := ask(testZone, dns.TypeSOA)
			return r != nil && len(r.Answer) == 1 && r.Answer[0].(*dns.SOA).Serial == want
		}
	}
	waitFor("BIND serves the zone", hasA("host-00002", "10.0.0.2"))
	waitFor("BIND has our serial", serial(s.Zone().Serial()))

	s.SetZone(bigZone(t, 5)) // host-00003 and host-00004 added
	waitFor("new serial after NOTIFY", serial(s.Zone().Serial()))
	waitFor("new record", hasA("host-00004", "10.0.0.4"))
	s.SetZone(bigZone(t, 1)) // shrink
	waitFor("serial after the shrink", serial(s.Zone().Serial()))
	if r := ask("host-00004."+testZone, dns.TypeA); r == nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed record still served: %v", r)
	}
	m := s.Metrics()
	t.Logf("transfers: axfr %d ixfr %d refused %d; notifies sent %d acked %d", m.Transfers[xfrAXFR].Load(), m.Transfers[xfrIXFR].Load(),
		m.TransfersRefused.Load(), m.NotifySent.Load(), m.NotifyAcked.Load())
	if m.NotifyAcked.Load() < 2 || m.Transfers[xfrAXFR].Load()+m.Transfers[xfrIXFR].Load() < 3 {
		t.Fatalf("want ≥ 2 NOTIFY acked and ≥ 3 transfers")
	}
}
