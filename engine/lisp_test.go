package engine

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// The LISP xTRs of the vector alliance: AS 65001's ABR (RLOCs 192.0.2.1,
// 2001:db8:ff::1) and AS 65002's (192.0.2.2, 2001:db8:ff::2), both routed,
// port 0 "inside" (ingress) and port 1 "outside" (egress, encap lisp) towards
// a transit router.
var (
	xtrMAC    = [6]byte{0xbb, 0, 0, 0, 0, 1} // the ABR's outside MAC
	transMAC  = [6]byte{0xaa, 0, 0, 0, 0, 1} // the transit router
	hostMAC   = [6]byte{0xcc, 0, 0, 0, 0, 1} // a host inside
	insideMAC = [6]byte{0xbb, 0, 0, 0, 0, 2} // the ABR's inside MAC
	rloc1v4   = netip.MustParseAddr("192.0.2.1")
	rloc1v6   = netip.MustParseAddr("2001:db8:ff::1")
	rloc2v4   = netip.MustParseAddr("192.0.2.2")
	rloc2v6   = netip.MustParseAddr("2001:db8:ff::2")
)

// lispXTR is AS local's routed xTR. mc fills its map-cache (nil: none).
func lispXTR(t testing.TB, local uint32, pol Policy, mc func(b *MapCacheBuilder)) *Engine {
	t.Helper()
	rlocs := []netip.Addr{rloc1v4, rloc1v6}
	own, far := []string{"198.51.100.0/24", "2001:db8:1::/48"}, []string{"203.0.113.0/24", "2001:db8:2::/48"}
	if local == 65002 {
		rlocs = []netip.Addr{rloc2v4, rloc2v6}
		own, far = far, own
	}
	e, err := New(Spec{Forwarding: Routed, Policy: pol, Ports: []PortSpec{
		{Name: "inside", Role: RoleIngress, Peer: -1},
		{Name: "outside", Role: RoleEgress, Peer: -1, Encap: EncapLISP, RLOCs: rlocs},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tb := testTables(t, local, vecNow)
	tb.Routes = new(bart.Fast[uint32])
	for _, p := range own {
		tb.Routes.Insert(netip.MustParsePrefix(p), 1)
	}
	for _, p := range append(far, "0.0.0.0/0", "::/0") {
		tb.Routes.Insert(netip.MustParsePrefix(p), 0)
	}
	tb.Hops = []NextHop{{Port: 1, DstMAC: transMAC, SrcMAC: xtrMAC}, {Port: 0, DstMAC: hostMAC, SrcMAC: insideMAC}}
	if mc != nil {
		b := NewMapCacheBuilder()
		mc(b)
		b.Build(tb)
	}
	e.Publish(tb)
	return e
}

// remoteEIDs maps AS 65002's EID prefixes to its RLOC of family v4/v6.
func remoteEIDs(v4Outer, v6Outer netip.Addr) func(b *MapCacheBuilder) {
	return func(b *MapCacheBuilder) {
		_ = b.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{Locators: []Locator{{Addr: v4Outer, Priority: 1, Weight: 100, Up: true}}})
		_ = b.Add(netip.MustParsePrefix("2001:db8:2::/48"), Mapping{Locators: []Locator{{Addr: v6Outer, Priority: 1, Weight: 100, Up: true}}})
	}
}

// process puts one frame through pr (arriving on its port) at vecNow.
func process(pr *Processor, frame []byte, now int64) ports.Packet {
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	pr.Process(b, pr.e.Tables(), now)
	return b.Pkts[0]
}

// hopped is frame's IP packet after one router hop (TTL − 1, checksum).
func hopped(t testing.TB, frame []byte) []byte {
	ip := append([]byte(nil), frame[14:]...)
	if ip[0]>>4 == 4 {
		ip[8]--
		header.IPv4(ip).UpdateChecksum()
	} else {
		ip[7]--
	}
	return ip
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wantEncap builds, with gopacket, the frame an ITR must send: outer
// Ethernet (transit MACs), outer IP from src to dst (IPv4: DF, ID 0, TTL of
// the inner packet, header checksum; IPv6: traffic class 0, the flow label
// given), UDP sport → 4341 (IPv4: checksum 0; IPv6: computed unless zero6),
// LISP header N bit + nonce (+ I and iid when iid != 0), then inner.
func wantEncap(t testing.TB, src, dst netip.Addr, sport uint16, nonce [3]byte, iid uint32, flow uint32, zero6 bool, inner []byte) []byte {
	t.Helper()
	lh := []byte{0x80, nonce[0], nonce[1], nonce[2], 0, 0, 0, 0}
	if iid != 0 {
		lh[0] |= 0x08
		lh[4], lh[5], lh[6] = byte(iid>>16), byte(iid>>8), byte(iid)
	}
	var ttl byte
	if inner[0]>>4 == 4 {
		ttl = inner[8]
	} else {
		ttl = inner[7]
	}
	payload := append(lh, inner...)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(xtrMAC[:]), DstMAC: net.HardwareAddr(transMAC[:])}
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		udp := make([]byte, 8)
		binary.BigEndian.PutUint16(udp[0:], sport)
		binary.BigEndian.PutUint16(udp[2:], 4341)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
		ip := &layers.IPv4{Version: 4, IHL: 5, Flags: layers.IPv4DontFragment, TTL: ttl, Protocol: layers.IPProtocolUDP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		return serialize(t, eth, ip, gopacket.Payload(append(udp, payload...)))
	}
	eth.EthernetType = layers.EthernetTypeIPv6
	ip := &layers.IPv6{Version: 6, FlowLabel: flow, NextHeader: layers.IPProtocolUDP, HopLimit: ttl, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 4341}
	_ = udp.SetNetworkLayerForChecksum(ip)
	f := serialize(t, eth, ip, udp, gopacket.Payload(payload))
	if zero6 {
		f[14+40+6], f[14+40+7] = 0, 0
	}
	return f
}

// outerFields reads what the test cannot know in advance from an
// encapsulated frame: UDP source port, nonce, IPv6 flow label.
func outerFields(f []byte) (sport uint16, nonce [3]byte, flow uint32) {
	udp := 14 + 20
	if binary.BigEndian.Uint16(f[12:]) == 0x86dd {
		udp = 14 + 40
		flow = binary.BigEndian.Uint32(f[14:]) & 0xfffff
	}
	return binary.BigEndian.Uint16(f[udp:]), [3]byte(f[udp+9 : udp+12]), flow
}

// TestLISPEncapDecap: for IPv4-in-IPv4, IPv6-in-IPv6, IPv6-in-IPv4 and
// IPv4-in-IPv6, AS 65001's ITR tags and encapsulates exactly as gopacket
// builds the frame; AS 65002's ETR decapsulates it to the tagged inner packet
// octet for octet, validates and strips: the host gets the original packet
// after its two router hops.
func TestLISPEncapDecap(t *testing.T) {
	for _, c := range []struct {
		name             string
		in, tagged       string
		outer4, outer6   netip.Addr // mapping's RLOC for the IPv4 and IPv6 EIDs
		wantSrc, wantDst netip.Addr
		zero6            bool
	}{
		{"ipv4-in-ipv4", v4In, v4Out, rloc2v4, rloc2v6, rloc1v4, rloc2v4, false},
		{"ipv6-in-ipv6", v6In, v6Out, rloc2v4, rloc2v6, rloc1v6, rloc2v6, false},
		{"ipv6-in-ipv6, zero checksum", v6In, v6Out, rloc2v4, rloc2v6, rloc1v6, rloc2v6, true},
		{"ipv6-in-ipv4", v6In, v6Out, rloc2v4, rloc2v4, rloc1v4, rloc2v4, false},
		{"ipv4-in-ipv6", v4In, v4Out, rloc2v6, rloc2v6, rloc1v6, rloc2v6, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			itr := lispXTR(t, 65001, Policy{}, remoteEIDs(c.outer4, c.outer6))
			if c.zero6 {
				itr.spec.Ports[1].ZeroUDP6Checksum = true
				itr.lisp[1].zeroCsum6 = true
			}
			pr := itr.NewProcessor(0)
			pkt := process(pr, mustHex(t, c.in), vecNow)
			if pkt.Out != 1 || pr.Counters.Actions[ActTagged].Load() != 1 || pr.Counters.LISP[LISPEncapsulated].Load() != 1 {
				t.Fatalf("out %d, drops %v", pkt.Out, drops(pr))
			}
			got := append([]byte(nil), pkt.Frame()...)
			sport, nonce, flow := outerFields(got)
			inner := hopped(t, mustHex(t, c.tagged))
			want := wantEncap(t, c.wantSrc, c.wantDst, sport, nonce, 0, flow, c.zero6, inner)
			if !bytes.Equal(got, want) {
				t.Fatalf("encapsulated:\n got %x\nwant %x", got, want)
			}
			if sport < 49152 {
				t.Errorf("source port %d outside the dynamic range", sport)
			}
			// Same flow, same source port and flow label; a fresh nonce.
			again := process(pr, mustHex(t, c.in), vecNow)
			s2, n2, f2 := outerFields(again.Frame())
			if s2 != sport || f2 != flow {
				t.Errorf("flow not sticky: sport %d/%d, flow label %x/%x", sport, s2, flow, f2)
			}
			if n2 == nonce {
				t.Errorf("nonce repeated: %x", nonce)
			}

			// The ETR: decapsulation gives the inner packet octet for octet
			// (checked through a decap-only look before validation strips).
			etr := lispXTR(t, 65002, Policy{}, nil)
			var p parsed
			buf := make([]byte, ports.Headroom+ports.MaxFrame)
			dp := ports.Packet{Buf: buf, Off: ports.Headroom, Len: copy(buf[ports.Headroom:], got)}
			if !p.parse(dp.Frame()) {
				t.Fatal("outer does not parse")
			}
			epr := etr.NewProcessor(1)
			if handled, r, ok := epr.decapLISP(&dp, &p, &etr.lisp[1]); !handled || !ok {
				t.Fatalf("not decapsulated: handled %v, reason %s", handled, r)
			}
			if !bytes.Equal(dp.Frame()[14:], inner) {
				t.Fatalf("decapsulated inner:\n got %x\nwant %x", dp.Frame()[14:], inner)
			}
			// And through the whole ETR: validated, stripped, routed inside.
			epr = etr.NewProcessor(1)
			out := process(epr, got, vecNow)
			if out.Out != 0 || epr.Counters.Actions[ActValidated].Load() != 1 || epr.Counters.LISP[LISPDecapsulated].Load() != 1 {
				t.Fatalf("ETR: out %d, drops %v", out.Out, drops(epr))
			}
			wantIn := hopped(t, append(make([]byte, 14), hopped(t, mustHex(t, c.in))...))
			if !bytes.Equal(out.Frame()[14:], wantIn) || !bytes.Equal(out.Frame()[0:6], hostMAC[:]) || !bytes.Equal(out.Frame()[6:12], insideMAC[:]) {
				t.Fatalf("delivered:\n got %x\nwant %x", out.Frame(), wantIn)
			}
		})
	}
}

// TestLISPInstanceID: the I bit carries the mapping's instance-ID; an ETR
// expecting another one drops the packet lisp-decap.
func TestLISPInstanceID(t *testing.T) {
	itr := lispXTR(t, 65001, Policy{}, func(b *MapCacheBuilder) {
		_ = b.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{InstanceID: 0x123456, Locators: []Locator{{Addr: rloc2v4, Priority: 1, Weight: 1, Up: true}}})
	})
	pkt := process(itr.NewProcessor(0), mustHex(t, v4In), vecNow)
	got := append([]byte(nil), pkt.Frame()...)
	sport, nonce, _ := outerFields(got)
	if want := wantEncap(t, rloc1v4, rloc2v4, sport, nonce, 0x123456, 0, false, hopped(t, mustHex(t, v4Out))); !bytes.Equal(got, want) {
		t.Fatalf("encapsulated:\n got %x\nwant %x", got, want)
	}
	etr := lispXTR(t, 65002, Policy{}, nil)
	pr := etr.NewProcessor(1)
	if out := process(pr, got, vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropLISPDecap].Load() != 1 {
		t.Fatalf("instance-ID 0x123456 at an ETR of instance 0: out %d, drops %v", out.Out, drops(pr))
	}
	etr.lisp[1].instanceID = 0x123456
	pr = etr.NewProcessor(1)
	if out := process(pr, got, vecNow); out.Out != 0 {
		t.Fatalf("same instance: out %d, drops %v", out.Out, drops(pr))
	}
}

