// Package xtr is the control plane of a LISP xTR (DESIGN §3.3, RFC 9301):
// the ETR registers this node's database mappings with its Map-Servers and
// answers Map-Requests for its EIDs; the ITR takes the destinations the
// engine missed in its map-cache, asks the Map-Resolvers (Encapsulated
// Map-Request), checks the reply's nonce, keeps the answers until their TTL
// runs out and publishes the map-cache to the poll loops as part of the
// engine's next snapshot.
//
// Like control/lisp/mapserver, the core is Handle (one datagram in, the
// datagrams to send out) and Tick (timers), with an injected clock; Serve
// runs them on a UDP socket.
package xtr

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/engine"
)

// Locator is one RLOC of a database mapping.
type Locator struct {
	Addr     netip.Addr
	Priority uint8
	Weight   uint8
}

// Mapping is one database mapping: an EID prefix of this site and its RLOCs.
type Mapping struct {
	EID      netip.Prefix
	Locators []Locator
}

// MapServer is one Map-Server the ETR registers with.
type MapServer struct {
	Addr       netip.AddrPort
	Auth       lisp.AuthConfig
	WantNotify bool // M bit: ask for a Map-Notify
	AckNotify  bool // answer Map-Notify with Map-Notify-Ack (the site's NotifyAck)
	ProxyReply bool // P bit: the Map-Server answers Map-Requests for us
}

// Directory says where the ETR registers and where the ITR asks. Static
// configuration (Static) and LISP-Decent (control/decent, wired in
// cmd/psavd) implement it, so the xTR has one code path for both. Its
// methods are called from Tick with the xTR's lock held: they must not
// block (a directory that resolves names does so in the background and
// answers from what it has).
type Directory interface {
	// MapServers returns the Map-Servers mapping m is registered with;
	// none (yet) → it is registered as soon as there are some.
	MapServers(m Mapping) []MapServer
	// MapResolver returns where the next Map-Request for eid (in
	// instance iid) goes; false when none is known (yet): the attempt
	// counts as a try, and the request is sent at its next try.
	MapResolver(iid uint32, eid netip.Addr) (netip.AddrPort, bool)
}

// Static is the Directory of static configuration: every mapping is
// registered with every MapServer, Map-Requests go round robin over the
// Resolvers.
type Static struct {
	Servers   []MapServer
	Resolvers []netip.AddrPort
	next      atomic.Uint64
}

// MapServers returns every configured Map-Server.
func (s *Static) MapServers(Mapping) []MapServer { return s.Servers }

// MapResolver returns the next resolver, round robin.
func (s *Static) MapResolver(uint32, netip.Addr) (netip.AddrPort, bool) {
	if len(s.Resolvers) == 0 {
		return netip.AddrPort{}, false
	}
	return s.Resolvers[(s.next.Add(1)-1)%uint64(len(s.Resolvers))], true
}

// Config configures an XTR. Zero durations and counts take the defaults in
// brackets.
type Config struct {
	InstanceID uint32       // 24 bits; in an Instance-ID LCAF when not 0
	ASN        uint32       // AS Number LCAF on registered records (0: none)
	RLOCs      []netip.Addr // this node's locators: the ITR-RLOCs of Map-Requests

	Database   []Mapping   // ETR: what this node registers and answers for
	MapServers []MapServer // ETR: where it registers
	RecordTTL  uint32      // minutes, in registrations and Map-Replies [1440]

	MapResolvers []netip.AddrPort // ITR: where Map-Requests go

	// Directory, when set, replaces MapServers and MapResolvers (which
	// must then be empty): LISP-Decent picks the Map-Servers per mapping
	// and the Map-Resolver per EID.
	Directory Directory

	RegisterFast  time.Duration // registration interval at first [20 s]
	FastFor       time.Duration // … for this long after start [5 min]
	RegisterEvery time.Duration // then [60 s]

	RequestTimeout    time.Duration // before a Map-Request is sent again [1 s]
	RequestRetries    int           // resends after the first [2]
	RequestsPerSecond int           // Map-Requests sent at most [100]
	HoldDown          time.Duration // an EID given up on is not asked for again this long [10 s]
	MaxPending        int           // outstanding Map-Requests [4096]
	MaxEntries        int           // map-cache entries [65536]
	MaxTTL            time.Duration // cap on a reply's TTL [24 h]

	// Misses drains the engine's miss queues (engine.Engine.Misses);
	// Publish hands it the map-cache (engine.Engine.PublishMapCache).
	Misses  func(dst []engine.Miss) []engine.Miss
	Publish func(*engine.MapCache)

	LocalPort    uint16 // the inner source port of Map-Requests (Serve sets it)
	TickInterval time.Duration
	Now          func() time.Time
}

