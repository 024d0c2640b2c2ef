package push

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

// groupTable is the Map-Server state for group-address EIDs, (0.0.0.0/0, G)
// or (::/0, G) in a Multicast Info LCAF, whose locator is an RLE: one
// registration per (G, member), and a look-up of G merges the RLEs of all
// live members. mapserver.Server stores unicast EID prefixes only and
// keeps one record per ETR without merging, so the membership registrations
// of LISP-Decent are kept here. Not safe for concurrent use: Node
// holds its lock around it.
type groupTable struct {
	keyID   uint16
	key     []byte
	ttl     time.Duration
	replay  mapserver.ReplayPolicy
	groups  map[netip.Addr]map[memberID]*groupMember
	nonces  map[memberID]*nonceState
	refused map[mapserver.Reason]uint64
	regs    uint64 // new (G, member) registrations
	refresh uint64
	expired uint64
	dereg   uint64
}

// memberID is a registering member: its xTR-ID, or its source address
// (16 octets) when the Map-Register carries none.
type memberID [16]byte

type groupMember struct {
	id      memberID
	from    netip.AddrPort
	rle     []netip.Addr // sorted, unique
	expires time.Time
}

type nonceState struct {
	last   uint64
	recent map[uint64]time.Time
}

func newGroupTable(keyID uint16, key []byte, ttl time.Duration, replay mapserver.ReplayPolicy) *groupTable {
	return &groupTable{keyID: keyID, key: key, ttl: ttl, replay: replay,
		groups: map[netip.Addr]map[memberID]*groupMember{}, nonces: map[memberID]*nonceState{},
		refused: map[mapserver.Reason]uint64{}}
}

// groupOfRecord returns G when rec is a membership registration's record:
// EID a Multicast Info LCAF (IID 0, any-source /0, G with a full-length
// mask). ok is false for anything else.
func groupOfEID(eid lisp.Address) (g netip.Addr, ok bool) {
	l := eid.LCAF
	if l == nil || l.Type != lisp.LCAFMulticastInfo || l.InstanceID != 0 || l.SourceMaskLen != 0 {
		return g, false
	}
	g, s := l.Group.IP, l.Source.IP
	if l.Group.LCAF != nil || l.Source.LCAF != nil || !g.IsValid() || !g.IsMulticast() || g.Zone() != "" ||
		int(l.GroupMaskLen) != g.BitLen() || !s.IsValid() || !s.IsUnspecified() || s.Is4() != g.Is4() {
		return g, false
	}
	return g, true
}

// isGroupRecord reports whether a record's EID is a Multicast Info LCAF
// (well formed as a membership or not): such records belong to the group
// table, never to the unicast Map-Server.
func isGroupRecord(r *lisp.MappingRecord) bool {
	return r.EID.LCAF != nil && r.EID.LCAF.Type == lisp.LCAFMulticastInfo
}

