package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/metrics"
)

// exported returns every series psavd can export, name → its label names,
// from the Describe output of the collectors psavd run registers.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	cols := []prometheus.Collector{
		metrics.NewCollector(nil), metrics.NewRingCollector(nil),
		acs.NewCollector(nil), abr.NewCollector(nil),
		adot.NewCollector(&adot.Metrics{}, adot.RoleClient), adot.NewCollector(&adot.Metrics{}, adot.RoleServer),
	}
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	set := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)(?:=|,|$)`)
	out := map[string]map[string]bool{}
	for _, c := range cols {
		ch := make(chan *prometheus.Desc, 64)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			s := d.String()
			m := name.FindStringSubmatch(s)
			if m == nil {
				t.Fatalf("cannot read %s", s)
			}
			labels := map[string]bool{"instance": true, "job": true}
			for _, part := range []string{"constLabels: {", "variableLabels: {"} {
				i := strings.LastIndex(s, part)
				if i < 0 {
					t.Fatalf("cannot read %s", s)
				}
				in := s[i+len(part):]
				in = in[:strings.IndexByte(in, '}')]
				for _, l := range set.FindAllStringSubmatch(in, -1) {
					labels[l[1]] = true
				}
			}
			out[m[1]] = labels
		}
	}
	// Histograms are queried by their _bucket, _sum and _count series.
	for n, l := range out {
		if n == "psavd_adot_query_rtt_seconds" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				cp := map[string]bool{"le": suffix == "_bucket"}
				for k := range l {
					cp[k] = true
				}
				out[n+suffix] = cp
			}
		}
	}
	return out
}

type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestDashboardQueriesExist: every psavd_* series the dashboard queries is
// one psavd exports, every label it selects on belongs to that series, and
// every label it groups by belongs to one of the series of its expression.
func TestDashboardQueriesExist(t *testing.T) {
	raw, err := os.ReadFile("psavd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("psavd.json: %v", err)
	}
	have := exported(t)
	if len(have) < 30 {
		t.Fatalf("only %d series described: %v", len(have), have)
	}
	series := regexp.MustCompile(`\b(psavd_[a-z0-9_]+)(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	by := regexp.MustCompile(`\bby \(([^)]*)\)`)
	queried, exprs := map[string]bool{}, 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			used := series.FindAllStringSubmatch(tg.Expr, -1)
			if len(used) == 0 {
				t.Errorf("panel %q: %q queries no psavd series", p.Title, tg.Expr)
			}
			inExpr := map[string]bool{}
			for _, u := range used {
				labels, ok := have[u[1]]
				if !ok {
					t.Errorf("panel %q: %s is not a series psavd exports", p.Title, u[1])
					continue
				}
				queried[u[1]] = true
				for l := range labels {
					inExpr[l] = true
				}
				for _, m := range matcher.FindAllStringSubmatch(u[2], -1) {
					if !labels[m[1]] {
						t.Errorf("panel %q: %s has no label %q", p.Title, u[1], m[1])
					}
				}
			}
			for _, b := range by.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(b[1], ",") {
					if l = strings.TrimSpace(l); !inExpr[l] {
						t.Errorf("panel %q: groups by %q, which none of its series has", p.Title, l)
					}
				}
			}
		}
	}
	// The operator's essentials are on the dashboard.
	for _, must := range []string{"psavd_packets_total", "psavd_drops_total", "psavd_xdp_socket_total", "psavd_peers_keyed",
		"psavd_acs_peer_up", "psavd_acs_peer_missed_heartbeats", "psavd_abr_feed_state"} {
		if !queried[must] {
			t.Errorf("the dashboard does not show %s", must)
		}
	}
	t.Logf("%d queries over %d of the %d series psavd exports", exprs, len(queried), len(have))
}
