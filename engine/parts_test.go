package engine

import (
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
)

// The three parts of the tables are published independently: a new PSAV
// snapshot (the next epoch's keys, from the schedule or an ACS feed) keeps
// the routes and the map-cache, and new routes keep the keys.
func TestTablePartsPublishedIndependently(t *testing.T) {
	e, err := New(Spec{Forwarding: Routed, Ports: []PortSpec{
		{Name: "inside", Role: RoleIngress, Peer: -1},
		{Name: "outside", Role: RoleEgress, Peer: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	routes := func(port int16) *Routes {
		r := &Routes{Table: new(bart.Fast[uint32]), Hops: []NextHop{{Port: port}}}
		r.Table.Insert(netip.MustParsePrefix("0.0.0.0/0"), 0)
		return r
	}
	r1 := routes(1)
	e.PublishRoutes(r1)
	keys := &Tables{Version: 7, Period: 60}
	e.Publish(keys)
	if got := e.Tables(); got.Routes != r1.Table || got.Version != 7 {
		t.Fatalf("PSAV publish lost the routes or the keys: %+v", got)
	}
	if e.PSAVTables() != keys || keys.Routes != nil {
		t.Fatal("the published PSAV part was modified")
	}
	r2 := routes(0)
	e.PublishRoutes(r2)
	if got := e.Tables(); got.Routes != r2.Table || got.Version != 7 {
		t.Fatalf("route publish lost the keys: %+v", got)
	}
	b := NewMapCacheBuilder()
	if err := b.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{}); err != nil {
		t.Fatal(err)
	}
	e.PublishMapCache(b.MapCache())
	e.Publish(&Tables{Version: 8, Period: 60})
	if got := e.Tables(); got.Routes != r2.Table || got.MapCache == nil || got.Version != 8 {
		t.Fatalf("parts not composed: %+v", got)
	}
	if e.PublishedRoutes() != r2 {
		t.Fatal("PublishedRoutes")
	}
}
