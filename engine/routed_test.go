package engine

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// A routed ABR of AS 65001 with two inside ports and one outside port: the
// route decides the port of departure (and so the role action), MACs are
// rewritten and the TTL decremented with the checksum kept right.
func TestRoutedForwarding(t *testing.T) {
	e, err := New(Spec{Forwarding: Routed, Ports: []PortSpec{
		{Name: "in-a", Role: RoleIngress, Peer: -1},
		{Name: "in-b", Role: RoleIngress, Peer: -1},
		{Name: "out", Role: RoleEgress, Peer: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tb := testTables(t, 65001, vecNow)
	tb.Routes = new(bart.Fast[uint32])
	tb.Routes.Insert(netip.MustParsePrefix("198.51.100.128/25"), 0)
	tb.Routes.Insert(netip.MustParsePrefix("0.0.0.0/0"), 1)
	tb.Routes.Insert(netip.MustParsePrefix("203.0.113.0/24"), 2)
	tb.Hops = []NextHop{
		{Port: 1, DstMAC: [6]byte{0xaa, 0, 0, 0, 0, 1}, SrcMAC: [6]byte{0xbb, 0, 0, 0, 0, 1}},
		{Port: 1, DstMAC: [6]byte{0xaa, 0, 0, 0, 0, 2}, SrcMAC: [6]byte{0xbb, 0, 0, 0, 0, 2}},
		{Port: 2, DstMAC: [6]byte{0xaa, 0, 0, 0, 0, 3}, SrcMAC: [6]byte{0xbb, 0, 0, 0, 0, 3}},
	}
	e.Publish(tb)

	one := func(frame []byte) (ports.Packet, *Processor) {
		pr := e.NewProcessor(0)
		b := ports.NewBatch(1)
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		n := copy(buf[ports.Headroom:], frame)
		b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
		pr.Process(b, e.Tables(), vecNow)
		return b.Pkts[0], pr
	}

	// To AS 65002 via the outside port: tagged, MACs of hop 2, TTL 63.
	pkt, pr := one(mustHex(t, v4In))
	if pkt.Out != 2 || pr.Counters.Actions[ActTagged].Load() != 1 {
		t.Fatalf("out %d, drops %v", pkt.Out, drops(pr))
	}
	want := mustHex(t, v4Out)
	copy(want[0:6], tb.Hops[2].DstMAC[:])
	copy(want[6:12], tb.Hops[2].SrcMAC[:])
	want[22] = 63
	header.IPv4(want[14:]).UpdateChecksum()
	if !bytes.Equal(pkt.Frame(), want) {
		t.Fatalf("routed+tagged:\n got %x\nwant %x", pkt.Frame(), want)
	}

	// Inside to inside (default route to port 1): untouched but for L2/TTL.
	f := mustHex(t, v4In)
	copy(f[30:34], []byte{198, 51, 100, 20})
	header.IPv4(f[14:]).UpdateChecksum()
	pkt, pr = one(f)
	if pkt.Out != 1 || pr.Counters.Actions[ActForwarded].Load() != 1 || pkt.Frame()[22] != 63 || !header.IPv4(pkt.Frame()[14:]).ChecksumValid() {
		t.Fatalf("inside route: out %d, drops %v", pkt.Out, drops(pr))
	}

	// TTL 1: dropped, not forwarded with TTL 0.
	f[22] = 1
	header.IPv4(f[14:]).UpdateChecksum()
	if pkt, pr = one(f); pkt.Out != ports.Drop || pr.Counters.Drops[DropTTLExpired].Load() != 1 {
		t.Fatalf("TTL 1 forwarded")
	}

	// IPv6 has no route: dropped no-route; ARP is not ours: not-ip.
	if pkt, pr = one(mustHex(t, v6In)); pkt.Out != ports.Drop || pr.Counters.Drops[DropNoRoute].Load() != 1 {
		t.Fatal("IPv6 without a route forwarded")
	}
	arp := mustHex(t, "ffffffffffff0200000000010806000108000604000102000000000100000000000000000000c0000201")
	if pkt, pr = one(arp); pkt.Out != ports.Drop || pr.Counters.Drops[DropNotIP].Load() != 1 {
		t.Fatal("ARP forwarded in routed mode")
	}
}
