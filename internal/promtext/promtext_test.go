package promtext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const text = `# HELP psavd_drops_total x
# TYPE psavd_drops_total counter
psavd_drops_total{port="outside",reason="no-tag"} 20
psavd_drops_total{reason="bad-tag",port="outside"} 3
psavd_drops_total{port="inside",reason="spoofed-inside"} 1
# TYPE psavd_peers_keyed gauge
psavd_peers_keyed 2
psavd_other{v="a \"q\" \\ b"} 1e+01
# TYPE rtt_seconds histogram
rtt_seconds_bucket{le="0.1"} 1
rtt_seconds_bucket{le="+Inf"} 3
rtt_seconds_sum 0.5
rtt_seconds_count 3
`

func TestParse(t *testing.T) {
	s, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 6 || s[0].Name != "psavd_drops_total" || s[len(s)-1].Name != "rtt_seconds" {
		t.Fatalf("samples %+v", s)
	}
	if got := s.Sum("psavd_drops_total", nil); got != 24 {
		t.Errorf("Sum(all) = %v", got)
	}
	if got := s.Sum("psavd_drops_total", map[string]string{"port": "outside"}); got != 23 {
		t.Errorf("Sum(outside) = %v", got)
	}
	if got := s.Sum("psavd_drops_total", map[string]string{"port": "outside", "reason": "bad-tag"}); got != 3 {
		t.Errorf("Sum(outside, bad-tag) = %v", got)
	}
	if got := s.Sum("psavd_drops_total", map[string]string{"nothing": ""}); got != 0 {
		t.Errorf("a missing label matched the empty value: %v", got)
	}
	if len(s.Named("psavd_drops_total")) != 3 || len(s.Named("none")) != 0 {
		t.Error("Named")
	}
	if v, ok := s.Series(`psavd_drops_total{port="outside",reason="bad-tag"}`); !ok || v.Value != 3 {
		t.Errorf("Series: %v %v", v, ok)
	}
	if v, ok := s.Series("psavd_peers_keyed"); !ok || v.Value != 2 {
		t.Errorf("gauge: %v %v", v, ok)
	}
	o := s.Named("psavd_other")
	if len(o) != 1 || o[0].Labels["v"] != `a "q" \ b` || o[0].Value != 10 || o[0].Series() != `psavd_other{v="a \"q\" \\ b"}` {
		t.Errorf("untyped with escapes: %+v %s", o, o[0].Series())
	}
	h := s.Named("rtt_seconds")
	if len(h) != 1 || h[0].Value != 3 || h[0].Sum != 0.5 || len(h[0].Buckets) != 2 || h[0].Buckets[0] != (Bucket{0.1, 1}) {
		t.Errorf("histogram %+v", h)
	}
	if _, err := Parse(strings.NewReader("psavd_x{port=\"a\" 1\n")); err == nil {
		t.Error("a broken line parsed")
	}
}

// Through the real Prometheus HTTP handler.
func TestScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "psavd_packets_total", Help: "x"}, []string{"port", "action"})
	reg.MustRegister(c)
	c.WithLabelValues("inside", "tagged").Add(7)
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	s, err := Scrape(context.Background(), nil, hs.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("psavd_packets_total", map[string]string{"action": "tagged"}); got != 7 {
		t.Fatalf("tagged = %v in %+v", got, s)
	}
	nf := httptest.NewServer(http.NotFoundHandler())
	defer nf.Close()
	if _, err := Scrape(context.Background(), nf.Client(), nf.URL+"/metrics"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
}
