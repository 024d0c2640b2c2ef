package push

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

// Mismatch is a registration from another node refused for a
// configuration reason: the sender's site keys, key ids, EID prefixes or
// membership key differ from ours (or it is not a member at all).
type Mismatch struct {
	From       netip.AddrPort
	Reason     mapserver.Reason // auth-failed, bad-key-id, unknown-site, prefix-not-allowed
	Membership bool             // a (0/0, G) membership registration (else an EID registration)
	Records    string           // the refused records' EIDs, for the log
}

func (m Mismatch) String() string {
	kind := "EID"
	if m.Membership {
		kind = "membership"
	}
	return fmt.Sprintf("decent push: %s registration %s from %v refused (%s): the sender's configuration differs from ours", kind, m.Records, m.From, m.Reason)
}

// mismatchReasons are refusals that mean "configured differently".
var mismatchReasons = []mapserver.Reason{mapserver.ReasonAuthFailed, mapserver.ReasonBadKeyID,
	mapserver.ReasonUnknownSite, mapserver.ReasonPrefixNotAllowed}

// Stats counts a Node's traffic.
type Stats struct {
	RegistersBuilt    uint64 // Map-Registers built (membership + EID, per refresh or change)
	RegistersSent     uint64 // datagrams carrying them (each unicast copy counts)
	RegistersReceived uint64 // Map-Registers received from the network (not our own)
	Decapsulated      uint64 // encapsulated Map-Registers accepted on the data port
	DecapDropped      uint64 // data-port packets that are not LISP-Decent Map-Registers for our group
	MixedRefused      uint64 // Map-Registers mixing group and unicast EID records
	MapRequestsSent   uint64 // look-ups of groups in the core seed-group
	MapRepliesUsed    uint64 // answers to them
	GroupRequests     uint64 // Map-Requests for group EIDs answered from the group table
	GroupNegative     uint64 // of which for unknown groups
	Mismatches        uint64
	MembersChanged    uint64 // times the RLE of our group changed
	GroupRefused      map[mapserver.Reason]uint64
}

// Node is a push-mode LISP-Decent node (docs/wire.md §3.4, draft §4): a
// Map-Server and Map-Resolver for its registration group plus the ETR side
// that sends its registrations to the group. Its core — HandleControl,
// HandleData, Tick — is a function of (state, datagram, time) returning the
// datagrams to send; Run drives it from sockets. Safe for concurrent use.
type Node struct {
	cfg    Config
	ms     *mapserver.Server
	selfAP netip.AddrPort

	mu          sync.Mutex
	groups      *groupTable
	eids        []EID
	withdrawn   []EID // removed by SetEIDs, deregistered with the next change
	nonce       uint64
	dirty       bool
	nextRefresh time.Time
	nextLookup  time.Time
	sentTo      map[netip.Addr]map[netip.Addr]bool // group -> RLOCs that have our registrations
	learned     map[netip.Addr]learnedRLE          // group -> RLE answered by the core
	pending     map[uint64]pendingLookup
	lookupRR    int
	lastMembers []netip.Addr
	st          Stats
	lastMis     []Mismatch
}

type learnedRLE struct {
	rle     []netip.Addr
	expires time.Time
}

type pendingLookup struct {
	group netip.Addr
	sent  time.Time
}

// New validates cfg (ConfigErrors) and returns a node.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ms, err := mapserver.New(mapserver.Config{Sites: cfg.Sites, Replay: cfg.Replay, RegistrationTTL: cfg.RegistrationTTL,
		ControlPort: cfg.ControlPort, TickInterval: cfg.TickInterval})
	if err != nil {
		return nil, err
	}
	var r [2]byte
	_, _ = rand.Read(r[:])
	n := &Node{
		cfg: cfg, ms: ms, selfAP: netip.AddrPortFrom(cfg.RLOC, cfg.ControlPort),
		groups: newGroupTable(cfg.MembershipKeyID, cfg.MembershipKey, cfg.RegistrationTTL, cfg.Replay),
		eids:   slices.Clone(cfg.EIDs),
		// Monotonic across restarts: nanoseconds since the epoch (plus a
		// little noise so two nodes never share a nonce stream).
		nonce:   uint64(cfg.Now().UnixNano()) + uint64(binary.BigEndian.Uint16(r[:])),
		sentTo:  map[netip.Addr]map[netip.Addr]bool{},
		learned: map[netip.Addr]learnedRLE{},
		pending: map[uint64]pendingLookup{},
		st:      Stats{GroupRefused: map[mapserver.Reason]uint64{}},
	}
	return n, nil
}

