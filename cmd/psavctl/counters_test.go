package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// node is a real engine (two ports, no members) whose counters psavd's own
// collector serves at /metrics on a loopback port.
type node struct {
	eng  *engine.Engine
	in   *engine.Processor // the inside port's poll loop
	addr string
	ring metrics.RingStats
	mu   sync.Mutex
}

func newNode(t *testing.T) *node {
	t.Helper()
	eng, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: 1},
		{Name: "outside", Role: engine.RoleEgress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{eng: eng}
	c := metrics.NewCollector(eng)
	n.in = eng.NewProcessor(0)
	c.Add(n.in)
	c.Add(eng.NewProcessor(1))
	rings := metrics.NewRingCollector([]metrics.RingSource{{Port: "inside", Queue: 0, Stats: func() (metrics.RingStats, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.ring, nil
	}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := metrics.Serve(ctx, n.addr, c, rings); err != nil {
		t.Fatal(err)
	}
	return n
}

// feed puts frames through the inside port's loop: arp ARP frames
// (passthrough), ip IPv4 datagrams with a source of no member (dropped
// spoofed-inside: this AS has no prefixes) and one runt (malformed).
func (n *node) feed(t *testing.T, arp, ip int) {
	t.Helper()
	b := ports.NewBatch(arp + ip + 1)
	add := func(frame []byte) {
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		k := copy(buf[ports.Headroom:], frame)
		b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: k})
	}
	mac := []byte{2, 0, 0, 0, 0, 1}
	for i := 0; i < arp; i++ {
		add([]byte("\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x06" + strings.Repeat("\x00", 28)))
	}
	src, dst := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("203.0.113.9")
	for i := 0; i < ip; i++ {
		add(header.AppendEthernet(nil, mac, mac, header.AppendIPv4(nil, header.IPv4Fields{ID: uint16(i), Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: src, Dst: dst}, header.AppendUDP(nil, src, dst, 1, 2, []byte("x")))))
	}
	b.Pkts = append(b.Pkts, ports.Packet{Buf: make([]byte, 200), Off: ports.Headroom, Len: 3})
	n.in.Process(b, n.eng.Tables(), 0)
	n.mu.Lock()
	n.ring.RxPackets += uint64(arp + ip + 1)
	n.ring.RxRingFull += 2
	n.mu.Unlock()
}

func get(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasRow reports whether out has a line whose fields are exactly want.
func hasRow(out string, want ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}

// psavctl counters reads a real psavd /metrics (the engine's collector and
// the ring collector behind metrics.Serve): text and -json.
func TestCountersCommand(t *testing.T) {
	n := newNode(t)
	n.feed(t, 3, 5)
	var out, errb strings.Builder
	if code := run([]string{"counters", "-metrics", n.addr}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, row := range [][]string{
		{"inside", "received", "9"}, {"inside", "passthrough", "3"}, {"inside", "drop", "spoofed-inside", "5"},
		{"inside", "drop", "malformed", "1"}, {"outside", "received", "0"},
		{"inside/0", "rx_packets", "9"}, {"inside/0", "rx_ring_full", "2"},
	} {
		if !hasRow(out.String(), row...) {
			t.Errorf("no row %q in:\n%s", row, out.String())
		}
	}
	if strings.Contains(out.String(), "no-tag") || strings.Contains(out.String(), "rx_dropped") {
		t.Errorf("zero counters shown without -all:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"counters", "-metrics", n.addr, "-all"}, &out, &errb); code != 0 || !hasRow(out.String(), "inside", "drop", "no-tag", "0") {
		t.Errorf("-all: exit %d\n%s", code, out.String())
	}

	out.Reset()
	if code := run([]string{"counters", "-json", "-metrics", n.addr}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got NodeCounters
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(got.Ports) != 2 || got.Ports[0].Port != "inside" || got.Ports[0].RxPackets != 9 ||
		got.Ports[0].Drops["spoofed-inside"] != 5 || got.Ports[0].Actions["passthrough"] != 3 || got.Ports[1].Port != "outside" {
		t.Errorf("json: %s", out.String())
	}
	if len(got.Rings) != 1 || got.Rings[0].Counters["rx_ring_full"] != 2 || got.Epoch == nil || got.PeersKeyed == nil {
		t.Errorf("json: %s", out.String())
	}

	// Refusals: no -metrics and no local node (the socket), nothing
	// listening, not psavd.
	if code := run([]string{"-socket", filepath.Join(t.TempDir(), "none.sock"), "counters"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("no -metrics and no node's socket: exit %d", code)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if code := run([]string{"counters", "-metrics", dead}, io.Discard, io.Discard); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE go_goroutines gauge\ngo_goroutines 7\n")
	}))
	defer other.Close()
	errb.Reset()
	if code := run([]string{"counters", "-metrics", strings.TrimPrefix(other.URL, "http://")}, io.Discard, &errb); code != 1 ||
		!strings.Contains(errb.String(), "no psavd") {
		t.Errorf("not psavd: exit %d %s", code, errb.String())
	}
}

// psavctl top shows the deltas between samples: scrapes of the real
// collector captured before and after more traffic, served in turn.
func TestTopCommand(t *testing.T) {
	n := newNode(t)
	n.feed(t, 1, 1)
	first := get(t, n.addr)
	n.feed(t, 4, 10)
	second := get(t, n.addr)
	var mu sync.Mutex
	served := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		text := second
		if served == 0 {
			text = first
		}
		served++
		io.WriteString(w, text)
	}))
	defer srv.Close()
	var out, errb strings.Builder
	if code := run([]string{"top", "-metrics", strings.TrimPrefix(srv.URL, "http://"), "-interval", "10ms", "-n", "2"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	blocks := strings.Split(strings.TrimSpace(out.String()), "\n\n")
	if len(blocks) != 2 {
		t.Fatalf("%d blocks, want 2:\n%s", len(blocks), out.String())
	}
	delta := func(block string, what ...string) string {
		for _, l := range strings.Split(block, "\n") {
			f := strings.Fields(l)
			if len(f) == len(what)+2 && strings.Join(f[:len(what)], " ") == strings.Join(what, " ") {
				return f[len(what)]
			}
		}
		return ""
	}
	for _, c := range []struct {
		what []string
		want string
	}{
		{[]string{"inside", "received"}, "15"}, {[]string{"inside", "passthrough"}, "4"},
		{[]string{"inside", "drop", "spoofed-inside"}, "10"}, {[]string{"inside", "drop", "malformed"}, "1"},
		{[]string{"inside/0", "socket", "rx_ring_full"}, "2"}, {[]string{"outside", "received"}, ""},
	} {
		if got := delta(blocks[0], c.what...); got != c.want {
			t.Errorf("first block: %v moved %q, want %s:\n%s", c.what, got, c.want, blocks[0])
		}
	}
	if !strings.Contains(blocks[1], "nothing moved") {
		t.Errorf("second block (no change) shows movement:\n%s", blocks[1])
	}
	if code := run([]string{"top", "-metrics", "x:1", "-interval", "0s"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("-interval 0: exit %d", code)
	}
}
