package mapserver

import (
	"bytes"
	"hash"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// Reason is why a message was refused or dropped.
type Reason string

// Refusal reasons, counted in Stats.Refused.
const (
	ReasonAuthFailed       Reason = "auth-failed"        // HMAC (or auth length) does not verify with the site key
	ReasonBadKeyID         Reason = "bad-key-id"         // key id is not the site's
	ReasonPrefixNotAllowed Reason = "prefix-not-allowed" // record outside the site's configuration (hijack attempt)
	ReasonReplay           Reason = "replay"             // nonce fails the replay check
	ReasonMalformed        Reason = "malformed"          // does not decode, or unusable EID
	ReasonUnknownSite      Reason = "unknown-site"       // no site configures the first record's EID
	ReasonUnsupported      Reason = "unsupported"        // message not handled by a Map-Server/Resolver
	ReasonUnexpectedAck    Reason = "unexpected-ack"     // Map-Notify-Ack matching no pending Map-Notify
)

// Stats is a snapshot of the Server's counters.
type Stats struct {
	Refused map[Reason]uint64

	Registrations     uint64 // new (prefix, ETR) registrations
	Refreshes         uint64 // re-registrations of a live (prefix, ETR)
	Deregistrations   uint64 // records with TTL 0
	Expirations       uint64 // registrations removed after RegistrationTTL without refresh
	MapNotifies       uint64 // first transmissions
	NotifyRetransmits uint64
	NotifyAcks        uint64
	NotifyGiveUps     uint64 // retries exhausted without Map-Notify-Ack

	MapRequests     uint64
	ProxyReplies    uint64
	Forwarded       uint64
	NegativeReplies uint64
}

// etrID identifies an ETR: its xTR-ID when the Map-Register has the I
// bit, else its source address. A comparable value, not a string: a
// string built per Map-Register was an allocation on the hot path.
type etrID struct {
	xtr   [16]byte
	addr  netip.Addr
	byXTR bool
}

type siteState struct {
	Site
	replay map[etrID]*replayState
	// mac is the site key's HMAC, kept between messages (hmac Reset
	// restores the keyed state); nil until first used and after a reload
	// changes the key. Used under Server.mu.
	mac hash.Hash
	sum []byte
}

type replayState struct {
	last   uint64
	recent map[uint64]time.Time // ReplayWindow
	// ReplayRecent: digests (the authentication data, an HMAC of the
	// whole message) of the last accepted messages, a ring; latest is the
	// index of the newest.
	digests [][lisp.AuthLenSHA256Full]byte
	latest  int
}

type regKey struct {
	iid uint32
	pfx netip.Prefix
}

type famKey struct {
	iid uint32
	v4  bool
}

type entry struct {
	k          regKey
	site       *siteState
	etr        etrID
	etrAddr    netip.AddrPort
	rec        lisp.MappingRecord
	proxy      bool
	asn        uint32
	hasASN     bool
	xtr        *lisp.XTRInfo
	registered time.Time
	expires    time.Time
	// The expiry queue's links (expiryQueue).
	prev, next *entry
	queued     bool
}

type pendingNotify struct {
	site     *siteState
	to       netip.AddrPort
	data     []byte
	attempts int
	next     time.Time
}

type pendKey struct {
	addr  netip.Addr
	nonce uint64
}

// Server is a LISP Map-Server and Map-Resolver. Its core, Handle and Tick,
// is a pure function of (state, packet, source, time) returning the
// datagrams to send; Serve drives it from a UDP socket. A Server is safe for
// concurrent use.
type Server struct {
	cfg   Config
	mu    sync.Mutex
	sites []*siteState

	regs  map[regKey][]*entry
	masks map[famKey]*[129]int // number of registered prefixes per mask length

	pending   map[pendKey]*pendingNotify
	nextSweep time.Time
	// expiry orders registrations by expiry time so a sweep visits only
	// what has expired (O(expired), not O(table)); a refresh moves its
	// entry, it leaves nothing behind.
	expiry expiryQueue
	// swept counts the entries sweeps have dequeued: the work expiry
	// does, for tests.
	swept uint64

	st Stats
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	cfg.fill()
	if err := validateSites(cfg.Sites); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		regs:    map[regKey][]*entry{},
		masks:   map[famKey]*[129]int{},
		pending: map[pendKey]*pendingNotify{},
		st:      Stats{Refused: map[Reason]uint64{}},
	}
	for _, site := range cfg.Sites {
		site.Key = bytes.Clone(site.Key)
		site.EIDPrefixes = append([]EIDPrefix(nil), site.EIDPrefixes...)
		s.sites = append(s.sites, &siteState{Site: site, replay: map[etrID]*replayState{}})
	}
	return s, nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Refused = make(map[Reason]uint64, len(s.st.Refused))
	for k, v := range s.st.Refused {
		st.Refused[k] = v
	}
	return st
}