// Config returns the node's configuration with defaults filled.
func (n *Node) Config() Config { return n.cfg }

// MapServer is the node's local Map-Server for unicast EIDs.
func (n *Node) MapServer() *mapserver.Server { return n.ms }

// SetEIDs replaces what this node registers; the change (registrations of
// the EIDs, TTL-0 deregistrations of removed ones) is sent at the next Tick.
func (n *Node) SetEIDs(eids []EID) error {
	c := n.cfg
	c.EIDs = eids
	if err := c.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	for _, old := range n.eids {
		if !slices.Contains(eids, old) {
			n.withdrawn = append(n.withdrawn, old)
		}
	}
	n.withdrawn = slices.DeleteFunc(n.withdrawn, func(e EID) bool { return slices.Contains(eids, e) })
	n.eids = slices.Clone(eids)
	n.dirty = true
	n.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	st.GroupRefused = maps.Clone(n.groups.refused)
	return st
}

// Mismatches returns the last mismatches seen (at most 16).
func (n *Node) Mismatches() []Mismatch {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lastMis)
}

// Members returns the RLE of group g as this node's Map-Server holds it
// (what a look-up of g answers).
func (n *Node) Members(g netip.Addr, now time.Time) []netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.groups.lookup(g, now)
}

// GroupRegistrations returns the live membership registrations.
func (n *Node) GroupRegistrations(now time.Time) []GroupRegistration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.groups.list(now)
}

