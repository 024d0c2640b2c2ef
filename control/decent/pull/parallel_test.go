package pull

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
)

// TestPassWithBlackholedServer (issue 17, must-show 5): the first of two
// DoT servers is blackholed (TCP accepted by the kernel, TLS never
// answered: the handshake times out). A pass over 16 indexes (A and AAAA
// each, 8 names at once) resolves every name from the second server and
// waits for the dead one once: one timeout, one dial to it, every other
// query skipping it (dead-server memory). A second pass does not dial it
// at all (back-off). Counts, not durations, are asserted.
func TestPassWithBlackholedServer(t *testing.T) {
	cert, pool := testCert(t)
	dot, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: buildZone(t, layout(16, 2))})
	if err != nil {
		t.Fatal(err)
	}
	if err := dot.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dot.Close() })
	hole, err := net.Listen("tcp", "127.0.0.1:0") // never accepted
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })

	client, err := adot.NewClient(adot.Config{
		Servers: []string{hole.Addr().String(), dot.Addr().String()}, ServerName: "ns.example.test", RootCAs: pool,
		MaxCacheEntries: -1, HandshakeTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	p, err := New(Config{Mode: ModeDraft, Modulus: 16, Suffix: testSuffix, Resolver: client})
	if err != nil {
		t.Fatal(err)
	}
	indexes := make([]uint64, 16)
	for i := range indexes {
		indexes[i] = uint64(i)
	}
	pass := func() {
		t.Helper()
		start := time.Now()
		for _, r := range p.ResolveIndexes(context.Background(), indexes, 10*time.Second) {
			if r.Err != nil || len(r.Servers) != 1 || r.Servers[0].Addr() != msIP(int(r.Index)%2) {
				t.Fatalf("index %d: %v %v", r.Index, r.Servers, r.Err)
			}
		}
		t.Logf("pass over 16 indexes: %v", time.Since(start)) // logged, not asserted
	}
	pass()
	m := client.Metrics()
	if n := m.Failure(adot.CauseTimeout); n != 1 {
		t.Fatalf("timeouts %d, want 1 (the dead server waited for once, not once per name)", n)
	}
	if n := m.Dials.Load(); n != 2 {
		t.Fatalf("dials %d, want 2 (one to each server)", n)
	}
	if n := m.BackoffSkips.Load(); n != 31 {
		t.Fatalf("back-off skips %d, want 31 (every query but the first)", n)
	}
	if n := m.Queries.Load(); n != 32 {
		t.Fatalf("queries answered %d, want 32", n)
	}
	p.Flush()
	pass()
	if n := m.Failure(adot.CauseTimeout); n != 1 {
		t.Fatalf("second pass: timeouts %d, want still 1 (server in back-off)", n)
	}
	if n := m.Dials.Load(); n != 2 {
		t.Fatalf("second pass: dials %d, want still 2", n)
	}
}