func (s *Server) refuse(r Reason) []lisp.Datagram {
	s.st.Refused[r]++
	return nil
}

// Handle processes one received datagram from `from` at time now and
// returns the datagrams to send. pkt is not retained.
func (s *Server) Handle(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	pkt = bytes.Clone(pkt) // decoded records may alias pkt and are stored
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	m, err := lisp.Parse(pkt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.nextSweep) {
		s.sweep(now)
	}
	if err != nil {
		return s.refuse(ReasonMalformed)
	}
	switch m := m.(type) {
	case *lisp.MapRegister:
		return s.handleRegister(pkt, m, from, now)
	case *lisp.MapNotifyAck:
		return s.handleAck(pkt, m, from)
	case *lisp.ECM:
		req, ok := m.Message.(*lisp.MapRequest)
		if !ok || m.ToETR {
			return s.refuse(ReasonUnsupported)
		}
		return s.handleRequest(pkt, m, req, from, now)
	}
	// Map-Replies, Map-Notifies, plain Map-Requests (RLOC probes, SMRs) are
	// not for a Map-Server/Map-Resolver; discarded without response.
	return s.refuse(ReasonUnsupported)
}

// Tick runs timers at now: it removes expired registrations and returns
// due Map-Notify retransmissions.
func (s *Server) Tick(now time.Time) []lisp.Datagram {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	var out []lisp.Datagram
	for k, p := range s.pending {
		if now.Before(p.next) {
			continue
		}
		if p.attempts >= s.cfg.NotifyMaxRetries {
			delete(s.pending, k)
			s.st.NotifyGiveUps++
			continue
		}
		p.attempts++
		p.next = now.Add(s.cfg.NotifyRetryInterval)
		s.st.NotifyRetransmits++
		out = append(out, lisp.Datagram{To: p.to, Data: p.data})
	}
	return out
}

// sweep removes expired registrations: only those, from the head of the
// expiry queue; untouched entries are not visited.
func (s *Server) sweep(now time.Time) {
	s.nextSweep = now.Add(time.Second)
	for e := s.expiry.head; e != nil && !now.Before(e.expires); e = s.expiry.head {
		s.swept++
		s.st.Expirations++
		s.removeEntry(e)
	}
}

// removeEntry takes e out of the table and the expiry queue.
func (s *Server) removeEntry(e *entry) {
	s.expiry.remove(e)
	es := s.regs[e.k]
	for i, x := range es {
		if x == e {
			es = append(es[:i], es[i+1:]...)
			break
		}
	}
	if len(es) == 0 {
		s.dropKey(e.k)
	} else {
		s.regs[e.k] = es
	}
}

// expiryQueue holds the registrations in the order they expire, oldest
// first, as a doubly linked list through the entries. Every registration
// lives RegistrationTTL from its last Map-Register, so a new deadline is
// the latest one: it goes at the tail, and a refresh moves its entry there
// (O(1) both). A deadline earlier than the tail's (a clock that went back;
// never with time.Now's monotonic reading) is walked into place from the
// tail, so the order, and what a sweep takes, stays right.
type expiryQueue struct {
	head, tail *entry
	n          int
}