// Digest is a SHA-256 over this node's live registration set — every
// unicast EID registration (site, [iid]prefix, ETR, xTR-ID, P bit, the
// record as registered) and every membership registration (G, member,
// source, RLE) — leaving out expiry times, so members holding the same
// registrations have the same digest.
func (n *Node) Digest(now time.Time) string {
	lines := n.registrationLines(now)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// registrationLines is the canonical text the digest covers, sorted.
func (n *Node) registrationLines(now time.Time) []string {
	var lines []string
	for _, r := range n.ms.Registrations(now) {
		rec, _ := lisp.AppendMappingRecord(nil, &r.Record)
		var xtr string
		if r.XTR != nil {
			xtr = hex.EncodeToString(r.XTR.XTRID[:])
		}
		lines = append(lines, fmt.Sprintf("eid %s %v %v %s %t %x", r.Site, r.EID, r.ETR, xtr, r.Proxy, rec))
	}
	for _, g := range n.GroupRegistrations(now) {
		lines = append(lines, fmt.Sprintf("group %v %x %v %v", g.Group, g.XTRID, g.From, g.RLE))
	}
	slices.Sort(lines)
	return lines
}

// HandleControl processes a datagram received on the control socket: a
// Map-Register sent to the group by multicast, an ECM Map-Request, a
// Map-Reply to our look-ups, or anything else the Map-Server handles.
func (n *Node) HandleControl(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	if len(pkt) == 0 {
		return nil
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	var mis []Mismatch
	n.mu.Lock()
	var out []lisp.Datagram
	switch lisp.Type(pkt[0] >> 4) {
	case lisp.TypeMapRegister:
		n.st.RegistersReceived++
		out, mis = n.handleRegister(pkt, from, now)
	case lisp.TypeMapReply:
		n.handleReply(pkt, now)
	case lisp.TypeECM:
		out = n.handleECM(pkt, from, now)
	default:
		out = n.ms.Handle(pkt, from, now)
	}
	n.mu.Unlock()
	n.report(mis)
	return out
}

// HandleData processes a datagram received on the data port: a LISP data
// header with the I bit and instance-ID 0xffffff, an inner IP/UDP header to
// G port 4342, and a Map-Register, which goes to the Map-Server with the
// inner source as its sender. Anything else is dropped and counted.
func (n *Node) HandleData(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	reg, src, ok := n.decapsulate(pkt)
	n.mu.Lock()
	if !ok {
		n.st.DecapDropped++
		n.mu.Unlock()
		return nil
	}
	n.st.Decapsulated++
	n.st.RegistersReceived++
	out, mis := n.handleRegister(reg, src, now)
	n.mu.Unlock()
	n.report(mis)
	return out
}

// decapsulate checks a data-port packet and returns its Map-Register and
// inner source.
func (n *Node) decapsulate(pkt []byte) ([]byte, netip.AddrPort, bool) {
	h, inner, err := lisp.ParseDataHeader(pkt)
	if err != nil || !h.IIDPresent || h.InstanceID != lisp.DecentInstanceID {
		return nil, netip.AddrPort{}, false
	}
	ih, payload, err := lisp.ParseInnerIPUDP(inner)
	if err != nil || ih.Destination.Addr() != n.cfg.Group || ih.Destination.Port() != n.cfg.ControlPort ||
		len(payload) == 0 || lisp.Type(payload[0]>>4) != lisp.TypeMapRegister {
		return nil, netip.AddrPort{}, false
	}
	return payload, ih.Source, true
}

// encapsulate wraps a Map-Register for group g: LISP data header (I bit,
// IID 0xffffff), inner IP/UDP from our RLOC:4342 to g:4342.
func (n *Node) encapsulate(reg []byte, g netip.Addr) ([]byte, error) {
	b, err := lisp.AppendDataHeader(make([]byte, 0, lisp.DataHeaderLen+48+len(reg)),
		lisp.DataHeader{IIDPresent: true, InstanceID: lisp.DecentInstanceID})
	if err != nil {
		return nil, err
	}
	return lisp.AppendInnerIPUDP(b, lisp.InnerHeader{Source: n.selfAP,
		Destination: netip.AddrPortFrom(g, n.cfg.ControlPort), TTL: uint8(n.cfg.MulticastTTL)}, reg)
}

func (n *Node) report(mis []Mismatch) {
	if n.cfg.OnMismatch == nil {
		return
	}
	for _, m := range mis {
		n.cfg.OnMismatch(m)
	}
}

// handleRegister hands a Map-Register to the group table (membership
// records) or the Map-Server (unicast EID records) and turns refusals for
// configuration reasons into mismatches. n.mu held.
func (n *Node) handleRegister(pkt []byte, from netip.AddrPort, now time.Time) ([]lisp.Datagram, []Mismatch) {
	m, err := lisp.ParseMapRegister(pkt)
	if err != nil {
		return n.ms.Handle(pkt, from, now), nil // counted as malformed there
	}
	groupRecs := 0
	var eids []string
	for i := range m.Records {
		if isGroupRecord(&m.Records[i]) {
			groupRecs++
		}
		eids = append(eids, m.Records[i].EID.String()+"/"+fmt.Sprint(m.Records[i].EIDMaskLen))
	}
	var reason mapserver.Reason
	var out []lisp.Datagram
	switch groupRecs {
	case 0:
		before := n.ms.Stats().Refused
		out = n.ms.Handle(pkt, from, now)
		for r, c := range n.ms.Stats().Refused {
			if c > before[r] {
				reason = r
			}
		}
	case len(m.Records):
		reason = n.groups.handle(pkt, m, from, now)
	default:
		n.st.MixedRefused++
		return nil, nil
	}
	if !slices.Contains(mismatchReasons, reason) {
		return out, nil
	}
	mm := Mismatch{From: from, Reason: reason, Membership: groupRecs > 0, Records: strings.Join(eids, ",")}
	n.st.Mismatches++
	n.lastMis = append(n.lastMis, mm)
	if len(n.lastMis) > 16 {
		n.lastMis = n.lastMis[1:]
	}
	return out, []Mismatch{mm}
}

// requestedGroup returns G when a Map-Request record asks for a group: a
// Multicast Info LCAF (source any) or a plain multicast address.
func requestedGroup(r lisp.EIDRecord) (netip.Addr, bool) {
	if r.EID.LCAF != nil && r.EID.LCAF.Type == lisp.LCAFMulticastInfo {
		g := r.EID.LCAF.Group.IP
		return g.Unmap(), g.IsValid() && g.IsMulticast()
	}
	if r.EID.LCAF == nil && r.EID.IP.IsMulticast() {
		return r.EID.IP.Unmap(), true
	}
	return netip.Addr{}, false
}

// handleECM answers Map-Requests for group EIDs from the group table and
// hands everything else to the Map-Server/Map-Resolver. n.mu held.
func (n *Node) handleECM(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	e, err := lisp.ParseECM(pkt)
	if err != nil {
		return n.ms.Handle(pkt, from, now)
	}
	req, ok := e.Message.(*lisp.MapRequest)
	if !ok || e.ToETR {
		return n.ms.Handle(pkt, from, now)
	}
	g, ok := requestedGroup(req.Records[0])
	if !ok {
		return n.ms.Handle(pkt, from, now)
	}
	n.st.GroupRequests++
	rle := n.groups.lookup(g, now)
	rec := groupRecord(g, rle, 1)
	if len(rle) == 0 {
		n.st.GroupNegative++
		rec.Action = lisp.ActionNativelyForward
	}
	b, err := (&lisp.MapReply{Nonce: req.Nonce, Records: []lisp.MappingRecord{rec}}).Append(nil)
	if err != nil {
		return nil
	}
	return []lisp.Datagram{{To: mapserver.ReplyTo(req, e, from), Data: b}}
}

// groupEID is (0.0.0.0/0, G) or (::/0, G) as a Multicast Info LCAF.
func groupEID(g netip.Addr) lisp.Address {
	unspec := netip.IPv4Unspecified()
	if g.Is6() {
		unspec = netip.IPv6Unspecified()
	}
	return lisp.MulticastAddr(0, lisp.IPAddr(unspec), 0, lisp.IPAddr(g), uint8(g.BitLen()))
}

// groupRecord is the mapping record of G with one RLE locator listing rle
// (no locator when rle is empty). ttl in minutes.
func groupRecord(g netip.Addr, rle []netip.Addr, ttl uint32) lisp.MappingRecord {
	rec := lisp.MappingRecord{TTL: ttl, EIDMaskLen: uint8(g.BitLen()), EID: groupEID(g)}
	if len(rle) > 0 {
		es := make([]lisp.RLEEntry, len(rle))
		for i, a := range rle {
			es[i] = lisp.RLEEntry{Address: lisp.IPAddr(a)}
		}
		rec.Locators = []lisp.Locator{{Priority: 1, Weight: 100, Reachable: true, Address: lisp.RLEAddr(es...)}}
	}
	return rec
}

// handleReply takes the answer to one of our look-ups in the core. n.mu held.
func (n *Node) handleReply(pkt []byte, now time.Time) {
	rep, err := lisp.ParseMapReply(pkt)
	if err != nil {
		return
	}
	p, ok := n.pending[rep.Nonce]
	if !ok || len(rep.Records) != 1 {
		return
	}
	rec := &rep.Records[0]
	g, ok := groupOfEID(rec.EID)
	if !ok || g != p.group {
		return
	}
	rle, ok := rleOf(rec)
	if !ok && len(rec.Locators) > 0 {
		return
	}
	delete(n.pending, rep.Nonce)
	n.st.MapRepliesUsed++
	if !slices.Equal(n.learned[g].rle, rle) {
		// Membership is moving (a cold start, a join): ask again soon
		// rather than after LookupInterval.
		if soon := now.Add(min(n.cfg.LookupInterval, quickLookup)); soon.Before(n.nextLookup) {
			n.nextLookup = soon
		}
	}
	n.learned[g] = learnedRLE{rle: rle, expires: now.Add(n.cfg.RegistrationTTL)}
}

// quickLookup is the look-up interval while answers are still changing.
const quickLookup = 200 * time.Millisecond

// targets returns where Map-Registers to group g go (RLOCs, without us):
// for our group, the configured members, the RLE our Map-Server holds and
// the RLE the core answered; for the core group, its configured members
// and the core's own answer.
func (n *Node) targets(g netip.Addr, now time.Time) []netip.Addr {
	var ts []netip.Addr
	if g == n.cfg.Group {
		ts = append(ts, n.cfg.Members...)
		ts = append(ts, n.groups.lookup(g, now)...)
	} else if n.cfg.Core != nil && g == n.cfg.Core.Group {
		ts = append(ts, n.cfg.Core.Members...)
	}
	if l, ok := n.learned[g]; ok && now.Before(l.expires) {
		ts = append(ts, l.rle...)
	}
	ts = slices.DeleteFunc(ts, func(a netip.Addr) bool { return a == n.cfg.RLOC })
	slices.SortFunc(ts, netip.Addr.Compare)
	return slices.Compact(ts)
}

// Tick runs the timers at now: expiry, periodic and on-change registration,
// registration to members seen for the first time, look-ups in the core.
func (n *Node) Tick(now time.Time) []lisp.Datagram {
	out := n.ms.Tick(now)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups.sweep(now)
	if members := n.groups.lookup(n.cfg.Group, now); !slices.Equal(members, n.lastMembers) {
		// A member whose membership we now hold for the first time has
		// just (re)started or joined: it is sent what we register at once,
		// as a newcomer is, even when it was a target before (a configured
		// unicast member that was not up when we first sent to it would
		// otherwise wait for the next refresh).
		for _, m := range members {
			if !slices.Contains(n.lastMembers, m) {
				delete(n.sentTo[n.cfg.Group], m)
			}
		}
		n.lastMembers = members
		n.st.MembersChanged++
	}
	refresh := !now.Before(n.nextRefresh)
	if refresh {
		n.nextRefresh = now.Add(n.cfg.RefreshInterval)
	}
	changed := n.dirty
	n.dirty = false
	groups := []netip.Addr{n.cfg.Group}
	if n.cfg.Core != nil {
		groups = append(groups, n.cfg.Core.Group)
	}
	for _, g := range groups {
		ts := n.targets(g, now)
		var fresh []netip.Addr
		for _, t := range ts {
			if !n.sentTo[g][t] {
				fresh = append(fresh, t)
			}
		}
		set := map[netip.Addr]bool{}
		for _, t := range ts {
			set[t] = true
		}
		n.sentTo[g] = set
		own := g == n.cfg.Group
		switch {
		case refresh:
			out = append(out, n.register(g, ts, true, own, now)...)
		case changed && own:
			// Our EIDs changed: only their Map-Register(s) go out.
			out = append(out, n.register(g, ts, false, true, now)...)
			if len(fresh) > 0 { // and a newcomer our membership (multicast: to the group)
				out = append(out, n.register(g, fresh, true, false, now)...)
			}
		case len(fresh) > 0:
			// Someone new: send it what we register now rather than at the
			// next refresh, so a joining node converges at once.
			out = append(out, n.register(g, fresh, true, own, now)...)
		}
	}
	if !now.Before(n.nextLookup) {
		out = append(out, n.lookups(now)...)
	}
	for k, p := range n.pending {
		if now.Sub(p.sent) > 10*time.Second {
			delete(n.pending, k)
		}
	}
	return out
}

// register builds our Map-Registers for group g — the membership of our
// group and/or our EID registrations (only to our own group) — hands those
// for our group to our own Map-Server too, and sends them to g: one
// multicast datagram, or one encapsulated copy per target. n.mu held.
func (n *Node) register(g netip.Addr, targets []netip.Addr, membership, eids bool, now time.Time) []lisp.Datagram {
	msgs := n.buildRegisters(membership, eids)
	var out []lisp.Datagram
	for _, msg := range msgs {
		if g == n.cfg.Group {
			out = append(out, wrapLocal(n, msg, now)...)
		}
		if n.cfg.Transport == TransportMulticast {
			out = append(out, lisp.Datagram{To: netip.AddrPortFrom(g, n.cfg.ControlPort), Data: msg})
			n.st.RegistersSent++
			continue
		}
		enc, err := n.encapsulate(msg, g)
		if err != nil {
			continue
		}
		for _, t := range targets {
			out = append(out, lisp.Datagram{To: netip.AddrPortFrom(t, n.cfg.DataPort), Data: enc, Encapsulated: true})
			n.st.RegistersSent++
		}
	}
	return out
}

// wrapLocal hands one of our own Map-Registers to our Map-Server, as if
// received from ourselves. n.mu held.
func wrapLocal(n *Node, msg []byte, now time.Time) []lisp.Datagram {
	out, _ := n.handleRegister(msg, n.selfAP, now)
	return out
}

// buildRegisters signs the membership registration of our group (when
// membership) and, when eids, one Map-Register per site (chunks of
// maxRecordsPerRegister) for our EIDs and the TTL-0 records of withdrawn
// ones (sent once). Each gets a fresh, increasing nonce. n.mu held.
func (n *Node) buildRegisters(membership, eids bool) [][]byte {
	ttl := uint32((n.cfg.RegistrationTTL + time.Minute - 1) / time.Minute)
	xtr := &lisp.XTRInfo{XTRID: n.cfg.XTRID}
	var msgs [][]byte
	sign := func(keyID uint16, key []byte, recs []lisp.MappingRecord) {
		n.nonce++
		b, err := lisp.AuthConfig{KeyID: keyID, Key: key}.Marshal(&lisp.MapRegister{
			ProxyReply: true, Nonce: n.nonce, Records: recs, XTR: xtr})
		if err == nil {
			msgs = append(msgs, b)
			n.st.RegistersBuilt++
		}
	}
	if membership {
		sign(n.cfg.MembershipKeyID, n.cfg.MembershipKey, []lisp.MappingRecord{groupRecord(n.cfg.Group, []netip.Addr{n.cfg.RLOC}, ttl)})
	}
	if !eids {
		return msgs
	}
	withdrawn := n.withdrawn
	n.withdrawn = nil
	loc := lisp.Locator{Priority: 1, Weight: 100, Local: true, Reachable: true, Address: lisp.IPAddr(n.cfg.RLOC)}
	for _, site := range n.cfg.Sites {
		var recs []lisp.MappingRecord
		add := func(e EID, ttl uint32) {
			if e.Site != site.Name {
				return
			}
			eid := lisp.IPAddr(e.Prefix.Addr())
			if e.IID != 0 {
				eid = lisp.InstanceIDAddr(e.IID, 0, eid)
			}
			recs = append(recs, lisp.MappingRecord{TTL: ttl, EIDMaskLen: uint8(e.Prefix.Bits()), Authoritative: true,
				EID: eid, Locators: []lisp.Locator{loc}})
		}
		for _, e := range n.eids {
			add(e, ttl)
		}
		for _, e := range withdrawn {
			add(e, 0)
		}
		for len(recs) > 0 {
			k := min(len(recs), maxRecordsPerRegister)
			sign(site.KeyID, site.Key, recs[:k])
			recs = recs[k:]
		}
	}
	return msgs
}

// lookups sends a Map-Request for our group to the next of its known
// members or core members (draft §4.2: an ITR looks its group up
// periodically to learn membership changes) and, without multicast, one
// for the core group to the next core member. n.mu held.
func (n *Node) lookups(now time.Time) []lisp.Datagram {
	type query struct {
		g       netip.Addr
		servers []netip.Addr
	}
	qs := []query{{n.cfg.Group, n.targets(n.cfg.Group, now)}}
	if n.cfg.Core != nil {
		core := n.targets(n.cfg.Core.Group, now)
		qs[0].servers = append(qs[0].servers, core...)
		if n.cfg.Transport == TransportUnicast {
			qs = append(qs, query{n.cfg.Core.Group, core})
		}
	}
	var out []lisp.Datagram
	for _, q := range qs {
		if len(q.servers) == 0 {
			continue
		}
		server := q.servers[n.lookupRR%len(q.servers)]
		var nb [8]byte
		_, _ = rand.Read(nb[:])
		nonce := binary.BigEndian.Uint64(nb[:])
		b, err := groupMapRequest(nonce, q.g, n.selfAP)
		if err != nil {
			continue
		}
		n.pending[nonce] = pendingLookup{group: q.g, sent: now}
		n.st.MapRequestsSent++
		out = append(out, lisp.Datagram{To: netip.AddrPortFrom(server, n.cfg.ControlPort), Data: b})
	}
	n.lookupRR++
	// Until someone has answered with members, ask every second.
	next := n.cfg.LookupInterval
	if l := n.learned[n.cfg.Group]; len(l.rle) == 0 || !now.Before(l.expires) {
		next = min(next, time.Second)
	}
	n.nextLookup = now.Add(next)
	return out
}

// groupMapRequest is an ECM Map-Request for (0/0, G) from itr (the
// ITR-RLOC and the port the Map-Reply comes back to).
func groupMapRequest(nonce uint64, g netip.Addr, itr netip.AddrPort) ([]byte, error) {
	req := &lisp.MapRequest{Nonce: nonce, ITRRLOCs: []lisp.Address{lisp.IPAddr(itr.Addr())},
		Records: []lisp.EIDRecord{{MaskLen: uint8(g.BitLen()), EID: groupEID(g)}}}
	return (&lisp.ECM{Inner: lisp.InnerHeader{Source: itr, Destination: netip.AddrPortFrom(g, DefaultLISPControlPort), TTL: 64},
		Message: req}).Append(nil)
}
