package mapserver

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The collector exports the Map-Server's counters under
// psavd_lisp_map_server_*, every refusal reason even while 0; a message
// that does not decode is counted malformed.
func TestCollector(t *testing.T) {
	s := newServer(t, nil)
	s.Handle([]byte{0x30, 0, 0}, etrA, time.Now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s))
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
	if got["psavd_lisp_map_server_refused_total,malformed"] != 1 || got["psavd_lisp_map_server_registrations"] != 0 {
		t.Fatalf("%v", got)
	}
	if len(got) != 1+8+len(reasons)+4 {
		t.Fatalf("%d series: %v", len(got), got)
	}
}
