package engine

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// LISP data plane (RFC 9300) on routed ports with Encap = EncapLISP: the ITR
// side encapsulates what leaves by such a port, after the PSAV decision (the
// tag is on the inner packet), towards an RLOC of the inner destination's
// mapping; the ETR side decapsulates what arrives on such a port for one of
// the port's RLOCs on UDP 4341 and then judges the inner packet as usual.

// Encap is how a port's departing packets are carried.
type Encap uint8

// Encapsulations.
const (
	EncapNone Encap = iota // native
	EncapLISP              // LISP data plane, UDP 4341
)

// ParseEncap reads an encapsulation name as configured ("" is none).
func ParseEncap(s string) (Encap, error) {
	switch s {
	case "", "none":
		return EncapNone, nil
	case "lisp":
		return EncapLISP, nil
	}
	return 0, fmt.Errorf("encap %q is not one of none, lisp", s)
}

// LISPDataPort is the UDP port of LISP data packets.
const LISPDataPort = header.LISPDataPort

const (
	lispHeaderLen = header.LISPDataHeaderLen
	// lispOverhead4/6: what encapsulation adds in front of the inner IP
	// packet (the Ethernet header is replaced, not added).
	lispOverhead4 = header.IPv4MinHeaderLen + header.UDPHeaderLen + lispHeaderLen
	lispOverhead6 = header.IPv6HeaderLen + header.UDPHeaderLen + lispHeaderLen

	lispFlagN = header.LISPFlagN
	lispFlagI = header.LISPFlagI

	defaultMTU   = 1500
	missQueueCap = 256 // per loop; a power of two
)

// MapAction is what a negative map-cache entry (no locators) says to do.
type MapAction uint8

// Map-cache actions (RFC 9301 §5.4 ACT, reduced to what the data plane does).
const (
	MapNativelyForward MapAction = iota // forward the inner packet natively, not encapsulated
	MapDrop                             // drop it (Drop/No-Reason, Policy-Denied, Auth-Failure)
	MapSendMapRequest                   // treat as a miss: ask the control plane again
)

// Locator is one RLOC of a mapping.
type Locator struct {
	Addr     netip.Addr
	Priority uint8 // lower is preferred; 255 = do not use
	Weight   uint8 // share among locators of the same priority
	Up       bool  // reachable (the R bit); a down locator is not used
}

// Mapping is one map-cache entry: an EID prefix's locator set, or (no
// locators) a negative entry whose Action applies.
type Mapping struct {
	InstanceID uint32 // 24 bits, sent in the LISP header's I field
	Action     MapAction
	Locators   []Locator

	// Filled by MapCacheBuilder.Add: the usable locators of the best
	// priority, each with its cumulative weight, so the packet path picks
	// one with a hash and a short scan.
	sel   []selLocator
	total uint32
}

type selLocator struct {
	addr [16]byte // IPv4-mapped for IPv4
	v4   bool
	cum  uint32 // sum of weights up to and including this locator
}

// MapCacheBuilder collects map-cache entries for a Tables snapshot.
type MapCacheBuilder struct {
	t *bart.Fast[uint32]
	m []Mapping
}

// NewMapCacheBuilder returns an empty builder.
func NewMapCacheBuilder() *MapCacheBuilder { return &MapCacheBuilder{t: new(bart.Fast[uint32])} }