func (q *expiryQueue) push(e *entry) {
	at := q.tail
	for at != nil && e.expires.Before(at.expires) {
		at = at.prev
	}
	// Insert e after at (at the head when at is nil).
	e.prev = at
	if at == nil {
		e.next = q.head
		q.head = e
	} else {
		e.next = at.next
		at.next = e
	}
	if e.next == nil {
		q.tail = e
	} else {
		e.next.prev = e
	}
	e.queued = true
	q.n++
}

func (q *expiryQueue) remove(e *entry) {
	if !e.queued {
		return
	}
	if e.prev == nil {
		q.head = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		q.tail = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.prev, e.next, e.queued = nil, nil, false
	q.n--
}

func (s *Server) dropKey(k regKey) {
	delete(s.regs, k)
	fk := famKey{k.iid, k.pfx.Addr().Is4()}
	if m := s.masks[fk]; m != nil {
		m[k.pfx.Bits()]--
	}
}

// eidOf extracts (IID, prefix) and an AS Number from a record EID: a plain
// IP, or IP inside Instance-ID and/or AS Number LCAFs (any nesting order).
func eidOf(a lisp.Address, mask uint8) (k regKey, asn uint32, hasASN bool, ok bool) {
	for range lisp.MaxAddressDepth + 1 {
		if a.LCAF == nil {
			ip := a.IP
			if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
				return k, 0, false, false
			}
			p, err := ip.Prefix(int(mask))
			if err != nil || p.Addr() != ip {
				return k, 0, false, false // host bits set
			}
			k.pfx = p
			return k, asn, hasASN, true
		}
		switch a.LCAF.Type {
		case lisp.LCAFInstanceID:
			k.iid = a.LCAF.InstanceID
		case lisp.LCAFASNumber:
			asn, hasASN = a.LCAF.ASN, true
		default:
			return k, 0, false, false
		}
		a = a.LCAF.Inner
	}
	return k, 0, false, false
}

// allows reports whether site configures a prefix covering k (exactly,
// or containing it when more specifics are accepted).
func (site *siteState) allows(k regKey) bool {
	for _, p := range site.EIDPrefixes {
		if p.IID != k.iid || p.Prefix.Addr().Is4() != k.pfx.Addr().Is4() {
			continue
		}
		if p.Prefix == k.pfx {
			return true
		}
		if site.AcceptMoreSpecifics && p.Prefix.Bits() <= k.pfx.Bits() && p.Prefix.Contains(k.pfx.Addr()) {
			return true
		}
	}
	return false
}

// claims reports whether site configures a prefix overlapping k (used to
// pick the key to verify with).
func (site *siteState) claims(k regKey) bool {
	for _, p := range site.EIDPrefixes {
		if p.IID == k.iid && p.Prefix.Addr().Is4() == k.pfx.Addr().Is4() && p.Prefix.Overlaps(k.pfx) {
			return true
		}
	}
	return false
}

func etrOf(m *lisp.MapRegister, from netip.AddrPort) etrID {
	if m.XTR != nil {
		return etrID{xtr: m.XTR.XTRID, byXTR: true}
	}
	return etrID{addr: from.Addr()}
}

