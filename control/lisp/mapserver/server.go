package mapserver

import (
	"bytes"
	"encoding/binary"
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
// bit, else its source address. A comparable, pointer-free value, not a
// string: a string built per Map-Register was an allocation on the hot
// path, and entries store it (table.go).
type etrID struct {
	xtr   [16]byte
	addr  [16]byte
	v4    bool
	byXTR bool
}

type siteState struct {
	Site
	// id is what entries refer to the site by (Server.siteTab); it stays
	// the site's across reloads that keep its name.
	id     uint32
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
	// tags are the digests' first eight octets, scanned first: a full
	// comparison only where one matches (an HMAC's octets are uniform, so
	// almost never), not RecentMessages of them per Map-Register.
	tags []uint64
}

// seen reports whether d is among the ring's digests.
func (rs *replayState) seen(d *[lisp.AuthLenSHA256Full]byte) bool {
	tag := binary.LittleEndian.Uint64(d[:8])
	for i, t := range rs.tags {
		if t == tag && rs.digests[i] == *d {
			return true
		}
	}
	return false
}

type famKey struct {
	iid uint32
	v4  bool
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
	// siteTab is every site by id (nil once removed).
	siteTab []*siteState
	// outside counts the entries their site's prefixes no longer allow
	// (kept until they expire, SetSites): while there are none, every
	// registration lies inside a configured prefix (negativePrefix).
	outside int
	// base is the origin of the entries' times.
	base time.Time

	// regs maps a key to the first of its entries (entry.same links the
	// rest: one per ETR); tab holds the entries (table.go).
	regs  index
	tab   table
	masks map[famKey]*[129]int // number of registered prefixes per mask length
	// recBuf holds the records of the Map-Register at hand encoded, each
	// ending at its recEnd; dec decodes Map-Registers (all used under mu).
	recBuf []byte
	recEnd []int
	dec    lisp.RegisterDecoder

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
		base:    cfg.Now(),
		regs:    newIndex(),
		tab:     newTable(),
		masks:   map[famKey]*[129]int{},
		pending: map[pendKey]*pendingNotify{},
		expiry:  expiryQueue{head: none, tail: none},
		st:      Stats{Refused: map[Reason]uint64{}},
	}
	for _, site := range cfg.Sites {
		s.sites = append(s.sites, s.newSite(site))
	}
	return s, nil
}

// newSite makes the state of a site added to the configuration.
func (s *Server) newSite(site Site) *siteState {
	site.Key = bytes.Clone(site.Key)
	site.EIDPrefixes = append([]EIDPrefix(nil), site.EIDPrefixes...)
	st := &siteState{Site: site, id: uint32(len(s.siteTab)), replay: map[etrID]*replayState{}}
	s.siteTab = append(s.siteTab, st)
	return st
}

// rel is t as an entry time (nanoseconds since base); abs is the reverse.
func (s *Server) rel(t time.Time) int64  { return int64(t.Sub(s.base)) }
func (s *Server) abs(ns int64) time.Time { return s.base.Add(time.Duration(ns)) }

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
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.nextSweep) {
		s.sweep(now)
	}
	// Map-Registers, nearly all of a Map-Server's load, are decoded into
	// storage the Server reuses; nothing of the decoding is kept (the
	// table stores the records' encoding).
	if len(pkt) > 0 && lisp.Type(pkt[0]>>4) == lisp.TypeMapRegister {
		m, err := s.dec.Decode(pkt)
		if err != nil {
			return s.refuse(ReasonMalformed)
		}
		return s.handleRegister(pkt, m, from, now)
	}
	m, err := lisp.Parse(pkt)
	if err != nil {
		return s.refuse(ReasonMalformed)
	}
	switch m := m.(type) {
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
	t := s.rel(now)
	for r := s.expiry.head; r != none && t >= s.tab.at(r).expires; r = s.expiry.head {
		s.swept++
		s.st.Expirations++
		s.removeEntry(r)
	}
}

// removeEntry takes r out of the table, its key's list and the expiry
// queue.
func (s *Server) removeEntry(r ref) {
	s.tab.unqueue(&s.expiry, r)
	e := s.tab.at(r)
	if e.outside {
		s.outside--
	}
	k := e.k
	if head, _ := s.regs.get(&s.tab, k); head == r {
		if e.same == none {
			s.dropKey(k)
		} else {
			s.regs.set(&s.tab, k, e.same)
		}
	} else {
		for p := head; p != none; p = s.tab.at(p).same {
			if pe := s.tab.at(p); pe.same == r {
				pe.same = e.same
				break
			}
		}
	}
	s.tab.release(r)
}

func (s *Server) dropKey(k regKey) {
	s.regs.del(&s.tab, k)
	if m := s.masks[famKey{k.iid(), k.v4()}]; m != nil {
		m[k.bits()]--
	}
}

// eidOf extracts (IID, prefix) and an AS Number from a record EID: a plain
// IP, or IP inside Instance-ID and/or AS Number LCAFs (any nesting order).
func eidOf(a lisp.Address, mask uint8) (k regKey, asn uint32, hasASN bool, ok bool) {
	var iid uint32
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
			return newRegKey(iid, p), asn, hasASN, true
		}
		switch a.LCAF.Type {
		case lisp.LCAFInstanceID:
			iid = a.LCAF.InstanceID
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
	pfx := k.prefix()
	for _, p := range site.EIDPrefixes {
		if p.IID != k.iid() || p.Prefix.Addr().Is4() != k.v4() {
			continue
		}
		if p.Prefix == pfx {
			return true
		}
		if site.AcceptMoreSpecifics && p.Prefix.Bits() <= pfx.Bits() && p.Prefix.Contains(pfx.Addr()) {
			return true
		}
	}
	return false
}

