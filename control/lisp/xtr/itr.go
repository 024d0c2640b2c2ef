package xtr

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// pending is an outstanding Map-Request: the EID asked for, its nonce,
// the sends so far and when the next is due.
type pending struct {
	iid   uint32
	eid   netip.Addr
	bits  int      // mask length asked for: the host's, or the cached prefix's (SMR-invoked)
	key   cacheKey // in pendingEID (and hold)
	smr   bool     // SMR-invoked: refreshes the cache entry key, which stays in use until then
	nonce uint64
	tries int
	next  time.Time
}

// drainMisses takes the destinations the engine missed (Config.Misses)
// and starts their look-ups. x.mu held.
func (x *XTR) drainMisses(now time.Time) {
	if x.cfg.Misses != nil {
		x.missBuf = x.cfg.Misses(x.missBuf[:0])
		for _, m := range x.missBuf {
			x.miss(m, now)
		}
	}
}

// miss starts a look-up for a destination the engine missed.
func (x *XTR) miss(m engine.Miss, now time.Time) {
	k := cacheKey{m.InstanceID, netip.PrefixFrom(m.Addr, m.Addr.BitLen())}
	if x.covering(m.InstanceID, m.Addr, now) != nil || x.pendingEID[k] != nil {
		return
	}
	if until, held := x.hold[k]; (held && now.Before(until)) || !x.asks || len(x.pending) >= x.cfg.MaxPending {
		x.stats.MissesDropped++
		return
	}
	x.addPending(&pending{iid: m.InstanceID, eid: m.Addr, bits: m.Addr.BitLen(), key: k, next: now})
}

// addPending makes p outstanding under a fresh nonce.
func (x *XTR) addPending(p *pending) {
	p.nonce = randomNonce()
	for x.pending[p.nonce] != nil || x.probeNonce[p.nonce] != (probeKey{}) {
		p.nonce = randomNonce()
	}
	x.pending[p.nonce] = p
	x.pendingEID[p.key] = p
}

func (x *XTR) dropPending(p *pending) {
	delete(x.pending, p.nonce)
	delete(x.pendingEID, p.key)
}

// sendRequests sends the Map-Requests that are due, within the rate.
func (x *XTR) sendRequests(now time.Time) []lisp.Datagram {
	var out []lisp.Datagram
	for _, p := range x.pending {
		if now.Before(p.next) {
			continue
		}
		if p.tries > x.cfg.RequestRetries {
			x.dropPending(p)
			if !p.smr { // an SMR-invoked look-up keeps the entry it would have refreshed
				x.hold[p.key] = now.Add(x.cfg.HoldDown)
			}
			x.stats.GaveUp++
			continue
		}
		if sec := now.Unix(); sec != x.tokenSec {
			x.tokenSec, x.tokens = sec, x.cfg.RequestsPerSecond
		}
		if x.tokens == 0 {
			x.stats.RateLimited++
			continue
		}
		x.tokens--
		resolver, ok := x.dir.MapResolver(p.iid, p.eid)
		if !ok {
			// Nowhere to ask yet (a name still resolving): a try.
			x.stats.NoResolver++
			p.tries++
			p.next = now.Add(x.cfg.RequestTimeout)
			continue
		}
		b, err := x.request(p, resolver)
		if err != nil {
			x.dropPending(p)
			x.stats.Malformed++
			continue
		}
		if p.tries > 0 {
			x.stats.Retries++
		} else if p.smr {
			x.stats.SMRInvokedSent++
		}
		p.tries++
		p.next = now.Add(x.cfg.RequestTimeout)
		x.stats.Requests++
		out = append(out, lisp.Datagram{To: resolver, Data: b})
	}
	return out
}

// request encodes the Encapsulated Map-Request of p for resolver.
func (x *XTR) request(p *pending, resolver netip.AddrPort) ([]byte, error) {
	var itr []lisp.Address
	src := netip.Addr{}
	for _, r := range x.cfg.RLOCs {
		itr = append(itr, lisp.IPAddr(r))
		if !src.IsValid() && r.Is4() == p.eid.Is4() {
			src = r
		}
	}
	if !src.IsValid() { // the inner header's family is the EID's
		src = netip.IPv6Loopback()
		if p.eid.Is4() {
			src = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	return lisp.Marshal(&lisp.ECM{
		Inner: lisp.InnerHeader{Source: netip.AddrPortFrom(src, x.cfg.LocalPort), Destination: netip.AddrPortFrom(p.eid, 4342), TTL: 64},
		Message: &lisp.MapRequest{
			Nonce: p.nonce, ITRRLOCs: itr, SMRInvoked: p.smr,
			Records: []lisp.EIDRecord{{MaskLen: uint8(p.bits), EID: x.eidAddress(p.iid, lisp.IPAddr(p.eid))}},
		},
	})
}

// reply takes a Map-Reply to one of our outstanding Map-Requests into the
// map-cache; anything else (unknown nonce: late, duplicated or forged) is
// counted and ignored.
func (x *XTR) reply(m *lisp.MapReply, now time.Time) {
	p := x.pending[m.Nonce]
	if p == nil {
		x.stats.BadNonce++
		return
	}
	x.dropPending(p)
	x.stats.Replies++
	learned := x.learn(x.answering(p, m.Records), now)
	if p.smr && len(learned) > 0 && !slices.Contains(learned, p.key) {
		// The mapping the SMR was about now has another prefix: the
		// old entry is stale.
		if _, ok := x.cache[p.key]; ok {
			x.remove(p.key)
		}
	}
}

// answering keeps the records that answer p: same instance, a prefix that
// contains the EID asked for. A record for anything else is an overclaim
// (a buggy or hostile ETR/Map-Resolver taking over other destinations) and
// is refused, counted. So is a record with locators for a /0: no ETR owns
// the whole address space, while a negative /0 ("nothing is LISP here")
// is legitimate.
func (x *XTR) answering(p *pending, recs []lisp.MappingRecord) []lisp.MappingRecord {
	keep := recs[:0:0]
	for _, r := range recs {
		iid, ip, ok := unwrapEID(r.EID)
		if ok && int(r.EIDMaskLen) <= ip.BitLen() {
			pfx := netip.PrefixFrom(ip, int(r.EIDMaskLen)).Masked()
			if iid != p.iid || !pfx.Contains(p.eid) || (r.EIDMaskLen == 0 && len(r.Locators) > 0) {
				x.stats.Overclaims++
				continue
			}
		}
		keep = append(keep, r)
	}
	return keep
}

// releaseHolds ends the hold-downs that are over. x.mu held.
func (x *XTR) releaseHolds(now time.Time) {
	for k, until := range x.hold {
		if !now.Before(until) {
			delete(x.hold, k)
		}
	}
}

// publishLocked builds the engine's map-cache from the live entries.
func (x *XTR) publishLocked() {
	if !x.dirty || x.cfg.Publish == nil {
		return
	}
	x.dirty = false
	b := engine.NewMapCacheBuilder()
	for _, e := range x.cache {
		_ = b.Add(e.EID, engine.Mapping{InstanceID: e.InstanceID, Action: e.Action, Locators: x.usable(e)}) // checked when they came in
	}
	x.cfg.Publish(b.MapCache())
}

func randomNonce() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}
