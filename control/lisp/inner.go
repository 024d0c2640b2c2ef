package lisp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/psavd/psavd/engine/header"
)

// InnerHeader is the IP and UDP header an ECM wraps around its inner
// message. Source and Destination must be of the same family.
type InnerHeader struct {
	Source      netip.AddrPort
	Destination netip.AddrPort
	TTL         uint8 // IPv4 TTL or IPv6 hop limit
}

// AppendInnerIPUDP appends an IPv4 or IPv6 header and a UDP header for
// payload, then payload itself. Lengths, the IPv4 header checksum and the
// UDP checksum (for both families) are computed.
func AppendInnerIPUDP(b []byte, h InnerHeader, payload []byte) ([]byte, error) {
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return b, fmt.Errorf("%w: inner header %v -> %v", ErrInvalid, h.Source, h.Destination)
	}
	if src.Zone() != "" || dst.Zone() != "" {
		return b, fmt.Errorf("%w: inner header with IPv6 zone", ErrInvalid)
	}
	udpLen := header.UDPHeaderLen + len(payload)
	if src.Is4() {
		if header.IPv4MinHeaderLen+udpLen > 0xffff {
			return b, fmt.Errorf("%w: inner packet of %d octets", ErrInvalid, header.IPv4MinHeaderLen+udpLen)
		}
		b = header.AppendIPv4Header(b, header.IPv4Fields{TTL: h.TTL, Protocol: header.ProtoUDP, Src: src, Dst: dst}, udpLen)
	} else {
		if udpLen > 0xffff {
			return b, fmt.Errorf("%w: inner payload of %d octets", ErrInvalid, udpLen)
		}
		b = header.AppendIPv6Header(b, header.IPv6Fields{HopLimit: h.TTL, NextHeader: header.ProtoUDP, Src: src, Dst: dst}, udpLen)
	}
	return header.AppendUDP(b, src, dst, h.Source.Port(), h.Destination.Port(), payload), nil
}

// ParseInnerIPUDP decodes the inner IP and UDP headers of an ECM and returns
// the UDP payload. The IP packet must fill b exactly; IPv4 fragments, IPv6
// extension headers and non-UDP payloads are refused; the IPv4 header
// checksum must verify; the UDP checksum must verify when non-zero. A zero
// UDP checksum is accepted for IPv6 too: lispers.net sends its ECMs so, and
// RFC 6935/6936 allow it for tunnel protocols (the ECM's outer UDP and the
// signed or nonce-matched message inside carry the integrity).
func ParseInnerIPUDP(b []byte) (InnerHeader, []byte, error) {
	var h InnerHeader
	if len(b) < 1 {
		return h, nil, fmt.Errorf("%w: no inner IP header", ErrTruncated)
	}
	var src, dst netip.Addr
	var rest []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0xf) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return h, nil, fmt.Errorf("%w: inner IPv4 header", ErrTruncated)
		}
		if tl := int(binary.BigEndian.Uint16(b[2:])); tl != len(b) {
			return h, nil, fmt.Errorf("%w: inner IPv4 total length %d, have %d octets", ErrMalformed, tl, len(b))
		}
		if !header.IPv4(b).ChecksumValid() {
			return h, nil, fmt.Errorf("%w: inner IPv4 header checksum", ErrMalformed)
		}
		if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			return h, nil, fmt.Errorf("%w: inner IPv4 fragment", ErrMalformed)
		}
		if b[9] != header.ProtoUDP {
			return h, nil, fmt.Errorf("%w: inner IPv4 protocol %d", ErrMalformed, b[9])
		}
		h.TTL = b[8]
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		rest = b[ihl:]
	case 6:
		if len(b) < 40 {
			return h, nil, fmt.Errorf("%w: inner IPv6 header", ErrTruncated)
		}
		if pl := int(binary.BigEndian.Uint16(b[4:])); pl != len(b)-40 {
			return h, nil, fmt.Errorf("%w: inner IPv6 payload length %d, have %d octets", ErrMalformed, pl, len(b)-40)
		}
		if b[6] != header.ProtoUDP {
			return h, nil, fmt.Errorf("%w: inner IPv6 next header %d", ErrMalformed, b[6])
		}
		h.TTL = b[7]
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		rest = b[40:]
	default:
		return h, nil, fmt.Errorf("%w: inner IP version %d", ErrMalformed, b[0]>>4)
	}
	if len(rest) < 8 {
		return h, nil, fmt.Errorf("%w: inner UDP header", ErrTruncated)
	}
	if ul := int(binary.BigEndian.Uint16(rest[4:])); ul != len(rest) {
		return h, nil, fmt.Errorf("%w: inner UDP length %d, have %d octets", ErrMalformed, ul, len(rest))
	}
	switch ck := binary.BigEndian.Uint16(rest[6:]); {
	case ck != 0 && header.Checksum(rest, header.PseudoHeaderChecksum(header.ProtoUDP, src, dst, len(rest))) != 0xffff:
		return h, nil, fmt.Errorf("%w: inner UDP checksum", ErrMalformed)
	}
	h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[0:]))
	h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[2:]))
	return h, rest[8:], nil
}
