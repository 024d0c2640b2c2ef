package gen

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The benchmark's addresses (docs/wire.md §4.1 example alliance): AS 65001 is the
// inside of the ABR under test, AS 65002 a member on the outside.
var (
	InsideV4  = netip.MustParseAddr("198.51.100.10")  // AS 65001
	OutsideV4 = netip.MustParseAddr("203.0.113.10")   // AS 65002
	InsideV6  = netip.MustParseAddr("2001:db8:1::10") // AS 65001
	OutsideV6 = netip.MustParseAddr("2001:db8:2::10") // AS 65002
)

// Frame sizes: the length handed to the device, without the 4-octet FCS.
const (
	MinFrameV4 = 14 + 20 + 8 // Ethernet + IPv4 + UDP, no payload
	MinFrameV6 = 14 + 40 + 8 // Ethernet + IPv6 + UDP, no payload
	// FrameSize is the benchmark's default: 64 octets for both families
	// (22 octets of UDP payload over IPv4, 2 over IPv6).
	FrameSize = 64
)

// UDPFrame describes one Ethernet/IP/UDP frame. Src and Dst must be of the
// same family; the family decides IPv4 or IPv6.
type UDPFrame struct {
	SrcMAC, DstMAC   net.HardwareAddr
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Size             int   // whole frame, FCS excluded; the UDP payload fills the rest (zeros)
	TTL              uint8 // TTL / hop limit; 0 means 64
}

// Build serialises the frame with correct IPv4 header and UDP checksums.
func (f UDPFrame) Build() ([]byte, error) {
	if f.Src.Is4() != f.Dst.Is4() || !f.Src.IsValid() || !f.Dst.IsValid() {
		return nil, fmt.Errorf("gen: source %v and destination %v must be valid addresses of one family", f.Src, f.Dst)
	}
	if len(f.SrcMAC) != 6 || len(f.DstMAC) != 6 {
		return nil, fmt.Errorf("gen: source and destination MAC must be 6 octets")
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	min := MinFrameV6
	if f.Src.Is4() {
		min = MinFrameV4
	}
	if f.Size < min || f.Size > 1514 {
		return nil, fmt.Errorf("gen: frame size %d outside [%d, 1514]", f.Size, min)
	}
	eth := &layers.Ethernet{SrcMAC: f.SrcMAC, DstMAC: f.DstMAC}
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.SrcPort), DstPort: layers.UDPPort(f.DstPort)}
	var ip gopacket.SerializableLayer
	if f.Src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		s, d := f.Src.As4(), f.Dst.As4()
		v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: layers.IPProtocolUDP,
			Flags: layers.IPv4DontFragment, SrcIP: net.IP(s[:]), DstIP: net.IP(d[:])}
		if err := udp.SetNetworkLayerForChecksum(v4); err != nil {
			return nil, err
		}
		ip = v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		s, d := f.Src.As16(), f.Dst.As16()
		v6 := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.IP(s[:]), DstIP: net.IP(d[:])}
		if err := udp.SetNetworkLayerForChecksum(v6); err != nil {
			return nil, err
		}
		ip = v6
	}
	payload := gopacket.Payload(make([]byte, f.Size-min))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, payload); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if len(out) != f.Size {
		return nil, fmt.Errorf("gen: built %d octets, want %d", len(out), f.Size)
	}
	return append([]byte(nil), out...), nil
}

// ScenarioFrames returns the benchmark's two templates, both FrameSize octets
// from the inside (AS 65001) to the outside (AS 65002): IPv4/UDP
// 198.51.100.10 → 203.0.113.10 and IPv6/UDP 2001:db8:1::10 → 2001:db8:2::10.
// srcMAC/dstMAC are the generator's and the device under test's interfaces.
func ScenarioFrames(srcMAC, dstMAC net.HardwareAddr) (v4, v6 []byte, err error) {
	v4, err = UDPFrame{SrcMAC: srcMAC, DstMAC: dstMAC, Src: InsideV4, Dst: OutsideV4,
		SrcPort: 40000, DstPort: 9, Size: FrameSize}.Build()
	if err != nil {
		return nil, nil, err
	}
	v6, err = UDPFrame{SrcMAC: srcMAC, DstMAC: dstMAC, Src: InsideV6, Dst: OutsideV6,
		SrcPort: 40000, DstPort: 9, Size: FrameSize}.Build()
	return v4, v6, err
}