// TestLISPSpoofedInnerSource: a packet encapsulated with a forged inner
// source of AS 65001 (no valid tag) is decapsulated and dropped at the ETR.
func TestLISPSpoofedInnerSource(t *testing.T) {
	itr := lispXTR(t, 65001, Policy{}, remoteEIDs(rloc2v4, rloc2v6))
	pkt := process(itr.NewProcessor(0), mustHex(t, v4In), vecNow)
	f := append([]byte(nil), pkt.Frame()...)
	inner := 14 + 20 + 8 + 8
	f[inner+12+3] = 11 // 198.51.100.11: a tag computed for .10 does not verify
	header.IPv4(f[inner:]).UpdateChecksum()
	pr := lispXTR(t, 65002, Policy{}, nil).NewProcessor(1)
	if out := process(pr, f, vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropBadTag].Load() != 1 || pr.Counters.LISP[LISPDecapsulated].Load() != 1 {
		t.Fatalf("forged inner source: out %d, drops %v", out.Out, drops(pr))
	}
	// Untagged inside: no-tag.
	plain := wantEncap(t, rloc1v4, rloc2v4, 50000, [3]byte{1, 2, 3}, 0, 0, false, hopped(t, mustHex(t, v4In)))
	pr = lispXTR(t, 65002, Policy{}, nil).NewProcessor(1)
	if out := process(pr, plain, vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropNoTag].Load() != 1 {
		t.Fatalf("untagged inner: out %d, drops %v", out.Out, drops(pr))
	}
}

