package xtr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/engine"
)

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

	// RLOC-probing (RFC 9301 §7.1, probe.go): every ProbeInterval each
	// locator of each map-cache entry gets a Map-Request with the P bit;
	// unanswered after ProbeTimeout it is sent again, ProbeRetries times,
	// then the locator is down (not used by the data plane) until a
	// probe is answered. ProbeInterval 0: no probing.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration // [5 s]
	ProbeRetries  int           // [2]; negative: none

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
	Overclaims                                              uint64 // Map-Reply records refused: not covering the EID asked for

	// RLOC-probing (probe.go).
	Probes, ProbeRetries, ProbeReplies, ProbeBadNonce uint64
	LocatorsDown, LocatorsUp                          uint64 // transitions
	// Solicit-Map-Request (smr.go): sent on a database change (and
	// re-sent), SMR-invoked Map-Requests received for our EIDs (acks);
	// SMRs received, ignored (nothing cached for the source EID, or a
	// look-up already pending), SMR-invoked Map-Requests sent.
	SMRsSent, SMRsResent, SMRsAcked           uint64
	SMRsReceived, SMRsIgnored, SMRInvokedSent uint64
	DatabaseChanges                           uint64
	CacheEntries, Pending                     int
	LocatorsUpNow, LocatorsDownNow            int // probed locators by current state
}

// XTR is the ETR and ITR state of one node. One lock covers it all: Handle
// and Tick run under it, and so do the Directory's methods.
type XTR struct {
	cfg Config
	dir Directory

	mu    sync.Mutex
	stats Stats

	// ETR (etr.go): the registration schedule and the Map-Notify checks.
	started    time.Time
	nextReg    time.Time
	regNonce   uint64
	lastNonce  map[netip.AddrPort]uint64    // Map-Server → nonce of the last Map-Register
	regTargets string                       // the Map-Servers of the last registration round, to notice a change
	servers    map[netip.AddrPort]MapServer // the Map-Servers last registered with (Map-Notify checks)
	registered map[netip.AddrPort]time.Time // last authenticated Map-Notify
	lastReg    time.Time                    // when the last registration round was sent
	retry      time.Duration                // next wait for a Map-Notify that did not come
	dbByFamily [2][]int                     // database indexes by family, longest prefix first

	// ITR (itr.go): outstanding Map-Requests, hold-downs, the send rate.
	pending    map[uint64]*pending // by nonce
	pendingEID map[cacheKey]*pending
	hold       map[cacheKey]time.Time
	tokens     int
	tokenSec   int64
	missBuf    []engine.Miss
	asks       bool // the ITR has somewhere to ask (static resolvers or a Directory)

	// Map-cache (cache.go).
	cache map[cacheKey]*Entry
	index map[uint32]*bart.Table[*Entry] // by instance: longest match over cache
	dirty bool                           // changed since it was last published

	// RLOC-probing (probe.go) and SMRs (smr.go).
	probes     map[probeKey]*probe
	probeQ     probeHeap // the same probes, soonest due first
	probeNonce map[uint64]probeKey
	smrs       map[netip.Prefix]*smrRound // by changed database EID prefix
}

// New checks cfg and returns an xTR.
func New(cfg Config) (*XTR, error) {
	if cfg.InstanceID >= 1<<24 {
		return nil, fmt.Errorf("xtr: instance-ID %d does not fit 24 bits", cfg.InstanceID)
	}
	if err := CheckDatabase(cfg.Database); err != nil {
		return nil, err
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
	def(&cfg.ProbeTimeout, 5*time.Second)
	if cfg.ProbeRetries == 0 {
		cfg.ProbeRetries = 2
	} else if cfg.ProbeRetries < 0 {
		cfg.ProbeRetries = 0
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
		probes: map[probeKey]*probe{}, probeNonce: map[uint64]probeKey{}, smrs: map[netip.Prefix]*smrRound{},
	}
	if x.dir == nil {
		x.dir = &Static{Servers: cfg.MapServers, Resolvers: cfg.MapResolvers}
	}
	x.indexDatabase()
	return x, nil
}

// CheckDatabase checks database mappings as New and SetDatabase take them.
func CheckDatabase(db []Mapping) error {
	for i, m := range db {
		if !m.EID.IsValid() || len(m.Locators) == 0 {
			return fmt.Errorf("xtr: database[%d]: an EID prefix and at least one locator are needed", i)
		}
		for _, l := range m.Locators {
			if !l.Addr.IsValid() {
				return fmt.Errorf("xtr: database[%d]: invalid locator", i)
			}
		}
	}
	return nil
}

// indexDatabase sorts the database's indexes by family, longest prefix
// first (the ETR answers with the longest match). x.mu held or not shared.
func (x *XTR) indexDatabase() {
	x.dbByFamily = [2][]int{}
	for i, m := range x.cfg.Database {
		f := 0
		if m.EID.Addr().Is6() {
			f = 1
		}
		x.dbByFamily[f] = append(x.dbByFamily[f], i)
	}
	for f := range x.dbByFamily {
		idx := x.dbByFamily[f]
		sort.SliceStable(idx, func(a, b int) bool { return x.cfg.Database[idx[a]].EID.Bits() > x.cfg.Database[idx[b]].EID.Bits() })
	}
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
	for _, p := range x.probes {
		if p.reach {
			s.LocatorsUpNow++
		} else {
			s.LocatorsDownNow++
		}
	}
	return s
}

// Tick runs the timers: registrations, new misses, Map-Request (re)sends,
// expiry; it publishes the map-cache when it changed.
func (x *XTR) Tick(now time.Time) []lisp.Datagram {
	x.mu.Lock()
	if x.started.IsZero() {
		x.started, x.nextReg = now, now
	}
	out := x.registerDue(now)
	x.drainMisses(now)
	out = append(out, x.sendRequests(now)...)
	x.expire(now) // before probing: an entry that ends now is not probed
	out = append(out, x.probeDue(now)...)
	out = append(out, x.smrDue(now)...)
	x.releaseHolds(now)
	x.publishLocked()
	x.mu.Unlock()
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
		if !x.probeReply(m, now) {
			x.reply(m, now)
		}
		x.publishLocked()
	case *lisp.MapNotify:
		return x.notify(m, pkt, from, now)
	case *lisp.ECM:
		if req, ok := m.Message.(*lisp.MapRequest); ok {
			x.smrInvoked(req)
			return x.answer(req, m.Inner.Source, from, true)
		}
		x.stats.Unhandled++
	case *lisp.MapRequest:
		if m.SMR {
			x.solicited(m, now)
			if !m.Probe {
				return nil // an SMR is not answered; the look-up it asks for is
			}
		}
		x.smrInvoked(m)
		return x.answer(m, from, from, false)
	default:
		x.stats.Unhandled++
	}
	return nil
}

// eidAddress is an EID as sent: IP, inside an Instance-ID LCAF when the
// instance is not 0.
func (x *XTR) eidAddress(iid uint32, ip lisp.Address) lisp.Address {
	if iid != 0 {
		return lisp.InstanceIDAddr(iid, 0, ip)
	}
	return ip
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