// Add maps an EID prefix to m (a later Add of the same prefix replaces it).
// Locators that are not IPv4/IPv6 addresses are refused.
func (b *MapCacheBuilder) Add(eid netip.Prefix, m Mapping) error {
	if !eid.IsValid() {
		return fmt.Errorf("invalid EID prefix")
	}
	if m.InstanceID >= 1<<24 {
		return fmt.Errorf("instance-ID %d does not fit 24 bits", m.InstanceID)
	}
	m.Locators = append([]Locator(nil), m.Locators...)
	best := uint8(255)
	for _, l := range m.Locators {
		if !l.Addr.IsValid() || l.Addr.Zone() != "" {
			return fmt.Errorf("EID %s: locator %v is not an IP address", eid, l.Addr)
		}
		if l.Up && l.Priority < best {
			best = l.Priority
		}
	}
	m.sel, m.total = nil, 0
	if best < 255 {
		allZero := true
		for _, l := range m.Locators {
			if l.Up && l.Priority == best && l.Weight != 0 {
				allZero = false
			}
		}
		for _, l := range m.Locators {
			if !l.Up || l.Priority != best {
				continue
			}
			w := uint32(l.Weight)
			if allZero {
				w = 1 // RFC 9301: all weights zero share equally
			}
			if w == 0 {
				continue
			}
			m.total += w
			m.sel = append(m.sel, selLocator{addr: l.Addr.As16(), v4: l.Addr.Unmap().Is4(), cum: m.total})
		}
	}
	eid = eid.Masked()
	if i, ok := b.t.Get(eid); ok {
		b.m[i] = m
		return nil
	}
	b.t.Insert(eid, uint32(len(b.m)))
	b.m = append(b.m, m)
	return nil
}

// Len is the number of entries.
func (b *MapCacheBuilder) Len() int { return len(b.m) }

// Build puts the map-cache into t (which the caller has not published yet).
func (b *MapCacheBuilder) Build(t *Tables) {
	t.MapCache = b.t
	t.Mappings = b.m
}

// MapCache is a built map-cache for Engine.PublishMapCache.
type MapCache struct {
	table    *bart.Fast[uint32]
	mappings []Mapping
}

// MapCache returns the built map-cache; the builder must not be used after.
func (b *MapCacheBuilder) MapCache() *MapCache { return &MapCache{table: b.t, mappings: b.m} }

// mapping returns dst's map-cache entry, or nil.
func (t *Tables) mapping(dst *[16]byte) *Mapping {
	if t.MapCache == nil {
		return nil
	}
	v, ok := t.MapCache.Lookup(addrFrom16(dst))
	if !ok || int(v) >= len(t.Mappings) {
		return nil
	}
	return &t.Mappings[v]
}

// Miss is a destination the map-cache had no entry for.
type Miss struct {
	Addr       netip.Addr
	InstanceID uint32
}

// missQueue is a bounded single-producer (the poll loop) single-consumer
// (the control plane's Misses) ring of destinations: fixed slots, no
// allocation, no lock. A full queue drops the newest miss (counted).
type missQueue struct {
	head  atomic.Uint64 // next slot the consumer reads
	tail  atomic.Uint64 // next slot the producer writes
	slots [missQueueCap]struct {
		addr [16]byte
		iid  uint32
	}
	// producer-side filter: the destination queued last and the second it
	// was queued in, so a burst of packets to one unknown destination
	// queues it once a second (the ITR may have given up on it since).
	last    [16]byte
	lastSec int64
	lastSet bool
}

func (q *missQueue) push(addr *[16]byte, iid uint32, now int64) bool {
	if q.lastSet && q.last == *addr && q.lastSec == now {
		return true
	}
	t := q.tail.Load()
	if t-q.head.Load() >= missQueueCap {
		return false
	}
	s := &q.slots[t%missQueueCap]
	s.addr, s.iid = *addr, iid
	q.tail.Store(t + 1)
	q.last, q.lastSec, q.lastSet = *addr, now, true
	return true
}

func (q *missQueue) drain(dst []Miss) []Miss {
	h, t := q.head.Load(), q.tail.Load()
	for ; h != t; h++ {
		s := &q.slots[h%missQueueCap]
		dst = append(dst, Miss{Addr: addrFrom16(&s.addr), InstanceID: s.iid})
	}
	q.head.Store(h)
	return dst
}