// TestLISPMissAndNegative: a miss is dropped (or sent natively per policy)
// and handed to the control plane once per burst; negative entries forward
// natively or drop.
func TestLISPMissAndNegative(t *testing.T) {
	e := lispXTR(t, 65001, Policy{}, nil)
	pr := e.NewProcessor(0)
	for range 3 {
		if out := process(pr, mustHex(t, v4In), vecNow); out.Out != ports.Drop {
			t.Fatal("miss forwarded")
		}
	}
	if pr.Counters.Drops[DropLISPMiss].Load() != 3 || pr.Counters.LISP[LISPMiss].Load() != 3 {
		t.Fatalf("drops %v", drops(pr))
	}
	m := e.Misses(nil)
	if len(m) != 1 || m[0].Addr != netip.MustParseAddr("203.0.113.10") {
		t.Fatalf("misses %v, want 203.0.113.10 once", m)
	}
	if m = e.Misses(m[:0]); len(m) != 0 {
		t.Fatalf("queue not drained: %v", m)
	}
	// A second later the same destination is queued again (the ITR may
	// have given up on it in between).
	process(pr, mustHex(t, v4In), vecNow+1)
	if m = e.Misses(m[:0]); len(m) != 1 {
		t.Fatalf("misses a second later: %v", m)
	}

	// Miss, native policy: forwarded as if there were no LISP (tagged).
	e = lispXTR(t, 65001, Policy{LISPMissNative: true}, nil)
	pr = e.NewProcessor(0)
	out := process(pr, mustHex(t, v6In), vecNow)
	want := append(append(append([]byte(nil), transMAC[:]...), xtrMAC[:]...), 0x86, 0xdd)
	want = append(want, hopped(t, mustHex(t, v6Out))...)
	if out.Out != 1 || !bytes.Equal(out.Frame(), want) || pr.Counters.LISP[LISPNative].Load() != 1 {
		t.Fatalf("native on miss:\n got %x\nwant %x", out.Frame(), want)
	}
	if m := e.Misses(nil); len(m) != 1 || m[0].Addr != netip.MustParseAddr("2001:db8:2::10") {
		t.Fatalf("misses %v", m)
	}

	// Negative entries.
	e = lispXTR(t, 65001, Policy{}, func(b *MapCacheBuilder) {
		_ = b.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{Action: MapNativelyForward})
		_ = b.Add(netip.MustParsePrefix("2001:db8:2::/48"), Mapping{Action: MapDrop})
	})
	pr = e.NewProcessor(0)
	if out := process(pr, mustHex(t, v4In), vecNow); out.Out != 1 || pr.Counters.LISP[LISPNative].Load() != 1 || !bytes.Equal(out.Frame()[14:], hopped(t, mustHex(t, v4Out))) {
		t.Fatalf("natively-forward: out %d, drops %v", out.Out, drops(pr))
	}
	if out := process(pr, mustHex(t, v6In), vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropLISPNegative].Load() != 1 {
		t.Fatalf("drop action: out %d, drops %v", out.Out, drops(pr))
	}
	if len(e.Misses(nil)) != 0 {
		t.Fatal("negative entries reported as misses")
	}
	// A locator set with nothing usable (down, priority 255): lisp-no-rloc.
	e = lispXTR(t, 65001, Policy{}, func(b *MapCacheBuilder) {
		_ = b.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{Locators: []Locator{{Addr: rloc2v4, Priority: 255, Up: true}, {Addr: rloc2v6, Priority: 1, Weight: 1}}})
	})
	pr = e.NewProcessor(0)
	if out := process(pr, mustHex(t, v4In), vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropLISPNoRLOC].Load() != 1 {
		t.Fatalf("unusable locators: out %d, drops %v", out.Out, drops(pr))
	}
}

