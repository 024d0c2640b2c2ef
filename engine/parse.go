package engine

import (
	"encoding/binary"

	"github.com/psavd/psavd/engine/header"
)

// Frame kinds the parser tells apart.
const (
	kindOther = iota // not IPv4/IPv6 (ARP, LLDP, ...)
	kindIPv4
	kindIPv6
)

// PSAV option constants (docs/wire.md §2.3).
const (
	optTypeIPv4   = 0x9E // copied, class 0, number 30 (RFC 4727 experimental)
	optTypeIPv6   = 0x3B // skip if not understood, may change en route
	optDataLen    = 12   // TagLen/AI, reserved, tag (8), epoch, prefix length
	optLenIPv4    = 2 + optDataLen
	tagLenAI      = 0x71 // TagLen = 7 (8-octet tag), AI = 1 (SipHash-2-4)
	TagGrowth     = 16   // octets a tag adds to a packet, IPv4 and IPv6 alike
	maxExtHeaders = 12   // bound on the IPv6 extension header walk
)

// parsed is what the engine learns from one frame. It is a value in the poll
// loop's state, filled in place: the parser allocates nothing.
type parsed struct {
	kind   uint8
	isFrag bool // a non-first fragment: no upper-layer header to read
	// linkScope marks frames that never leave their link (NDP, link-local,
	// multicast, unspecified source): in cross-connect mode they are carried
	// across unchanged, in routed mode they are not ours to forward.
	linkScope  bool
	firstOctet byte // first octet of the upper-layer header, 0 if none (§2.4)

	l3    int // offset of the IP header
	l3End int // offset just past the IP packet; bytes after it are L2 padding

	// IPv4: hdrEnd = l3 + IHL; insAt = where a new option goes (before an
	// End-of-Options-List, else at the end of the options).
	// IPv6: hdrEnd = the insertion point of §2.3 (after the fixed header and
	// a Hop-by-Hop header if any); nhOff = offset of the Next Header octet
	// naming what stands at hdrEnd; dOptLen = length of a Destination Options
	// header standing at hdrEnd (0 if none).
	hdrEnd  int
	insAt   int
	nhOff   int
	dOptLen int
	optOff  int // offset of the PSAV option's type octet, -1 if none

	src, dst [16]byte // IPv4 as IPv4-mapped IPv6
}

// parse fills p from frame. It returns false for a malformed IP packet (a
// length that does not fit, a truncated header or option); non-IP frames
// parse fine as kindOther. It never reads outside frame.
func (p *parsed) parse(frame []byte) bool {
	p.kind, p.isFrag, p.linkScope, p.firstOctet = kindOther, false, false, 0
	p.optOff, p.dOptLen, p.nhOff = -1, 0, 0
	if len(frame) < header.EthernetHeaderLen {
		return false
	}
	switch header.Ethernet(frame).Type() {
	case header.EtherTypeIPv4:
		return p.parseIPv4(frame)
	case header.EtherTypeIPv6:
		return p.parseIPv6(frame)
	}
	return true
}

func (p *parsed) parseIPv4(frame []byte) bool {
	p.kind = kindIPv4
	p.l3 = header.EthernetHeaderLen
	if len(frame) < p.l3+header.IPv4MinHeaderLen {
		return false
	}
	h := header.IPv4(frame[p.l3:])
	ihl := h.HeaderLen()
	total := h.TotalLength()
	if h.Version() != 4 || ihl < header.IPv4MinHeaderLen || total < ihl || total > len(h) {
		return false
	}
	// RFC 1812 §5.2.2: a router discards a header whose checksum fails.
	// This also keeps tagging reversible: the engine recomputes the checksum
	// when it adds or strips a tag, which restores the sender's value only
	// if that value was right.
	if !h.ChecksumValid() {
		return false
	}
	p.l3End = p.l3 + total
	p.hdrEnd = p.l3 + ihl
	// IPv4-mapped (::ffff:a.b.c.d), written as two words each: the
	// look-ups and SipHash read the addresses as words, and a word load
	// over narrower stores (12 octets, then 4) cannot be forwarded from
	// them and stalls (seen in psavd under load: most of a look-up's time).
	mapped := func(a []byte) uint64 { return 0xffff0000 | uint64(binary.LittleEndian.Uint32(a))<<32 }
	binary.LittleEndian.PutUint64(p.src[:8], 0)
	binary.LittleEndian.PutUint64(p.src[8:], mapped(h[12:16]))
	binary.LittleEndian.PutUint64(p.dst[:8], 0)
	binary.LittleEndian.PutUint64(p.dst[8:], mapped(h[16:20]))
	p.linkScope = h[16]&0xf0 == 0xe0 || // multicast 224/4
		(h[16] == 255 && h[17] == 255 && h[18] == 255 && h[19] == 255) ||
		(h[12] == 169 && h[13] == 254) || // link-local source
		(h[12]|h[13]|h[14]|h[15]) == 0 // 0.0.0.0 (DHCP)

	// Options: find the PSAV option and where a new option would go.
	p.insAt = p.hdrEnd
	for i := p.l3 + header.IPv4MinHeaderLen; i < p.hdrEnd; {
		switch t := frame[i]; t {
		case 0: // End of Options List: what follows is padding
			p.insAt = i
			i = p.hdrEnd
		case 1: // NOP
			i++
		default:
			if i+1 >= p.hdrEnd {
				return false
			}
			n := int(frame[i+1])
			if n < 2 || i+n > p.hdrEnd {
				return false
			}
			if t == optTypeIPv4 && n == optLenIPv4 && p.optOff < 0 {
				p.optOff = i
			}
			i += n
		}
	}
	if h.FragmentOffset() != 0 {
		p.isFrag = true
	} else if p.hdrEnd < p.l3End {
		p.firstOctet = frame[p.hdrEnd]
	}
	return true
}

