package engine

import (
	"github.com/psavd/psavd/engine/header"
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
	const eth = header.EthernetHeaderLen
	ip := f[p.l3:]
	arrived := header.Ethernet(f)
	src, dst := arrived.Source(), arrived.Destination() // back where it came from
	switch p.kind {
	case kindIPv4:
		h := header.IPv4(ip)
		if !lp.has4 || !h.DontFragment() || isICMPError4(f, p) {
			return pr.drop(DropTooBig) // DF clear: it would need fragmenting, which we do not do
		}
		quote := min(h.TotalLength(), 576-header.IPv4MinHeaderLen-header.ICMPHeaderLen)
		hdr := header.IPv4MinHeaderLen + header.ICMPHeaderLen
		if pkt.Off < hdr {
			return pr.drop(DropTooBig)
		}
		to := h.Src()
		pkt.Off -= hdr
		pkt.Len = eth + hdr + quote
		o := pkt.Frame()
		e := header.Ethernet(o)
		e.SetDestination(src)
		e.SetSource(dst)
		e.SetType(header.EtherTypeIPv4)
		r := header.IPv4(o[eth : eth+header.IPv4MinHeaderLen])
		r.SetVersionHeaderLen(header.IPv4MinHeaderLen)
		r.SetTOS(0xc0) // internetwork control
		r.SetTotalLength(hdr + quote)
		r.SetID(0)
		r.SetFlagsFragment(0)
		r.SetTTL(64)
		r.SetProtocol(header.ProtoICMP)
		r.SetSrc(lp.rloc4)
		r.SetDst(to)
		r.SetChecksum(0)
		r.SetChecksum(^header.Checksum(r, 0))
		icmp := header.ICMP(o[eth+header.IPv4MinHeaderLen:])
		icmp.SetTypeCode(header.ICMPDestUnreachable, header.ICMPCodeFragNeeded) // RFC 1191
		icmp.SetChecksum(0)
		icmp.SetRest(uint32(max(mtu, 68))) // unused 16 bits, next-hop MTU
		icmp.SetChecksum(^header.Checksum(icmp[:header.ICMPHeaderLen+quote], 0))
	case kindIPv6:
		if !lp.has6 || isICMPError6(f, p) {
			return pr.drop(DropTooBig)
		}
		quote := min(innerLen(ip, kindIPv6), 1280-header.IPv6HeaderLen-header.ICMPHeaderLen)
		hdr := header.IPv6HeaderLen + header.ICMPHeaderLen
		if pkt.Off < hdr {
			return pr.drop(DropTooBig)
		}
		to := header.IPv6(ip).Src()
		pkt.Off -= hdr
		pkt.Len = eth + hdr + quote
		o := pkt.Frame()
		e := header.Ethernet(o)
		e.SetDestination(src)
		e.SetSource(dst)
		e.SetType(header.EtherTypeIPv6)
		r := header.IPv6(o[eth : eth+header.IPv6HeaderLen])
		r.SetVersionClassFlow(0, 0)
		r.SetPayloadLength(header.ICMPHeaderLen + quote)
		r.SetNextHeader(header.ProtoICMPv6)
		r.SetHopLimit(64)
		r.SetSrc(lp.rloc6)
		r.SetDst(to)
		icmp := header.ICMP(o[eth+header.IPv6HeaderLen:])
		icmp.SetTypeCode(header.ICMPv6PacketTooBig, 0) // RFC 4443
		icmp.SetChecksum(0)
		icmp.SetRest(uint32(max(mtu, 1280)))
		n := header.ICMPHeaderLen + quote
		icmp.SetChecksum(^header.Checksum(icmp[:n], r.PseudoHeaderChecksum(header.ProtoICMPv6, n)))
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
	if header.IPv4(f[p.l3:]).Protocol() != header.ProtoICMP || p.isFrag {
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
	return header.IPv6(f[p.l3:]).NextHeader() == header.ProtoICMPv6 && p.firstOctet < 128
}