// Stats are the xTR's counters.
type Stats struct {
	Registers, Notifies, NotifiesRefused, NotifyAcks        uint64
	Requests, Retries, RateLimited, GaveUp, MissesDropped   uint64
	Replies, BadNonce, Negative, Expired                    uint64
	RequestsAnswered, RequestsNotOurs, Malformed, Unhandled uint64
	NoMapServer, NoResolver                                 uint64 // registrations / requests the Directory had no target for (yet)
	RegisterRetries                                         uint64 // rounds sent again early: a wanted Map-Notify did not come
	CacheEntries, Pending                                   int
}

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

type pending struct {
	iid   uint32
	eid   netip.Addr
	nonce uint64
	tries int
	next  time.Time
}

// XTR is the ETR and ITR state of one node.
type XTR struct {
	cfg Config

	mu         sync.Mutex
	started    time.Time
	nextReg    time.Time
	regNonce   uint64
	lastNonce  map[netip.AddrPort]uint64 // Map-Server → nonce of the last Map-Register
	cache      map[cacheKey]*Entry
	index      map[uint32]*bart.Table[*Entry] // by instance: longest match over cache
	pending    map[uint64]*pending            // by nonce
	pendingEID map[cacheKey]*pending
	hold       map[cacheKey]time.Time
	tokens     int
	tokenSec   int64
	missBuf    []engine.Miss
	dir        Directory
	asks       bool                         // the ITR has somewhere to ask (static resolvers or a Directory)
	regTargets string                       // the Map-Servers of the last registration round, to notice a change
	servers    map[netip.AddrPort]MapServer // the Map-Servers last registered with (Map-Notify checks)
	stats      Stats
	dirty      bool
	registered map[netip.AddrPort]time.Time // last authenticated Map-Notify
	lastReg    time.Time                    // when the last registration round was sent
	retry      time.Duration                // next wait for a Map-Notify that did not come
	dbByFamily [2][]int                     // database indexes by family, longest prefix first
}

// New checks cfg and returns an xTR.
func New(cfg Config) (*XTR, error) {
	if cfg.InstanceID >= 1<<24 {
		return nil, fmt.Errorf("xtr: instance-ID %d does not fit 24 bits", cfg.InstanceID)
	}
	for i, m := range cfg.Database {
		if !m.EID.IsValid() || len(m.Locators) == 0 {
			return nil, fmt.Errorf("xtr: database[%d]: an EID prefix and at least one locator are needed", i)
		}
		for _, l := range m.Locators {
			if !l.Addr.IsValid() {
				return nil, fmt.Errorf("xtr: database[%d]: invalid locator", i)
			}
		}
	}
	for _, ms := range cfg.MapServers {
		if !ms.Addr.IsValid() || len(ms.Auth.Key) == 0 {
			return nil, fmt.Errorf("xtr: map-server %v: address and key needed", ms.Addr)
		}
	}
	if cfg.Directory != nil && (len(cfg.MapServers) > 0 || len(cfg.MapResolvers) > 0) {
		return nil, errors.New("xtr: a Directory replaces MapServers and MapResolvers: give one or the other")
	}
	if (len(cfg.MapResolvers) > 0 || cfg.Directory != nil) && len(cfg.RLOCs) == 0 {
		return nil, errors.New("xtr: Map-Requests need an ITR-RLOC")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RegisterFast, 20*time.Second)
	def(&cfg.FastFor, 5*time.Minute)
	def(&cfg.RegisterEvery, 60*time.Second)
	def(&cfg.RequestTimeout, time.Second)
	def(&cfg.HoldDown, 10*time.Second)
	def(&cfg.MaxTTL, 24*time.Hour)
	def(&cfg.TickInterval, 20*time.Millisecond)
	if cfg.RecordTTL == 0 {
		cfg.RecordTTL = 1440
	}
	if cfg.RequestRetries <= 0 {
		cfg.RequestRetries = 2
	}
	if cfg.RequestsPerSecond <= 0 {
		cfg.RequestsPerSecond = 100
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 4096
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LocalPort == 0 {
		cfg.LocalPort = 4342
	}
	x := &XTR{
		cfg: cfg, lastNonce: map[netip.AddrPort]uint64{}, cache: map[cacheKey]*Entry{}, index: map[uint32]*bart.Table[*Entry]{},
		pending: map[uint64]*pending{}, pendingEID: map[cacheKey]*pending{}, hold: map[cacheKey]time.Time{},
		registered: map[netip.AddrPort]time.Time{}, servers: map[netip.AddrPort]MapServer{},
		dir: cfg.Directory, asks: cfg.Directory != nil || len(cfg.MapResolvers) > 0,
	}
	if x.dir == nil {
		x.dir = &Static{Servers: cfg.MapServers, Resolvers: cfg.MapResolvers}
	}
	for i, m := range cfg.Database {
		f := 0
		if m.EID.Addr().Is6() {
			f = 1
		}
		x.dbByFamily[f] = append(x.dbByFamily[f], i)
	}
	for f := range x.dbByFamily {
		idx := x.dbByFamily[f]
		sort.SliceStable(idx, func(a, b int) bool { return cfg.Database[idx[a]].EID.Bits() > cfg.Database[idx[b]].EID.Bits() })
	}
	return x, nil
}

// Serve runs the xTR on conn (bound to the control port, 4342) until ctx is
// done. Map-Notifies and Map-Replies come back to it; Map-Servers forward
// Map-Requests for our EIDs to it.
func (x *XTR) Serve(ctx context.Context, conn *net.UDPConn) error {
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		x.mu.Lock()
		x.cfg.LocalPort = uint16(a.Port)
		x.mu.Unlock()
	}
	return mapserver.ServeUDP(ctx, conn, x.Handle, x.Tick, x.cfg.TickInterval, x.cfg.Now)
}

