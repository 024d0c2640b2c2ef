package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/psavd/psavd/engine"
)

// TestXDPDrops: the XDP pre-filter's drops are psavd_drops_total series
// with stage="xdp" beside the engine's stage="engine", and in Sum.
func TestXDPDrops(t *testing.T) {
	eng, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: 1},
		{Name: "outside", Role: engine.RoleEgress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCollector(eng)
	c.AddXDP("outside", func() (map[engine.Reason]uint64, error) {
		return map[engine.Reason]uint64{engine.DropSpoofedLocal: 7, engine.DropNoTag: 5, engine.DropStaleEpoch: 0}, nil
	})
	tot := c.Sum()
	if !tot.XDP[1] || tot.XDP[0] || tot.XDPDrops[1][engine.DropNoTag] != 5 || tot.XDPDrops[1][engine.DropSpoofedLocal] != 7 {
		t.Fatalf("xdp totals %v %v", tot.XDP, tot.XDPDrops)
	}
	if tot.RxPackets[1] != 12 || tot.RxPackets[0] != 0 {
		t.Fatalf("rx %v: the pre-filter's drops are received frames", tot.RxPackets)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "psavd_drops_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got[l["port"]+"/"+l["reason"]+"/"+l["stage"]] = m.GetCounter().GetValue()
		}
	}
	for k, v := range map[string]float64{"outside/no-tag/xdp": 5, "outside/spoofed-local/xdp": 7, "outside/stale-epoch/xdp": 0, "outside/no-tag/engine": 0, "inside/malformed/engine": 0} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["inside/no-tag/xdp"]; ok {
		t.Error("an xdp series for a port without a pre-filter")
	}
	if n := len(got); n != 2*len(engine.Reasons())+3 {
		t.Errorf("%d series", n)
	}
}
