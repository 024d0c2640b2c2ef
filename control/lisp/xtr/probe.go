package xtr

import (
	"container/heap"
	"net/netip"
	"slices"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// RLOC-probing (RFC 9301 §7.1): the ITR asks each locator of each cached
// mapping directly — a plain Map-Request with the P bit, to the locator's
// control port — whether it is still there. The ETR answers with a
// Map-Reply with the P bit (etr.go); an answer keeps the locator up, a
// probe left unanswered after the retries takes it down, and the data
// plane then uses the other locators of the mapping (the engine picks
// among up locators of the best priority only). A down locator keeps
// being probed and comes back when it answers. The R bit of the mapping
// still counts: a locator its ETR says is unreachable stays unused
// whatever the probes say. When every locator of a mapping is down, the
// data plane falls back to the R bits (usable).

// probeKey is one locator of one map-cache entry.
type probeKey struct {
	k    cacheKey
	addr netip.Addr
}

// probe is a probed locator's state.
type probe struct {
	reach bool      // answered the last round (or not probed yet)
	rbit  bool      // the R bit of the last Map-Reply
	nonce uint64    // outstanding probe, 0 none
	tries int       // sends of the outstanding probe
	next  time.Time // next send (or give-up) due
	pk    probeKey
	index int // in XTR.probeQ
}

// probeHeap orders the probes by next: Tick looks at the due ones only,
// not at every locator of the map-cache every 20 ms.
type probeHeap []*probe

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h probeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *probeHeap) Push(v any) {
	p := v.(*probe)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *probeHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

func (x *XTR) probing() bool { return x.cfg.ProbeInterval > 0 }

// probeable: a locator this node can send to (an RLOC of its family, not
// one of ours) and that may be used (priority 255 is never).
func (x *XTR) probeable(addr netip.Addr, prio uint8) bool {
	if prio == 255 {
		return false
	}
	fam := false
	for _, r := range x.cfg.RLOCs {
		if r == addr {
			return false
		}
		fam = fam || r.Is4() == addr.Is4()
	}
	return fam
}

// trackLocators starts probing e's locators (keeping the state of those
// probed already under k: a refreshed mapping does not forget a dead
// locator) and stops it for the locators k no longer has; each locator's
// Up is its R bit and, when probed, the last round's answer. x.mu held.
func (x *XTR) trackLocators(k cacheKey, e *Entry, now time.Time) {
	x.untrackLocators(k, x.cache[k], e)
	if !x.probing() {
		return
	}
	for i, l := range e.Locators {
		if !x.probeable(l.Addr, l.Priority) {
			continue
		}
		pk := probeKey{k, l.Addr}
		p := x.probes[pk]
		if p == nil {
			p = &probe{reach: true, next: now.Add(x.cfg.ProbeInterval), pk: pk}
			x.probes[pk] = p
			heap.Push(&x.probeQ, p)
		}
		p.rbit = l.Up
		e.Locators[i].Up = p.rbit && p.reach
	}
}

// untrackLocators forgets the probes of old's locators that next (nil: the
// entry is going) does not have. x.mu held.
func (x *XTR) untrackLocators(k cacheKey, old, next *Entry) {
	if old == nil {
		return
	}
	for _, l := range old.Locators {
		if next != nil && hasLocator(next, l.Addr) {
			continue
		}
		pk := probeKey{k, l.Addr}
		if p := x.probes[pk]; p != nil {
			delete(x.probeNonce, p.nonce)
			delete(x.probes, pk)
			heap.Remove(&x.probeQ, p.index)
		}
	}
}

func hasLocator(e *Entry, a netip.Addr) bool {
	for _, l := range e.Locators {
		if l.Addr == a {
			return true
		}
	}
	return false
}

// probeDue sends the probes that are due, resends those unanswered, and
// takes down the locators whose retries ran out. x.mu held.
func (x *XTR) probeDue(now time.Time) []lisp.Datagram {
	var out []lisp.Datagram
	for len(x.probeQ) > 0 && !now.Before(x.probeQ[0].next) {
		p := x.probeQ[0]
		if d, ok := x.probeStep(p, now); ok {
			out = append(out, d)
		}
		heap.Fix(&x.probeQ, 0) // probeStep moved p.next past now
	}
	return out
}

// probeStep is one due probe: the give-up, or a (re)send.
func (x *XTR) probeStep(p *probe, now time.Time) (lisp.Datagram, bool) {
	pk := p.pk
	if p.nonce != 0 && p.tries > x.cfg.ProbeRetries {
		// Unanswered: down until a probe is answered again.
		delete(x.probeNonce, p.nonce)
		p.nonce, p.tries = 0, 0
		p.next = now.Add(x.cfg.ProbeInterval)
		x.setReach(pk, p, false)
		return lisp.Datagram{}, false
	}
	if p.nonce == 0 {
		p.nonce = randomNonce()
		for p.nonce == 0 || x.pending[p.nonce] != nil || x.probeNonce[p.nonce] != (probeKey{}) {
			p.nonce = randomNonce()
		}
		x.probeNonce[p.nonce] = pk
		x.stats.Probes++
	} else {
		x.stats.ProbeRetries++ // the same nonce: a late answer to the first send counts
	}
	p.tries++
	p.next = now.Add(x.cfg.ProbeTimeout)
	b, err := lisp.Marshal(&lisp.MapRequest{Probe: true, Nonce: p.nonce, ITRRLOCs: x.itrRLOCs(),
		Records: []lisp.EIDRecord{{MaskLen: uint8(pk.k.eid.Bits()), EID: x.eidAddress(pk.k.iid, lisp.IPAddr(pk.k.eid.Addr()))}}})
	if err != nil {
		x.stats.Malformed++
		return lisp.Datagram{}, false
	}
	return lisp.Datagram{To: netip.AddrPortFrom(pk.addr, controlPort), Data: b}, true
}

// probeReply takes a Map-Reply that answers one of our probes: the locator
// probed is up. A reply with the P bit and a nonce we did not send (late
// after a give-up, duplicated, forged) is counted and ignored. It reports
// whether m was a probe reply (so not a Map-Reply for the ITR's look-ups).
// x.mu held.
func (x *XTR) probeReply(m *lisp.MapReply, now time.Time) bool {
	pk, ok := x.probeNonce[m.Nonce]
	if !ok {
		if m.Probe && x.pending[m.Nonce] == nil { // (a P bit on the answer to a look-up: taken as that)
			x.stats.ProbeBadNonce++
			return true
		}
		return false
	}
	delete(x.probeNonce, m.Nonce)
	x.stats.ProbeReplies++
	if p := x.probes[pk]; p != nil && p.nonce == m.Nonce {
		p.nonce, p.tries = 0, 0
		p.next = now.Add(x.cfg.ProbeInterval)
		heap.Fix(&x.probeQ, p.index)
		x.setReach(pk, p, true)
	}
	return true
}

// setReach records a probe round's outcome and, on a change, the entry's
// locator state for the data plane. x.mu held.
func (x *XTR) setReach(pk probeKey, p *probe, up bool) {
	if p.reach == up {
		return
	}
	p.reach = up
	if up {
		x.stats.LocatorsUp++
	} else {
		x.stats.LocatorsDown++
	}
	e := x.cache[pk.k]
	if e == nil {
		return
	}
	for i := range e.Locators {
		if e.Locators[i].Addr == pk.addr {
			e.Locators[i].Up = p.rbit && up
		}
	}
	x.dirty = true
}

// usable is e's locators as the data plane gets them: as probed, except
// that when probing has taken every one down the R bits decide again —
// with no locator answering there is nothing better to send to, and a
// peer that does not answer probes at all (no ETR on its port 4342, e.g.
// an xTR on another control port) keeps working as before probing. The
// map-cache itself (Lookup, psavctl) keeps saying down. x.mu held.
func (x *XTR) usable(e *Entry) []engine.Locator {
	for _, l := range e.Locators {
		if l.Up {
			return e.Locators
		}
	}
	k := cacheKey{e.InstanceID, e.EID}
	var ls []engine.Locator
	for i, l := range e.Locators {
		if p := x.probes[probeKey{k, l.Addr}]; p != nil && p.rbit && !p.reach {
			if ls == nil {
				ls = slices.Clone(e.Locators)
			}
			ls[i].Up = true
		}
	}
	if ls == nil {
		return e.Locators
	}
	return ls
}

// itrRLOCs are this node's RLOCs as ITR-RLOCs.
func (x *XTR) itrRLOCs() []lisp.Address {
	itr := make([]lisp.Address, 0, len(x.cfg.RLOCs))
	for _, r := range x.cfg.RLOCs {
		itr = append(itr, lisp.IPAddr(r))
	}
	return itr
}

// controlPort is the LISP control port (RFC 9301): where probes and SMRs
// are sent.
const controlPort = 4342
