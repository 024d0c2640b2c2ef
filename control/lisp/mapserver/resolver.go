package mapserver

import (
	"bytes"
	"math/bits"
	"net/netip"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// lookup is the longest-prefix match of addr among live registrations in
// iid; among several ETRs of that prefix the most recent registration wins.
func (s *Server) lookup(iid uint32, addr netip.Addr, now time.Time) ref {
	mk := s.masks[famKey{iid, addr.Is4()}]
	if mk == nil {
		return none
	}
	t := s.rel(now)
	for l := addr.BitLen(); l >= 0; l-- {
		if mk[l] == 0 {
			continue
		}
		p, _ := addr.Prefix(l)
		head, ok := s.regs.get(&s.tab, newRegKey(iid, p))
		if !ok {
			continue
		}
		best := none
		for r := head; r != none; r = s.tab.at(r).same {
			e := s.tab.at(r)
			if t < e.expires && (best == none || e.registered > s.tab.at(best).registered) {
				best = r
			}
		}
		if best != none {
			return best
		}
	}
	return none
}

func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		if d := x[i] ^ y[i]; d != 0 {
			n += bits.LeadingZeros8(d)
			break
		}
		n += 8
	}
	if a.Is4() {
		n -= 96
	}
	return n
}

// negativePrefix returns the least-specific prefix covering addr that
// contains no known EID prefix of iid: known are the prefixes in the
// registration table and the prefixes configured for the sites. A known
// prefix that itself covers addr (configured but not registered) bounds the
// answer from above: the answer is then that prefix or inside it.
// inEIDSpace reports whether a site's configured prefix covers addr (EID
// space nobody registered yet: a short negative TTL, so a registration is
// found soon) rather than none (not LISP: the long TTL).
func (s *Server) negativePrefix(iid uint32, addr netip.Addr) (_ netip.Prefix, inEIDSpace bool) {
	l := 0
	v4 := addr.Is4()
	constrain := func(q netip.Prefix) {
		if q.Addr().Is4() != v4 {
			return
		}
		var need int
		if q.Contains(addr) {
			need = q.Bits()
		} else {
			need = commonBits(addr, q.Addr()) + 1
		}
		if need > l {
			l = need
		}
	}
	s.regs.each(func(r ref) {
		if k := s.tab.at(r).k; k.iid() == iid && k.v4() == v4 {
			constrain(k.prefix())
		}
	})
	for _, site := range s.sites {
		for _, p := range site.EIDPrefixes {
			if p.IID == iid {
				constrain(p.Prefix)
				inEIDSpace = inEIDSpace || p.Prefix.Contains(addr)
			}
		}
	}
	p, _ := addr.Prefix(min(l, addr.BitLen()))
	return p, inEIDSpace
}

// requestEID extracts (IID, address) from a Map-Request EID record.
func requestEID(a lisp.Address) (iid uint32, ip netip.Addr, hasIID, ok bool) {
	for range lisp.MaxAddressDepth + 1 {
		if a.LCAF == nil {
			if !a.IP.IsValid() {
				return 0, ip, false, false
			}
			return iid, a.IP.Unmap().WithZone(""), hasIID, true
		}
		switch a.LCAF.Type {
		case lisp.LCAFInstanceID:
			iid, hasIID = a.LCAF.InstanceID, true
		case lisp.LCAFASNumber:
		default:
			return 0, ip, false, false
		}
		a = a.LCAF.Inner
	}
	return 0, ip, false, false
}

// ReplyTo is where a Map-Reply to an Encapsulated Map-Request goes: the
// ITR-RLOC of the outer source's family (else the first IP ITR-RLOC, else
// the outer source), at the inner UDP source port.
func ReplyTo(req *lisp.MapRequest, e *lisp.ECM, from netip.AddrPort) netip.AddrPort {
	port := e.Inner.Source.Port()
	if port == 0 {
		port = from.Port()
	}
	if ip, ok := req.ITRRLOCFor(from.Addr()); ok {
		return netip.AddrPortFrom(ip, port)
	}
	return netip.AddrPortFrom(from.Addr(), port)
}

// handleRequest answers every record of an Encapsulated Map-Request: a
// proxy Map-Reply record (P bit), the ECM forwarded unaltered to the
// registering ETR (once per ETR), or a negative record; the proxy and
// negative records go back in one Map-Reply.
func (s *Server) handleRequest(pkt []byte, e *lisp.ECM, req *lisp.MapRequest, from netip.AddrPort, now time.Time) []lisp.Datagram {
	s.st.MapRequests++
	var out []lisp.Datagram
	var recs []lisp.MappingRecord
	for _, r := range req.Records {
		iid, addr, hasIID, ok := requestEID(r.EID)
		if !ok {
			return s.refuse(ReasonMalformed)
		}
		ent := s.lookup(iid, addr, now)
		switch {
		case ent != none && !s.tab.at(ent).proxy:
			to := netip.AddrPortFrom(s.tab.at(ent).from.unpack().Addr(), s.cfg.ControlPort)
			dup := false
			for _, o := range out {
				dup = dup || o.To == to
			}
			if !dup {
				s.st.Forwarded++
				// Forwarded unaltered: the ETR answers the ITR directly.
				// A copy: Handle does not keep pkt.
				out = append(out, lisp.Datagram{To: to, Data: bytes.Clone(pkt)})
			}
		case ent != none:
			s.st.ProxyReplies++
			rec := s.tab.record(ent)  // decoded afresh: ours to change
			rec.Authoritative = false // answered by the Map-Server, not the ETR
			// The L bit says "this locator is the replier's own": not so
			// for the Map-Server (OOR and lispers.net then treat the
			// mapping as local).
			for i := range rec.Locators {
				rec.Locators[i].Local = false
			}
			recs = append(recs, rec)
		default:
			s.st.NegativeReplies++
			p, inEIDSpace := s.negativePrefix(iid, addr)
			eid := lisp.IPAddr(p.Addr())
			if hasIID || iid != 0 {
				eid = lisp.InstanceIDAddr(iid, 0, eid)
			}
			ttl := s.cfg.NegativeTTL
			if !inEIDSpace {
				ttl = s.cfg.NegativeTTLOutside
			}
			recs = append(recs, lisp.MappingRecord{TTL: ttl, EIDMaskLen: uint8(p.Bits()), Action: lisp.ActionNativelyForward, EID: eid})
		}
	}
	if len(recs) == 0 {
		return out
	}
	b, err := (&lisp.MapReply{Nonce: req.Nonce, Records: recs}).Append(nil)
	if err != nil {
		return out
	}
	return append(out, lisp.Datagram{To: ReplyTo(req, e, from), Data: b})
}
