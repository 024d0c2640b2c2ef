package xtr

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/psavd/psavd/control/lisp"
)

// The collector exports the xTR's counters under psavd_lisp_xtr_*: after
// one registration round the register counter is 1, the map-cache empty.
func TestCollector(t *testing.T) {
	ms := netip.MustParseAddrPort("198.51.100.1:4342")
	now := t0
	x := newXTR(t, Config{ASN: 65002, Database: etrDatabase(), Now: func() time.Time { return now },
		MapServers: []MapServer{{Addr: ms, Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}, WantNotify: true}}})
	if out := x.Tick(now); len(out) != 1 {
		t.Fatalf("%d messages", len(out))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(x))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "," + l.GetValue()
			}
			got[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["psavd_lisp_xtr_etr_total,register"] != 1 || got["psavd_lisp_xtr_itr_total,request"] != 0 {
		t.Fatalf("%v", got)
	}
	if _, ok := got["psavd_lisp_xtr_map_cache_entries"]; !ok || len(got) != 12+20+2+2 {
		t.Fatalf("%d series: %v", len(got), got)
	}
}
