package adot

import (
	"context"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/psavd/psavd/internal/promtext"
)

// scrape fetches url and parses the Prometheus text format.
func scrape(t *testing.T, url string) promtext.Samples {
	t.Helper()
	s, err := promtext.Scrape(context.Background(), nil, url)
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	return s
}

// value returns the single sample of name whose labels include want
// (name, value, …).
func value(t *testing.T, fams promtext.Samples, name string, want ...string) promtext.Sample {
	t.Helper()
	match := map[string]string{}
	for i := 0; i+1 < len(want); i += 2 {
		match[want[i]] = want[i+1]
	}
	var found []promtext.Sample
	for _, s := range fams.Named(name) {
		if s.Has(match) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d samples, want 1 (have %v)", name, want, len(found), fams.Named(name))
	}
	return found[0]
}

// The client's and the server's counters, scraped through the real
// Prometheus HTTP handler, agree with the traffic the test made.
func TestPrometheusScrape(t *testing.T) {
	s, b := startOwn(t, nil)
	c := b.client(t, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(c.Metrics(), RoleClient), NewCollector(s.Metrics(), RoleServer))
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer hs.Close()

	zone := strings.TrimSuffix(testZone, ".")
	ctx := ctx10(t)
	for range 2 { // the second is a cache hit
		if _, err := c.Lookup(ctx, "0."+zone, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(ctx, "1."+zone, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "nowhere."+zone, dns.TypeA); CauseOf(err) != CauseNXDomain {
		t.Fatalf("want NXDOMAIN, got %v", err)
	}
	if _, err := c.Lookup(ctx, "elsewhere.example.org", dns.TypeA); CauseOf(err) != CauseRefused {
		t.Fatalf("want REFUSED, got %v", err)
	}
	// A client (counting into the same Metrics) that does not trust the
	// server: one TLS failure on each side.
	bad := b.client(t, func(cfg *Config) { cfg.RootCAs, cfg.Metrics = nil, c.Metrics() })
	if _, err := bad.Lookup(ctx, "0."+zone, dns.TypeA); CauseOf(err) != CauseTLS {
		t.Fatalf("want a TLS failure, got %v", err)
	}
	// The server counts a query after writing the answer; wait for it.
	for deadline := time.Now().Add(5 * time.Second); s.Metrics().Queries.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}

	fams := scrape(t, hs.URL+"/metrics")
	eq := func(name string, want float64, labels ...string) {
		t.Helper()
		if got := value(t, fams, name, labels...).Value; got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	cl, sv := []string{"role", "client"}, []string{"role", "server"}
	eq("psavd_adot_handshakes_total", 1, cl...)
	eq("psavd_adot_handshake_failures_total", 1, cl...)
	eq("psavd_adot_resumptions_total", 0, cl...)
	eq("psavd_adot_queries_total", 4, cl...)
	eq("psavd_adot_cache_hits_total", 1, cl...)
	eq("psavd_adot_plaintext_queries_total", 0, cl...)
	eq("psavd_adot_stale_retries_total", 0, cl...)
	eq("psavd_adot_open_connections", 1, cl...)
	eq("psavd_adot_answers_total", 1, append(cl, "rcode", "NXDOMAIN")...) // an answer, not a failure
	eq("psavd_adot_answers_total", 2, append(cl, "rcode", "NOERROR")...)
	eq("psavd_adot_answers_total", 1, append(cl, "rcode", "REFUSED")...)
	eq("psavd_adot_answers_total", 1, append(sv, "rcode", "NXDOMAIN")...)
	// The cipher suite and group depend on the CPU (AES-NI) and Go's
	// defaults: named, not fixed here.
	if hs := value(t, fams, "psavd_adot_tls_handshakes_total", append(cl, "server", b.addr, "version", "TLS 1.3")...); hs.Value != 1 ||
		!strings.HasPrefix(hs.Labels["cipher"], "TLS_") || hs.Labels["group"] == "" || strings.HasPrefix(hs.Labels["group"], "CurveID(") {
		t.Errorf("TLS parameters by server: %v", hs)
	}
	eq("psavd_adot_padded_answers_total", 4, cl...)
	eq("psavd_adot_failures_total", 1, append(cl, "cause", "refused")...)
	eq("psavd_adot_failures_total", 1, append(cl, "cause", "tls")...)
	eq("psavd_adot_failures_total", 0, append(cl, "cause", "timeout")...)

	eq("psavd_adot_handshakes_total", 1, sv...)
	eq("psavd_adot_handshake_failures_total", 1, sv...)
	eq("psavd_adot_queries_total", 4, sv...)
	eq("psavd_adot_open_connections", 1, sv...)
	eq("psavd_adot_rejected_connections_total", 0, sv...)
	eq("psavd_adot_failures_total", 1, append(sv, "cause", "refused")...)
	for _, name := range []string{"psavd_adot_cache_hits_total", "psavd_adot_plaintext_queries_total", "psavd_adot_stale_retries_total"} {
		for _, smp := range fams.Named(name) {
			if smp.Labels["role"] != "client" {
				t.Errorf("client-only series %s exported by the server: %v", name, smp)
			}
		}
	}
	if n := len(fams.Named("psavd_adot_failures_total")); n != 2*int(numCauses-2) {
		t.Errorf("%d failure series, want one per cause but nxdomain and role (%d)", n, 2*int(numCauses-2))
	}
	for _, smp := range fams.Named("psavd_adot_failures_total") {
		if smp.Labels["cause"] == "nxdomain" {
			t.Errorf("NXDOMAIN exported as a failure: %v", smp)
		}
	}

	for _, role := range []string{"client", "server"} {
		h := value(t, fams, "psavd_adot_query_rtt_seconds", "role", role)
		if h.Value != 4 {
			t.Errorf("%s RTT histogram count %v, want 4", role, h.Value)
		}
		if len(h.Buckets) != len(RTTBuckets)+1 || !math.IsInf(h.Buckets[len(RTTBuckets)].UpperBound, 1) || float64(h.Buckets[len(RTTBuckets)].Count) != h.Value {
			t.Fatalf("%s: buckets %v, want %d and +Inf = count", role, h.Buckets, len(RTTBuckets))
		}
		prev := uint64(0)
		for i, bk := range h.Buckets[:len(RTTBuckets)] {
			if math.Abs(bk.UpperBound-RTTBuckets[i].Seconds()) > 1e-12 || bk.Count < prev || float64(bk.Count) > h.Value {
				t.Errorf("%s bucket %d = %v (previous count %v, total %v)", role, i, bk, prev, h.Value)
			}
			prev = bk.Count
		}
		if h.Sum <= 0 {
			t.Errorf("%s RTT sum %v, want > 0", role, h.Sum)
		}
	}
}

// LookupTTL reports the answer's TTL, clamped to [MinTTL, MaxTTL], and
// counts it down while the answer is cached.
func TestLookupTTL(t *testing.T) {
	s, b := startOwn(t, nil)
	// One TTL per RRset (ZoneFromMap gives all records the same TTL).
	z, err := ParseZone(testZone, "@ 300 IN SOA ns.example.test. h.example.test. 1 60 60 600 7\n"+
		"@ 300 IN NS ns.example.test.\nshort 2 IN A 192.0.2.1\nlong 86400 IN A 192.0.2.2\nmid 300 IN A 192.0.2.3\n")
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(z)
	c := b.client(t, func(cfg *Config) { cfg.MinTTL, cfg.MaxTTL = 10*time.Second, time.Hour })
	zone := strings.TrimSuffix(testZone, ".")
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		qtype    uint16
		lo, hi   time.Duration
		nAddrs   int
		describe string
	}{
		{"short", dns.TypeA, 10 * time.Second, 10 * time.Second, 1, "TTL 2 s raised to MinTTL"},
		{"long", dns.TypeA, time.Hour, time.Hour, 1, "TTL 1 d lowered to MaxTTL"},
		{"mid", dns.TypeA, 300 * time.Second, 300 * time.Second, 1, "TTL 300 s kept"},
		{"mid", dns.TypeAAAA, 10 * time.Second, 10 * time.Second, 0, "NODATA: min(SOA TTL, MINIMUM 7 s) raised to MinTTL"},
	} {
		a, ttl, err := c.LookupTTL(ctx, tc.name+"."+zone, tc.qtype)
		if err != nil || len(a) != tc.nAddrs {
			t.Fatalf("%s: %v %v", tc.name, a, err)
		}
		if ttl < tc.lo || ttl > tc.hi {
			t.Errorf("%s (%s): TTL %v, want %v", tc.name, tc.describe, ttl, tc.lo)
		}
	}
	// From the cache: the same answer, a TTL that has counted down (not
	// reset), and no new query.
	q := c.Metrics().Queries.Load()
	time.Sleep(20 * time.Millisecond)
	a, ttl, err := c.LookupTTL(ctx, "mid."+zone, dns.TypeA)
	if err != nil || len(a) != 1 || a[0].String() != "192.0.2.3" {
		t.Fatalf("cached: %v %v", a, err)
	}
	if ttl <= 0 || ttl >= 300*time.Second {
		t.Errorf("cached TTL %v, want below 300 s and positive", ttl)
	}
	if c.Metrics().Queries.Load() != q || c.Metrics().CacheHits.Load() != 1 {
		t.Errorf("the cached look-up went to the server")
	}
}
