package adot

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestClientKey: the per-client limit counts IPv6 clients by /64.
func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1":     "2001:db8:1:2::",
		"2001:db8:1:3::1":          "2001:db8:1:3::",
		"::ffff:192.0.2.7":         "192.0.2.7", // a mapped IPv4 address counts as that address
		"fe80::1":                  "fe80::",
		"2001:db8:ffff:ffff:1::99": "2001:db8:ffff:ffff::",
	} {
		if got := clientKey(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("clientKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestOwnServerPerSlash64 (over ::1 when the host has IPv6 loopback):
// connections from two addresses of one /64 share the per-client limit.
func TestOwnServerPerSlash64(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	pki := newPKI(t, "", testServerName)
	z, err := ParseZone(testZone, zoneText())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Addr: "[::1]:0", Certificates: []tls.Certificate{pki.Cert}, Zone: z, MaxConnsPerIP: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Both ends on ::1 (one /64): the second connection is over the limit.
	first, err := NewClient(Config{Servers: []string{s.Addr().String()}, ServerName: testServerName, RootCAs: pki.CAPool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	if _, err := first.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err != nil {
		t.Fatal(err)
	}
	second, err := NewClient(Config{Servers: []string{s.Addr().String()}, ServerName: testServerName, RootCAs: pki.CAPool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	if _, err := second.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err == nil {
		t.Fatal("second connection from the same /64 admitted over a limit of 1")
	}
	if s.Metrics().Rejected.Load() == 0 {
		t.Fatal("no rejection counted")
	}
}

// TestOwnServerHandshakeRate: with a rate of one new connection a second
// (burst 1), 20 connections opened back to back are mostly reset at
// accept and counted; the first one is served.
func TestOwnServerHandshakeRate(t *testing.T) {
	s, b := startOwn(t, func(c *ServerConfig) { c.MaxHandshakesPerSecond = 1 })
	c := b.client(t, nil)
	if _, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if conn, err := net.Dial("tcp", b.addr); err == nil { // a reset by the limiter may come first
			conn.Close()
		}
	}
	for deadline := time.Now().Add(5 * time.Second); s.Metrics().RateLimited.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Metrics().RateLimited.Load(); n == 0 || s.Metrics().Rejected.Load() < n {
		t.Fatalf("rate limited %d, rejected %d: want ≥ 1 and rejected ≥ rate limited", n, s.Metrics().Rejected.Load())
	}
	t.Logf("rate limited %d of 20", s.Metrics().RateLimited.Load())
}