func (s *Server) handleRegister(pkt []byte, m *lisp.MapRegister, from netip.AddrPort, now time.Time) []lisp.Datagram {
	if len(m.Records) == 0 {
		return s.refuse(ReasonMalformed)
	}
	// Most Map-Registers carry a record or two: their keys stay on the
	// stack.
	var kb [4]regKey
	var ab [4]uint32
	var hb [4]bool
	keys, asns, hasASN := kb[:0], ab[:0], hb[:0]
	if len(m.Records) > len(kb) {
		keys, asns, hasASN = make([]regKey, 0, len(m.Records)), make([]uint32, 0, len(m.Records)), make([]bool, 0, len(m.Records))
	}
	keys, asns, hasASN = keys[:len(m.Records)], asns[:len(m.Records)], hasASN[:len(m.Records)]
	for i := range m.Records {
		var ok bool
		keys[i], asns[i], hasASN[i], ok = eidOf(m.Records[i].EID, m.Records[i].EIDMaskLen)
		if !ok {
			return s.refuse(ReasonMalformed)
		}
	}
	// Find the site: one claiming the first record whose key verifies.
	var site *siteState
	badKeyID, authFailed := false, false
	for _, c := range s.sites {
		if !c.claims(keys[0]) {
			continue
		}
		switch c.verify(pkt) {
		case verBadKeyID:
			badKeyID = true
			continue
		case verFailed:
			authFailed = true
			continue
		}
		site = c
		break
	}
	switch {
	case site != nil:
	case authFailed:
		return s.refuse(ReasonAuthFailed)
	case badKeyID:
		return s.refuse(ReasonBadKeyID)
	default:
		return s.refuse(ReasonUnknownSite)
	}
	// Hijack protection: every record must be configured for the site; the
	// Map-Register is refused as a whole otherwise.
	for _, k := range keys {
		if !site.allows(k) {
			return s.refuse(ReasonPrefixNotAllowed)
		}
	}
	etr := etrOf(m, from)
	if !s.replayOK(site, etr, m.Nonce, m.AuthData, now) {
		return s.refuse(ReasonReplay)
	}
	expires := now.Add(s.cfg.RegistrationTTL)
	for i := range m.Records {
		s.upsert(site, etr, from, keys[i], &m.Records[i], asns[i], hasASN[i], m, now, expires)
	}
	if !m.WantMapNotify {
		return nil
	}
	// The Map-Notify is signed like the Map-Register: same key field, same
	// authentication data length (verify checked both).
	b, err := (&lisp.MapNotify{Nonce: m.Nonce, KeyID: m.KeyID, AuthData: zeroAuth[:len(m.AuthData)], Records: m.Records, XTR: m.XTR}).
		Append(make([]byte, 0, len(pkt)+32))
	if err != nil {
		return nil
	}
	site.sign(b)
	s.st.MapNotifies++
	if site.NotifyAck {
		s.pending[pendKey{from.Addr(), m.Nonce}] = &pendingNotify{
			site: site, to: from, data: b, attempts: 0, next: now.Add(s.cfg.NotifyRetryInterval),
		}
	}
	return []lisp.Datagram{{To: from, Data: b}}
}

func (s *Server) replayOK(site *siteState, etr etrID, nonce uint64, auth []byte, now time.Time) bool {
	policy := s.cfg.Replay
	if site.Replay != nil {
		policy = *site.Replay
	}
	if policy == ReplayOff {
		return true
	}
	rs := site.replay[etr]
	if rs == nil {
		rs = &replayState{}
		site.replay[etr] = rs
		if policy == ReplayMonotonic {
			rs.last = nonce
			return true
		}
	}
	switch policy {
	case ReplayRecent:
		var d [lisp.AuthLenSHA256Full]byte
		copy(d[:], auth)
		if len(rs.digests) > 0 && rs.digests[rs.latest] == d {
			return true // the current registration again
		}
		for i := range rs.digests {
			if rs.digests[i] == d {
				return false // an older message again
			}
		}
		if len(rs.digests) < RecentMessages {
			rs.digests = append(rs.digests, d)
			rs.latest = len(rs.digests) - 1
		} else {
			rs.latest = (rs.latest + 1) % RecentMessages
			rs.digests[rs.latest] = d
		}
	case ReplayMonotonic:
		if nonce <= rs.last {
			return false
		}
		rs.last = nonce
	case ReplayWindow:
		if rs.recent == nil {
			rs.recent = map[uint64]time.Time{}
		}
		if t, ok := rs.recent[nonce]; ok && now.Before(t) {
			return false
		}
		if len(rs.recent) > 64 {
			for n, t := range rs.recent {
				if !now.Before(t) {
					delete(rs.recent, n)
				}
			}
		}
		rs.recent[nonce] = now.Add(s.cfg.RegistrationTTL)
	}
	return true
}

