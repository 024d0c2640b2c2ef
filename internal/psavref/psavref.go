// Package psavref is a second, deliberately independent implementation of
// the PSAV tag (docs/wire.md §2.3 tag format, §2.4 tag computation, §2.5
// state machine), written from the document and not from the engine: the
// tests and the benchmark judge psavd's tags with it and build the tagged
// packets they send with it, so that a mistake made the same way on both
// sides of one implementation still shows.
//
// It must not import the engine, and it takes nothing of PSAV from
// engine/header: only the plain IP views and the Internet checksum. It is
// not written for speed; it allocates freely.
package psavref

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dchest/siphash"

	"github.com/psavd/psavd/engine/header"
)

// The tag's wire format (docs/wire.md §2.3).
const (
	IPv4OptionType = 0x9e // copied, class 0, number 30
	IPv4OptionLen  = 14   // type, length, 12 octets of data
	IPv6OptionType = 0x3b // skip if not understood, may change en route
	IPv6OptionLen  = 12   // the option's data length
	TagLenAI       = 7<<4 | 1
	// Growth is what a tag adds to a packet: the IPv4 option and two NOPs,
	// or a Destination Options header of its own.
	Growth = 16
)

// ParseState decodes S(e0) from its 64 hex digits, as the configuration
// carries it (psav.static_peer.s0).
func ParseState(s0 string) ([32]byte, error) {
	var s [32]byte
	b, err := hex.DecodeString(s0)
	if err != nil || len(b) != len(s) {
		return s, fmt.Errorf("psavref: s0 %q is not 64 hex digits", s0)
	}
	return [32]byte(b), nil
}

// Key returns K(e), the first 16 octets of HMAC-SHA256(S(e), "psav tag
// key"), where S(e0) = s0 and S(e+1) = HMAC-SHA256(S(e), "psav state")
// (docs/wire.md §2.5). e must not be before e0.
func Key(s0 [32]byte, e0, e uint64) ([16]byte, error) {
	var k [16]byte
	if e < e0 {
		return k, fmt.Errorf("psavref: epoch %d is before the start epoch %d", e, e0)
	}
	s := s0[:]
	for ; e0 < e; e0++ {
		m := hmac.New(sha256.New, s)
		m.Write([]byte("psav state"))
		s = m.Sum(nil)
	}
	m := hmac.New(sha256.New, s)
	m.Write([]byte("psav tag key"))
	copy(k[:], m.Sum(nil))
	return k, nil
}

// Tag is the 64-bit tag of docs/wire.md §2.4: SipHash-2-4 under key (its
// halves read little-endian) of src16 ‖ dst16 ‖ first payload octet ‖
// source prefix length, IPv4 addresses as IPv4-mapped IPv6.
func Tag(key [16]byte, src, dst netip.Addr, firstOctet, pfxLen uint8) uint64 {
	s, d := src.As16(), dst.As16() // IPv4 becomes ::ffff:a.b.c.d
	msg := append(append(append(make([]byte, 0, 34), s[:]...), d[:]...), firstOctet, pfxLen)
	return siphash.Hash(binary.LittleEndian.Uint64(key[0:8]), binary.LittleEndian.Uint64(key[8:16]), msg)
}

// Body is the 12 octets the IPv4 and the IPv6 option share: TagLen = 7 and
// AI = 1 (SipHash-2-4), reserved, the tag, the epoch octet, the source
// prefix length.
func Body(tag [8]byte, epoch, pfxLen uint8) []byte {
	return append(append([]byte{TagLenAI, 0}, tag[:]...), epoch, pfxLen)
}

// IPv4Option is the 16 octets a tagger appends to the IPv4 options: option
// 0x9e of 14 octets and two NOPs.
func IPv4Option(tag [8]byte, epoch, pfxLen uint8) []byte {
	return append(append([]byte{IPv4OptionType, IPv4OptionLen}, Body(tag, epoch, pfxLen)...), 1, 1)
}

// IPv6DestOpts is the 16-octet Destination Options header that carries the
// option 0x3b alone.
func IPv6DestOpts(tag [8]byte, epoch, pfxLen uint8) header.IPv6ExtHeader {
	return header.IPv6ExtHeader{Type: header.ProtoDestOpts, Body: append([]byte{IPv6OptionType, IPv6OptionLen}, Body(tag, epoch, pfxLen)...)}
}

