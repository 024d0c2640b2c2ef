package header_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/psavd/psavd/engine/header"
)

var (
	src4, dst4 = netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("203.0.113.10")
	src6, dst6 = netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::10")
	mac1, mac2 = net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

// serialize is gopacket's encoding of the layers, with lengths and
// checksums computed: the builders must produce the same octets.
func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ip4Layer(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TOS: 0x10, Id: 77, Flags: layers.IPv4DontFragment, TTL: 64,
		Protocol: proto, SrcIP: src4.AsSlice(), DstIP: dst4.AsSlice()}
}

func ip6Layer(nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, TrafficClass: 0x20, FlowLabel: 0x12345, NextHeader: nh, HopLimit: 63,
		SrcIP: src6.AsSlice(), DstIP: dst6.AsSlice()}
}

var (
	f4 = header.IPv4Fields{TOS: 0x10, ID: 77, Flags: header.IPv4FlagDontFragment, TTL: 64, Src: src4, Dst: dst4}
	f6 = header.IPv6Fields{TrafficClass: 0x20, FlowLabel: 0x12345, HopLimit: 63, Src: src6, Dst: dst6}
)

func with4(proto uint8) header.IPv4Fields { f := f4; f.Protocol = proto; return f }
func with6(nh uint8) header.IPv6Fields    { f := f6; f.NextHeader = nh; return f }

func TestBuildersMatchGopacket(t *testing.T) {
	data := []byte("some payload, odd length")
	eth4 := &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}
	eth6 := &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv6}
	for _, c := range []struct {
		name      string
		got, want func() []byte
	}{
		{"udp4", func() []byte {
			return header.AppendEthernet(nil, mac2, mac1, header.AppendIPv4(nil, with4(header.ProtoUDP), header.AppendUDP(nil, src4, dst4, 4242, 53, data)))
		}, func() []byte {
			ip := ip4Layer(layers.IPProtocolUDP)
			udp := &layers.UDP{SrcPort: 4242, DstPort: 53}
			_ = udp.SetNetworkLayerForChecksum(ip)
			return serialize(t, eth4, ip, udp, gopacket.Payload(data))
		}},
		{"udp6", func() []byte {
			return header.AppendEthernet(nil, mac2, mac1, header.AppendIPv6(nil, with6(header.ProtoUDP), header.AppendUDP(nil, src6, dst6, 4242, 53, data)))
		}, func() []byte {
			ip := ip6Layer(layers.IPProtocolUDP)
			udp := &layers.UDP{SrcPort: 4242, DstPort: 53}
			_ = udp.SetNetworkLayerForChecksum(ip)
			return serialize(t, eth6, ip, udp, gopacket.Payload(data))
		}},
		{"tcp4", func() []byte {
			tf := header.TCPFields{SrcPort: 20003, DstPort: 443, Seq: 1000, Ack: 1, Flags: header.TCPFlagAck | header.TCPFlagPsh, Window: 65535}
			return header.AppendIPv4(nil, with4(header.ProtoTCP), header.AppendTCP(nil, src4, dst4, tf, data))
		}, func() []byte {
			ip := ip4Layer(layers.IPProtocolTCP)
			tcp := &layers.TCP{SrcPort: 20003, DstPort: 443, Seq: 1000, Ack: 1, ACK: true, PSH: true, Window: 65535}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			return serialize(t, ip, tcp, gopacket.Payload(data))
		}},
		{"tcp6", func() []byte {
			tf := header.TCPFields{SrcPort: 20003, DstPort: 443, Seq: 7, Flags: header.TCPFlagSyn, Window: 1024}
			return header.AppendIPv6(nil, with6(header.ProtoTCP), header.AppendTCP(nil, src6, dst6, tf, data))
		}, func() []byte {
			ip := ip6Layer(layers.IPProtocolTCP)
			tcp := &layers.TCP{SrcPort: 20003, DstPort: 443, Seq: 7, SYN: true, Window: 1024}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			return serialize(t, ip, tcp, gopacket.Payload(data))
		}},
		{"icmp4", func() []byte {
			return header.AppendIPv4(nil, with4(header.ProtoICMP), header.AppendICMPEcho(nil, src4, dst4, 7, 9, data))
		}, func() []byte {
			ip := ip4Layer(layers.IPProtocolICMPv4)
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 9}
			return serialize(t, ip, icmp, gopacket.Payload(data))
		}},
		{"icmp6", func() []byte {
			return header.AppendIPv6(nil, with6(header.ProtoICMPv6), header.AppendICMPEcho(nil, src6, dst6, 7, 9, data))
		}, func() []byte {
			ip := ip6Layer(layers.IPProtocolICMPv6)
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			_ = icmp.SetNetworkLayerForChecksum(ip)
			echo := &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 9}
			return serialize(t, ip, icmp, echo, gopacket.Payload(data))
		}},
	} {
		if got, want := c.got(), c.want(); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % x\nwant % x", c.name, got, want)
		}
	}
}