func (p *parsed) parseIPv6(frame []byte) bool {
	p.kind = kindIPv6
	p.l3 = header.EthernetHeaderLen
	if len(frame) < p.l3+header.IPv6HeaderLen {
		return false
	}
	h := header.IPv6(frame[p.l3:])
	if h.Version() != 6 || header.IPv6HeaderLen+h.PayloadLength() > len(h) {
		return false // payload length 0 with a jumbogram is not supported
	}
	p.l3End = p.l3 + header.IPv6HeaderLen + h.PayloadLength()
	copy(p.src[:], h[8:24])
	copy(p.dst[:], h[24:40])
	p.linkScope = p.dst[0] == 0xff || // multicast
		(p.src[0] == 0xfe && p.src[1]&0xc0 == 0x80) || // fe80::/10 source
		(p.dst[0] == 0xfe && p.dst[1]&0xc0 == 0x80) ||
		p.src == [16]byte{} // unspecified (DAD)

	nh := h.NextHeader()
	off := p.l3 + header.IPv6HeaderLen
	p.nhOff = p.l3 + 6
	p.hdrEnd = off
	for n := 0; ; n++ {
		if n == maxExtHeaders {
			return false
		}
		switch nh {
		case header.ProtoHopByHop, header.ProtoRouting, header.ProtoDestOpts, header.ProtoMobility, header.ProtoHIP, header.ProtoShim6, header.ProtoFragment, header.ProtoAH:
			if off+8 > p.l3End {
				return false
			}
			var hlen int
			switch nh {
			case header.ProtoFragment:
				hlen = 8
				if binary.BigEndian.Uint16(frame[off+2:off+4])>>3 != 0 {
					p.isFrag = true
				}
			case header.ProtoAH:
				hlen = (int(frame[off+1]) + 2) * 4
			default:
				hlen = (int(frame[off+1]) + 1) * 8
			}
			if off+hlen > p.l3End {
				return false
			}
			if nh == header.ProtoHopByHop {
				if n != 0 {
					return false // RFC 8200: Hop-by-Hop only right after the IPv6 header
				}
				p.nhOff, p.hdrEnd = off, off+hlen
			}
			if nh == header.ProtoDestOpts && off == p.hdrEnd {
				p.dOptLen = hlen
				if !p.scanDestOpts(frame, off, off+hlen) {
					return false
				}
			}
			nh = frame[off]
			off += hlen
			if p.isFrag {
				return true // what follows a non-first fragment's header is data
			}
		case header.ProtoNoNext:
			return true
		default: // upper layer (ESP counts: its first octet is what we can see)
			if nh == header.ProtoICMPv6 && off < p.l3End {
				if t := frame[off]; t >= 133 && t <= 137 {
					p.linkScope = true // NDP (RFC 4861) is link-scoped
				}
			}
			if off < p.l3End {
				p.firstOctet = frame[off]
			}
			return true
		}
	}
}

// scanDestOpts walks the options of the Destination Options header at
// [start, end) and records the PSAV option.
func (p *parsed) scanDestOpts(frame []byte, start, end int) bool {
	for i := start + 2; i < end; {
		t := frame[i]
		if t == 0 { // Pad1
			i++
			continue
		}
		if i+1 >= end {
			return false
		}
		n := 2 + int(frame[i+1])
		if i+n > end {
			return false
		}
		if t == optTypeIPv6 && n == 2+optDataLen && p.optOff < 0 {
			p.optOff = i
		}
		i += n
	}
	return true
}