// Misses appends to dst the destinations every poll loop missed in the
// map-cache since the last call, and returns it. It is meant for one
// consumer (the ITR); the loops never wait for it.
func (e *Engine) Misses(dst []Miss) []Miss {
	e.missMu.Lock()
	qs := e.missQueues
	e.missMu.Unlock()
	for _, q := range qs {
		dst = q.drain(dst)
	}
	return dst
}

// lispPort is a port's LISP configuration in packet-path form.
type lispPort struct {
	encap      bool
	rloc4      [4]byte
	rloc6      [16]byte
	has4, has6 bool
	mtu        int
	zeroCsum6  bool
	instanceID uint32
}

func newLISPPort(p PortSpec) (lispPort, error) {
	lp := lispPort{encap: p.Encap == EncapLISP, mtu: p.MTU, zeroCsum6: p.ZeroUDP6Checksum, instanceID: p.InstanceID}
	if lp.mtu == 0 {
		lp.mtu = defaultMTU
	}
	if lp.mtu < 1280 || lp.mtu > ports.MaxFrame-header.EthernetHeaderLen {
		return lp, fmt.Errorf("engine: port %s: mtu %d outside 1280…%d", p.Name, p.MTU, ports.MaxFrame-header.EthernetHeaderLen)
	}
	if p.InstanceID >= 1<<24 {
		return lp, fmt.Errorf("engine: port %s: instance-ID %d does not fit 24 bits", p.Name, p.InstanceID)
	}
	for _, a := range p.RLOCs {
		switch a = a.Unmap(); {
		case a.Is4() && !lp.has4:
			lp.rloc4, lp.has4 = a.As4(), true
		case a.Is6() && !lp.has6:
			lp.rloc6, lp.has6 = a.As16(), true
		default:
			return lp, fmt.Errorf("engine: port %s: RLOC %v: one IPv4 and one IPv6 locator at most", p.Name, a)
		}
	}
	if lp.encap && !lp.has4 && !lp.has6 {
		return lp, fmt.Errorf("engine: port %s: encap lisp needs an RLOC", p.Name)
	}
	return lp, nil
}

// isOurRLOC reports whether the outer destination of the parsed packet is
// one of the arrival port's RLOCs.
func (lp *lispPort) isOurRLOC(p *parsed) bool {
	if p.kind == kindIPv4 {
		return lp.has4 && [4]byte(p.dst[12:16]) == lp.rloc4
	}
	return lp.has6 && p.dst == lp.rloc6
}

