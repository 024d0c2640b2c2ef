package engine

import (
	"encoding/binary"
	"math/bits"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// ComputeTag is docs/wire.md §2.4:
//
//	tag = SipHash-2-4(K(e), src16 ‖ dst16 ‖ first_payload_octet ‖ src_prefix_len)
//
// src and dst are 16 octets (IPv4 as IPv4-mapped IPv6).
//
// The message always has this 34-octet shape, so SipHash is written out for
// it: four message words read straight from the addresses, the two tail
// octets and the length in the final block. Nothing is copied into a
// message buffer and there is no loop or tail switch; it is the reference
// SipHash (github.com/dchest/siphash, internal/psavref) word for word, which
// TestComputeTagIsSipHash checks on random inputs.
func ComputeTag(k0, k1 uint64, src, dst *[16]byte, firstOctet, srcPrefixLen byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	m := binary.LittleEndian.Uint64(src[0:8])
	v3 ^= m
	v0, v1, v2, v3 = sipRound(sipRound(v0, v1, v2, v3))
	v0 ^= m
	m = binary.LittleEndian.Uint64(src[8:16])
	v3 ^= m
	v0, v1, v2, v3 = sipRound(sipRound(v0, v1, v2, v3))
	v0 ^= m
	m = binary.LittleEndian.Uint64(dst[0:8])
	v3 ^= m
	v0, v1, v2, v3 = sipRound(sipRound(v0, v1, v2, v3))
	v0 ^= m
	m = binary.LittleEndian.Uint64(dst[8:16])
	v3 ^= m
	v0, v1, v2, v3 = sipRound(sipRound(v0, v1, v2, v3))
	v0 ^= m
	m = 34<<56 | uint64(srcPrefixLen)<<8 | uint64(firstOctet) // length and tail
	v3 ^= m
	v0, v1, v2, v3 = sipRound(sipRound(v0, v1, v2, v3))
	v0 ^= m
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(sipRound(sipRound(sipRound(v0, v1, v2, v3))))
	return v0 ^ v1 ^ v2 ^ v3
}

// sipRound is one SipRound of the SipHash paper.
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13) ^ v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16) ^ v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21) ^ v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17) ^ v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// writeOptData writes the 12 data octets of a PSAV option at b.
func writeOptData(b []byte, tag uint64, epoch, pfxLen byte) {
	_ = b[11]
	b[0] = tagLenAI
	b[1] = 0
	binary.BigEndian.PutUint64(b[2:10], tag)
	b[10] = epoch
	b[11] = pfxLen
}

// optData returns the 12 data octets of the parsed packet's PSAV option.
func optData(frame []byte, p *parsed) []byte { return frame[p.optOff+2 : p.optOff+2+optDataLen] }

// grow opens a gap of TagGrowth octets at offset at of the frame by moving
// the octets before it backwards into the headroom (the caller checked that
// there is room: pkt.Off >= TagGrowth).
func grow(pkt *ports.Packet, at int) {
	start := pkt.Off
	copy(pkt.Buf[start-TagGrowth:], pkt.Buf[start:start+at])
	pkt.Off -= TagGrowth
	pkt.Len += TagGrowth
}

// shrink removes TagGrowth octets at offset at by moving the octets before
// them forwards.
func shrink(pkt *ports.Packet, at int) {
	start := pkt.Off
	copy(pkt.Buf[start+TagGrowth:], pkt.Buf[start:start+at])
	pkt.Off += TagGrowth
	pkt.Len -= TagGrowth
}

// optSumIPv4 is the sum, not yet folded, of the 16-bit words of the 16
// octets insertTag adds to an IPv4 header, computed from the values rather
// than read back from the octets just written (which would stall on store
// forwarding). It stays below 2^19.
func optSumIPv4(tag uint64, epoch, pfxLen byte) uint64 {
	return uint64(optTypeIPv4)<<8 + optLenIPv4 + tagLenAI<<8 +
		tag>>48 + tag>>32&0xffff + tag>>16&0xffff + tag&0xffff +
		uint64(epoch)<<8 + uint64(pfxLen) + 0x0101
}