func (s *Server) upsert(site *siteState, etr etrID, from netip.AddrPort, k regKey, rec *lisp.MappingRecord, asn uint32, hasASN bool, m *lisp.MapRegister, now, expires time.Time) {
	es := s.regs[k]
	idx := -1
	for i, e := range es {
		if e.etr == etr {
			idx = i
			break
		}
	}
	if rec.TTL == 0 { // deregistration
		if idx >= 0 {
			s.st.Deregistrations++
			s.removeEntry(es[idx])
		}
		return
	}
	if idx >= 0 {
		// A refresh updates the entry in place and moves it to its new
		// place in the expiry queue: no allocation, nothing left behind.
		s.st.Refreshes++
		e := es[idx]
		s.expiry.remove(e)
		e.site, e.etrAddr, e.rec, e.proxy, e.asn, e.hasASN, e.xtr = site, from, *rec, m.ProxyReply, asn, hasASN, m.XTR
		e.registered, e.expires = now, expires
		s.expiry.push(e)
		return
	}
	e := &entry{k: k, site: site, etr: etr, etrAddr: from, rec: *rec, proxy: m.ProxyReply,
		asn: asn, hasASN: hasASN, xtr: m.XTR, registered: now, expires: expires}
	s.expiry.push(e)
	s.st.Registrations++
	if len(es) == 0 {
		fk := famKey{k.iid, k.pfx.Addr().Is4()}
		mk := s.masks[fk]
		if mk == nil {
			mk = new([129]int)
			s.masks[fk] = mk
		}
		mk[k.pfx.Bits()]++
	}
	s.regs[k] = append(es, e)
}

func (s *Server) handleAck(pkt []byte, m *lisp.MapNotifyAck, from netip.AddrPort) []lisp.Datagram {
	k := pendKey{from.Addr(), m.Nonce}
	p := s.pending[k]
	if p == nil {
		return s.refuse(ReasonUnexpectedAck)
	}
	switch p.site.verifyAnyLength(pkt) {
	case verBadKeyID:
		return s.refuse(ReasonBadKeyID)
	case verFailed:
		return s.refuse(ReasonAuthFailed)
	}
	delete(s.pending, k)
	s.st.NotifyAcks++
	return nil
}

// Registration is one (EID prefix, ETR) registration.
type Registration struct {
	Site    string
	EID     EIDPrefix
	ASN     uint32 // from the AS Number LCAF, when HasASN
	HasASN  bool
	ETR     netip.AddrPort // source of the Map-Register
	XTR     *lisp.XTRInfo
	Proxy   bool // P bit: the Map-Server answers for the ETR
	Record  lisp.MappingRecord
	Expires time.Time
}

func (e *entry) export(k regKey) Registration {
	return Registration{Site: e.site.Name, EID: EIDPrefix{k.iid, k.pfx}, ASN: e.asn, HasASN: e.hasASN,
		ETR: e.etrAddr, XTR: e.xtr, Proxy: e.proxy, Record: e.rec, Expires: e.expires}
}

// Registrations returns the registrations live at now, sorted by prefix.
func (s *Server) Registrations(now time.Time) []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Registration
	for k, es := range s.regs {
		for _, e := range es {
			if now.Before(e.expires) {
				out = append(out, e.export(k))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.EID.IID != b.EID.IID {
			return a.EID.IID < b.EID.IID
		}
		if c := a.EID.Prefix.Addr().Compare(b.EID.Prefix.Addr()); c != 0 {
			return c < 0
		}
		if a.EID.Prefix.Bits() != b.EID.Prefix.Bits() {
			return a.EID.Prefix.Bits() < b.EID.Prefix.Bits()
		}
		return a.ETR.Addr().Less(b.ETR.Addr())
	})
	return out
}

// Lookup returns the registration the Map-Resolver would answer with for
// addr in instance iid at now (longest match, most recent ETR).
func (s *Server) Lookup(iid uint32, addr netip.Addr, now time.Time) (Registration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, e := s.lookup(iid, addr.Unmap(), now)
	if e == nil {
		return Registration{}, false
	}
	return e.export(k), true
}