// Stats returns the counters.
func (x *XTR) Stats() Stats {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.stats
	s.CacheEntries, s.Pending = len(x.cache), len(x.pending)
	return s
}

// Registered reports when each Map-Server last confirmed a registration
// with an authenticated Map-Notify.
func (x *XTR) Registered() map[netip.AddrPort]time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := make(map[netip.AddrPort]time.Time, len(x.registered))
	for k, v := range x.registered {
		m[k] = v
	}
	return m
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

func (x *XTR) store(k cacheKey, e *Entry) {
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
	delete(x.cache, k)
	if t := x.index[k.iid]; t != nil {
		t.Delete(k.eid)
	}
	x.dirty = true
}

// Tick runs the timers: registrations, new misses, Map-Request (re)sends,
// expiry; it publishes the map-cache when it changed.
func (x *XTR) Tick(now time.Time) []lisp.Datagram {
	x.mu.Lock()
	var out []lisp.Datagram
	if x.started.IsZero() {
		x.started, x.nextReg = now, now
	}
	if len(x.cfg.Database) > 0 {
		targets, key, missing := x.registerTargets()
		// Registered at the interval, and at once when the Directory
		// names other Map-Servers (a member joined, a name moved).
		every := x.cfg.RegisterEvery
		if now.Sub(x.started) < x.cfg.FastFor {
			every = x.cfg.RegisterFast
		}
		if now.Before(x.nextReg) && key == x.regTargets && x.unconfirmed() && !now.Before(x.lastReg.Add(x.retry)) {
			// A Map-Server that should have confirmed did not (the
			// message was lost, or it was not up yet when we started):
			// send again soon instead of at the next interval, backing off
			// from 1 s to the interval; the schedule itself stays.
			x.stats.RegisterRetries++
			x.retry = min(2*x.retry, every)
			out = append(out, x.registers(targets)...)
			x.lastReg = now
		}
		if !now.Before(x.nextReg) || key != x.regTargets {
			if x.retry == 0 || !x.unconfirmed() {
				x.retry = time.Second
			}
			out = append(out, x.registers(targets)...)
			x.lastReg = now
			x.regTargets = key
			if missing {
				// Some mapping had no Map-Server yet: soon again.
				x.stats.NoMapServer++
				every = min(every, time.Second)
			}
			x.nextReg = now.Add(every)
		}
	}
	if x.cfg.Misses != nil {
		x.missBuf = x.cfg.Misses(x.missBuf[:0])
		for _, m := range x.missBuf {
			x.miss(m, now)
		}
	}
	out = append(out, x.sendRequests(now)...)
	for k, e := range x.cache {
		if !now.Before(e.Expires) {
			x.remove(k)
			x.stats.Expired++
		}
	}
	for k, until := range x.hold {
		if !now.Before(until) {
			delete(x.hold, k)
		}
	}
	x.publishLocked()
	x.mu.Unlock()
	return out
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
	p := &pending{iid: m.InstanceID, eid: m.Addr, nonce: randomNonce(), next: now}
	for x.pending[p.nonce] != nil {
		p.nonce = randomNonce()
	}
	x.pending[p.nonce] = p
	x.pendingEID[k] = p
}

