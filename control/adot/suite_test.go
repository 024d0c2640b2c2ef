package adot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// backend is a DoT server under test: BIND or our own Server.
type backend struct {
	addr      string // TLS 1.3 listener
	tls12Addr string // TLS 1.2-only listener
	pki       *testPKI
}

func (b backend) client(t *testing.T, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Servers: []string{b.addr}, ServerName: testServerName, RootCAs: b.pki.CAPool,
		DialTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clientSuite runs the client behaviours that must hold against any
// conforming DoT authoritative server.
func clientSuite(t *testing.T, b backend) {
	t.Run("LookupAandAAAA", func(t *testing.T) {
		c := b.client(t, nil)
		for i := 0; i < 4; i++ {
			name := fmt.Sprintf("%d.%s", i, strings.TrimSuffix(testZone, "."))
			a, err := c.Lookup(ctx10(t), name, dns.TypeA)
			if err != nil {
				t.Fatalf("A %s: %v", name, err)
			}
			if want := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}); len(a) != 1 || a[0] != want {
				t.Fatalf("A %s = %v, want %v", name, a, want)
			}
			aaaa, err := c.Lookup(ctx10(t), name, dns.TypeAAAA)
			if err != nil {
				t.Fatalf("AAAA %s: %v", name, err)
			}
			if want := netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 10+i)); len(aaaa) != 1 || aaaa[0] != want {
				t.Fatalf("AAAA %s = %v, want %v", name, aaaa, want)
			}
		}
		m := c.Metrics()
		if m.Handshakes.Load() != 1 || m.Queries.Load() != 8 {
			t.Errorf("8 queries should share one connection: handshakes %d queries %d", m.Handshakes.Load(), m.Queries.Load())
		}
		// Cached now.
		if _, info, err := c.LookupInfo(ctx10(t), "0."+testZone, dns.TypeA); err != nil || !info.Cached {
			t.Errorf("second look-up not cached: %+v %v", info, err)
		}
		_, err := c.Lookup(ctx10(t), "nope."+testZone, dns.TypeA)
		if CauseOf(err) != CauseNXDomain {
			t.Errorf("nope: got %v, want nxdomain", err)
		}
		_, err = c.Lookup(ctx10(t), "www.example.org", dns.TypeA)
		if CauseOf(err) != CauseRefused {
			t.Errorf("out of zone: got %v, want refused", err)
		}
		// NXDOMAIN is an answer (counted by rcode), not a failure.
		if m.Failure(CauseNXDomain) != 0 || m.Answers[dns.RcodeNameError].Load() != 1 || m.Failure(CauseRefused) != 1 {
			t.Errorf("failure counters: nx %d (want 0; answers NXDOMAIN %d, want 1) refused %d",
				m.Failure(CauseNXDomain), m.Answers[dns.RcodeNameError].Load(), m.Failure(CauseRefused))
		}
	})

	t.Run("WrongServerNameFailsClosed", func(t *testing.T) {
		c := b.client(t, func(c *Config) { c.ServerName = "other.example.test" })
		_, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA)
		var he x509.HostnameError
		if CauseOf(err) != CauseTLS || !errors.As(err, &he) {
			t.Fatalf("got %v, want a tls cause with a hostname error", err)
		}
		t.Logf("wrong name: %v", err)
	})

	t.Run("UnknownCAFailsClosed", func(t *testing.T) {
		other := newPKI(t, "", testServerName)
		c := b.client(t, func(c *Config) { c.RootCAs = other.CAPool })
		_, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA)
		var ue x509.UnknownAuthorityError
		if CauseOf(err) != CauseTLS || !errors.As(err, &ue) {
			t.Fatalf("got %v, want a tls cause with an unknown-authority error", err)
		}
		if c.Metrics().Queries.Load() != 0 {
			t.Fatal("a query was sent over an unverified connection")
		}
		t.Logf("unknown CA: %v", err)
	})

	t.Run("SPKIPinning", func(t *testing.T) {
		good := b.client(t, func(c *Config) { c.SPKIPins = []string{SPKIHash(b.pki.Leaf)} })
		if _, err := good.Lookup(ctx10(t), "0."+testZone, dns.TypeA); err != nil {
			t.Fatalf("right pin: %v", err)
		}
		bad := b.client(t, func(c *Config) { c.SPKIPins = []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="} })
		_, err := bad.Lookup(ctx10(t), "0."+testZone, dns.TypeA)
		if CauseOf(err) != CauseTLS || !errors.Is(err, errPin) {
			t.Fatalf("wrong pin: got %v", err)
		}
	})

	if b.tls12Addr != "" {
		t.Run("TLS12OnlyServerRefused", func(t *testing.T) {
			c := b.client(t, func(c *Config) { c.Servers = []string{b.tls12Addr} })
			_, err := c.Lookup(ctx10(t), "0."+testZone, dns.TypeA)
			if CauseOf(err) != CauseTLS {
				t.Fatalf("got %v, want tls failure", err)
			}
			t.Logf("TLS 1.2-only server: %v", err)
			ok := b.client(t, func(c *Config) { c.Servers = []string{b.tls12Addr}; c.AllowTLS12 = true })
			_, info, err := ok.LookupInfo(ctx10(t), "0."+testZone, dns.TypeA)
			if err != nil || info.TLSVersion != tls.VersionTLS12 {
				t.Fatalf("with AllowTLS12: %v %+v", err, info)
			}
		})
	}

	t.Run("SessionResumption", func(t *testing.T) {
		cache := tls.NewLRUClientSessionCache(8)
		c1 := b.client(t, func(c *Config) { c.SessionCache = cache; c.MaxCacheEntries = -1 })
		_, info1, err := c1.LookupInfo(ctx10(t), "1."+testZone, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if !info1.NewConn || info1.Resumed || info1.Session() != "new" {
			t.Fatalf("first connection: %+v", info1)
		}
		_, info1b, _ := c1.LookupInfo(ctx10(t), "1."+testZone, dns.TypeA)
		if info1b.NewConn {
			t.Fatalf("second query did not reuse the connection: %+v", info1b)
		}
		c1.Close()
		c2 := b.client(t, func(c *Config) { c.SessionCache = cache })
		_, info2, err := c2.LookupInfo(ctx10(t), "1."+testZone, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if !info2.NewConn || !info2.Resumed || info2.Session() != "resumed" {
			t.Fatalf("second connection did not resume (DidResume false): %+v", info2)
		}
		if c2.Metrics().Resumptions.Load() != 1 {
			t.Fatalf("resumptions counter %d", c2.Metrics().Resumptions.Load())
		}
		t.Logf("first conn %s rtt %v; reused conn rtt %v; second conn %s rtt %v",
			info1.Session(), info1.RTT, info1b.RTT, info2.Session(), info2.RTT)
	})
}

func TestBIND(t *testing.T) {
	b := startBIND(t)
	clientSuite(t, backend{addr: b.TLSAddr, tls12Addr: b.TLS12Addr, pki: b.PKI})
}

// TestBINDIdleClose: BIND is configured with tcp-idle-timeout 1 s
// (tcp-initial-timeout 2.5 s is its minimum). A query after the server
// closed the pooled connection must succeed on a redialled connection
// without a counted failure.
func TestBINDIdleClose(t *testing.T) {
	b := startBIND(t)
	be := backend{addr: b.TLSAddr, pki: b.PKI}
	c := be.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	if _, err := c.Lookup(ctx10(t), "2."+testZone, dns.TypeA); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	_, info, err := c.LookupInfo(ctx10(t), "2."+testZone, dns.TypeA)
	if err != nil {
		t.Fatalf("query after idle close failed: %v", err)
	}
	if n := c.Metrics().TotalFailures(); n != 0 {
		t.Fatalf("%d failures counted", n)
	}
	if !info.StaleRetry {
		t.Skipf("BIND did not close the idle DoT connection within 4 s (info %+v); idle-close is covered against our own server", info)
	}
	t.Logf("after idle close: %+v (stale retries %d)", info, c.Metrics().StaleRetries.Load())
}