// decapLISP removes the outer headers of a LISP data packet addressed to
// this port (p parsed the outer packet) and puts a fresh Ethernet header in
// front of the inner packet. It returns handled=false when the packet is not
// LISP data for us (it is then judged as it is), and a drop reason when it
// is but cannot be decapsulated.
func (pr *Processor) decapLISP(pkt *ports.Packet, p *parsed, lp *lispPort) (handled bool, r Reason, ok bool) {
	if p.kind == kindOther || !lp.isOurRLOC(p) {
		return false, 0, false
	}
	f := pkt.Frame()
	var udp, outerTTL int
	switch p.kind {
	case kindIPv4:
		h := header.IPv4(f[p.l3:])
		if h.Protocol() != header.ProtoUDP || p.isFrag {
			return false, 0, false // a later fragment is not recognisable: judged as it is
		}
		udp, outerTTL = p.hdrEnd, int(h.TTL())
		if h.MoreFragments() { // a first fragment
			if udp+4 <= p.l3End && header.UDP(f[udp:]).DestinationPort() == LISPDataPort {
				return true, DropLISPDecap, false // no reassembly here (counted)
			}
			return false, 0, false
		}
	case kindIPv6:
		h := header.IPv6(f[p.l3:])
		if h.NextHeader() != header.ProtoUDP {
			return false, 0, false // with extension headers: not LISP data we decapsulate
		}
		udp, outerTTL = p.l3+header.IPv6HeaderLen, int(h.HopLimit())
	}
	if udp+header.UDPHeaderLen > p.l3End || header.UDP(f[udp:]).DestinationPort() != LISPDataPort {
		return false, 0, false
	}
	// From here on the packet is LISP data for us: decapsulated or dropped.
	// The UDP checksum is not verified (RFC 9300 §5.3: an ETR MAY): the
	// inner packet carries its own.
	ul := header.UDP(f[udp:]).Length()
	if ul < header.UDPHeaderLen+lispHeaderLen+header.IPv4MinHeaderLen || udp+ul > p.l3End {
		return true, DropLISPDecap, false
	}
	lh := f[udp+header.UDPHeaderLen:]
	iid := uint32(0)
	if lh[0]&lispFlagI != 0 {
		iid = uint32(lh[4])<<16 | uint32(lh[5])<<8 | uint32(lh[6])
	}
	if iid != lp.instanceID {
		return true, DropLISPDecap, false
	}
	in := udp + header.UDPHeaderLen + lispHeaderLen // inner packet
	end := udp + ul
	var et uint16
	switch f[in] >> 4 {
	case 4:
		et = header.EtherTypeIPv4
	case 6:
		et = header.EtherTypeIPv6
	default:
		return true, DropLISPDecap, false
	}
	// Fresh Ethernet header right in front of the inner packet; the MACs are
	// the outer frame's (routed forwarding rewrites them). The octets it
	// covers are kept so a refused inner packet is dropped (and captured)
	// as it arrived.
	start := in - header.EthernetHeaderLen
	var saved [header.EthernetHeaderLen]byte
	copy(saved[:], f[start:in])
	copy(f[start:start+12], f[0:12])
	binary.BigEndian.PutUint16(f[start+12:], et)
	off, n := pkt.Off, pkt.Len
	pkt.Off += start
	pkt.Len = end - start
	if !p.parse(pkt.Frame()) || p.kind == kindOther {
		pkt.Off, pkt.Len = off, n
		copy(f[start:in], saved[:])
		return true, DropLISPDecap, false
	}
	// RFC 9300 §5.3: the inner TTL takes the outer's when that is lower.
	g := pkt.Frame()
	if p.kind == kindIPv4 {
		if h := header.IPv4(g[p.l3:]); int(h.TTL()) > outerTTL {
			old := binary.BigEndian.Uint16(h[8:10])
			h[8] = byte(outerTTL)
			h.AdjustChecksum(old, binary.BigEndian.Uint16(h[8:10]))
		}
	} else if int(g[p.l3+7]) > outerTTL {
		g[p.l3+7] = byte(outerTTL)
	}
	pr.t.lisp[LISPDecapsulated]++
	return true, 0, true
}