// Info is a PSAV tag found in an IP packet.
type Info struct {
	Body       []byte // the 12 octets TagLen/AI … prefix length
	Tag        uint64
	Epoch      uint8
	PrefixLen  uint8
	FirstOctet uint8 // first octet of the upper-layer header (0 if none)
	// Alone: the tag can be removed as a whole: the IPv4 option followed by
	// its two NOPs, or a Destination Options header of its own.
	Alone bool
	At    int // offset of the option (IPv4) or of its header (IPv6) in the packet
	Count int // PSAV options found (Find fails unless 1)
}

var errShort = errors.New("psavref: truncated packet")

// Find locates the one PSAV tag of an IP packet (Hop-by-Hop and Destination
// Options headers are walked through in IPv6). It fails on a malformed or
// truncated packet, on none or several tags, and on a TagLen/AI other than
// 7/1; it never reads outside p.
func Find(p []byte) (Info, error) {
	var ti Info
	if len(p) < 1 {
		return ti, errShort
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < header.IPv4MinHeaderLen {
			return ti, errShort
		}
		ihl := header.IPv4(p).HeaderLen()
		if ihl < header.IPv4MinHeaderLen || len(p) < ihl {
			return ti, fmt.Errorf("psavref: IPv4 header length %d of a %d-octet packet", ihl, len(p))
		}
		opts := p[header.IPv4MinHeaderLen:ihl]
	options:
		for i := 0; i < len(opts); {
			switch opts[i] {
			case 0: // end of options list
				break options
			case 1: // NOP
				i++
				continue
			}
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				return ti, fmt.Errorf("psavref: malformed IPv4 options % x", opts)
			}
			if opts[i] == IPv4OptionType {
				if opts[i+1] != IPv4OptionLen {
					return ti, fmt.Errorf("psavref: PSAV option of length %d", opts[i+1])
				}
				ti.Count++
				ti.Body = opts[i+2 : i+IPv4OptionLen]
				ti.At = header.IPv4MinHeaderLen + i
				// The tagger appends the option after the existing ones,
				// which puts it before an End of Options List and its
				// padding, if the packet had them.
				ti.Alone = i+Growth <= len(opts) && opts[i+14] == 1 && opts[i+15] == 1
			}
			i += int(opts[i+1])
		}
		if len(p) > ihl {
			ti.FirstOctet = p[ihl]
		}
	case 6:
		if len(p) < header.IPv6HeaderLen {
			return ti, errShort
		}
		nh, off := header.IPv6(p).NextHeader(), header.IPv6HeaderLen
		for nh == header.ProtoHopByHop || nh == header.ProtoDestOpts {
			if off+8 > len(p) {
				return ti, errShort
			}
			hl := (int(p[off+1]) + 1) * 8
			if off+hl > len(p) {
				return ti, errShort
			}
			if nh == header.ProtoDestOpts {
				for i := off + 2; i < off+hl; {
					if p[i] == 0 { // Pad1
						i++
						continue
					}
					if i+1 >= off+hl || i+2+int(p[i+1]) > off+hl {
						return ti, fmt.Errorf("psavref: malformed Destination Options % x", p[off:off+hl])
					}
					if p[i] == IPv6OptionType {
						if p[i+1] != IPv6OptionLen {
							return ti, fmt.Errorf("psavref: PSAV option of length %d", p[i+1])
						}
						ti.Count++
						ti.Body = p[i+2 : i+2+IPv6OptionLen]
						ti.At = off
						ti.Alone = hl == Growth && i == off+2
					}
					i += 2 + int(p[i+1])
				}
			}
			nh, off = p[off], off+hl
		}
		if len(p) > off {
			ti.FirstOctet = p[off]
		}
	default:
		return ti, fmt.Errorf("psavref: IP version %d", p[0]>>4)
	}
	if ti.Count != 1 {
		return ti, fmt.Errorf("psavref: %d PSAV tags", ti.Count)
	}
	if ti.Body[0] != TagLenAI || ti.Body[1] != 0 {
		return ti, fmt.Errorf("psavref: TagLen/AI/reserved % x, want 71 00", ti.Body[:2])
	}
	ti.Tag = binary.BigEndian.Uint64(ti.Body[2:10])
	ti.Epoch, ti.PrefixLen = ti.Body[10], ti.Body[11]
	return ti, nil
}