func (x *XTR) dropPending(p *pending) {
	delete(x.pending, p.nonce)
	delete(x.pendingEID, cacheKey{p.iid, netip.PrefixFrom(p.eid, p.eid.BitLen())})
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
			x.hold[cacheKey{p.iid, netip.PrefixFrom(p.eid, p.eid.BitLen())}] = now.Add(x.cfg.HoldDown)
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
		}
		p.tries++
		p.next = now.Add(x.cfg.RequestTimeout)
		x.stats.Requests++
		out = append(out, lisp.Datagram{To: resolver, Data: b})
	}
	return out
}

// eidAddress is an EID as sent: IP, inside an Instance-ID LCAF when the
// instance is not 0.
func (x *XTR) eidAddress(iid uint32, ip lisp.Address) lisp.Address {
	if iid != 0 {
		return lisp.InstanceIDAddr(iid, 0, ip)
	}
	return ip
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
			Nonce: p.nonce, ITRRLOCs: itr,
			Records: []lisp.EIDRecord{{MaskLen: uint8(p.eid.BitLen()), EID: x.eidAddress(p.iid, lisp.IPAddr(p.eid))}},
		},
	})
}

// record is database mapping m as a mapping record.
func (x *XTR) record(m Mapping) lisp.MappingRecord {
	eid := lisp.IPAddr(m.EID.Masked().Addr())
	if x.cfg.ASN != 0 {
		eid = lisp.ASNAddr(x.cfg.ASN, eid)
	}
	r := lisp.MappingRecord{TTL: x.cfg.RecordTTL, EIDMaskLen: uint8(m.EID.Bits()), Authoritative: true, EID: x.eidAddress(x.cfg.InstanceID, eid)}
	for _, l := range m.Locators {
		r.Locators = append(r.Locators, lisp.Locator{Priority: l.Priority, Weight: l.Weight, MPriority: 255, Local: true, Reachable: true, Address: lisp.IPAddr(l.Addr)})
	}
	return r
}

// regTarget is one Map-Server and the database mappings registered with it.
type regTarget struct {
	ms   MapServer
	recs []lisp.MappingRecord
}

// unconfirmed reports whether a Map-Server of the last round that was asked
// for a Map-Notify has not sent an authenticated one since.
func (x *XTR) unconfirmed() bool {
	if x.lastReg.IsZero() {
		return false
	}
	for addr, ms := range x.servers {
		if ms.WantNotify && x.registered[addr].Before(x.lastReg) {
			return true
		}
	}
	return false
}

// registerTargets asks the Directory where each database mapping goes and
// groups the records by Map-Server (in database order; Map-Servers by
// address). key names the Map-Servers and what each gets; missing is set
// when some mapping had none.
func (x *XTR) registerTargets() (ts []*regTarget, key string, missing bool) {
	by := map[netip.AddrPort]*regTarget{}
	for _, m := range x.cfg.Database {
		servers := x.dir.MapServers(m)
		if len(servers) == 0 {
			missing = true
		}
		for _, ms := range servers {
			t := by[ms.Addr]
			if t == nil {
				t = &regTarget{ms: ms}
				by[ms.Addr] = t
				ts = append(ts, t)
			}
			t.recs = append(t.recs, x.record(m))
		}
	}
	sort.Slice(ts, func(a, b int) bool { return ts[a].ms.Addr.Compare(ts[b].ms.Addr) < 0 })
	var kb []byte
	for _, t := range ts {
		kb = append(kb, t.ms.Addr.String()...)
		kb = append(kb, '=')
		kb = strconv.AppendInt(kb, int64(len(t.recs)), 10)
		kb = append(kb, ' ')
	}
	return ts, string(kb), missing
}

// registers builds one Map-Register per Map-Server with the database
// mappings registered there. The nonce grows with every message and starts
// from the clock, so it keeps growing across restarts (the Map-Server's
// replay check).
func (x *XTR) registers(targets []*regTarget) []lisp.Datagram {
	var out []lisp.Datagram
	clear(x.servers) // a Map-Server no longer named is no longer listened to
	for _, t := range targets {
		ms := t.ms
		x.servers[ms.Addr] = ms
		x.regNonce = max(x.regNonce+1, uint64(x.cfg.Now().UnixNano()))
		b, err := ms.Auth.Marshal(&lisp.MapRegister{WantMapNotify: ms.WantNotify, ProxyReply: ms.ProxyReply, Nonce: x.regNonce, Records: t.recs})
		if err != nil {
			x.stats.Malformed++
			continue
		}
		x.lastNonce[ms.Addr] = x.regNonce
		x.stats.Registers++
		out = append(out, lisp.Datagram{To: ms.Addr, Data: b})
	}
	return out
}