// Options and extension headers are placed as given; lengths, Next Header
// chain and checksums follow.
func TestBuildOptionsAndExtensions(t *testing.T) {
	opts := []byte{0x9e, 6, 1, 2, 3, 4, 1, 1}
	ip := header.AppendIPv4(nil, with4(header.ProtoUDP), header.AppendUDP(nil, src4, dst4, 1, 2, []byte("x")))
	ipo := header.AppendIPv4(nil, func() header.IPv4Fields { f := with4(header.ProtoUDP); f.Options = opts; return f }(),
		header.AppendUDP(nil, src4, dst4, 1, 2, []byte("x")))
	h := header.IPv4(ipo)
	if h.HeaderLen() != 28 || h.TotalLength() != len(ipo) || !h.ChecksumValid() || !bytes.Equal(h.Options(), opts) ||
		!bytes.Equal(ipo[28:], ip[20:]) || !h.DontFragment() || h.MoreFragments() || h.FragmentOffset() != 0 {
		t.Fatalf("IPv4 with options: % x", ipo)
	}
	if u := header.UDP(ipo[28:]); header.Checksum(u, h.PseudoHeaderChecksum(header.ProtoUDP, u.Length())) != 0xffff {
		t.Fatal("UDP checksum over the IPv4 view's pseudo-header")
	}

	f := with6(header.ProtoICMPv6)
	f.Ext = []header.IPv6ExtHeader{{Type: header.ProtoHopByHop, Body: []byte{1, 4, 0, 0, 0, 0}}, {Type: header.ProtoDestOpts, Body: make([]byte, 14)}}
	p6 := header.AppendIPv6(nil, f, header.AppendICMPEcho(nil, src6, dst6, 1, 1, nil))
	v := header.IPv6(p6)
	if v.NextHeader() != header.ProtoHopByHop || p6[40] != header.ProtoDestOpts || p6[48] != header.ProtoICMPv6 || p6[49] != 1 ||
		len(p6) != 40+8+16+8 || v.PayloadLength() != 32 || v.TrafficClass() != 0x20 || v.FlowLabel() != 0x12345 || v.HopLimit() != 63 {
		t.Fatalf("IPv6 chain: % x", p6)
	}
	if m := header.ICMP(p6[64:]); header.Checksum(m, v.PseudoHeaderChecksum(header.ProtoICMPv6, len(m))) != 0xffff || m.Type() != header.ICMPv6EchoRequest {
		t.Fatal("ICMPv6 checksum over the IPv6 view's pseudo-header")
	}

	// The append builders append: what was in b stays.
	pre := []byte{0xaa, 0xbb}
	if got := header.AppendUDP(bytes.Clone(pre), src6, dst6, 1, 2, nil); !bytes.Equal(got[:2], pre) || header.UDP(got[2:]).Length() != 8 {
		t.Fatalf("AppendUDP after data: % x", got)
	}
}

// A UDP checksum that computes to zero is sent as 0xffff.
func TestUDPZeroChecksum(t *testing.T) {
	// Find a payload word that makes the sum 0xffff.
	u := header.AppendUDP(nil, src4, dst4, 1, 2, []byte{0, 0})
	s := header.Checksum(u[:6], header.PseudoHeaderChecksum(header.ProtoUDP, src4, dst4, len(u)))
	w := ^s
	u = header.AppendUDP(nil, src4, dst4, 1, 2, []byte{byte(w >> 8), byte(w)})
	if header.UDP(u).Checksum() != 0xffff {
		t.Fatalf("checksum %#04x, want 0xffff", header.UDP(u).Checksum())
	}
}

func TestBuildersRefuse(t *testing.T) {
	for name, f := range map[string]func(){
		"v6 in v4":    func() { header.AppendIPv4(nil, header.IPv4Fields{Src: src6, Dst: dst4}, nil) },
		"odd options": func() { header.AppendIPv4(nil, header.IPv4Fields{Src: src4, Dst: dst4, Options: []byte{1}}, nil) },
		"long options": func() {
			header.AppendIPv4(nil, header.IPv4Fields{Src: src4, Dst: dst4, Options: make([]byte, 44)}, nil)
		},
		"long v4":  func() { header.AppendIPv4(nil, header.IPv4Fields{Src: src4, Dst: dst4}, make([]byte, 65516)) },
		"v4 in v6": func() { header.AppendIPv6(nil, header.IPv6Fields{Src: src4, Dst: dst6}, nil) },
		"bad ext header": func() {
			header.AppendIPv6(nil, header.IPv6Fields{Src: src6, Dst: dst6, Ext: []header.IPv6ExtHeader{{Body: []byte{1}}}}, nil)
		},
		"long v6":  func() { header.AppendIPv6(nil, header.IPv6Fields{Src: src6, Dst: dst6}, make([]byte, 65536)) },
		"long udp": func() { header.AppendUDP(nil, src6, dst6, 1, 2, make([]byte, 65528)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: built", name)
				}
			}()
			f()
		}()
	}
}

func TestViews(t *testing.T) {
	e := header.Ethernet(header.AppendEthernet(nil, mac2, mac1, header.AppendIPv6(nil, with6(header.ProtoUDP), nil)))
	if e.Type() != header.EtherTypeIPv6 || e.Destination() != [6]byte(mac2) || e.Source() != [6]byte(mac1) {
		t.Fatalf("Ethernet % x", e[:14])
	}
	p := header.AppendIPv4(nil, with4(header.ProtoTCP), header.AppendTCP(nil, src4, dst4, header.TCPFields{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: header.TCPFlagFin, Window: 5}, nil))
	h := header.IPv4(p)
	if h.Version() != 4 || h.TOS() != 0x10 || h.ID() != 77 || h.TTL() != 64 || h.Protocol() != header.ProtoTCP ||
		h.Src() != src4.As4() || h.Dst() != dst4.As4() {
		t.Fatalf("IPv4 view % x", p[:20])
	}
	tc := header.TCP(p[20:])
	if tc.SourcePort() != 1 || tc.DestinationPort() != 2 || tc.Seq() != 3 || tc.Ack() != 4 || tc.HeaderLen() != 20 ||
		tc.Flags() != header.TCPFlagFin || tc.Window() != 5 {
		t.Fatalf("TCP view % x", tc)
	}
	v := header.IPv6(header.AppendIPv6(nil, with6(header.ProtoUDP), nil))
	if v.Version() != 6 || v.Src() != src6.As16() || v.Dst() != dst6.As16() {
		t.Fatalf("IPv6 view % x", v)
	}
}
