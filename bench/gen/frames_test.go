package gen

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/psavd/psavd/engine/header"
)

// checkUDP verifies, independently of gopacket, the lengths and checksums of
// an Ethernet/IPv4|IPv6/UDP frame and returns its addresses.
func checkUDP(t *testing.T, f []byte) (src, dst netip.Addr) {
	t.Helper()
	var l4 []byte
	var pseudo uint16
	switch et := binary.BigEndian.Uint16(f[12:]); et {
	case 0x0800:
		ip := f[14:]
		ihl := int(ip[0]&0xf) * 4
		if ip[0]>>4 != 4 || ihl != 20 || ip[9] != 17 {
			t.Fatalf("bad IPv4 header % x", ip[:20])
		}
		if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
			t.Fatalf("IPv4 total length %d, frame carries %d", binary.BigEndian.Uint16(ip[2:]), len(ip))
		}
		if !header.IPv4(ip).ChecksumValid() {
			t.Fatal("IPv4 header checksum wrong")
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:]
		pseudo = header.IPv4(ip).PseudoHeaderChecksum(header.ProtoUDP, len(l4))
	case 0x86dd:
		ip := f[14:]
		if ip[0]>>4 != 6 || ip[6] != 17 {
			t.Fatalf("bad IPv6 header % x", ip[:40])
		}
		if int(binary.BigEndian.Uint16(ip[4:]))+40 != len(ip) {
			t.Fatalf("IPv6 payload length %d, frame carries %d", binary.BigEndian.Uint16(ip[4:]), len(ip)-40)
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
		pseudo = header.IPv6(ip).PseudoHeaderChecksum(header.ProtoUDP, len(l4))
	default:
		t.Fatalf("EtherType %#04x", et)
	}
	if int(binary.BigEndian.Uint16(l4[4:])) != len(l4) {
		t.Fatalf("UDP length %d, carries %d", binary.BigEndian.Uint16(l4[4:]), len(l4))
	}
	if binary.BigEndian.Uint16(l4[6:]) == 0 || header.Checksum(l4, pseudo) != 0xffff {
		t.Fatal("UDP checksum wrong")
	}
	return src, dst
}

func TestScenarioFrames(t *testing.T) {
	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f        []byte
		src, dst netip.Addr
	}{{v4, InsideV4, OutsideV4}, {v6, InsideV6, OutsideV6}} {
		if len(tc.f) != FrameSize {
			t.Errorf("frame of %d octets, want %d", len(tc.f), FrameSize)
		}
		if string(tc.f[0:6]) != string(sinkMAC) || string(tc.f[6:12]) != string(genMAC) {
			t.Errorf("MACs % x", tc.f[:12])
		}
		if src, dst := checkUDP(t, tc.f); src != tc.src || dst != tc.dst {
			t.Errorf("%v → %v, want %v → %v", src, dst, tc.src, tc.dst)
		}
	}
	// Other sizes keep valid checksums; too small or mixed families fail.
	for _, size := range []int{MinFrameV6, 100, 1514} {
		f, err := UDPFrame{SrcMAC: genMAC, DstMAC: sinkMAC, Src: InsideV6, Dst: OutsideV6, Size: size}.Build()
		if err != nil {
			t.Fatal(err)
		}
		checkUDP(t, f)
	}
	if _, err := (UDPFrame{SrcMAC: genMAC, DstMAC: sinkMAC, Src: InsideV6, Dst: OutsideV6, Size: 61}).Build(); err == nil {
		t.Error("61-octet IPv6 frame built")
	}
	if _, err := (UDPFrame{SrcMAC: genMAC, DstMAC: sinkMAC, Src: InsideV4, Dst: OutsideV6, Size: 64}).Build(); err == nil {
		t.Error("mixed-family frame built")
	}
}
