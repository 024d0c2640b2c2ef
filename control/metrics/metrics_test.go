package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/psavd/psavd/engine"
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
		`psavd_drops_total{port="outside",reason="malformed"} 1`,
		`psavd_rx_packets_total{port="inside"} 8`,
		`psavd_tables_version 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