// Strip returns a copy of p with a tag that stands alone (Info.Alone)
// removed and the headers restored as docs/wire.md §2.3 says the tagger
// found them: options (or extension headers) before and after it, lengths,
// next header, checksum.
func Strip(p []byte) ([]byte, error) {
	ti, err := Find(p)
	if err != nil {
		return nil, err
	}
	if !ti.Alone {
		return nil, errors.New("psavref: the tag shares its option space or header with other options")
	}
	q := bytes.Clone(p)
	if q[0]>>4 == 4 {
		q = append(q[:ti.At], q[ti.At+Growth:]...)
		h := header.IPv4(q)
		h.SetHeaderLen(h.HeaderLen() - Growth)
		h.SetTotalLength(h.TotalLength() - Growth)
		h.UpdateChecksum()
		return q, nil
	}
	// The tag's header follows the IPv6 header or its Hop-by-Hop header.
	prev := 6
	if q[6] == header.ProtoHopByHop {
		prev = header.IPv6HeaderLen
	}
	if q[prev] != header.ProtoDestOpts {
		return nil, errors.New("psavref: the tag's header is not where a tagger puts it")
	}
	q[prev] = q[ti.At]
	q = append(q[:ti.At], q[ti.At+Growth:]...)
	h := header.IPv6(q)
	h.SetPayloadLength(h.PayloadLength() - Growth)
	return q, nil
}

// TagFrame returns a copy of an Ethernet frame carrying IPv4 without options
// or IPv6 without extension headers, tagged as docs/wire.md §2.3 says: the
// IPv4 option and two NOPs after the fixed header, or a Destination Options
// header of its own after the IPv6 header, with the tag of key for the
// frame's addresses and first payload octet (§2.4), the epoch's low octet
// and srcPrefixLen.
func TagFrame(frame []byte, key [16]byte, epoch uint64, srcPrefixLen uint8) ([]byte, error) {
	if len(frame) < header.EthernetHeaderLen {
		return nil, errors.New("psavref: frame too short")
	}
	ip := frame[header.EthernetHeaderLen:]
	var src, dst netip.Addr
	var hdrLen int
	switch header.Ethernet(frame).Type() {
	case header.EtherTypeIPv4:
		if len(ip) < header.IPv4MinHeaderLen || ip[0] != 0x45 || header.IPv4(ip).TotalLength() > len(ip) {
			return nil, errors.New("psavref: not an IPv4 packet without options")
		}
		h := header.IPv4(ip)
		src, dst, hdrLen = netip.AddrFrom4(h.Src()), netip.AddrFrom4(h.Dst()), header.IPv4MinHeaderLen
	case header.EtherTypeIPv6:
		if len(ip) < header.IPv6HeaderLen || ip[0]>>4 != 6 || header.IPv6HeaderLen+header.IPv6(ip).PayloadLength() > len(ip) {
			return nil, errors.New("psavref: not an IPv6 packet")
		}
		h := header.IPv6(ip)
		switch h.NextHeader() {
		case header.ProtoHopByHop, header.ProtoRouting, header.ProtoFragment, header.ProtoESP, header.ProtoAH,
			header.ProtoDestOpts, header.ProtoMobility, header.ProtoHIP, header.ProtoShim6, 253, 254:
			return nil, errors.New("psavref: IPv6 packet with extension headers")
		}
		src, dst, hdrLen = netip.AddrFrom16(h.Src()), netip.AddrFrom16(h.Dst()), header.IPv6HeaderLen
	default:
		return nil, errors.New("psavref: neither IPv4 nor IPv6")
	}
	var first byte
	if len(ip) > hdrLen {
		first = ip[hdrLen]
	}
	var tag [8]byte
	binary.BigEndian.PutUint64(tag[:], Tag(key, src, dst, first, srcPrefixLen))

	at := header.EthernetHeaderLen + hdrLen
	out := make([]byte, 0, len(frame)+Growth)
	out = append(out, frame[:at]...)
	if hdrLen == header.IPv4MinHeaderLen {
		out = append(out, IPv4Option(tag, byte(epoch), srcPrefixLen)...)
		out = append(out, frame[at:]...)
		h := header.IPv4(out[header.EthernetHeaderLen:])
		h.SetHeaderLen(header.IPv4MinHeaderLen + Growth)
		h.SetTotalLength(h.TotalLength() + Growth)
		h.UpdateChecksum()
		return out, nil
	}
	d := IPv6DestOpts(tag, byte(epoch), srcPrefixLen)
	h := header.IPv6(out[header.EthernetHeaderLen:])
	out = append(out, h.NextHeader(), Growth/8-1)
	out = append(out, d.Body...)
	out = append(out, frame[at:]...)
	h = header.IPv6(out[header.EthernetHeaderLen:])
	h.SetNextHeader(d.Type)
	h.SetPayloadLength(h.PayloadLength() + Growth)
	return out, nil
}