// TestLISPLocatorSelection: the best priority's locators share flows by
// weight; a flow keeps its locator.
func TestLISPLocatorSelection(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.30"), netip.MustParseAddr("192.0.2.40")
	e := lispXTR(t, 65001, Policy{}, func(mb *MapCacheBuilder) {
		_ = mb.Add(netip.MustParsePrefix("203.0.113.0/24"), Mapping{Locators: []Locator{
			{Addr: a, Priority: 1, Weight: 75, Up: true}, {Addr: b, Priority: 1, Weight: 25, Up: true},
			{Addr: c, Priority: 0, Weight: 100, Up: false}, // better priority but down
		}})
	})
	pr := e.NewProcessor(0)
	count := map[netip.Addr]int{}
	base := mustHex(t, v4In)
	for i := range 2000 {
		f := append([]byte(nil), base...)
		binary.BigEndian.PutUint16(f[34:], uint16(1024+i)) // UDP source port: one flow each
		out := process(pr, f, vecNow)
		if out.Out != 1 {
			t.Fatalf("flow %d: drops %v", i, drops(pr))
		}
		dst := netip.AddrFrom4([4]byte(out.Frame()[30:34]))
		count[dst]++
		if again := process(pr, f, vecNow); netip.AddrFrom4([4]byte(again.Frame()[30:34])) != dst {
			t.Fatalf("flow %d moved", i)
		}
	}
	if count[c] != 0 || count[a] < 1300 || count[a] > 1700 || count[a]+count[b] != 2000 {
		t.Fatalf("share by weight 75/25 over 2000 flows: %v", count)
	}
}

