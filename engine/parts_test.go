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

// KeyHorizon: the time until the first peer in use runs out of keys.
func TestKeyHorizon(t *testing.T) {
	tb := &Tables{Period: 60, Members: []Member{{ASN: 1, Local: true, TagPeer: -1, ValidatePeer: -1}, {ASN: 2, TagPeer: 0, ValidatePeer: 0}}, Peers: make([]PeerKeys, 1)}
	now := int64(100*60 + 10) // epoch 100, 10 s in
	if h := tb.KeyHorizon(now); h != 0 {
		t.Fatalf("no keys: horizon %d", h)
	}
	for e := int64(99); e <= 110; e++ {
		tb.Peers[0].SetKey(e, Key{1})
	}
	if h := tb.KeyHorizon(now); h != 111*60-now {
		t.Fatalf("keys to e+10: horizon %d, want %d", h, 111*60-now)
	}
	tb.Peers[0].Keys[105%KeyWindow].Valid = false // a gap at e+5
	if h := tb.KeyHorizon(now); h != 105*60-now {
		t.Fatalf("gap at e+5: horizon %d", h)
	}
	tb.Members[1].TagPeer, tb.Members[1].ValidatePeer = -1, -1
	if h := tb.KeyHorizon(now); h != -1 {
		t.Fatalf("no peer in use: %d", h)
	}
}
