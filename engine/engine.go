package engine

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// Role is a port's place at the border (docs/wire.md §2.2).
type Role uint8

// Port roles.
const (
	RoleIngress Role = iota // faces the inside of this AS
	RoleEgress              // faces other ASes
	RoleTrust               // links ABRs of this AS
)

var roleNames = [...]string{"ingress", "egress", "trust"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads a role name as configured.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if s == n {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("role %q is not one of ingress, egress, trust", s)
}

// Forwarding is how the engine picks the port a packet leaves by (§2.1).
type Forwarding uint8

// Forwarding modes.
const (
	CrossConnect Forwarding = iota // out by the arrival port's peer, MACs untouched
	Routed                         // out by a static route, MACs rewritten, TTL decremented
)

// PortSpec describes one engine port.
type PortSpec struct {
	Name string
	Role Role
	Peer int // cross-connect peer's index

	// LISP (lisp.go): Encap = EncapLISP encapsulates what leaves by the
	// port (routed forwarding only); a port with RLOCs decapsulates LISP
	// data addressed to them. MTU bounds the outer IP packet (0: 1500).
	Encap            Encap
	RLOCs            []netip.Addr // at most one IPv4 and one IPv6
	MTU              int
	InstanceID       uint32 // expected in decapsulated packets (0: none)
	ZeroUDP6Checksum bool   // send outer IPv6 UDP checksums as zero (RFC 6935/6936)
}

// Policy holds the choices docs/wire.md §2.2–2.3 leaves to the operator.
type Policy struct {
	ForwardSpoofedInside bool // forward (counted) instead of dropping spoofed-inside
	DropNoRoom           bool // drop instead of forwarding untagged when a tag does not fit
	// FailClosed drops (no-key) what arrives from a member whose keys are
	// gone; by default such a member is treated as not a member: forwarded,
	// counted unverifiable (docs/wire.md §2.8).
	FailClosed bool

	LISPMissNative  bool // a map-cache miss is forwarded natively instead of dropped
	DropTooBig      bool // a packet too big to encapsulate is dropped without an ICMP error
	TooBigPerSecond int  // ICMP Packet Too Big per poll loop per second (0: 100)
}

// Spec is the engine's static configuration.
type Spec struct {
	Ports      []PortSpec
	Forwarding Forwarding
	Policy     Policy
}

// Engine holds the static configuration and the current tables.
type Engine struct {
	spec   Spec
	tables atomic.Pointer[Tables]

	// Publishing (control plane side, never the packet path). The tables
	// come in three independent parts, each published by its own owner
	// through its own atomic pointer: the PSAV part (members, prefixes,
	// keys: the static schedule or the ACS feed), the routes (routed
	// forwarding: the configuration, reloadable while an ACS feeds the
	// node) and the ITR's map-cache. A publish composes the three into the
	// one snapshot the loops load once per batch, so a batch always sees
	// one consistent combination and no publisher copies another's part.
	pubMu    sync.Mutex
	psav     atomic.Pointer[Tables]
	routes   atomic.Pointer[Routes]
	mapCache atomic.Pointer[MapCache]

	lisp       []lispPort // by port index
	anyEncap   bool
	missMu     sync.Mutex
	missQueues []*missQueue // one per processor, when a port encapsulates
}

// New checks spec and returns an engine with empty tables.
func New(spec Spec) (*Engine, error) {
	if len(spec.Ports) == 0 || len(spec.Ports) > 1<<14 {
		return nil, fmt.Errorf("engine: %d ports", len(spec.Ports))
	}
	for i, p := range spec.Ports {
		if spec.Forwarding == CrossConnect && (p.Peer < 0 || p.Peer >= len(spec.Ports) || p.Peer == i) {
			return nil, fmt.Errorf("engine: port %s has no cross-connect peer", p.Name)
		}
	}
	e := &Engine{spec: spec}
	for _, p := range spec.Ports {
		lp, err := newLISPPort(p)
		if err != nil {
			return nil, err
		}
		if lp.encap && spec.Forwarding != Routed {
			return nil, fmt.Errorf("engine: port %s: encap lisp needs routed forwarding (the outer header needs a next hop)", p.Name)
		}
		e.anyEncap = e.anyEncap || lp.encap
		e.lisp = append(e.lisp, lp)
	}
	e.psav.Store(&Tables{Period: 60})
	e.tables.Store(e.psav.Load())
	return e, nil
}

// Spec returns the engine's configuration.
func (e *Engine) Spec() Spec { return e.spec }

// Publish makes t the PSAV part of the tables (members, prefixes, keys,
// replace entries, epoch clock) that every poll loop uses from its next
// batch on. Routes and map-cache are published on their own (PublishRoutes,
// PublishMapCache) and composed with t here; where one was never published,
// t's own is used (tests and tools that build one whole snapshot).
func (e *Engine) Publish(t *Tables) {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.psav.Store(t)
	e.tables.Store(e.compose())
}

// PublishRoutes replaces the routed-forwarding table in the current and
// every later snapshot, whoever publishes the PSAV part.
func (e *Engine) PublishRoutes(r *Routes) {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.routes.Store(r)
	e.tables.Store(e.compose())
}

// PublishMapCache replaces the map-cache in the current and every later
// snapshot (nil: back to the map-cache of the PSAV part, if any).
func (e *Engine) PublishMapCache(mc *MapCache) {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.mapCache.Store(mc)
	e.tables.Store(e.compose())
}

// PSAVTables returns the PSAV part last published, without routes or
// map-cache.
func (e *Engine) PSAVTables() *Tables { return e.psav.Load() }

// PublishedRoutes returns the routes last published (nil: none).
func (e *Engine) PublishedRoutes() *Routes { return e.routes.Load() }

// compose builds the snapshot the loops read from the three parts; called
// with pubMu held.
func (e *Engine) compose() *Tables {
	p := e.psav.Load()
	r, mc := e.routes.Load(), e.mapCache.Load()
	if (r == nil || r.Table == p.Routes) && (mc == nil || mc.table == p.MapCache) {
		return p // nothing to compose: the loops read what was published
	}
	t := *p
	if r != nil {
		t.Routes, t.Hops = r.Table, r.Hops
	}
	if mc != nil {
		t.MapCache, t.Mappings = mc.table, mc.mappings
	}
	return &t
}

// Tables returns the current snapshot.
func (e *Engine) Tables() *Tables { return e.tables.Load() }

// Processor is the per-loop packet path for packets arriving on one port. It
// is not safe for concurrent use: each poll loop has its own.
type Processor struct {
	e        *Engine
	in       int
	inRole   Role
	crossOut int16
	p        parsed
	t        tally
	Counters *Counters

	lastDrop Reason       // reason of the last drop, for capture
	capture  *captureRing // nil: drop capture off

	now      int64      // the batch's clock
	misses   *missQueue // map-cache misses for the ITR (nil: no encap port)
	nonce    uint64     // LISP nonce generator state
	tokens   int        // ICMP Packet Too Big budget left in tokenSec
	tokenSec int64

	// The last AS-Prefix look-up of each side, valid for memoTables
	// (lookupmemo.go).
	srcMemo, dstMemo lookupMemo
	memoTables       *Tables
}

// NewProcessor returns the packet path for port in.
func (e *Engine) NewProcessor(in int) *Processor {
	c := &Counters{TxPackets: make([]atomic.Uint64, len(e.spec.Ports))}
	pr := &Processor{e: e, in: in, inRole: e.spec.Ports[in].Role, crossOut: int16(e.spec.Ports[in].Peer), Counters: c, nonce: seedNonce()}
	if e.anyEncap {
		pr.misses = new(missQueue)
		e.missMu.Lock()
		e.missQueues = append(e.missQueues, pr.misses)
		e.missMu.Unlock()
	}
	return pr
}

// Process judges every packet of b against the tables t at time unixNow and
// sets each packet's Out (a port index or ports.Drop); tags are added,
// validated, replaced or stripped in place. Counters are flushed once.
func (pr *Processor) Process(b *ports.Batch, t *Tables, unixNow int64) {
	epoch := Epoch(unixNow, t.T0, t.Period)
	pr.now = unixNow
	if t != pr.memoTables {
		pr.srcMemo, pr.dstMemo, pr.memoTables = lookupMemo{}, lookupMemo{}, t
	}
	for i := range b.Pkts {
		pkt := &b.Pkts[i]
		pr.t.rxBytes += uint64(pkt.Len)
		// one() decides every drop before it edits the frame, so what is
		// captured is the frame as it arrived. (tx-full drops happen later,
		// in forward, and are counted but not captured.)
		if pkt.Out = pr.one(pkt, t, epoch); pkt.Out == ports.Drop && pr.capture != nil &&
			pkt.Off >= 0 && pkt.Len >= 0 && pkt.Off+pkt.Len <= len(pkt.Buf) {
			pr.capture.offer(pkt.Buf[pkt.Off:pkt.Off+pkt.Len], pr.in, pr.lastDrop, unixNow)
		}
	}
	pr.t.flush(pr.Counters, len(b.Pkts))
}

func (pr *Processor) drop(r Reason) int16 {
	pr.t.drops[r]++
	pr.lastDrop = r
	return ports.Drop
}

func (pr *Processor) act(a Action, out int16) int16 {
	pr.t.actions[a]++
	return out
}

// one is the per-packet decision of docs/wire.md §2.2.
func (pr *Processor) one(pkt *ports.Packet, t *Tables, epoch int64) int16 {
	p := &pr.p
	if pkt.Off < 0 || pkt.Len < 0 || pkt.Off+pkt.Len > len(pkt.Buf) || !p.parse(pkt.Buf[pkt.Off:pkt.Off+pkt.Len]) {
		return pr.drop(DropMalformed)
	}
	if lp := &pr.e.lisp[pr.in]; lp.has4 || lp.has6 {
		// LISP data for this port's RLOCs: judged by its inner packet.
		if handled, r, ok := pr.decapLISP(pkt, p, lp); handled && !ok {
			return pr.drop(r)
		}
	}
	routed := pr.e.spec.Forwarding == Routed
	if p.kind == kindOther || p.linkScope {
		if routed {
			return pr.drop(DropNotIP)
		}
		return pr.act(ActPassthrough, pr.crossOut)
	}

	out := pr.crossOut
	var hop *NextHop
	if routed {
		hop = t.route(&p.dst)
		if hop == nil || int(hop.Port) >= len(pr.e.spec.Ports) || hop.Port < 0 {
			return pr.drop(DropNoRoute)
		}
		if ttlExpired(pkt.Frame(), p) {
			return pr.drop(DropTTLExpired) // before any tag work: nothing edited, nothing wasted
		}
		out = hop.Port
	}
	outRole := pr.e.spec.Ports[out].Role

	srcM, srcBits := pr.srcMemo.lookup(t, &p.src)
	srcLocal := srcM >= 0 && t.Members[srcM].Local
	if pr.inRole == RoleEgress && srcLocal {
		return pr.drop(DropSpoofedLocal)
	}

	act := ActForwarded
	inserted := false
	switch {
	case outRole == RoleTrust:
		// unchanged: a tag stays on for the ABR that delivers the packet

	case outRole == RoleEgress && pr.inRole != RoleEgress:
		if !srcLocal {
			if !pr.e.spec.Policy.ForwardSpoofedInside {
				return pr.drop(DropSpoofedInside)
			}
			break
		}
		dstM, _ := pr.dstMemo.lookup(t, &p.dst)
		if dstM < 0 || t.Members[dstM].Local {
			break // not for a member: leaves untagged
		}
		peer := t.Members[dstM].TagPeer
		if peer < 0 || int(peer) >= len(t.Peers) {
			act = ActUntagged
			break
		}
		k0, k1, ok := t.Peers[peer].Key(epoch)
		if !ok {
			act = ActUntagged
			break
		}
		tag := ComputeTag(k0, k1, &p.src, &p.dst, p.firstOctet, srcBits)
		if p.optOff >= 0 {
			// A tag from inside is never trusted: overwrite it.
			writeOptData(optData(pkt.Frame(), p), tag, byte(epoch), srcBits)
			if p.kind == kindIPv4 {
				header.IPv4(pkt.Frame()[p.l3:]).UpdateChecksum()
			}
		} else if !insertTag(pkt, p, tag, byte(epoch), srcBits) {
			if pr.e.spec.Policy.DropNoRoom {
				return pr.drop(DropNoRoom)
			}
			act = ActUntagged
			break
		}
		inserted = p.optOff < 0 // not an overwritten tag from inside
		act = ActTagged

	case outRole == RoleEgress: // EGRESS → EGRESS: transit
		if srcM < 0 || t.Replace == nil {
			break
		}
		dstM, _ := pr.dstMemo.lookup(t, &p.dst)
		if dstM < 0 {
			break
		}
		re, ok := t.Replace[ReplaceKey(srcM, dstM)]
		if !ok {
			break // not a PSAV hop for this pair: carried through
		}
		if r, ok := pr.validate(pkt.Frame(), t, re.In, epoch, srcBits); !ok {
			return pr.drop(r)
		}
		if re.Out < 0 {
			stripTag(pkt, p) // no PSAV hop after this border
			act = ActValidated
			break
		}
		if int(re.Out) >= len(t.Peers) {
			return pr.drop(DropNoKey)
		}
		k0, k1, ok := t.Peers[re.Out].Key(epoch)
		if !ok {
			return pr.drop(DropNoKey)
		}
		writeOptData(optData(pkt.Frame(), p), ComputeTag(k0, k1, &p.src, &p.dst, p.firstOctet, srcBits), byte(epoch), srcBits)
		if p.kind == kindIPv4 {
			header.IPv4(pkt.Frame()[p.l3:]).UpdateChecksum()
		}
		act = ActReplaced

	default: // → INGRESS
		if srcLocal || pr.inRole == RoleIngress {
			break
		}
		if srcM < 0 {
			act = ActUnverifiable
			break
		}
		vp := t.Members[srcM].ValidatePeer
		if r, ok := pr.validate(pkt.Frame(), t, vp, epoch, srcBits); !ok {
			// Without a key for e−1 … e+1 nothing can validate: the
			// member's keys are gone, and it is treated as not a member
			// (§2.8), its tag, if any, removed. Asked only here, on the
			// way to a drop, so that a valid packet pays nothing for it.
			if pr.e.spec.Policy.FailClosed || t.Keyed(vp, epoch) {
				return pr.drop(r)
			}
			if p.optOff >= 0 {
				stripTag(pkt, p)
			}
			act = ActUnverifiable
			break
		}
		stripTag(pkt, p)
		act = ActValidated
	}

	if hop != nil && pr.e.lisp[out].encap {
		return pr.lispOut(pkt, p, t, hop, out, act, inserted)
	}
	if hop != nil {
		rewriteRouted(pkt.Frame(), p, hop)
	}
	return pr.act(act, out)
}

// validate checks the parsed packet's tag with the key of peer (docs/wire.md §2.4):
// the epoch octet selects one of e−1, e, e+1, and the source prefix length
// is the validator's own longest match, not the octet in the packet.
func (pr *Processor) validate(frame []byte, t *Tables, peer int32, epoch int64, srcBits byte) (Reason, bool) {
	p := &pr.p
	if p.optOff < 0 {
		return DropNoTag, false
	}
	if peer < 0 || int(peer) >= len(t.Peers) {
		return DropNoKey, false
	}
	d := optData(frame, p)
	if d[0] != tagLenAI {
		return DropBadTag, false
	}
	eo := d[10]
	e := int64(-1)
	switch eo {
	case byte(epoch):
		e = epoch
	case byte(epoch - 1):
		e = epoch - 1
	case byte(epoch + 1):
		e = epoch + 1
	}
	k0, k1, ok := t.Peers[peer].Key(e)
	if !ok {
		return DropStaleEpoch, false
	}
	if ComputeTag(k0, k1, &p.src, &p.dst, p.firstOctet, srcBits) != binary.BigEndian.Uint64(d[2:10]) {
		return DropBadTag, false
	}
	return 0, true
}

// Keyed reports whether peer holds a key for one of the epochs a validator
// accepts at epoch (e−1, e, e+1).
func (t *Tables) Keyed(peer int32, epoch int64) bool {
	if peer < 0 || int(peer) >= len(t.Peers) {
		return false
	}
	pk := &t.Peers[peer]
	for e := epoch - 1; e <= epoch+1; e++ {
		if _, _, ok := pk.Key(e); ok {
			return true
		}
	}
	return false
}

// route returns the next hop for dst, or nil.
func (t *Tables) route(dst *[16]byte) *NextHop {
	if t.Routes == nil {
		return nil
	}
	v, ok := t.Routes.Lookup(addrFrom16(dst))
	if !ok || int(v) >= len(t.Hops) {
		return nil
	}
	return &t.Hops[v]
}

// ttlExpired reports whether forwarding would take the TTL or hop limit to 0.
func ttlExpired(f []byte, p *parsed) bool {
	if p.kind == kindIPv4 {
		return f[p.l3+8] <= 1
	}
	return f[p.l3+7] <= 1
}

// rewriteRouted does what a router does to a packet it forwards: new MACs,
// TTL or hop limit decremented (IPv4 checksum updated). The caller checked
// ttlExpired first.
func rewriteRouted(f []byte, p *parsed, hop *NextHop) {
	switch p.kind {
	case kindIPv4:
		h := header.IPv4(f[p.l3:])
		h[8]--
		h.UpdateChecksum()
	case kindIPv6:
		f[p.l3+7]--
	}
	copy(f[0:6], hop.DstMAC[:])
	copy(f[6:12], hop.SrcMAC[:])
}

// In is the engine port index the processor handles arrivals of.
func (pr *Processor) In() int { return pr.in }
