package engine

import (
	"encoding/binary"

	"github.com/dchest/siphash"
)

// ComputeTag is DESIGN §2.4:
//
//	tag = SipHash-2-4(K(e), src16 ‖ dst16 ‖ first_payload_octet ‖ src_prefix_len)
//
// src and dst are 16 octets (IPv4 as IPv4-mapped IPv6).
func ComputeTag(k0, k1 uint64, src, dst *[16]byte, firstOctet, srcPrefixLen byte) uint64 {
	var msg [34]byte
	copy(msg[0:16], src[:])
	copy(msg[16:32], dst[:])
	msg[32] = firstOctet
	msg[33] = srcPrefixLen
	return siphash.Hash(k0, k1, msg[:])
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
// the octets before it backwards into the headroom. It returns false when the
// buffer has no room in front.
func grow(pkt *packetRef, at int) bool {
	if *pkt.off < TagGrowth {
		return false
	}
	start := *pkt.off
	copy(pkt.buf[start-TagGrowth:], pkt.buf[start:start+at])
	*pkt.off -= TagGrowth
	*pkt.len += TagGrowth
	return true
}

// shrink removes TagGrowth octets at offset at by moving the octets before
// them forwards.
func shrink(pkt *packetRef, at int) {
	start := *pkt.off
	copy(pkt.buf[start+TagGrowth:], pkt.buf[start:start+at])
	*pkt.off += TagGrowth
	*pkt.len -= TagGrowth
}

// packetRef points at the offset and length of a ports.Packet, so that the
// codec can be used on packets and on plain buffers alike.
type packetRef struct {
	buf []byte
	off *int
	len *int
}

func (r packetRef) frame() []byte { return r.buf[*r.off : *r.off+*r.len] }

// insertTag adds a PSAV tag to the parsed packet (DESIGN §2.3); the packet
// must carry no PSAV option yet. It returns false when the tag does not fit
// (IPv4 options would pass 40 octets, or no headroom); the packet is then
// unchanged. L2 padding after the IP packet is dropped first.
func insertTag(r packetRef, p *parsed, tag uint64, epoch, pfxLen byte) bool {
	*r.len = p.l3End
	f := r.frame()
	switch p.kind {
	case kindIPv4:
		h := IPv4(f[p.l3:])
		ihl := h.HeaderLen()
		if ihl+TagGrowth > ipv4MaxHeaderLen || *r.off < TagGrowth {
			return false
		}
		// The parser verified the checksum, so it can be updated
		// incrementally: words 0–1 (IHL, total length) change and the option
		// adds its words — at an even offset from the header start, or its
		// octets land in the other half of each word.
		before := onesSum(h[0:4])
		h.setHeaderLen(ihl + TagGrowth)
		h.setTotalLength(h.TotalLength() + TagGrowth)
		after := onesSum(h[0:4])
		at := p.insAt
		grow(&r, at)
		f = r.frame()
		o := f[at : at+TagGrowth]
		o[0], o[1] = optTypeIPv4, optLenIPv4
		writeOptData(o[2:14], tag, epoch, pfxLen)
		o[14], o[15] = 1, 1 // two NOPs keep the header a multiple of 4 octets
		added := onesSum(o)
		if (at-p.l3)&1 != 0 {
			added = added<<8 | added>>8
		}
		adjustChecksum(f[p.l3+10:p.l3+12], before, fold(uint64(after)+uint64(added)))
	case kindIPv6:
		var at int
		if p.dOptLen == 0 {
			at = p.hdrEnd // a new Destination Options header goes here
		} else {
			at = p.hdrEnd + p.dOptLen // append to the one that stands here
			if f[p.hdrEnd+1] > 253 {
				return false
			}
		}
		if *r.off < TagGrowth {
			return false
		}
		nh := f[p.nhOff]
		if p.dOptLen == 0 {
			f[p.nhOff] = protoDestOpts
		} else {
			f[p.hdrEnd+1] += 2
		}
		h := IPv6(f[p.l3:])
		h.setPayloadLength(h.PayloadLength() + TagGrowth)
		grow(&r, at)
		f = r.frame()
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
func stripTag(r packetRef, p *parsed) {
	*r.len = p.l3End
	f := r.frame()
	o := p.optOff
	switch p.kind {
	case kindIPv4:
		h := IPv4(f[p.l3:])
		if o+TagGrowth <= p.hdrEnd && f[o+14] == 1 && f[o+15] == 1 {
			// Incremental checksum, the reverse of insertTag's.
			removed := onesSum(f[o : o+TagGrowth])
			if (o-p.l3)&1 != 0 {
				removed = removed<<8 | removed>>8
			}
			before := onesSum(h[0:4])
			h.setHeaderLen(h.HeaderLen() - TagGrowth)
			h.setTotalLength(h.TotalLength() - TagGrowth)
			adjustChecksum(h[10:12], fold(uint64(before)+uint64(removed)), onesSum(h[0:4]))
			shrink(&r, o)
		} else {
			for i := o; i < o+optLenIPv4; i++ {
				f[i] = 1 // NOP
			}
			h.UpdateChecksum()
		}
	case kindIPv6:
		h := IPv6(f[p.l3:])
		payload := h.PayloadLength()
		switch {
		case p.dOptLen == TagGrowth && o == p.hdrEnd+2:
			// The header holds only our option: remove it whole.
			f[p.nhOff] = f[p.hdrEnd]
			h.setPayloadLength(payload - TagGrowth)
			shrink(&r, p.hdrEnd)
		case o == p.hdrEnd+p.dOptLen-(2+optDataLen) && f[o-2] == 1 && f[o-1] == 0:
			// PadN(0) + our option appended at the end of the header.
			f[p.hdrEnd+1] -= 2
			h.setPayloadLength(payload - TagGrowth)
			shrink(&r, o-2)
		default:
			f[o], f[o+1] = 1, optDataLen // PadN over the whole option
			clear(f[o+2 : o+2+optDataLen])
		}
	}
}
