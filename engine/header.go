package engine

import "encoding/binary"

// Zero-copy views of the headers the engine reads and writes, in the style of
// gVisor's tcpip/header: a view is the bytes themselves, accessors decode on
// demand. Callers check lengths before making a view (the parser does).

// Ethernet header view.
type Ethernet []byte

const (
	ethHeaderLen  = 14
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
)

// Type returns the EtherType.
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// IPv4 header view (RFC 791).
type IPv4 []byte

const (
	ipv4MinHeaderLen = 20
	ipv4MaxHeaderLen = 60
)

// HeaderLen is IHL in octets.
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TotalLength is the Total Length field.
func (h IPv4) TotalLength() int { return int(binary.BigEndian.Uint16(h[2:4])) }

// FragmentOffset is the fragment offset in 8-octet units.
func (h IPv4) FragmentOffset() int { return int(binary.BigEndian.Uint16(h[6:8]) & 0x1fff) }

// TTL is the time to live.
func (h IPv4) TTL() uint8 { return h[8] }

// Protocol is the upper-layer protocol number.
func (h IPv4) Protocol() uint8 { return h[9] }

// Src is the source address.
func (h IPv4) Src() [4]byte { return [4]byte(h[12:16]) }

// Dst is the destination address.
func (h IPv4) Dst() [4]byte { return [4]byte(h[16:20]) }

func (h IPv4) setHeaderLen(n int)   { h[0] = h[0]&0xf0 | byte(n/4) }
func (h IPv4) setTotalLength(n int) { binary.BigEndian.PutUint16(h[2:4], uint16(n)) }

// UpdateChecksum recomputes the header checksum over HeaderLen octets.
func (h IPv4) UpdateChecksum() {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:12], ^onesSum(h[:h.HeaderLen()]))
}

// ChecksumValid reports whether the header checksum verifies.
func (h IPv4) ChecksumValid() bool { return onesSum(h[:h.HeaderLen()]) == 0xffff }

// onesSum is the 16-bit one's complement sum (RFC 1071) of b, read as
// big-endian 16-bit words (a trailing odd octet is padded with zero). It adds
// 32-bit words into a 64-bit accumulator and folds once at the end.
func onesSum(b []byte) uint16 {
	var s uint64
	for len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return fold(s)
}

// fold reduces a one's complement accumulator to 16 bits.
func fold(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// adjustChecksum updates the checksum at ck (RFC 1624, eqn. 3) after words
// summing to sub were taken out of the header and words summing to add were
// put in (0: none).
func adjustChecksum(ck []byte, sub, add uint16) {
	s := uint64(^binary.BigEndian.Uint16(ck)) + uint64(add)
	if sub != 0 {
		s += uint64(^sub)
	}
	binary.BigEndian.PutUint16(ck, ^fold(s))
}

// IPv6 fixed header view (RFC 8200).
type IPv6 []byte

const ipv6HeaderLen = 40

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

func (h IPv6) setPayloadLength(n int) { binary.BigEndian.PutUint16(h[4:6], uint16(n)) }

// IPv6 extension header numbers the parser walks through.
const (
	protoHopByHop = 0
	protoICMPv6   = 58
	protoRouting  = 43
	protoFragment = 44
	protoESP      = 50
	protoAH       = 51
	protoNoNext   = 59
	protoDestOpts = 60
	protoMobility = 135
	protoHIP      = 139
	protoShim6    = 140
	protoUDP      = 17
)
