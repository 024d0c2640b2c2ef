package header

import (
	"encoding/binary"
	"net/netip"
)

// Checksum returns the 16-bit one's complement sum (RFC 1071) of b added to
// initial, b read as big-endian 16-bit words with an odd trailing octet
// padded with zero. It is the sum, not its complement: a header whose
// checksum field holds ^Checksum(header with the field zero, 0) sums to
// 0xffff. A partial sum of data at an even offset can be passed on as
// initial.
//
// It adds 32-bit words into a 64-bit accumulator and folds once at the end.
func Checksum(b []byte, initial uint16) uint16 {
	s := uint64(initial)
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
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
	return Fold(s)
}

// Fold reduces an accumulator of 16-bit (or 32-bit) big-endian words to
// their 16-bit one's complement sum, for callers that add the words of
// values they hold rather than of octets in memory.
func Fold(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// ChecksumCombine returns the one's complement sum of two partial sums.
func ChecksumCombine(a, b uint16) uint16 { return Fold(uint64(a) + uint64(b)) }

// ChecksumUpdate returns the checksum field value ck updated incrementally
// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')) after words whose one's
// complement sum is removed were taken out of the covered data and words
// summing to added were put in (0: none). Words that moved to an odd offset
// must be given byte-swapped.
func ChecksumUpdate(ck, removed, added uint16) uint16 {
	return ^Fold(uint64(^ck) + uint64(^removed) + uint64(added))
}

// PseudoHeaderChecksum returns the one's complement sum of the pseudo-header
// that the UDP, TCP and ICMPv6 checksums cover: source and destination
// address, protocol (IPv6: next header) and the upper-layer length (RFC 768,
// RFC 9293 §3.1, RFC 8200 §8.1). src and dst must be of one family; an
// IPv4-mapped IPv6 address counts as IPv6.
func PseudoHeaderChecksum(proto uint8, src, dst netip.Addr, length int) uint16 {
	s := uint64(proto) + uint64(length)&0xffffffff
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s += uint64(binary.BigEndian.Uint32(a[:])) + uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		a, b := src.As16(), dst.As16()
		s += uint64(Checksum(a[:], 0)) + uint64(Checksum(b[:], 0))
	}
	return Fold(s)
}

// transportChecksum is the checksum field value of the upper-layer packet
// l4 (its checksum field zero) under the pseudo-header of src, dst, proto.
func transportChecksum(proto uint8, src, dst netip.Addr, l4 []byte) uint16 {
	return ^Checksum(l4, PseudoHeaderChecksum(proto, src, dst, len(l4)))
}