// Handle processes one datagram from from and returns what to send.
func (x *XTR) Handle(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	msg, err := lisp.Parse(pkt)
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil {
		x.stats.Malformed++
		return nil
	}
	switch m := msg.(type) {
	case *lisp.MapReply:
		x.reply(m, now)
		x.publishLocked()
	case *lisp.MapNotify:
		return x.notify(m, pkt, from, now)
	case *lisp.ECM:
		if req, ok := m.Message.(*lisp.MapRequest); ok {
			return x.answer(req, m.Inner.Source, from, true)
		}
		x.stats.Unhandled++
	case *lisp.MapRequest:
		return x.answer(m, from, from, false)
	default:
		x.stats.Unhandled++
	}
	return nil
}

// notify checks a Map-Notify: from a Map-Server we registered with, its key,
// the nonce of our last Map-Register to it.
func (x *XTR) notify(m *lisp.MapNotify, pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	for _, ms := range x.servers {
		if ms.Addr.Addr().Unmap() != from.Addr().Unmap() {
			continue
		}
		if ms.Auth.Verify(pkt) != nil || m.Nonce != x.lastNonce[ms.Addr] {
			break
		}
		x.stats.Notifies++
		x.registered[ms.Addr] = now
		if !ms.AckNotify {
			return nil
		}
		ack := lisp.MapNotifyAck(*m)
		ack.AuthData = nil
		b, err := ms.Auth.Marshal(&ack)
		if err != nil {
			return nil
		}
		x.stats.NotifyAcks++
		return []lisp.Datagram{{To: from, Data: b}}
	}
	x.stats.NotifiesRefused++
	return nil
}

// answer is the ETR's Map-Reply to a Map-Request for one of its EIDs.
// Encapsulated requests come through a Map-Server: the reply goes to the
// ITR-RLOC of the family the request reached the Map-Server by (the outer
// source's: the ITR's control socket listens there — the inner source's
// family is the EID's, not necessarily one it listens on), else the first,
// at the inner source port. Plain requests are answered to their source.
func (x *XTR) answer(req *lisp.MapRequest, src, from netip.AddrPort, encapsulated bool) []lisp.Datagram {
	if len(req.Records) == 0 {
		x.stats.Malformed++
		return nil
	}
	iid, ip, ok := unwrapEID(req.Records[0].EID)
	if !ok || iid != x.cfg.InstanceID {
		x.stats.RequestsNotOurs++
		return nil
	}
	f := 0
	if ip.Is6() {
		f = 1
	}
	var rec *lisp.MappingRecord
	for _, i := range x.dbByFamily[f] {
		if x.cfg.Database[i].EID.Contains(ip) {
			r := x.record(x.cfg.Database[i])
			rec = &r
			break
		}
	}
	if rec == nil {
		x.stats.RequestsNotOurs++
		return nil
	}
	to := src
	if encapsulated {
		ip, ok := req.ITRRLOCFor(from.Addr())
		if !ok {
			x.stats.Malformed++
			return nil
		}
		to = netip.AddrPortFrom(ip, src.Port())
	}
	b, err := lisp.Marshal(&lisp.MapReply{Nonce: req.Nonce, Records: []lisp.MappingRecord{*rec}})
	if err != nil {
		x.stats.Malformed++
		return nil
	}
	x.stats.RequestsAnswered++
	return []lisp.Datagram{{To: to, Data: b}}
}

// unwrapEID finds the IP (and the instance-ID) in an EID address, through
// Instance-ID and AS Number LCAFs in any order.
func unwrapEID(a lisp.Address) (iid uint32, ip netip.Addr, ok bool) {
	for depth := 0; depth <= lisp.MaxAddressDepth; depth++ {
		if a.LCAF == nil {
			return iid, a.IP.Unmap(), a.IP.IsValid()
		}
		switch a.LCAF.Type {
		case lisp.LCAFInstanceID:
			iid = a.LCAF.InstanceID
		case lisp.LCAFASNumber:
		default:
			return 0, netip.Addr{}, false
		}
		a = a.LCAF.Inner
	}
	return 0, netip.Addr{}, false
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
	for _, r := range m.Records {
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
		x.store(k, e)
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
		_ = b.Add(e.EID, engine.Mapping{InstanceID: e.InstanceID, Action: e.Action, Locators: e.Locators}) // checked when they came in
	}
	x.cfg.Publish(b.MapCache())
}

func randomNonce() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}
