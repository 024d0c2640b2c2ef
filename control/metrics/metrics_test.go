package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// The collector sums every loop's counters per port and serves them under
// the names the lab, dashboards and docs/config.md rely on.
func TestCollectorSumsLoopsAndServes(t *testing.T) {
	eng, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: 1},
		{Name: "outside", Role: engine.RoleEgress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := NewCollector(eng)
	arp := []byte("\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x06" + strings.Repeat("\x00", 28))
	for _, in := range []int{0, 0, 1} { // two loops on inside, one on outside
		p := eng.NewProcessor(in)
		c.Add(p)
		b := ports.NewBatch(4)
		for i := 0; i < 3; i++ {
			buf := make([]byte, ports.Headroom+ports.MaxFrame)
			n := copy(buf[ports.Headroom:], arp)
			b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
		}
		// and one frame too short to be anything: malformed
		b.Pkts = append(b.Pkts, ports.Packet{Buf: make([]byte, 200), Off: ports.Headroom, Len: 3})
		p.Process(b, eng.Tables(), 0)
	}
	tot := c.Sum()
	if tot.RxPackets[0] != 8 || tot.RxPackets[1] != 4 {
		t.Fatalf("rx %v", tot.RxPackets)
	}
	if tot.Actions[0][engine.ActPassthrough] != 6 || tot.Drops[1][engine.DropMalformed] != 1 {
		t.Fatalf("actions %v drops %v", tot.Actions, tot.Drops)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, addr, c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`psavd_packets_total{action="passthrough",port="inside"} 6`,
		`psavd_drops_total{port="outside",reason="malformed",stage="engine"} 1`,
		`psavd_rx_packets_total{port="inside"} 8`,
		`psavd_tables_version 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A node with a LISP port also exports what its LISP data plane did: here
// a packet to a destination with no map-cache entry is a miss (and, by the
// default policy, a lisp-miss drop), counted on its port of arrival.
func TestLISPEvents(t *testing.T) {
	eng, err := engine.New(engine.Spec{Forwarding: engine.Routed, Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: -1},
		{Name: "outside", Role: engine.RoleEgress, Peer: -1, Encap: engine.EncapLISP, RLOCs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tb := &engine.Tables{Version: 1, Period: 60, Routes: new(bart.Fast[uint32]),
		Hops: []engine.NextHop{{Port: 1, DstMAC: [6]byte{2, 0, 0, 0, 0, 9}, SrcMAC: [6]byte{2, 0, 0, 0, 0, 8}}}}
	tb.Routes.Insert(netip.MustParsePrefix("0.0.0.0/0"), 0)
	pb := engine.NewPrefixTableBuilder() // the source is of the local AS
	if err := pb.Add(netip.MustParsePrefix("198.51.100.0/24"), 0); err != nil {
		t.Fatal(err)
	}
	tb.Prefixes = pb.Table()
	tb.Members = []engine.Member{{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1}}
	eng.Publish(tb)
	c := NewCollector(eng)
	p := eng.NewProcessor(0)
	c.Add(p)
	// Ethernet + IPv4 (UDP, 198.51.100.10 → 203.0.113.5, TTL 64) + 8 octets.
	frame := []byte("\x02\x00\x00\x00\x00\x08\x02\x00\x00\x00\x00\x01\x08\x00" +
		"\x45\x00\x00\x24\x00\x00\x00\x00\x40\x11\x00\x00\xc6\x33\x64\x0a\xcb\x00\x71\x05" +
		"\x9c\x40\x00\x09\x00\x10\x00\x00psavlisp")
	header.IPv4(frame[14:34]).UpdateChecksum()
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	p.Process(b, eng.Tables(), 0)

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["psavd_table_entries,table=prefixes"] != 1 || got["psavd_table_entries,table=routes"] != 1 || got["psavd_table_entries,table=members"] != 1 {
		t.Fatalf("table sizes: %v", got)
	}
	if got["psavd_lisp_events_total,event=miss,port=inside"] != 1 || got["psavd_drops_total,port=inside,reason=lisp-miss,stage=engine"] != 1 {
		t.Fatalf("LISP series: %v", got)
	}
	if _, ok := got["psavd_lisp_events_total,event=encapsulated,port=outside"]; !ok {
		t.Fatal("LISP series missing for the LISP port")
	}
}