// bigV4 is an IPv4/UDP packet from AS 65001 to AS 65002 of total length n.
func bigV4(t testing.TB, n int, df bool) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, Id: 7,
		SrcIP: net.IP{198, 51, 100, 10}, DstIP: net.IP{203, 0, 113, 10}}
	if df {
		ip.Flags = layers.IPv4DontFragment
	}
	udp := &layers.UDP{SrcPort: 4242, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(hostMAC[:]), DstMAC: net.HardwareAddr(insideMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	return serialize(t, eth, ip, udp, gopacket.Payload(make([]byte, n-28)))
}

func bigV6(t testing.TB, n int) []byte {
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64,
		SrcIP: netip.MustParseAddr("2001:db8:1::10").AsSlice(), DstIP: netip.MustParseAddr("2001:db8:2::10").AsSlice()}
	udp := &layers.UDP{SrcPort: 4242, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(hostMAC[:]), DstMAC: net.HardwareAddr(insideMAC[:]), EthernetType: layers.EthernetTypeIPv6}
	return serialize(t, eth, ip, udp, gopacket.Payload(make([]byte, n-48)))
}

// TestLISPTooBig: the largest packet that fits is encapsulated; one octet
// more is answered with an ICMP error (built here with gopacket) reporting
// the MTU the source must use so that tag + encapsulation fit, rate-limited
// per loop; DF clear or policy → dropped too-big.
func TestLISPTooBig(t *testing.T) {
	e := lispXTR(t, 65001, Policy{TooBigPerSecond: 2}, remoteEIDs(rloc2v4, rloc2v6))
	pr := e.NewProcessor(0)
	// 1500 = outer 20 + UDP 8 + LISP 8 + tag 16 + inner 1448.
	if out := process(pr, bigV4(t, 1448, true), vecNow); out.Out != 1 || out.Len != 14+1500 {
		t.Fatalf("1448 octets: out %d len %d, drops %v", out.Out, out.Len, drops(pr))
	}
	orig := bigV4(t, 1449, true)
	out := process(pr, orig, vecNow)
	if out.Out != 0 || pr.Counters.Actions[ActTooBig].Load() != 1 {
		t.Fatalf("1449 octets: out %d, drops %v", out.Out, drops(pr))
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(insideMAC[:]), DstMAC: net.HardwareAddr(hostMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TOS: 0xc0, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: rloc1v4.AsSlice(), DstIP: net.IP{198, 51, 100, 10}}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1448}
	want := serialize(t, eth, ip, icmp, gopacket.Payload(orig[14:14+548]))
	if !bytes.Equal(out.Frame(), want) {
		t.Fatalf("ICMP:\n got %x\nwant %x", out.Frame(), want)
	}
	// IPv6 in IPv6: 1500 − 56 − 16 = 1428 reported; quote up to 1280 in all.
	orig6 := bigV6(t, 1449)
	out = process(pr, orig6, vecNow)
	eth.EthernetType = layers.EthernetTypeIPv6
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 64, SrcIP: rloc1v6.AsSlice(), DstIP: netip.MustParseAddr("2001:db8:1::10").AsSlice()}
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
	_ = icmp6.SetNetworkLayerForChecksum(ip6)
	want = serialize(t, eth, ip6, icmp6, gopacket.Payload(append([]byte{0, 0, 0x05, 0x94}, orig6[14:14+1232]...)))
	if out.Out != 0 || !bytes.Equal(out.Frame(), want) {
		t.Fatalf("ICMPv6 (out %d):\n got %x\nwant %x", out.Out, out.Frame(), want)
	}
	// Third in the same second: over the rate, dropped; next second: sent.
	if out = process(pr, orig, vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropTooBig].Load() != 1 {
		t.Fatalf("rate limit: out %d, drops %v", out.Out, drops(pr))
	}
	if out = process(pr, orig, vecNow+1); out.Out != 0 {
		t.Fatalf("next second: out %d, drops %v", out.Out, drops(pr))
	}
	// DF clear: we do not fragment.
	if out = process(pr, bigV4(t, 1449, false), vecNow+1); out.Out != ports.Drop || pr.Counters.Drops[DropTooBig].Load() != 2 {
		t.Fatalf("DF clear: out %d, drops %v", out.Out, drops(pr))
	}
	// Policy drop.
	pr = lispXTR(t, 65001, Policy{DropTooBig: true}, remoteEIDs(rloc2v4, rloc2v6)).NewProcessor(0)
	if out = process(pr, orig, vecNow); out.Out != ports.Drop || pr.Counters.Drops[DropTooBig].Load() != 1 {
		t.Fatalf("policy: out %d, drops %v", out.Out, drops(pr))
	}
}

