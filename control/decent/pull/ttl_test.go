package pull

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
)

// With *adot.Client as the Resolver (a TTLResolver), a changed A record is
// picked up once its TTL (1 s) runs out, long before Refresh (30 s), with
// the real clock and no Flush.
func TestPullFollowsTTL(t *testing.T) {
	const mod = 4
	eid := netip.MustParsePrefix("10.1.0.0/16")
	k := mustIndex(ModeDraft, eid, 0, mod)
	zone := func(ip netip.Addr) *adot.Zone {
		z, err := adot.ZoneFromMap(testSuffix+".", 1, map[string][]string{
			"@": {"NS ns.example.test."}, fmt.Sprint(k): {"A " + ip.String()}})
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	oldIP, newIP := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	cert, pool := testCert(t)
	dot, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: zone(oldIP)})
	if err != nil {
		t.Fatal(err)
	}
	if err := dot.Start(); err != nil {
		t.Fatal(err)
	}
	defer dot.Close()
	// The client's own cache is on (as in production), with a 1 s floor so
	// that the zone's TTL is what counts.
	client, err := adot.NewClient(adot.Config{Servers: []string{dot.Addr().String()}, ServerName: "ns.example.test",
		RootCAs: pool, MinTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p, err := New(Config{Mode: ModeDraft, Modulus: mod, Suffix: testSuffix, Resolver: client})
	if err != nil {
		t.Fatal(err)
	}
	if p.Config().Refresh != DefaultRefresh {
		t.Fatalf("Refresh %v, want the default %v", p.Config().Refresh, DefaultRefresh)
	}
	ctx := context.Background()
	s, err := p.MapServers(ctx, eid)
	if err != nil || len(s) != 1 || s[0].Addr() != oldIP {
		t.Fatalf("before the change: %v, %v", s, err)
	}
	changed := time.Now()
	dot.SetZone(zone(newIP))
	for {
		s, err := p.MapServers(ctx, eid)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) == 1 && s[0].Addr() == newIP {
			break
		}
		if len(s) != 1 || s[0].Addr() != oldIP {
			t.Fatalf("map-servers %v", s)
		}
		// Far below Refresh: only the TTL can have made Node ask again.
		if time.Since(changed) > DefaultRefresh/2 {
			t.Fatalf("the new A record was not picked up within %v (TTL 1 s, Refresh %v)", DefaultRefresh/2, DefaultRefresh)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := p.Stats()
	if st.Resolutions < 2 || st.ResolveErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("picked up after %v, %d resolutions", time.Since(changed).Round(time.Millisecond), st.Resolutions)
}