// rleOf collects the unicast RLE addresses of a record's locators.
func rleOf(r *lisp.MappingRecord) ([]netip.Addr, bool) {
	var out []netip.Addr
	for _, loc := range r.Locators {
		l := loc.Address.LCAF
		if l == nil || l.Type != lisp.LCAFRLE {
			return nil, false
		}
		for _, e := range l.RLE {
			a := e.Address.IP
			if e.Address.LCAF != nil || !a.IsValid() || a.IsMulticast() || a.IsUnspecified() || a.Zone() != "" {
				return nil, false
			}
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), len(out) > 0 || r.TTL == 0
}

// handle processes an authenticated-to-be membership Map-Register (pkt is
// its encoding, m the decoded form) and returns "" or the refusal reason.
// The message is refused as a whole when any record is not a membership.
func (t *groupTable) handle(pkt []byte, m *lisp.MapRegister, from netip.AddrPort, now time.Time) mapserver.Reason {
	type upd struct {
		g   netip.Addr
		rle []netip.Addr
		ttl uint32
	}
	ups := make([]upd, 0, len(m.Records))
	for i := range m.Records {
		g, ok := groupOfEID(m.Records[i].EID)
		rle, ok2 := rleOf(&m.Records[i])
		if !ok || !ok2 {
			return t.refuse(mapserver.ReasonMalformed)
		}
		ups = append(ups, upd{g, rle, m.Records[i].TTL})
	}
	if len(ups) == 0 {
		return t.refuse(mapserver.ReasonMalformed)
	}
	if m.KeyID != t.keyID {
		return t.refuse(mapserver.ReasonBadKeyID)
	}
	if err := lisp.Verify(pkt, t.key); err != nil {
		if errors.Is(err, lisp.ErrAuthKeyID) {
			return t.refuse(mapserver.ReasonBadKeyID)
		}
		return t.refuse(mapserver.ReasonAuthFailed)
	}
	var id memberID
	if m.XTR != nil {
		id = m.XTR.XTRID
	} else {
		id = from.Addr().As16()
	}
	if !t.replayOK(id, m.Nonce, now) {
		return t.refuse(mapserver.ReasonReplay)
	}
	for _, u := range ups {
		ms := t.groups[u.g]
		if u.ttl == 0 {
			if ms[id] != nil {
				delete(ms, id)
				t.dereg++
			}
			continue
		}
		if ms == nil {
			ms = map[memberID]*groupMember{}
			t.groups[u.g] = ms
		}
		if ms[id] != nil {
			t.refresh++
		} else {
			t.regs++
		}
		ms[id] = &groupMember{id: id, from: from, rle: u.rle, expires: now.Add(t.ttl)}
	}
	return ""
}

func (t *groupTable) refuse(r mapserver.Reason) mapserver.Reason {
	t.refused[r]++
	return r
}

func (t *groupTable) replayOK(id memberID, nonce uint64, now time.Time) bool {
	if t.replay == mapserver.ReplayOff {
		return true
	}
	st := t.nonces[id]
	if st == nil {
		st = &nonceState{last: nonce, recent: map[uint64]time.Time{}}
		t.nonces[id] = st
		if t.replay == mapserver.ReplayMonotonic {
			return true
		}
	}
	if t.replay == mapserver.ReplayMonotonic {
		if nonce <= st.last {
			return false
		}
		st.last = nonce
		return true
	}
	if exp, ok := st.recent[nonce]; ok && now.Before(exp) {
		return false
	}
	if len(st.recent) > 64 {
		for n, exp := range st.recent {
			if !now.Before(exp) {
				delete(st.recent, n)
			}
		}
	}
	st.recent[nonce] = now.Add(t.ttl)
	return true
}

// sweep removes expired memberships.
func (t *groupTable) sweep(now time.Time) {
	for g, ms := range t.groups {
		for id, m := range ms {
			if !now.Before(m.expires) {
				delete(ms, id)
				t.expired++
			}
		}
		if len(ms) == 0 {
			delete(t.groups, g)
		}
	}
}

// lookup returns the merged RLE of G's live members (sorted, unique).
func (t *groupTable) lookup(g netip.Addr, now time.Time) []netip.Addr {
	var out []netip.Addr
	for _, m := range t.groups[g] {
		if now.Before(m.expires) {
			out = append(out, m.rle...)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// GroupRegistration is one live membership registration.
type GroupRegistration struct {
	Group   netip.Addr
	XTRID   [16]byte
	From    netip.AddrPort // source of the Map-Register (inner source when encapsulated)
	RLE     []netip.Addr
	Expires time.Time
}

func (t *groupTable) list(now time.Time) []GroupRegistration {
	var out []GroupRegistration
	for g, ms := range t.groups {
		for _, m := range ms {
			if now.Before(m.expires) {
				out = append(out, GroupRegistration{Group: g, XTRID: m.id, From: m.from, RLE: slices.Clone(m.rle), Expires: m.expires})
			}
		}
	}
	slices.SortFunc(out, func(a, b GroupRegistration) int {
		if c := a.Group.Compare(b.Group); c != 0 {
			return c
		}
		return slices.Compare(a.XTRID[:], b.XTRID[:])
	})
	return out
}