// insertTag adds a PSAV tag to the parsed packet (docs/wire.md §2.3); the packet
// must carry no PSAV option yet. It returns false when the tag does not fit
// (IPv4 options would pass 40 octets, the length field would overflow, or the
// buffer has no headroom); the packet is then unchanged. L2 padding after the
// IP packet is dropped first.
func insertTag(pkt *ports.Packet, p *parsed, tag uint64, epoch, pfxLen byte) bool {
	if pkt.Off < TagGrowth {
		return false
	}
	f := pkt.Buf[pkt.Off : pkt.Off+p.l3End]
	switch p.kind {
	case kindIPv4:
		h := header.IPv4(f[p.l3:])
		ihl, total := h.HeaderLen(), h.TotalLength()
		if ihl+TagGrowth > header.IPv4MaxHeaderLen || total+TagGrowth > 0xffff {
			return false
		}
		// The parser verified the checksum, so it is updated incrementally
		// (RFC 1624): IHL grows by 4 words (+0x0400 in word 0), the total
		// length by 16 (word 1), and the option's words are added — byte-
		// swapped if the option starts at an odd offset of the header.
		// One fold for the whole update: HC' = ~(~HC + added), the
		// words added summed unfolded (a fold is a chain of dependent
		// adds; three of them were a tenth of a tag add).
		added := optSumIPv4(tag, epoch, pfxLen)
		if (p.insAt-p.l3)&1 != 0 {
			a := header.Fold(added)
			added = uint64(a<<8 | a>>8)
		}
		ck := ^header.Fold(uint64(^h.Checksum()) + 0x0400 + TagGrowth + added)
		at := p.insAt
		pkt.Len = p.l3End
		// The header moves first and its fields are written after, in
		// place: written before, the move's wide loads would wait on the
		// narrow stores (a store-forwarding stall, ~6 ns a packet).
		grow(pkt, at)
		h = header.IPv4(pkt.Buf[pkt.Off+p.l3 : pkt.Off+at])
		h.SetChecksum(ck)
		h.SetHeaderLen(ihl + TagGrowth)
		h.SetTotalLength(total + TagGrowth)
		o := pkt.Buf[pkt.Off+at : pkt.Off+at+TagGrowth]
		o[0], o[1] = optTypeIPv4, optLenIPv4
		writeOptData(o[2:14], tag, epoch, pfxLen)
		o[14], o[15] = 1, 1 // two NOPs keep the header a multiple of 4 octets
	case kindIPv6:
		h := header.IPv6(f[p.l3:])
		payload := h.PayloadLength()
		if payload+TagGrowth > 0xffff {
			return false
		}
		at := p.hdrEnd // a new Destination Options header goes here …
		if p.dOptLen != 0 {
			at += p.dOptLen // … or the option is appended to the one that stands here
			if f[p.hdrEnd+1] > 253 {
				return false
			}
		}
		nh := f[p.nhOff]
		pkt.Len = p.l3End
		grow(pkt, at) // first, then the fields (see IPv4)
		f = pkt.Buf[pkt.Off : pkt.Off+pkt.Len]
		if p.dOptLen == 0 {
			f[p.nhOff] = header.ProtoDestOpts
		} else {
			f[p.hdrEnd+1] += 2
		}
		header.IPv6(f[p.l3:]).SetPayloadLength(payload + TagGrowth)
		o := f[at : at+TagGrowth]
		if p.dOptLen == 0 {
			o[0], o[1] = nh, 1 // Next Header, Hdr Ext Len = 1 (16 octets)
		} else {
			o[0], o[1] = 1, 0 // PadN with no data: keeps the option at the same alignment
		}
		o[2], o[3] = optTypeIPv6, optDataLen
		writeOptData(o[4:16], tag, epoch, pfxLen)
	default:
		return false
	}
	return true
}

// stripTag removes the parsed packet's PSAV option, restoring the packet as
// it was before insertTag added it, octet for octet. An option that another
// encoder placed where insertTag would not have is overwritten with padding
// instead (the packet stays valid; it cannot be restored exactly).
func stripTag(pkt *ports.Packet, p *parsed) {
	pkt.Len = p.l3End
	f := pkt.Frame()
	o := p.optOff
	switch p.kind {
	case kindIPv4:
		h := header.IPv4(f[p.l3:])
		if o+TagGrowth <= p.hdrEnd && f[o+14] == 1 && f[o+15] == 1 {
			// Incremental checksum, the reverse of insertTag's: the option's
			// 16 octets (summed from two loads) and the growth of IHL (4
			// words: 0x0400 in word 0) and of the total length (16, word 1)
			// come off. Neither field borrows: the option is inside both.
			// Two folds: the words removed (folded before the one's
			// complement negation), then HC' = ~(~HC + ~removed).
			a, b := binary.BigEndian.Uint64(f[o:o+8]), binary.BigEndian.Uint64(f[o+8:o+16])
			opt := a>>32 + a&0xffffffff + b>>32 + b&0xffffffff
			var removed uint16
			if (o-p.l3)&1 != 0 {
				r := header.Fold(opt)
				removed = header.Fold(0x0400 + TagGrowth + uint64(r<<8|r>>8))
			} else {
				removed = header.Fold(0x0400 + TagGrowth + opt)
			}
			ck := header.ChecksumUpdate(h.Checksum(), removed, 0)
			ihl, total := h.HeaderLen(), h.TotalLength()
			// The header moves first and its fields are written after
			// (see insertTag: no store-forwarding stall).
			shrink(pkt, o)
			h = header.IPv4(pkt.Buf[pkt.Off+p.l3 : pkt.Off+o])
			h.SetChecksum(ck)
			h.SetHeaderLen(ihl - TagGrowth)
			h.SetTotalLength(total - TagGrowth)
		} else {
			for i := o; i < o+optLenIPv4; i++ {
				f[i] = 1 // NOP
			}
			h.UpdateChecksum()
		}
	case kindIPv6:
		h := header.IPv6(f[p.l3:])
		payload := h.PayloadLength()
		switch {
		case p.dOptLen == TagGrowth && o == p.hdrEnd+2:
			// The header holds only our option: remove it whole (the
			// move first, then the fields, as for IPv4).
			nh := f[p.hdrEnd]
			shrink(pkt, p.hdrEnd)
			f = pkt.Frame()
			f[p.nhOff] = nh
			header.IPv6(f[p.l3:]).SetPayloadLength(payload - TagGrowth)
		case o == p.hdrEnd+p.dOptLen-(2+optDataLen) && f[o-2] == 1 && f[o-1] == 0:
			// PadN(0) + our option appended at the end of the header.
			shrink(pkt, o-2)
			f = pkt.Frame()
			f[p.hdrEnd+1] -= 2
			header.IPv6(f[p.l3:]).SetPayloadLength(payload - TagGrowth)
		default:
			f[o], f[o+1] = 1, optDataLen // PadN over the whole option
			clear(f[o+2 : o+2+optDataLen])
		}
	}
}
