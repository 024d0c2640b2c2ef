package xtr

import (
	"net/netip"
	"slices"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// Solicit-Map-Request (RFC 9301 §6.1). When this node's database changes
// (SetDatabase: a reload), the ETR registers at once and sends an SMR — a
// Map-Request with the S bit, the changed EID prefix as source EID — to
// each up locator of each mapping in its map-cache (the sites it has been
// sending to: their ITRs cache our mapping), for that mapping's EID
// prefix, as OOR does. An SMR is re-sent (RequestRetries times, every
// 3×RequestTimeout) to the locators that have not yet sent an
// SMR-invoked Map-Request (s bit) for the changed prefix.
//
// Received, an SMR is not answered; it makes the ITR look the mapping of
// its source EID up again through the mapping system (an SMR-invoked
// Map-Request, s bit; never trusting the SMR's sender, who may be
// spoofed), for the cached prefix covering the source EID. The old entry
// stays in use until the reply replaces it. An SMR for an EID with no
// cached mapping, or whose look-up is already pending, is ignored
// (counted); the ITR's request rate caps the rest.

// smrRound is the SMRs for one changed database prefix.
type smrRound struct {
	eid     netip.Prefix
	targets map[smrTarget]bool // nil until the first send
	tries   int
	next    time.Time
}

// smrTarget is one locator of one cached mapping.
type smrTarget struct {
	rloc netip.Addr
	k    cacheKey
}

// SetDatabase replaces the ETR's database mappings (a reload): the new
// set is registered at the next Tick, and SMRs go out for every prefix
// added, removed or whose locators changed.
func (x *XTR) SetDatabase(db []Mapping) error {
	if err := CheckDatabase(db); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	old := map[netip.Prefix]Mapping{}
	for _, m := range x.cfg.Database {
		old[m.EID.Masked()] = m
	}
	var changed []netip.Prefix
	for _, m := range db {
		p := m.EID.Masked()
		if o, ok := old[p]; !ok || !slices.Equal(o.Locators, m.Locators) {
			changed = append(changed, p)
		}
		delete(old, p)
	}
	for p := range old { // withdrawn
		changed = append(changed, p)
	}
	if len(changed) == 0 {
		return nil
	}
	x.cfg.Database = slices.Clone(db)
	x.indexDatabase()
	x.nextReg = time.Time{} // register the new set now
	x.stats.DatabaseChanges++
	for _, p := range changed {
		x.smrs[p] = &smrRound{eid: p}
	}
	return nil
}

// smrDue sends the SMRs that are due. x.mu held.
func (x *XTR) smrDue(now time.Time) []lisp.Datagram {
	var out []lisp.Datagram
	for p, r := range x.smrs {
		if now.Before(r.next) {
			continue
		}
		if r.targets == nil {
			r.targets = x.smrTargets()
		}
		if len(r.targets) == 0 || r.tries > x.cfg.RequestRetries {
			delete(x.smrs, p)
			continue
		}
		for t := range r.targets {
			b, err := lisp.Marshal(&lisp.MapRequest{SMR: true, Nonce: randomNonce(), ITRRLOCs: x.itrRLOCs(),
				SourceEID: x.eidAddress(x.cfg.InstanceID, lisp.IPAddr(r.eid.Addr())),
				Records:   []lisp.EIDRecord{{MaskLen: uint8(t.k.eid.Bits()), EID: x.eidAddress(t.k.iid, lisp.IPAddr(t.k.eid.Addr()))}}})
			if err != nil {
				x.stats.Malformed++
				continue
			}
			if r.tries == 0 {
				x.stats.SMRsSent++
			} else {
				x.stats.SMRsResent++
			}
			out = append(out, lisp.Datagram{To: netip.AddrPortFrom(t.rloc, controlPort), Data: b})
		}
		r.tries++
		r.next = now.Add(3 * x.cfg.RequestTimeout)
	}
	return out
}

// smrTargets are the up locators of the cached mappings. x.mu held.
func (x *XTR) smrTargets() map[smrTarget]bool {
	ts := map[smrTarget]bool{}
	for k, e := range x.cache {
		for _, l := range e.Locators {
			if l.Up && x.probeable(l.Addr, l.Priority) {
				ts[smrTarget{l.Addr, k}] = true
			}
		}
	}
	return ts
}

// smrInvoked notes an SMR-invoked Map-Request for one of our EIDs: its
// ITR has acted on our SMR and needs no more — at the locators it names
// as ITR-RLOCs, and at every locator of the mapping its source EID is in
// (OOR names one ITR-RLOC per family, while our SMRs went to each of its
// locators). x.mu held.
func (x *XTR) smrInvoked(req *lisp.MapRequest) {
	if !req.SMRInvoked {
		return
	}
	srcIID, srcIP, srcOK := unwrapEID(req.SourceEID)
	for _, rec := range req.Records {
		iid, ip, ok := unwrapEID(rec.EID)
		if !ok || iid != x.cfg.InstanceID {
			continue
		}
		for _, r := range x.smrs {
			if !r.eid.Contains(ip) {
				continue
			}
			for t := range r.targets {
				acked := srcOK && t.k.iid == srcIID && t.k.eid.Contains(srcIP)
				for _, a := range req.ITRRLOCs {
					acked = acked || a.IP.Unmap() == t.rloc
				}
				if acked {
					delete(r.targets, t)
					x.stats.SMRsAcked++
				}
			}
		}
	}
}

// solicited acts on a received SMR: an SMR-invoked Map-Request for the
// cached mapping covering its source EID. x.mu held.
func (x *XTR) solicited(m *lisp.MapRequest, now time.Time) {
	x.stats.SMRsReceived++
	iid, ip, ok := unwrapEID(m.SourceEID)
	if !ok {
		x.stats.SMRsIgnored++
		return
	}
	e := x.covering(iid, ip, now)
	if e == nil || len(e.Locators) == 0 || !x.asks || len(x.pending) >= x.cfg.MaxPending {
		x.stats.SMRsIgnored++
		return
	}
	k := cacheKey{iid, e.EID}
	if x.pendingEID[k] != nil {
		x.stats.SMRsIgnored++ // already asking
		return
	}
	x.addPending(&pending{iid: iid, eid: e.EID.Addr(), bits: e.EID.Bits(), key: k, smr: true, next: now})
}