// TestLISPSpecRefused: encapsulation needs routed forwarding and an RLOC.
func TestLISPSpecRefused(t *testing.T) {
	for _, s := range []Spec{
		{Ports: []PortSpec{{Name: "a", Peer: 1, Encap: EncapLISP, RLOCs: []netip.Addr{rloc1v4}}, {Name: "b", Peer: 0}}},
		{Forwarding: Routed, Ports: []PortSpec{{Name: "a", Peer: -1, Encap: EncapLISP}}},
		{Forwarding: Routed, Ports: []PortSpec{{Name: "a", Peer: -1, Encap: EncapLISP, RLOCs: []netip.Addr{rloc1v4, rloc2v4}}}},
		{Forwarding: Routed, Ports: []PortSpec{{Name: "a", Peer: -1, Encap: EncapLISP, RLOCs: []netip.Addr{rloc1v4}, MTU: 500}}},
		{Forwarding: Routed, Ports: []PortSpec{{Name: "a", Peer: -1, Encap: EncapLISP, RLOCs: []netip.Addr{rloc1v4}, InstanceID: 1 << 24}}},
	} {
		if _, err := New(s); err == nil {
			t.Errorf("accepted %+v", s.Ports)
		}
	}
}

// TestPublishMapCache: the ITR's map-cache survives the PSAV sources'
// publications and is merged into every snapshot.
func TestPublishMapCache(t *testing.T) {
	e := lispXTR(t, 65001, Policy{}, nil)
	base := e.Tables()
	b := NewMapCacheBuilder()
	remoteEIDs(rloc2v4, rloc2v6)(b)
	e.PublishMapCache(b.MapCache())
	if out := process(e.NewProcessor(0), mustHex(t, v4In), vecNow); out.Out != 1 {
		t.Fatal("map-cache not in the snapshot")
	}
	e.Publish(base) // a new PSAV snapshot (say, the next epoch's keys)
	if e.Tables() == base || e.Tables().MapCache == nil || base.MapCache != nil {
		t.Fatal("map-cache lost, or the published tables modified")
	}
	e.PublishMapCache(nil)
	if e.Tables() != base {
		t.Fatal("nil map-cache: tables not as published")
	}
}
