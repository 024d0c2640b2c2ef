package acs

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
)

// hierarchyLab is the PSAV draft's Figure 1 with real ACS over mTLS: AS
// 65001 and AS 65002 in community 1 (65002 its border), AS 65003 and AS
// 65004 in the root community 0 (65003 the parent peer of community 1).
// Each ACS peers only where the tree puts a key: 1–2, 2–3, 3–4.
func hierarchyLab(t *testing.T) (*lab, map[uint32]*Node) {
	t.Helper()
	l := newLab(t)
	l.manual = true
	comm1, err := membership.NewEd25519SignerFromSeed(bytes.Repeat([]byte{0xC1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {l.comm.Public()}, 1: {comm1.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	l.policy = pol
	tree, err := membership.NewTree([]membership.Community{{ASCN: 1, Parent: 0, Border: 65002, ParentPeer: 65003}})
	if err != nil {
		t.Fatal(err)
	}
	withTree := func(c *Config) { c.Tree = tree }
	links := map[uint32][]uint32{
		65001: {65001, 65002}, 65002: {65001, 65002, 65003}, 65003: {65002, 65003, 65004}, 65004: {65003, 65004},
	}
	for asn := range links {
		l.addr(asn)
	}
	nodes := map[uint32]*Node{}
	for asn, peers := range links {
		nodes[asn] = l.start(asn, peers, withTree)
	}
	recs := map[uint32][]byte{
		65001: l.recordIn(1, comm1, membership.KindJoin, 65001, 1, "10.1.0.0/16", "2001:db8:1::/48"),
		65002: l.recordIn(1, comm1, membership.KindJoin, 65002, 1, "10.2.0.0/16"),
		65003: l.recordIn(0, l.comm, membership.KindJoin, 65003, 1, "10.3.0.0/16"),
		65004: l.recordIn(0, l.comm, membership.KindJoin, 65004, 1, "10.4.0.0/16", "2001:db8:4::/48"),
	}
	for asn, r := range recs {
		if _, err := nodes[asn].Publish(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "pairs up along the tree", func() bool {
		return isUp(nodes[65001], 65002) && isUp(nodes[65002], 65001) && isUp(nodes[65002], 65003) &&
			isUp(nodes[65003], 65002) && isUp(nodes[65003], 65004) && isUp(nodes[65004], 65003)
	})
	waitFor(t, "membership flooded across the tree", func() bool {
		d := nodes[65001].Membership().Digest()
		for _, n := range nodes {
			if len(n.Membership().Records()) != 4 || n.Membership().Digest() != d {
				return false
			}
		}
		return true
	})
	return l, nodes
}

// peerASNOf returns the ASN of member asn's tag peer in t (0: none).
func peerASNOf(t *acspb.Tables, asn uint32, validate bool) uint32 {
	for _, m := range t.Members {
		if m.Asn != asn {
			continue
		}
		i := m.TagPeer
		if validate {
			i = m.ValidatePeer
		}
		if i < 0 {
			return 0
		}
		return t.Peers[i].Asn
	}
	return 0
}

// TestHierarchyTables checks the tables each ACS computes from the tree
// (docs/wire.md §2.6) and then walks packets through four engines fed with them:
// a packet from AS 65001 to AS 65004 is tagged at 65001, validated and
// replaced at both community borders (65002, 65003) and validated and
// stripped at 65004, arriving byte for byte as sent; a spoofed one is
// dropped at the first border.
func TestHierarchyTables(t *testing.T) {
	_, nodes := hierarchyLab(t)
	// The pairs' keys start at a negotiated future epoch: judge the
	// packets in the first epoch where every pair has its key.
	var start uint64
	for _, n := range nodes {
		for _, p := range n.Status().Peers {
			start = max(start, p.StartEpoch)
		}
	}
	now := time.Unix(int64(start)*testPeriod+1, 0)
	tabs := map[uint32]*acspb.Tables{}
	for asn, n := range nodes {
		tabs[asn] = n.Tables(now)
	}

	// Next hops (tag = validate, the path being symmetric).
	want := map[uint32]map[uint32]uint32{
		65001: {65002: 65002, 65003: 65002, 65004: 65002},
		65002: {65001: 65001, 65003: 65003, 65004: 65003},
		65003: {65001: 65002, 65002: 65002, 65004: 65004},
		65004: {65001: 65003, 65002: 65003, 65003: 65003},
	}
	for asn, hops := range want {
		for m, hop := range hops {
			if got := peerASNOf(tabs[asn], m, false); got != hop {
				t.Errorf("AS%d: tag peer for AS%d is AS%d, want AS%d", asn, m, got, hop)
			}
			if got := peerASNOf(tabs[asn], m, true); got != hop {
				t.Errorf("AS%d: validate peer for AS%d is AS%d, want AS%d", asn, m, got, hop)
			}
		}
	}
	// Replace entries only at the borders, only for paths through them.
	member := func(tb *acspb.Tables, i uint32) uint32 { return tb.Members[i].Asn }
	wantR := map[uint32]map[[2]uint32][2]uint32{
		65001: {},
		65002: {{65001, 65003}: {65001, 65003}, {65001, 65004}: {65001, 65003}, {65003, 65001}: {65003, 65001}, {65004, 65001}: {65003, 65001}},
		65003: {{65001, 65004}: {65002, 65004}, {65002, 65004}: {65002, 65004}, {65004, 65001}: {65004, 65002}, {65004, 65002}: {65004, 65002}},
		65004: {},
	}
	for asn, wr := range wantR {
		tb := tabs[asn]
		got := map[[2]uint32][2]uint32{}
		for _, r := range tb.Replace {
			got[[2]uint32{member(tb, r.SrcMember), member(tb, r.DstMember)}] = [2]uint32{tb.Peers[r.InPeer].Asn, tb.Peers[r.OutPeer].Asn}
		}
		if len(got) != len(wr) {
			t.Errorf("AS%d: replace %v, want %v", asn, got, wr)
		}
		for k, v := range wr {
			if got[k] != v {
				t.Errorf("AS%d: replace %v = %v, want %v", asn, k, got[k], v)
			}
		}
	}

	// The same tables in four engines, as the ABRs install them.
	engines := map[uint32]*engine.Engine{}
	for asn, tb := range tabs {
		et, err := abr.Convert(tb)
		if err != nil {
			t.Fatalf("AS%d: %v", asn, err)
		}
		// Port 0 faces AS 65001's side of the chain, port 1 AS 65004's.
		roles := [2]engine.Role{engine.RoleEgress, engine.RoleEgress}
		switch asn {
		case 65001:
			roles[0] = engine.RoleIngress
		case 65004:
			roles[1] = engine.RoleIngress
		}
		e, err := engine.New(engine.Spec{Ports: []engine.PortSpec{{Name: "west", Role: roles[0], Peer: 1}, {Name: "east", Role: roles[1], Peer: 0}}})
		if err != nil {
			t.Fatal(err)
		}
		e.Publish(et)
		engines[asn] = e
	}
	sec := now.Unix()
	for _, c := range []struct {
		name     string
		src, dst string
		from     int // port of entry at the first AS
		path     []uint32
	}{
		{"IPv4 65001→65004", "10.1.0.5", "10.4.0.7", 0, []uint32{65001, 65002, 65003, 65004}},
		{"IPv6 65004→65001", "2001:db8:4::7", "2001:db8:1::5", 1, []uint32{65004, 65003, 65002, 65001}},
	} {
		sent := udpFrame(t, c.src, c.dst)
		f := sent
		for i, asn := range c.path {
			var cnt *engine.Counters
			f, cnt = through(t, engines[asn], c.from, f, sec)
			if f == nil {
				t.Fatalf("%s: dropped at AS%d: %v", c.name, asn, drops(cnt))
			}
			wantAct := engine.ActReplaced
			switch i {
			case 0:
				wantAct = engine.ActTagged
			case len(c.path) - 1:
				wantAct = engine.ActValidated
			}
			if cnt.Actions[wantAct].Load() != 1 {
				t.Fatalf("%s: AS%d did not count %v", c.name, asn, wantAct)
			}
		}
		if !bytes.Equal(f, sent) {
			t.Errorf("%s: delivered frame differs from the sent one\n got %x\nsent %x", c.name, f, sent)
		}
	}

	// Spoofed: a source of AS 65001 sent untagged from outside reaches the
	// first border, AS 65002, which drops it (no tag).
	f, cnt := through(t, engines[65002], 0, udpFrame(t, "10.1.0.5", "10.4.0.7"), sec)
	if f != nil || cnt.Drops[engine.DropNoTag].Load() != 1 {
		t.Fatalf("spoofed packet at the first border: out %x, drops %v", f, drops(cnt))
	}
	// A tag for the wrong hop: AS 65001's tag (key 65001–65002) shown to AS
	// 65003, which expects 65002–65003's.
	tagged, _ := through(t, engines[65001], 0, udpFrame(t, "10.1.0.5", "10.4.0.7"), sec)
	if f, cnt := through(t, engines[65003], 0, tagged, sec); f != nil || cnt.Drops[engine.DropBadTag].Load() != 1 {
		t.Fatalf("tag of another hop: out %x, drops %v", f, drops(cnt))
	}
}

// through puts one frame through e, arriving on port in at unix second now.
func through(t *testing.T, e *engine.Engine, in int, frame []byte, now int64) ([]byte, *engine.Counters) {
	t.Helper()
	pr := e.NewProcessor(in)
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	pr.Process(b, e.Tables(), now)
	if b.Pkts[0].Out == ports.Drop {
		return nil, pr.Counters
	}
	return append([]byte(nil), b.Pkts[0].Frame()...), pr.Counters
}

func drops(c *engine.Counters) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range engine.Reasons() {
		if v := c.Drops[r].Load(); v > 0 {
			out[r.String()] = v
		}
	}
	return out
}

// udpFrame is an Ethernet frame with a UDP datagram from src to dst.
func udpFrame(t *testing.T, src, dst string) []byte {
	t.Helper()
	s, d := net.ParseIP(src), net.ParseIP(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
	var ip gopacket.NetworkLayer
	if s.To4() != nil {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.To4(), DstIP: d.To4()}
		ip = v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s, DstIP: d}
	}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), udp, gopacket.Payload("psav hierarchy")); err != nil {
		t.Fatal(err)
	}
	// Without the Ethernet padding gopacket adds to reach 60 octets: the
	// ABRs carry the IP packet, and a stripped packet ends where it ends.
	b := buf.Bytes()
	if s.To4() != nil {
		return b[:14+(int(b[16])<<8|int(b[17]))]
	}
	return b[:14+40+(int(b[18])<<8|int(b[19]))]
}
