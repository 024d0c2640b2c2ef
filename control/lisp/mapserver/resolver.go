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
//
// Map-Requests are not authenticated, so the work per negative answer is
// bounded: a table of up to exactScanLimit registrations is scanned
// (exact); a larger one is probed near addr only (negativeBound) where a
// configured prefix covers addr, and the answer may then be more specific
// than the least-specific one — never less, so it never hides a
// registration.
func (s *Server) negativePrefix(iid uint32, addr netip.Addr) (_ netip.Prefix, inEIDSpace bool) {
	v4 := addr.Is4()
	l := 0
	for _, site := range s.sites {
		for _, p := range site.EIDPrefixes {
			if p.IID == iid && p.Prefix.Addr().Is4() == v4 {
				l = max(l, need(addr, p.Prefix))
				inEIDSpace = inEIDSpace || p.Prefix.Contains(addr)
			}
		}
	}
	switch {
	case s.regs.n <= exactScanLimit:
		s.regs.each(func(r ref) {
			if k := s.tab.at(r).k; k.iid() == iid && k.v4() == v4 {
				l = max(l, need(addr, k.prefix()))
			}
		})
	case inEIDSpace || s.outside > 0:
		l = max(l, s.negativeBound(iid, addr))
	default:
		// Every registration lies inside a configured prefix, none of
		// which covers addr: each of those prefixes bounds l as much as
		// anything registered inside it.
	}
	p, _ := addr.Prefix(min(l, addr.BitLen()))
	return p, inEIDSpace
}

// need is the shortest length at which addr's prefix leaves q out, or,
// where q covers addr, q's length (the answer stays inside q).
func need(addr netip.Addr, q netip.Prefix) int {
	if q.Contains(addr) {
		return q.Bits()
	}
	return commonBits(addr, q.Addr()) + 1
}

const (
	// exactScanLimit is the largest table negativePrefix scans whole
	// (a few tens of microseconds).
	exactScanLimit = 4096
	// negativeProbeDepth is how many levels above each registered mask
	// length negativeBound searches: 2^depth-1 index probes per length.
	negativeProbeDepth = 8
)

// negativeBound is need's maximum over the registered prefixes of iid in
// addr's family, or an upper bound of it, from index probes alone: for
// each mask length m that has registrations, the /m prefixes near addr are
// probed level by level — addr/m itself, then the /m prefixes of the
// sibling half at each level m-1, m-2, … — and the first found fixes
// the length's contribution exactly. Where none lies within
// negativeProbeDepth levels, m-negativeProbeDepth is a safe bound (every
// /m registration then leaves addr's prefix of that length).
func (s *Server) negativeBound(iid uint32, addr netip.Addr) int {
	mk := s.masks[famKey{iid, addr.Is4()}]
	if mk == nil {
		return 0
	}
	x := newRegKey(iid, netip.PrefixFrom(addr, addr.BitLen()))
	off := 0
	if addr.Is4() {
		off = 96
	}
	l := 0
	for m := addr.BitLen(); m > l; m-- {
		if mk[m] == 0 {
			continue
		}
		l = max(l, s.probeLength(x, off, m))
	}
	return l
}

// probeLength is negativeBound's contribution of mask length m (family
// bits; off is the family's first bit in the 128-bit key).
func (s *Server) probeLength(x regKey, off, m int) int {
	meta := x.meta&^(0xff<<8) | uint64(m)<<8
	at := func(hi, lo uint64) bool {
		_, ok := s.regs.get(&s.tab, regKey{hi: hi, lo: lo, meta: meta})
		return ok
	}
	hi, lo := maskBits(x.hi, x.lo, off+m)
	if at(hi, lo) {
		return m // addr/m itself: it covers addr
	}
	for k := 1; k <= negativeProbeDepth; k++ {
		lvl := m - k // the sibling half at this level differs from addr in bit lvl
		if lvl < 0 {
			return 0 // every /m prefix was probed
		}
		bhi, blo := maskBits(x.hi, x.lo, off+lvl)
		fhi, flo := bitAt(off + lvl)
		bhi, blo = bhi|(fhi&^x.hi), blo|(flo&^x.lo)
		for j := uint64(0); j < 1<<(k-1); j++ {
			jhi, jlo := shiftLeft(j, 128-(off+m))
			if at(bhi|jhi, blo|jlo) {
				return lvl + 1 // common bits lvl, so need lvl+1
			}
		}
	}
	return m - negativeProbeDepth
}

// maskBits keeps the first n of 128 bits.
func maskBits(hi, lo uint64, n int) (uint64, uint64) {
	switch {
	case n <= 0:
		return 0, 0
	case n < 64:
		return hi &^ (^uint64(0) >> n), 0
	case n < 128:
		return hi, lo &^ (^uint64(0) >> (n - 64))
	}
	return hi, lo
}

// bitAt is bit i (0 the most significant) of 128 bits.
func bitAt(i int) (uint64, uint64) {
	if i < 64 {
		return 1 << (63 - i), 0
	}
	return 0, 1 << (127 - i)
}

// shiftLeft is j<<n as 128 bits (j < 2^negativeProbeDepth, n < 128).
func shiftLeft(j uint64, n int) (uint64, uint64) {
	switch {
	case n == 0:
		return 0, j
	case n < 64:
		return j >> (64 - n), j << n
	}
	return j << (n - 64), 0
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
