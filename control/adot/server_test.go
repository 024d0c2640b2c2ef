package adot

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/miekg/dns"
)

// startOwn starts our Server on 127.0.0.1 with the test zone.
func startOwn(t *testing.T, mod func(*ServerConfig)) (*Server, backend) {
	t.Helper()
	pki := newPKI(t, t.TempDir(), testServerName)
	z, err := ParseZone(testZone, zoneText())
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{pki.Cert}, Zone: z}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for s.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
	// A TLS 1.2-only listener with the same certificate, for the version test.
	ln12, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.Cert},
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln12.Close() })
	go func() {
		for {
			c, err := ln12.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				for {
					b, err := readFramed(c)
					if err != nil {
						return
					}
					q := new(dns.Msg)
					if q.Unpack(b) != nil {
						return
					}
					out, _ := z.Answer(q).Pack()
					if writeFramed(c, out) != nil {
						return
					}
				}
			}()
		}
	}()
	return s, backend{addr: s.Addr().String(), tls12Addr: ln12.Addr().String(), pki: pki}
}

func TestOwnServer(t *testing.T) {
	s, b := startOwn(t, nil)
	clientSuite(t, b)
	m := s.Metrics()
	if m.Handshakes.Load() == 0 || m.Resumptions.Load() == 0 || m.Queries.Load() == 0 || m.HandshakeErr.Load() == 0 {
		t.Errorf("server metrics: handshakes %d resumptions %d queries %d handshake errors %d",
			m.Handshakes.Load(), m.Resumptions.Load(), m.Queries.Load(), m.HandshakeErr.Load())
	}
}

func TestFirstQueryStallOwnServer(t *testing.T) {
	_, b := startOwn(t, nil)
	logStallTable(t, "own server", b.addr, b.pki.CAPool)
}

// TestOwnServerIdleCloseRedial: a client that does not learn the server's
// idle timeout (no edns-tcp-keepalive) finds its pooled connection closed
// and retries once on a fresh one, without a counted failure.
func TestOwnServerIdleCloseRedial(t *testing.T) {
	_, b := startOwn(t, func(c *ServerConfig) { c.IdleTimeout = 200 * time.Millisecond })
	c := b.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	c.noKeepalive = true
	for i := 0; i < 3; i++ {
		_, info, err := c.LookupInfo(ctx10(t), "3."+testZone, dns.TypeAAAA)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if i > 0 && !info.StaleRetry {
			t.Errorf("query %d: expected a transparent redial, info %+v", i, info)
		}
		time.Sleep(time.Second)
	}
	m := c.Metrics()
	if m.TotalFailures() != 0 || m.StaleRetries.Load() != 2 || m.Resumptions.Load() != 2 {
		t.Fatalf("failures %d stale retries %d resumptions %d", m.TotalFailures(), m.StaleRetries.Load(), m.Resumptions.Load())
	}
}

// TestOwnServerKeepalive (RFC 7828): the server advertises its idle
// timeout (1 s) in answers to queries with edns-tcp-keepalive; the client
// follows it, closing its idle connection first (0.8 s), so a query after
// a longer pause resumes on a new connection instead of hitting a closed
// one (no stale retry), and a query within the timeout reuses the
// connection.
func TestOwnServerKeepalive(t *testing.T) {
	s, b := startOwn(t, func(c *ServerConfig) { c.IdleTimeout = time.Second })
	c := b.client(t, func(c *Config) { c.MaxCacheEntries = -1; c.IdleTimeout = time.Minute })
	m := new(dns.Msg)
	m.SetQuestion("0."+testZone, dns.TypeA)
	resp, _, err := c.Exchange(ctx10(t), m)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := keepalive(resp); !ok || k.Timeout != 10 {
		t.Fatalf("server's keepalive option %+v (present %v), want timeout 10 (× 100 ms)", k, ok)
	}
	if _, info, err := c.LookupInfo(ctx10(t), "0."+testZone, dns.TypeA); err != nil || info.NewConn {
		t.Fatalf("within the timeout: want the connection reused, got %+v %v", info, err)
	}
	time.Sleep(1500 * time.Millisecond)
	_, info, err := c.LookupInfo(ctx10(t), "0."+testZone, dns.TypeA)
	if err != nil || !info.NewConn || !info.Resumed || info.StaleRetry {
		t.Fatalf("after the timeout: want a new, resumed connection without a stale retry, got %+v %v", info, err)
	}
	cm := c.Metrics()
	if cm.IdleCloses.Load() != 1 || cm.StaleRetries.Load() != 0 || cm.TotalFailures() != 0 {
		t.Fatalf("idle closes %d (want 1), stale retries %d, failures %d", cm.IdleCloses.Load(), cm.StaleRetries.Load(), cm.TotalFailures())
	}
	if n := s.Metrics().Handshakes.Load() - s.Metrics().Resumptions.Load(); n != 1 {
		t.Fatalf("full handshakes %d, want 1", n)
	}
}