// flowHash is a hash of the inner packet's flow, the same for every packet
// of it: addresses, protocol and ports for IPv4 (ports only in first
// fragments), addresses, next header and flow label for IPv6 (RFC 6438).
func flowHash(f []byte, p *parsed) uint64 {
	a := binary.LittleEndian.Uint64(p.src[0:8]) ^ binary.LittleEndian.Uint64(p.src[8:16])*0x9e3779b97f4a7c15
	b := binary.LittleEndian.Uint64(p.dst[0:8]) ^ binary.LittleEndian.Uint64(p.dst[8:16])*0xc2b2ae3d27d4eb4f
	var c uint64
	if p.kind == kindIPv4 {
		// The header is read again: a tag inserted since parsing moved the
		// upper-layer header.
		h := header.IPv4(f[p.l3:])
		proto, l4 := h.Protocol(), p.l3+h.HeaderLen()
		c = uint64(proto)
		if !p.isFrag && (proto == 6 || proto == 17 || proto == 132) && l4+4 <= p.l3+h.TotalLength() && l4+4 <= len(f) {
			c |= uint64(binary.BigEndian.Uint32(f[l4:])) << 8
		}
	} else {
		c = uint64(binary.BigEndian.Uint32(f[p.l3:])&0xfffff) | uint64(f[p.l3+6])<<20
	}
	h := a ^ b*0x165667b19e3779f9 ^ c*0xff51afd7ed558ccd
	// murmur3's finaliser spreads every input bit over the output.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// pick chooses the RLOC for a flow hash among the best-priority locators by
// weight; the same flow always gets the same one while the entry holds.
func (m *Mapping) pick(h uint64) *selLocator {
	if m.total == 0 {
		return nil
	}
	w := uint32(h>>32) % m.total
	for i := range m.sel {
		if w < m.sel[i].cum {
			return &m.sel[i]
		}
	}
	return &m.sel[len(m.sel)-1]
}

// lispPlan is where an encapsulated packet goes.
type lispPlan struct {
	rloc *selLocator
	hop  *NextHop
	lp   *lispPort
	iid  uint32
	hash uint64
}

// lispDecision is the map-cache's answer for a packet leaving by an encap
// port.
type lispDecision uint8

const (
	lispEncap  lispDecision = iota // encapsulate per plan
	lispNative                     // forward natively (negative entry, or miss per policy)
	lispDrop                       // drop with the returned reason
)

// planLISP looks the inner destination up and chooses the outer
// destination and its next hop. It edits nothing.
func (pr *Processor) planLISP(f []byte, p *parsed, t *Tables, out int16, plan *lispPlan) (lispDecision, Reason) {
	m := t.mapping(&p.dst)
	if m == nil || (len(m.sel) == 0 && len(m.Locators) == 0 && m.Action == MapSendMapRequest) {
		pr.t.lisp[LISPMiss]++
		iid := pr.e.lisp[out].instanceID
		if m != nil {
			iid = m.InstanceID
		}
		if !pr.misses.push(&p.dst, iid, pr.now) {
			pr.t.lisp[LISPMissQueueFull]++
		}
		if pr.e.spec.Policy.LISPMissNative {
			pr.t.lisp[LISPNative]++
			return lispNative, 0
		}
		return lispDrop, DropLISPMiss
	}
	if len(m.Locators) == 0 {
		if m.Action == MapNativelyForward {
			pr.t.lisp[LISPNative]++
			return lispNative, 0
		}
		return lispDrop, DropLISPNegative
	}
	plan.hash = flowHash(f, p)
	plan.rloc = m.pick(plan.hash)
	if plan.rloc == nil {
		return lispDrop, DropLISPNoRLOC // every locator down or priority 255
	}
	plan.hop = t.route(&plan.rloc.addr)
	if plan.hop == nil || int(plan.hop.Port) >= len(pr.e.spec.Ports) || plan.hop.Port < 0 {
		return lispDrop, DropLISPNoRLOC
	}
	plan.lp = &pr.e.lisp[plan.hop.Port]
	if plan.rloc.v4 && !plan.lp.has4 || !plan.rloc.v4 && !plan.lp.has6 {
		return lispDrop, DropLISPNoRLOC // no source locator of the RLOC's family on that port
	}
	plan.iid = m.InstanceID
	return lispEncap, 0
}

// innerLen is the IP packet's length from its header (L2 padding excluded).
func innerLen(ip []byte, kind uint8) int {
	if kind == kindIPv4 {
		return header.IPv4(ip).TotalLength()
	}
	return header.IPv6HeaderLen + header.IPv6(ip).PayloadLength()
}

// encapLISP prepends outer Ethernet, IP, UDP and LISP headers to the inner
// packet of pkt (an Ethernet frame whose IP packet is final) in the
// headroom. The caller checked the size against the MTU.
func (pr *Processor) encapLISP(pkt *ports.Packet, kind uint8, plan *lispPlan) bool {
	const eth = header.EthernetHeaderLen
	f := pkt.Frame()
	n := innerLen(f[eth:], kind)
	over := lispOverhead6
	if plan.rloc.v4 {
		over = lispOverhead4
	}
	if pkt.Off < over || eth+n > pkt.Len {
		return false
	}
	var tos, ttl byte
	if kind == kindIPv4 {
		in := header.IPv4(f[eth:])
		tos, ttl = in.TOS(), in.TTL()
	} else {
		in := header.IPv6(f[eth:])
		tos, ttl = in.TrafficClass(), in.HopLimit()
	}
	pkt.Off -= over
	pkt.Len = eth + over + n
	o := pkt.Frame()
	e := header.Ethernet(o)
	e.SetDestination(plan.hop.DstMAC)
	e.SetSource(plan.hop.SrcMAC)
	l3 := o[eth:]
	var udp header.UDP
	ulen := header.UDPHeaderLen + lispHeaderLen + n
	if plan.rloc.v4 {
		e.SetType(header.EtherTypeIPv4)
		h := header.IPv4(l3[:header.IPv4MinHeaderLen])
		h.SetVersionHeaderLen(header.IPv4MinHeaderLen)
		h.SetTOS(tos)
		h.SetTotalLength(header.IPv4MinHeaderLen + ulen)
		h.SetID(0)
		h.SetFlagsFragment(header.IPv4FlagDontFragment) // we do the PMTU work, the underlay must not fragment
		h.SetTTL(ttl)
		h.SetProtocol(header.ProtoUDP)
		h.SetSrc(plan.lp.rloc4)
		h.SetDst([4]byte(plan.rloc.addr[12:16]))
		h.SetChecksum(0)
		h.SetChecksum(^header.Checksum(h, 0))
		udp = header.UDP(l3[header.IPv4MinHeaderLen:])
	} else {
		e.SetType(header.EtherTypeIPv6)
		h := header.IPv6(l3[:header.IPv6HeaderLen])
		h.SetVersionClassFlow(tos, uint32(plan.hash))
		h.SetPayloadLength(ulen)
		h.SetNextHeader(header.ProtoUDP)
		h.SetHopLimit(ttl)
		h.SetSrc(plan.lp.rloc6)
		h.SetDst(plan.rloc.addr)
		udp = header.UDP(l3[header.IPv6HeaderLen:])
	}
	udp.SetSourcePort(uint16(49152 + plan.hash%16384)) // RFC 9300 §5.3: from the inner flow
	udp.SetDestinationPort(LISPDataPort)
	udp.SetLength(ulen)
	udp.SetChecksum(0)
	lh := udp[header.UDPHeaderLen : header.UDPHeaderLen+lispHeaderLen]
	nonce := pr.nextNonce()
	lh[0] = lispFlagN
	lh[1], lh[2], lh[3] = byte(nonce>>16), byte(nonce>>8), byte(nonce)
	if plan.iid != 0 {
		lh[0] |= lispFlagI
		lh[4], lh[5], lh[6], lh[7] = byte(plan.iid>>16), byte(plan.iid>>8), byte(plan.iid), 0
	} else {
		lh[4], lh[5], lh[6], lh[7] = 0, 0, 0, 0
	}
	if !plan.rloc.v4 && !plan.lp.zeroCsum6 {
		udp.SetChecksum(header.UDPChecksum(udp[:ulen], header.IPv6(l3).PseudoHeaderChecksum(header.ProtoUDP, ulen)))
	}
	pr.t.lisp[LISPEncapsulated]++
	return true
}

// nextNonce returns the next 24-bit nonce of this loop (xorshift64*,
// seeded at random per processor: unpredictable enough for the echo-nonce
// use, no system call per packet).
func (pr *Processor) nextNonce() uint32 {
	x := pr.nonce
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	pr.nonce = x
	return uint32((x*0x2545f4914f6cdd1d)>>40) & 0xffffff
}

func seedNonce() uint64 {
	for {
		if s := rand.Uint64(); s != 0 {
			return s
		}
	}
}