// claims reports whether site configures a prefix overlapping k (used to
// pick the key to verify with).
func (site *siteState) claims(k regKey) bool {
	pfx := k.prefix()
	for _, p := range site.EIDPrefixes {
		if p.IID == k.iid() && p.Prefix.Addr().Is4() == k.v4() && p.Prefix.Overlaps(pfx) {
			return true
		}
	}
	return false
}

func etrOf(m *lisp.MapRegister, from netip.AddrPort) etrID {
	if m.XTR != nil {
		return etrID{xtr: m.XTR.XTRID, byXTR: true}
	}
	return etrID{addr: from.Addr().As16(), v4: from.Addr().Is4()}
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
	// Every record encoded once, one after another in recBuf: each is
	// stored from there, and the Map-Notify carries them all.
	s.recBuf, s.recEnd = s.recBuf[:0], s.recEnd[:0]
	for i := range m.Records {
		b, err := lisp.AppendMappingRecord(s.recBuf, &m.Records[i])
		if err != nil { // it decoded, so it encodes
			return s.refuse(ReasonMalformed)
		}
		s.recBuf, s.recEnd = b, append(s.recEnd, len(b))
	}
	expires := now.Add(s.cfg.RegistrationTTL)
	lo := 0
	for i := range m.Records {
		s.upsert(site, etr, from, keys[i], &m.Records[i], s.recBuf[lo:s.recEnd[i]], asns[i], hasASN[i], m, now, expires)
		lo = s.recEnd[i]
	}
	if !m.WantMapNotify {
		return nil
	}
	// The Map-Notify has the Map-Register's fields and is signed like it:
	// same key field, same authentication data length (verify checked
	// both).
	b, err := lisp.AppendNotifyFor(make([]byte, 0, len(pkt)), m, s.recBuf)
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
		if rs.seen(&d) {
			return false // an older message again
		}
		tag := binary.LittleEndian.Uint64(d[:8])
		if len(rs.digests) < RecentMessages {
			rs.digests = append(rs.digests, d)
			rs.tags = append(rs.tags, tag)
			rs.latest = len(rs.digests) - 1
		} else {
			rs.latest = (rs.latest + 1) % RecentMessages
			rs.digests[rs.latest], rs.tags[rs.latest] = d, tag
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

// upsert stores record rec of m, enc its encoding, under (k, etr), or
// removes that registration for a TTL of 0.
func (s *Server) upsert(site *siteState, etr etrID, from netip.AddrPort, k regKey, rec *lisp.MappingRecord, enc []byte, asn uint32, hasASN bool, m *lisp.MapRegister, now, expires time.Time) {
	head, known := s.regs.get(&s.tab, k)
	r := none
	if known {
		for x := head; x != none; x = s.tab.at(x).same {
			if s.tab.at(x).etr == etr {
				r = x
				break
			}
		}
	}
	if rec.TTL == 0 { // deregistration
		if r != none {
			s.st.Deregistrations++
			s.removeEntry(r)
		}
		return
	}
	if r != none {
		// A refresh updates the entry in place and moves it to its new
		// place in the expiry queue: nothing allocated, nothing left
		// behind.
		s.st.Refreshes++
		s.tab.unqueue(&s.expiry, r)
	} else {
		r = s.tab.alloc()
		e := s.tab.at(r)
		e.k, e.etr, e.same = k, etr, none
		if known {
			e.same = head
		} else {
			fk := famKey{k.iid(), k.v4()}
			mk := s.masks[fk]
			if mk == nil {
				mk = new([129]int)
				s.masks[fk] = mk
			}
			mk[k.bits()]++
		}
		s.regs.set(&s.tab, k, r)
		s.st.Registrations++
	}
	e := s.tab.at(r)
	if e.outside { // allowed again: site allowed k before upsert
		e.outside = false
		s.outside--
	}
	e.site, e.from, e.proxy, e.asn, e.hasASN = site.id, packAddrPort(from), m.ProxyReply, asn, hasASN
	e.hasXTR = m.XTR != nil
	e.xtr = lisp.XTRInfo{}
	if e.hasXTR {
		e.xtr = *m.XTR
	}
	e.registered, e.expires = s.rel(now), s.rel(expires)
	s.tab.setRecord(r, enc)
	s.tab.push(&s.expiry, r)
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

func (s *Server) export(r ref) Registration {
	e := s.tab.at(r)
	var xtr *lisp.XTRInfo
	if e.hasXTR {
		x := e.xtr
		xtr = &x
	}
	var site string
	if st := s.siteTab[e.site]; st != nil {
		site = st.Name
	}
	return Registration{Site: site, EID: EIDPrefix{e.k.iid(), e.k.prefix()}, ASN: e.asn, HasASN: e.hasASN,
		ETR: e.from.unpack(), XTR: xtr, Proxy: e.proxy, Record: s.tab.record(r), Expires: s.abs(e.expires)}
}

// Registrations returns the registrations live at now, sorted by prefix.
func (s *Server) Registrations(now time.Time) []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.rel(now)
	var out []Registration
	s.tab.each(func(r ref, e *entry) {
		if t < e.expires {
			out = append(out, s.export(r))
		}
	})
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

// Len is the number of registrations live at now: Registrations' length,
// without building them (a metrics scrape with 1 M registrations).
func (s *Server) Len(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	return s.expiry.n
}

// Lookup returns the registration the Map-Resolver would answer with for
// addr in instance iid at now (longest match, most recent ETR).
func (s *Server) Lookup(iid uint32, addr netip.Addr, now time.Time) (Registration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lookup(iid, addr.Unmap(), now)
	if r == none {
		return Registration{}, false
	}
	return s.export(r), true
}
