package pull

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/testtool"
)

// TestPullConnectionsPersist (issue 17, must-show 2): pull mode (a Node
// re-resolving 4 index names, A and AAAA, over one ADoT client) against
// our DoT server and against BIND 9.18: one full TLS handshake per server
// for the whole run, every later connection resumed, every other query on
// a reused connection, no query written into a connection the server had
// closed (stale retries 0) and no failure.
//
// Short form (default): timers short — refresh 300 ms, our server's idle
// timeout 1 s (advertised by edns-tcp-keepalive, followed by the client at
// 0.8 s), the client's own idle timeout 2 s against ours and 0.8 s against
// BIND (which advertises 30 s but closes after its tcp-idle-timeout, 1 s in
// internal/bindserver) — and
// 9 refresh cycles whose pauses are 0.4 s, 1.5 s, 2.5 s three times: the
// 1.5 s pauses cross our server's timeout but not the client's own (a
// client that did not follow the server would write into closed
// connections), the 2.5 s ones cross both sides' timeouts. Long form
// (PSAVD_LONG=1): 10 minutes with the default timers (client 35 s, our
// server 40 s, refresh 30 s; against BIND the client's 0.8 s), one pass a
// second.
func TestPullConnectionsPersist(t *testing.T) {
	long := os.Getenv("PSAVD_LONG") == "1"
	t.Run("own", func(t *testing.T) {
		cert, pool := testCert(t)
		cfg := adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: buildZone(t, layout(4, 2))}
		if !long {
			cfg.IdleTimeout = time.Second
		}
		srv, err := adot.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		clientIdle := 2 * time.Second
		if long {
			clientIdle = 0
		}
		m := persistRun(t, srv.Addr().String(), "ns.example.test", pool, long, clientIdle)
		if n := m.IdleCloses.Load(); !long && n < 6 {
			t.Errorf("client idle closes %d, want ≥ 6 (it closes before the server's advertised 1 s, in the 1.5 s pauses too)", n)
		}
		sm := srv.Metrics()
		if full := sm.Handshakes.Load() - sm.Resumptions.Load(); full != 1 {
			t.Errorf("server: %d full handshakes, want 1", full)
		}
	})
	t.Run("bind", func(t *testing.T) {
		testtool.Path(t, "named", "bind9")
		b, err := bindserver.Start("", bindserver.Options{Zone: testSuffix + ".", ZoneText: bindserver.ZoneText(testSuffix + ".")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop() })
		// bindserver configures tcp-idle-timeout 1 s, and BIND 9.18 closes
		// idle DoT connections after it although its edns-tcp-keepalive
		// says 30 s: the client's own idle timeout must be below 1 s here.
		persistRun(t, b.TLSAddr, b.ServerName, b.PKI.CAPool, long, 800*time.Millisecond)
	})
}

// persistRun drives the refresh cycles against one server and checks the
// client's connection counters; it returns them for server-specific checks.
func persistRun(t *testing.T, addr, serverName string, pool *x509.CertPool, long bool, clientIdle time.Duration) *adot.Metrics {
	t.Helper()
	ccfg := adot.Config{Servers: []string{addr}, ServerName: serverName, RootCAs: pool, MaxCacheEntries: -1}
	refresh := 300 * time.Millisecond
	if long {
		refresh = DefaultRefresh
	}
	ccfg.IdleTimeout = clientIdle // 0: the default
	client, err := adot.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	p, err := New(Config{Mode: ModeDraft, Modulus: 4, Suffix: testSuffix, Resolver: client, Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	indexes := []uint64{0, 1, 2, 3}
	pass := func() {
		t.Helper()
		for _, r := range p.ResolveIndexes(context.Background(), indexes, 5*time.Second) {
			if r.Err != nil {
				t.Fatalf("index %d: %v", r.Index, r.Err)
			}
		}
	}
	pass()
	if long {
		for end := time.Now().Add(10 * time.Minute); time.Now().Before(end); {
			time.Sleep(time.Second)
			pass()
		}
	} else {
		for range 3 {
			for _, pause := range []time.Duration{400 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond} {
				time.Sleep(pause)
				pass()
			}
		}
	}
	m := client.Metrics()
	full := m.Handshakes.Load() - m.Resumptions.Load()
	reused := m.Queries.Load() - m.Handshakes.Load()
	t.Logf("%s: %d queries, %d full handshakes, %d resumed, %d reused, %d closed idle by the client, %d stale retries",
		addr, m.Queries.Load(), full, m.Resumptions.Load(), reused, m.IdleCloses.Load(), m.StaleRetries.Load())
	if full != 1 {
		t.Errorf("%d full handshakes, want 1", full)
	}
	if n := m.StaleRetries.Load(); n != 0 {
		t.Errorf("%d stale retries: the client wrote into connections the server had closed", n)
	}
	if n := m.TotalFailures(); n != 0 {
		t.Errorf("%d failures", n)
	}
	if !long && m.Resumptions.Load() < 3 {
		t.Errorf("%d resumptions, want ≥ 3 (one per long pause)", m.Resumptions.Load())
	}
	if reused < m.Handshakes.Load() {
		t.Errorf("%d queries on reused connections, %d on new ones: connections are not reused", reused, m.Handshakes.Load())
	}
	return m
}
