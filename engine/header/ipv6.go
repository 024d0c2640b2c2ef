package header

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IPv6 is a view of the IPv6 fixed header (RFC 8200).
type IPv6 []byte

// IPv6HeaderLen is the length of the IPv6 fixed header.
const IPv6HeaderLen = 40

// IP protocol numbers (IPv4 Protocol, IPv6 Next Header), upper layers and
// the IPv6 extension headers.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDestOpts = 60
	ProtoMobility = 135
	ProtoHIP      = 139
	ProtoShim6    = 140
)

// Version is the version field (6).
func (h IPv6) Version() uint8 { return h[0] >> 4 }

// TrafficClass is the traffic class octet.
func (h IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(h[0:2]) >> 4) }

// FlowLabel is the 20-bit flow label.
func (h IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(h[0:4]) & 0xfffff }

// PayloadLength is the Payload Length field.
func (h IPv6) PayloadLength() int { return int(binary.BigEndian.Uint16(h[4:6])) }

// NextHeader is the Next Header field.
func (h IPv6) NextHeader() uint8 { return h[6] }

// HopLimit is the hop limit.
func (h IPv6) HopLimit() uint8 { return h[7] }

// Src is the source address.
func (h IPv6) Src() [16]byte { return [16]byte(h[8:24]) }

// Dst is the destination address.
func (h IPv6) Dst() [16]byte { return [16]byte(h[24:40]) }

// SetVersionClassFlow sets version 6, the traffic class and the flow label.
func (h IPv6) SetVersionClassFlow(class uint8, flow uint32) {
	binary.BigEndian.PutUint32(h[0:4], 6<<28|uint32(class)<<20|flow&0xfffff)
}

// SetPayloadLength sets the Payload Length field.
func (h IPv6) SetPayloadLength(n int) { binary.BigEndian.PutUint16(h[4:6], uint16(n)) }

// SetNextHeader sets the Next Header field.
func (h IPv6) SetNextHeader(v uint8) { h[6] = v }

// SetHopLimit sets the hop limit.
func (h IPv6) SetHopLimit(v uint8) { h[7] = v }

// SetSrc sets the source address.
func (h IPv6) SetSrc(a [16]byte) { copy(h[8:24], a[:]) }

// SetDst sets the destination address.
func (h IPv6) SetDst(a [16]byte) { copy(h[24:40], a[:]) }

// PseudoHeaderChecksum is the sum of the pseudo-header of an upper-layer
// packet of proto and length octets carried by this header (its final
// destination: no Routing header is taken into account).
func (h IPv6) PseudoHeaderChecksum(proto uint8, length int) uint16 {
	return Checksum(h[8:40], Fold(uint64(proto)+uint64(length)))
}

// IPv6ExtHeader is an IPv6 extension header to build: Type is its protocol
// number (ProtoHopByHop, ProtoDestOpts, ProtoRouting) and Body the octets
// after Next Header and Hdr Ext Len; len(Body)+2 must be a multiple of 8.
type IPv6ExtHeader struct {
	Type uint8
	Body []byte
}

// IPv6Fields are the fields of an IPv6 header to build; the payload length
// and the Next Header chain are computed.
type IPv6Fields struct {
	TrafficClass uint8
	FlowLabel    uint32
	HopLimit     uint8
	NextHeader   uint8 // the upper layer, after Ext
	Src, Dst     netip.Addr
	Ext          []IPv6ExtHeader // in order, after the fixed header
}

// AppendIPv6Header appends an IPv6 header and its extension headers for an
// upper-layer packet of payloadLen octets that the caller appends next.
func AppendIPv6Header(b []byte, f IPv6Fields, payloadLen int) []byte {
	if !f.Src.Is6() || !f.Dst.Is6() {
		panic(fmt.Sprintf("header: IPv6 header from %v to %v", f.Src, f.Dst))
	}
	start := len(b)
	b = append(b, make([]byte, IPv6HeaderLen)...)
	h := IPv6(b[start:])
	h.SetVersionClassFlow(f.TrafficClass, f.FlowLabel)
	h.SetHopLimit(f.HopLimit)
	h.SetSrc(f.Src.As16())
	h.SetDst(f.Dst.As16())
	nh := start + 6 // the Next Header octet to fill in
	for _, e := range f.Ext {
		if (len(e.Body)+2)%8 != 0 || len(e.Body)+2 > 256*8 {
			panic(fmt.Sprintf("header: IPv6 extension header body of %d octets", len(e.Body)))
		}
		b[nh] = e.Type
		nh = len(b)
		b = append(b, 0, byte((len(e.Body)+2)/8-1))
		b = append(b, e.Body...)
	}
	b[nh] = f.NextHeader
	n := len(b) - start - IPv6HeaderLen + payloadLen
	if payloadLen < 0 || n > 0xffff {
		panic(fmt.Sprintf("header: IPv6 payload of %d octets", n))
	}
	IPv6(b[start:]).SetPayloadLength(n)
	return b
}

// AppendIPv6 appends an IPv6 packet: the headers of f, then payload.
func AppendIPv6(b []byte, f IPv6Fields, payload []byte) []byte {
	return append(AppendIPv6Header(b, f, len(payload)), payload...)
}
