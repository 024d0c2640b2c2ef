package engine

import (
	"encoding/binary"

	"github.com/psavd/psavd/ports"
)

// defaultTooBigRate is the ICMP Packet Too Big messages a poll loop sends per
// second at most when Policy.TooBigPerSecond is 0.
const defaultTooBigRate = 100

// lispOut finishes a packet whose inner route leaves by an encap port: the
// PSAV decision is made (act; inserted says a tag was added to it). It
// encapsulates, forwards natively, answers Packet Too Big or drops.
func (pr *Processor) lispOut(pkt *ports.Packet, p *parsed, t *Tables, hop *NextHop, out int16, act Action, inserted bool) int16 {
	var plan lispPlan
	f := pkt.Frame()
	d, r := pr.planLISP(f, p, t, out, &plan)
	switch d {
	case lispDrop:
		pr.undoTag(pkt, p, inserted)
		return pr.drop(r)
	case lispNative:
		rewriteRouted(f, p, hop)
		return pr.act(act, out)
	}
	over := lispOverhead6
	if plan.rloc.v4 {
		over = lispOverhead4
	}
	n := innerLen(f[p.l3:], p.kind)
	if n+over > plan.lp.mtu {
		growth := 0
		if inserted {
			growth = TagGrowth
		}
		return pr.tooBig(pkt, p, plan.lp, plan.lp.mtu-over-growth, inserted)
	}
	if pkt.Off < over {
		pr.undoTag(pkt, p, inserted)
		return pr.drop(DropLISPEncap)
	}
	rewriteRouted(f, p, hop) // the inner packet takes a router hop: TTL
	pr.encapLISP(pkt, p.kind, &plan)
	return pr.act(act, plan.hop.Port)
}

// undoTag takes a tag this packet path just inserted off again, so a packet
// dropped after tagging is dropped (and captured, and quoted in an ICMP
// error) as it arrived.
func (pr *Processor) undoTag(pkt *ports.Packet, p *parsed, inserted bool) {
	if !inserted || !p.parse(pkt.Frame()) || p.optOff < 0 {
		return
	}
	stripTag(pkt, p)
}

// tooBig answers a packet that does not fit the encapsulating port's MTU
// with an ICMP Destination Unreachable / Fragmentation Needed (IPv4, only
// when DF is set) or an ICMPv6 Packet Too Big, built in place of the packet
// and sent back by the port it arrived on, from this node's RLOC of the
// packet's family — at most TooBigPerSecond per loop; otherwise (policy,
// rate, no RLOC of that family, an ICMP error itself) it is dropped
// `too-big`.
func (pr *Processor) tooBig(pkt *ports.Packet, p *parsed, lp *lispPort, mtu int, inserted bool) int16 {
	pr.undoTag(pkt, p, inserted)
	f := pkt.Frame()
	if pr.e.spec.Policy.DropTooBig || !pr.takeToken() {
		return pr.drop(DropTooBig)
	}
	ip := f[p.l3:]
	var eth [12]byte
	copy(eth[0:6], f[6:12])
	copy(eth[6:12], f[0:6])
	switch p.kind {
	case kindIPv4:
		h := IPv4(ip)
		if !lp.has4 || binary.BigEndian.Uint16(h[6:8])&0x4000 == 0 || isICMPError4(f, p) {
			return pr.drop(DropTooBig) // DF clear: it would need fragmenting, which we do not do
		}
		quote := min(h.TotalLength(), 576-ipv4MinHeaderLen-8)
		hdr := ipv4MinHeaderLen + 8
		if pkt.Off < hdr {
			return pr.drop(DropTooBig)
		}
		var dst [4]byte
		copy(dst[:], h[12:16])
		pkt.Off -= hdr
		pkt.Len = ethHeaderLen + hdr + quote
		o := pkt.Frame()
		copy(o[0:12], eth[:])
		binary.BigEndian.PutUint16(o[12:], etherTypeIPv4)
		r := IPv4(o[ethHeaderLen : ethHeaderLen+ipv4MinHeaderLen])
		r[0], r[1] = 0x45, 0xc0 // internetwork control
		binary.BigEndian.PutUint16(r[2:], uint16(hdr+quote))
		binary.BigEndian.PutUint32(r[4:], 0)
		r[8], r[9] = 64, 1
		copy(r[12:16], lp.rloc4[:])
		copy(r[16:20], dst[:])
		r[10], r[11] = 0, 0
		binary.BigEndian.PutUint16(r[10:], ^onesSum(r))
		icmp := o[ethHeaderLen+ipv4MinHeaderLen:]
		icmp[0], icmp[1], icmp[2], icmp[3], icmp[4], icmp[5] = 3, 4, 0, 0, 0, 0 // Fragmentation Needed (RFC 1191)
		binary.BigEndian.PutUint16(icmp[6:], uint16(max(mtu, 68)))
		binary.BigEndian.PutUint16(icmp[2:], ^onesSum(icmp[:8+quote]))
	case kindIPv6:
		if !lp.has6 || isICMPError6(f, p) {
			return pr.drop(DropTooBig)
		}
		quote := min(innerLen(ip, kindIPv6), 1280-ipv6HeaderLen-8)
		hdr := ipv6HeaderLen + 8
		if pkt.Off < hdr {
			return pr.drop(DropTooBig)
		}
		var dst [16]byte
		copy(dst[:], ip[8:24])
		pkt.Off -= hdr
		pkt.Len = ethHeaderLen + hdr + quote
		o := pkt.Frame()
		copy(o[0:12], eth[:])
		binary.BigEndian.PutUint16(o[12:], etherTypeIPv6)
		r := o[ethHeaderLen : ethHeaderLen+ipv6HeaderLen]
		binary.BigEndian.PutUint32(r[0:], 6<<28)
		binary.BigEndian.PutUint16(r[4:], uint16(8+quote))
		r[6], r[7] = protoICMPv6, 64
		copy(r[8:24], lp.rloc6[:])
		copy(r[24:40], dst[:])
		icmp := o[ethHeaderLen+ipv6HeaderLen:]
		icmp[0], icmp[1], icmp[2], icmp[3] = 2, 0, 0, 0 // Packet Too Big (RFC 4443)
		binary.BigEndian.PutUint32(icmp[4:], uint32(max(mtu, 1280)))
		s := uint64(onesSum(r[8:40])) + uint64(8+quote) + protoICMPv6 + uint64(onesSum(icmp[:8+quote]))
		binary.BigEndian.PutUint16(icmp[2:], ^fold(s))
	}
	return pr.act(ActTooBig, int16(pr.in))
}

// takeToken is the loop's token bucket for ICMP errors: refilled once per
// second of the batch clock, never more than one second's worth.
func (pr *Processor) takeToken() bool {
	rate := pr.e.spec.Policy.TooBigPerSecond
	if rate <= 0 {
		rate = defaultTooBigRate
	}
	if pr.now != pr.tokenSec {
		pr.tokenSec, pr.tokens = pr.now, rate
	}
	if pr.tokens == 0 {
		return false
	}
	pr.tokens--
	return true
}

// isICMPError4 reports an ICMP error message (never answered with another,
// RFC 1122 §3.2.2).
func isICMPError4(f []byte, p *parsed) bool {
	if f[p.l3+9] != 1 || p.isFrag {
		return false
	}
	switch p.firstOctet {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// isICMPError6 reports an ICMPv6 error message (types below 128) right after
// the IPv6 header (RFC 4443 §2.4 (e)).
func isICMPError6(f []byte, p *parsed) bool {
	return f[p.l3+6] == protoICMPv6 && p.firstOctet < 128
}
