package xtr

import (
	"net/netip"
	"sort"
	"time"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// Entry is one map-cache entry.
type Entry struct {
	InstanceID uint32
	EID        netip.Prefix
	Locators   []engine.Locator // empty: negative
	Action     engine.MapAction
	Expires    time.Time
}

type cacheKey struct {
	iid uint32
	eid netip.Prefix
}

// Lookup returns the live map-cache entry covering addr, if any.
func (x *XTR) Lookup(iid uint32, addr netip.Addr, now time.Time) (Entry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.covering(iid, addr, now)
	if e == nil {
		return Entry{}, false
	}
	return *e, true
}

// covering is the longest-match entry for addr, nil if none or if it has
// expired (Tick removes it).
func (x *XTR) covering(iid uint32, addr netip.Addr, now time.Time) *Entry {
	t := x.index[iid]
	if t == nil {
		return nil
	}
	e, ok := t.Lookup(addr)
	if !ok || !now.Before(e.Expires) {
		return nil
	}
	return e
}

func (x *XTR) store(k cacheKey, e *Entry, now time.Time) {
	x.trackLocators(k, e, now)
	x.cache[k] = e
	t := x.index[k.iid]
	if t == nil {
		t = new(bart.Table[*Entry])
		x.index[k.iid] = t
	}
	t.Insert(k.eid, e)
	x.dirty = true
}

func (x *XTR) remove(k cacheKey) {
	x.untrackLocators(k, x.cache[k], nil)
	delete(x.cache, k)
	if t := x.index[k.iid]; t != nil {
		t.Delete(k.eid)
	}
	x.dirty = true
}

// learn takes the records of an accepted Map-Reply into the map-cache:
// one entry per (instance, EID prefix), expiring after the record's TTL
// (capped at MaxTTL; TTL 0 is not cached); a record without locators is a
// negative entry whose action (natively forward or drop) comes from the
// reply's; only IP locators are kept. At most MaxEntries. It returns the
// keys stored. x.mu held.
func (x *XTR) learn(records []lisp.MappingRecord, now time.Time) (stored []cacheKey) {
	for _, r := range records {
		iid, ip, ok := unwrapEID(r.EID)
		if !ok || int(r.EIDMaskLen) > ip.BitLen() {
			x.stats.Malformed++
			continue
		}
		eid := netip.PrefixFrom(ip, int(r.EIDMaskLen)).Masked()
		ttl := min(time.Duration(r.TTL)*time.Minute, x.cfg.MaxTTL)
		if ttl <= 0 {
			continue // TTL 0: not to be cached
		}
		e := &Entry{InstanceID: iid, EID: eid, Expires: now.Add(ttl)}
		for _, l := range r.Locators {
			if l.Address.LCAF != nil || !l.Address.IP.IsValid() {
				continue // only IP locators can be encapsulated to
			}
			e.Locators = append(e.Locators, engine.Locator{Addr: l.Address.IP.Unmap(), Priority: l.Priority, Weight: l.Weight, Up: l.Reachable})
		}
		if len(r.Locators) == 0 {
			x.stats.Negative++
			switch r.Action {
			case lisp.ActionNoAction, lisp.ActionNativelyForward:
				e.Action = engine.MapNativelyForward
			case lisp.ActionSendMapRequest:
				continue // nothing to cache: the next packet asks again
			default:
				e.Action = engine.MapDrop
			}
		} else if len(e.Locators) == 0 {
			e.Action = engine.MapDrop // locators, none usable here
		}
		k := cacheKey{iid, eid}
		if _, ok := x.cache[k]; !ok && len(x.cache) >= x.cfg.MaxEntries {
			x.stats.MissesDropped++
			continue
		}
		x.store(k, e, now)
		stored = append(stored, k)
	}
	return stored
}

// expire removes the map-cache entries whose TTL has run out. x.mu held.
func (x *XTR) expire(now time.Time) {
	for k, e := range x.cache {
		if !now.Before(e.Expires) {
			x.remove(k)
			x.stats.Expired++
		}
	}
}

// Entries returns the live map-cache entries, by instance and EID prefix
// (for psavctl map-cache).
func (x *XTR) Entries(now time.Time) []Entry {
	x.mu.Lock()
	out := make([]Entry, 0, len(x.cache))
	for _, e := range x.cache {
		if now.Before(e.Expires) {
			ce := *e
			ce.Locators = append([]engine.Locator(nil), e.Locators...)
			out = append(out, ce)
		}
	}
	x.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].InstanceID != out[j].InstanceID {
			return out[i].InstanceID < out[j].InstanceID
		}
		return out[i].EID.String() < out[j].EID.String()
	})
	return out
}
