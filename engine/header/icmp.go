package header

import (
	"encoding/binary"
	"net/netip"
)

// ICMP is a view of the first 8 octets of an ICMP (RFC 792) or ICMPv6
// (RFC 4443) message, which the two lay out alike: type, code, checksum and
// four octets that depend on the type.
type ICMP []byte

// ICMPHeaderLen is the length of the common ICMP/ICMPv6 header.
const ICMPHeaderLen = 8

// ICMP and ICMPv6 types used here.
const (
	ICMPEchoReply          = 0
	ICMPDestUnreachable    = 3 // code ICMPCodeFragNeeded: Fragmentation Needed (RFC 1191)
	ICMPEchoRequest        = 8
	ICMPCodeFragNeeded     = 4
	ICMPv6PacketTooBig     = 2
	ICMPv6EchoRequest      = 128
	ICMPv6EchoReply        = 129
	ICMPv6NDPRouterSolicit = 133 // 133–137: Neighbor Discovery (RFC 4861)
	ICMPv6NDPRedirect      = 137
)

// Type is the message type.
func (m ICMP) Type() uint8 { return m[0] }

// Code is the message code.
func (m ICMP) Code() uint8 { return m[1] }

// Checksum is the checksum field.
func (m ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// Rest is the 32-bit word after the checksum (identifier and sequence
// number of an echo, next-hop MTU of Fragmentation Needed, MTU of Packet Too
// Big).
func (m ICMP) Rest() uint32 { return binary.BigEndian.Uint32(m[4:8]) }

// SetTypeCode sets the type and code.
func (m ICMP) SetTypeCode(t, c uint8) { m[0], m[1] = t, c }

// SetChecksum sets the checksum field.
func (m ICMP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(m[2:4], c) }

// SetRest sets the 32-bit word after the checksum.
func (m ICMP) SetRest(v uint32) { binary.BigEndian.PutUint32(m[4:8], v) }

// AppendICMPEcho appends an echo request from src to dst: ICMP for IPv4
// (the checksum covers the message only) or ICMPv6 for IPv6 (it covers the
// pseudo-header too).
func AppendICMPEcho(b []byte, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, ICMPHeaderLen)...)
	b = append(b, data...)
	m := ICMP(b[start:])
	m.SetRest(uint32(id)<<16 | uint32(seq))
	if src.Is4() {
		m.SetTypeCode(ICMPEchoRequest, 0)
		m.SetChecksum(^Checksum(m, 0))
	} else {
		m.SetTypeCode(ICMPv6EchoRequest, 0)
		m.SetChecksum(transportChecksum(ProtoICMPv6, src, dst, m))
	}
	return b
}