func TestOwnServerQueriesPerConn(t *testing.T) {
	s, b := startOwn(t, func(c *ServerConfig) { c.MaxQueriesPerConn = 3 })
	c := b.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	for i := 0; i < 7; i++ {
		if _, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if f := c.Metrics().TotalFailures(); f != 0 {
		t.Fatalf("%d failures", f)
	}
	if h := s.Metrics().Handshakes.Load(); h != 3 {
		t.Fatalf("server handshakes %d, want 3 (3 queries per connection)", h)
	}
}

func TestOwnServerZoneAnswers(t *testing.T) {
	s, b := startOwn(t, nil)
	c := b.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	ex := func(name string, qt uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		r, _, _ := c.Exchange(ctx10(t), m)
		if r == nil {
			t.Fatalf("%s: no answer", name)
		}
		return r
	}
	r := ex("nope."+testZone, dns.TypeA)
	if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("NXDOMAIN: %v", r)
	}
	r = ex("0."+testZone, dns.TypeTXT)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("NODATA: %v", r)
	}
	r = ex("example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeRefused || r.Authoritative {
		t.Errorf("outside: %v", r)
	}
	r = ex(testZone, dns.TypeNS)
	if len(r.Answer) != 1 {
		t.Errorf("apex NS: %v", r)
	}
	// Atomic swap: 4.<zone> appears.
	z2, err := ZoneFromMap(testZone, 30, map[string][]string{
		"@": {"NS ns.example.test."},
		"4": {"A 192.0.2.14", "AAAA 2001:db8::14"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(z2)
	a, err := c.Lookup(ctx10(t), "4."+testZone, dns.TypeA)
	if err != nil || len(a) != 1 || a[0] != netip.MustParseAddr("192.0.2.14") {
		t.Fatalf("after swap: %v %v", a, err)
	}
	if _, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA); CauseOf(err) != CauseNXDomain {
		t.Fatalf("old name after swap: %v", err)
	}
}

func TestOwnServerTicketRotation(t *testing.T) {
	s, b := startOwn(t, nil)
	cache := tls.NewLRUClientSessionCache(8)
	look := func() Info {
		c := b.client(t, func(c *Config) { c.SessionCache = cache; c.MaxCacheEntries = -1 })
		defer c.Close()
		_, info, err := c.LookupInfo(ctx10(t), "0."+testZone, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	look()
	s.RotateTicketKeys()
	if !look().Resumed {
		t.Fatal("ticket from the previous key should still resume")
	}
	for i := 0; i < 3; i++ {
		s.RotateTicketKeys()
	}
	if look().Resumed {
		t.Fatal("ticket from a key rotated out should not resume")
	}
}

// TestOwnServerKdigDig: third-party DoT clients against our server.
func TestOwnServerKdigDig(t *testing.T) {
	_, b := startOwn(t, nil)
	host, port, _ := net.SplitHostPort(b.addr)
	for _, tool := range []struct {
		bin, pkg string
		args     []string
	}{
		{"kdig", "knot-dnsutils", []string{"@" + host, "-p", port, "+tls", "+tls-ca=" + b.pki.CAFile, "+tls-hostname=" + testServerName,
			"+short", "1." + testZone, "AAAA"}},
		{"dig", "bind9-dnsutils", []string{"@" + host, "-p", port, "+tls", "+tls-ca=" + b.pki.CAFile, "+tls-hostname=" + testServerName,
			"+short", "1." + testZone, "A"}},
	} {
		t.Run(tool.bin, func(t *testing.T) {
			bin := testtool.Path(t, tool.bin, tool.pkg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, tool.args...).CombinedOutput()
			want := "2001:db8::11"
			if tool.bin == "dig" {
				want = "192.0.2.11"
			}
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Fatalf("%s %v: %v\n%s", tool.bin, tool.args, err, out)
			}
		})
	}
}

// TestOwnServerPerClientLimitFlood: 200 connections from 127.0.0.1 against
// a per-IP limit of 16; a client from 127.0.0.2 still gets answers.
func TestOwnServerPerClientLimitFlood(t *testing.T) {
	if _, err := net.Dial("tcp", "127.0.0.2:1"); err != nil && strings.Contains(err.Error(), "assign") {
		t.Skip("127.0.0.2 not usable")
	}
	const limit, flood = 16, 200
	s, b := startOwn(t, func(c *ServerConfig) {
		c.MaxConnsPerIP = limit
		c.MaxHandshakesPerSecond = 100000 // the per-client limit is tested here, not the rate
		c.MaxConns = 1000
		c.HandshakeTimeout = 20 * time.Second
	})
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < flood; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
			c, err := d.Dial("tcp", b.addr)
			if err != nil {
				return // refused/backlog full: fine
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for s.Metrics().Rejected.Load() < flood-limit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := s.Metrics().Rejected.Load(); r < flood-limit {
		t.Fatalf("rejected %d connections, want >= %d", r, flood-limit)
	}
	if o := s.Metrics().OpenConns.Load(); o > limit {
		t.Fatalf("server holds %d connections from one IP, limit %d", o, limit)
	}
	// During the flood (the 16 admitted connections are still open and
	// idle in the handshake), a legitimate client from another address works.
	legit := b.client(t, func(c *Config) { c.LocalAddr = "127.0.0.2"; c.MaxCacheEntries = -1 })
	for i := 0; i < 5; i++ {
		if _, err := legit.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err != nil {
			t.Fatalf("legitimate client from 127.0.0.2: %v", err)
		}
	}
	// Same-IP client is over the limit: it fails (closed), no crash.
	same := b.client(t, func(c *Config) { c.LocalAddr = "127.0.0.1"; c.HandshakeTimeout = 2 * time.Second })
	if _, err := same.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err == nil {
		t.Error("client from the flooding address was admitted over the limit")
	}
	t.Logf("rejected %d, open %d", s.Metrics().Rejected.Load(), s.Metrics().OpenConns.Load())
}
