package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Crafting of frames for forged traffic and for the integration test. The
// lab builds packets by hand rather than with a packet library because the
// tests must control every octet (option placement, extension header order)
// and compare bytes exactly.

// IP protocol numbers used here.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoDestOpts = 60
	ProtoICMPv6   = 58
)

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func Checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudo returns the partial sum of the upper-layer pseudo-header.
func pseudo(src, dst netip.Addr, proto uint8, length int) uint32 {
	var b []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, 0, proto, byte(length>>8), byte(length))
	} else {
		s, d := src.As16(), dst.As16()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(length))
		b = append(b, 0, 0, 0, proto)
	}
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return sum
}

// UDP returns a UDP datagram with a correct checksum.
func UDP(src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	c := Checksum(b, pseudo(src, dst, ProtoUDP, len(b)))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// TCP returns a TCP segment (no options) with a correct checksum.
func TCP(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8, data []byte) []byte {
	b := make([]byte, 20+len(data))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], data)
	binary.BigEndian.PutUint16(b[16:], Checksum(b, pseudo(src, dst, ProtoTCP, len(b))))
	return b
}

// ICMPEcho returns an ICMP (IPv4) or ICMPv6 echo request with a correct
// checksum (ICMPv6 covers the pseudo-header, ICMPv4 does not).
func ICMPEcho(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], data)
	if src.Is4() {
		b[0] = 8
		binary.BigEndian.PutUint16(b[2:], Checksum(b, 0))
	} else {
		b[0] = 128
		binary.BigEndian.PutUint16(b[2:], Checksum(b, pseudo(src, dst, ProtoICMPv6, len(b))))
	}
	return b
}

// IPv4 returns an IPv4 packet. options (a multiple of 4 octets, at most 40)
// are placed as given; DF is set, as hosts do with PMTU discovery.
func IPv4(src, dst netip.Addr, ttl, proto uint8, id uint16, options, payload []byte) []byte {
	if len(options)%4 != 0 || len(options) > 40 {
		panic(fmt.Sprintf("lab.IPv4: %d octets of options", len(options)))
	}
	hl := 20 + len(options)
	b := make([]byte, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	b[6] = 0x40 // DF
	b[8] = ttl
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], options)
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:hl], 0))
	copy(b[hl:], payload)
	return b
}

// IPv6Ext is one IPv6 extension header: Type is its protocol number
// (ProtoHopByHop, ProtoDestOpts) and Body the octets after Next Header and
// Hdr Ext Len; len(Body)+2 must be a multiple of 8.
type IPv6Ext struct {
	Type uint8
	Body []byte
}

// IPv6 returns an IPv6 packet whose extension headers are ext, in order,
// followed by payload of protocol proto.
func IPv6(src, dst netip.Addr, hlim, proto uint8, ext []IPv6Ext, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload)+64)
	b[0] = 0x60
	b[7] = hlim
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	nh := 6 // index of the Next Header field to fill in
	for _, e := range ext {
		if (len(e.Body)+2)%8 != 0 {
			panic(fmt.Sprintf("lab.IPv6: extension header body of %d octets", len(e.Body)))
		}
		b[nh] = e.Type
		nh = len(b)
		b = append(b, 0, byte((len(e.Body)+2)/8-1))
		b = append(b, e.Body...)
	}
	b[nh] = proto
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// Ethernet returns a frame carrying the IP packet ip; the EtherType follows
// the packet's version.
func Ethernet(dst, src net.HardwareAddr, ip []byte) []byte {
	b := make([]byte, 14, 14+len(ip))
	copy(b[0:], dst)
	copy(b[6:], src)
	if len(ip) > 0 && ip[0]>>4 == 6 {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
	}
	return append(b, ip...)
}

// TagBody is the 12 octets the IPv4 option and the IPv6 option share
// (docs/wire.md §2.3): TagLen=7/AI=1, reserved, 64-bit tag, epoch octet, source
// prefix length.
func TagBody(tag [8]byte, epoch, pfxLen uint8) []byte {
	b := []byte{7<<4 | 1, 0}
	b = append(b, tag[:]...)
	return append(b, epoch, pfxLen)
}

// IPv4TagOption returns the 16 octets a tagger appends to the IPv4 options:
// type 0x9E, length 14, the tag body, two NOPs.
func IPv4TagOption(tag [8]byte, epoch, pfxLen uint8) []byte {
	return append(append([]byte{0x9e, 14}, TagBody(tag, epoch, pfxLen)...), 1, 1)
}

// IPv6TagHeader returns the 16-octet Destination Options header with the
// PSAV option (type 0x3B, length 12).
func IPv6TagHeader(tag [8]byte, epoch, pfxLen uint8) IPv6Ext {
	return IPv6Ext{Type: ProtoDestOpts, Body: append([]byte{0x3b, 12}, TagBody(tag, epoch, pfxLen)...)}
}

// IPOf returns the IP packet of an Ethernet frame (no VLAN tags in the lab),
// or nil when the frame carries neither IPv4 nor IPv6.
func IPOf(frame []byte) []byte {
	if len(frame) < 14 {
		return nil
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800, 0x86dd:
		return frame[14:]
	}
	return nil
}

// Marker identifies one packet of one flow of one run. Its text form,
// "PSAVLAB<run>-<flow>-<seq>", is carried in the payload so that a sniffer
// can recognise the packet wherever it ends up, whatever headers were added.
type Marker struct {
	Flow, Seq int
}

const markerPrefix = "PSAVLAB"

// MarkerText returns the payload text of marker m of run.
func MarkerText(run string, m Marker) string {
	return fmt.Sprintf("%s%s-%03d-%05d", markerPrefix, run, m.Flow, m.Seq)
}

// Markers returns the markers of run found anywhere in b (a TCP segment may
// carry several records).
func Markers(b []byte, run string) []Marker {
	pre := []byte(markerPrefix + run + "-")
	var ms []Marker
	for {
		i := bytes.Index(b, pre)
		if i < 0 {
			return ms
		}
		b = b[i+len(pre):]
		if len(b) < 9 || b[3] != '-' {
			continue
		}
		f, err1 := strconv.Atoi(string(b[:3]))
		s, err2 := strconv.Atoi(string(b[4:9]))
		if err1 == nil && err2 == nil {
			ms = append(ms, Marker{f, s})
		}
	}
}
