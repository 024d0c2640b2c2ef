package adot

import (
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// MaxZoneRecords bounds the size of a zone built by ParseZone/ZoneFromMap.
const MaxZoneRecords = 100000

// zoneTypes are the record types a Zone accepts.
var zoneTypes = map[uint16]bool{
	dns.TypeSOA: true, dns.TypeNS: true, dns.TypeA: true, dns.TypeAAAA: true,
	dns.TypeCNAME: true, dns.TypeTXT: true, dns.TypePTR: true, dns.TypeMX: true,
	dns.TypeSRV: true, dns.TypeCAA: true,
}

// Zone is an immutable authoritative zone. Build one with ParseZone or
// ZoneFromMap and install it with Server.SetZone (an atomic swap).
type Zone struct {
	origin string
	soa    *dns.SOA
	names  map[string]map[uint16][]dns.RR
	// ents are empty non-terminals: names with descendants but no records.
	ents map[string]bool
	// synthSOA: the SOA was made up by ZoneFromMap, so its serial is the
	// server's to choose (Server.SetZone stamps a clock-based one).
	synthSOA bool
}

// Serial returns the serial of the zone's SOA.
func (z *Zone) Serial() uint32 { return z.soa.Serial }

// SOA returns a copy of the zone's SOA record.
func (z *Zone) SOA() *dns.SOA { return dns.Copy(z.soa).(*dns.SOA) }

// WithSerial returns a copy of z whose SOA carries serial (z itself is
// immutable: servers may be answering from it).
func (z *Zone) WithSerial(serial uint32) *Zone {
	c := *z
	c.soa = z.SOA()
	c.soa.Serial = serial
	c.names = make(map[string]map[uint16][]dns.RR, len(z.names))
	for n, m := range z.names {
		c.names[n] = m
	}
	apex := make(map[uint16][]dns.RR, len(z.names[z.origin]))
	for t, set := range z.names[z.origin] {
		apex[t] = set
	}
	apex[dns.TypeSOA] = []dns.RR{c.soa}
	c.names[z.origin] = apex
	return &c
}

// Records returns the zone's records in zone-transfer order (RFC 5936
// §2.2): the SOA first, then every other record, names and types sorted
// so that two transfers of one zone are identical; the SOA is not
// repeated at the end (the transfer adds it).
func (z *Zone) Records() []dns.RR {
	out := make([]dns.RR, 0, z.Len())
	out = append(out, z.soa)
	names := make([]string, 0, len(z.names))
	for n := range z.names {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := z.names[n]
		for _, t := range sortedTypes(m) {
			if t == dns.TypeSOA {
				continue
			}
			out = append(out, m[t]...)
		}
	}
	return out
}

// Origin returns the zone apex (canonical, fully qualified).
func (z *Zone) Origin() string { return z.origin }

// Len returns the number of records in the zone.
func (z *Zone) Len() int {
	n := 0
	for _, m := range z.names {
		for _, rrs := range m {
			n += len(rrs)
		}
	}
	return n
}

// ParseZone parses RFC 1035 master-file text for origin. $INCLUDE is not
// allowed; the default TTL is 3600. The zone must contain exactly one SOA,
// at the apex, and only these types: SOA NS A AAAA CNAME TXT PTR MX SRV CAA.
func ParseZone(origin, text string) (*Zone, error) {
	origin, err := checkOrigin(origin)
	if err != nil {
		return nil, err
	}
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(3600)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if len(rrs) >= MaxZoneRecords {
			return nil, fmt.Errorf("adot: zone %s: more than %d records", origin, MaxZoneRecords)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("adot: zone %s: %w", origin, err)
	}
	return buildZone(origin, rrs)
}

// ZoneFromMap builds a zone from owner → RDATA-with-type strings, e.g.
//
//	map[string][]string{
//		"@":  {"NS ns.example.test."},
//		"0":  {"A 192.0.2.1", "AAAA 2001:db8::1"},
//		"ns.example.test.": {"A 192.0.2.53"},
//	}
//
// Owners are relative to origin unless they end in a dot ("@" is the apex).
// A value may start with a TTL ("60 A 192.0.2.1"); otherwise ttl applies.
// If no SOA is given, one is synthesised
// ("ns.<origin> hostmaster.<origin> 1 3600 600 86400 <ttl>").
func ZoneFromMap(origin string, ttl uint32, records map[string][]string) (*Zone, error) {
	origin, err := checkOrigin(origin)
	if err != nil {
		return nil, err
	}
	owners := make([]string, 0, len(records))
	for o := range records {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	var rrs []dns.RR
	hasSOA := false
	for _, owner := range owners {
		for _, v := range records[owner] {
			if strings.ContainsAny(owner+v, "\n\r()$") || strings.TrimSpace(owner) == "" ||
				strings.ContainsAny(owner, " \t;") {
				return nil, fmt.Errorf("adot: zone %s: bad record %q %q", origin, owner, v)
			}
			if len(rrs) >= MaxZoneRecords {
				return nil, fmt.Errorf("adot: zone %s: more than %d records", origin, MaxZoneRecords)
			}
			zp := dns.NewZoneParser(strings.NewReader(owner+" "+v+"\n"), origin, "")
			zp.SetDefaultTTL(ttl)
			rr, ok := zp.Next()
			if !ok {
				if err := zp.Err(); err != nil {
					return nil, fmt.Errorf("adot: zone %s: %q %q: %w", origin, owner, v, err)
				}
				return nil, fmt.Errorf("adot: zone %s: %q %q: no record", origin, owner, v)
			}
			if _, more := zp.Next(); more || zp.Err() != nil {
				return nil, fmt.Errorf("adot: zone %s: %q %q: not exactly one record", origin, owner, v)
			}
			if rr.Header().Rrtype == dns.TypeSOA {
				hasSOA = true
			}
			rrs = append(rrs, rr)
		}
	}
	synth := !hasSOA
	if synth {
		rrs = append(rrs, &dns.SOA{
			Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  "ns." + origin, Mbox: "hostmaster." + origin,
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl,
		})
	}
	z, err := buildZone(origin, rrs)
	if z != nil {
		z.synthSOA = synth
	}
	return z, err
}

func checkOrigin(origin string) (string, error) {
	origin = dns.CanonicalName(strings.TrimSpace(origin))
	if _, ok := dns.IsDomainName(origin); !ok || origin == "" {
		return "", fmt.Errorf("adot: invalid zone origin %q", origin)
	}
	return origin, nil
}

func buildZone(origin string, rrs []dns.RR) (*Zone, error) {
	z := &Zone{origin: origin, names: map[string]map[uint16][]dns.RR{}, ents: map[string]bool{}}
	for _, rr := range rrs {
		h := rr.Header()
		h.Name = dns.CanonicalName(h.Name)
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("adot: zone %s: %s: class must be IN", origin, h.Name)
		}
		if !zoneTypes[h.Rrtype] {
			return nil, fmt.Errorf("adot: zone %s: %s: type %s not supported", origin, h.Name, dns.TypeToString[h.Rrtype])
		}
		if !dns.IsSubDomain(origin, h.Name) {
			return nil, fmt.Errorf("adot: zone %s: %s is outside the zone", origin, h.Name)
		}
		if h.Rrtype == dns.TypeSOA {
			if h.Name != origin {
				return nil, fmt.Errorf("adot: zone %s: SOA at %s, not at the apex", origin, h.Name)
			}
			if z.soa != nil {
				return nil, fmt.Errorf("adot: zone %s: more than one SOA", origin)
			}
			z.soa = rr.(*dns.SOA)
		}
		m := z.names[h.Name]
		if m == nil {
			m = map[uint16][]dns.RR{}
			z.names[h.Name] = m
		}
		if isDuplicate(m[h.Rrtype], rr) {
			continue
		}
		m[h.Rrtype] = append(m[h.Rrtype], rr)
	}
	if z.soa == nil {
		return nil, fmt.Errorf("adot: zone %s: no SOA at the apex", origin)
	}
	for name, m := range z.names {
		if _, ok := m[dns.TypeCNAME]; ok && (len(m) > 1 || len(m[dns.TypeCNAME]) > 1) {
			return nil, fmt.Errorf("adot: zone %s: %s: CNAME and other data", origin, name)
		}
		if name == origin && m[dns.TypeCNAME] != nil {
			return nil, fmt.Errorf("adot: zone %s: CNAME at the apex", origin)
		}
		// Register empty non-terminals between name and the apex.
		for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
			parent := name[off:]
			if parent == origin || len(parent) < len(origin) {
				break
			}
			if _, ok := z.names[parent]; !ok {
				z.ents[parent] = true
			}
		}
	}
	// Uniform TTL per RRset (RFC 2181 §5.2): use the smallest.
	for _, m := range z.names {
		for _, set := range m {
			t := set[0].Header().Ttl
			for _, rr := range set {
				t = min(t, rr.Header().Ttl)
			}
			for _, rr := range set {
				rr.Header().Ttl = t
			}
		}
	}
	return z, nil
}

func isDuplicate(set []dns.RR, rr dns.RR) bool {
	for _, o := range set {
		if dns.IsDuplicate(o, rr) {
			return true
		}
	}
	return false
}

// Answer builds the authoritative response to q: REFUSED outside the zone
// (and for zone transfers), NXDOMAIN with the SOA for names that do not
// exist, NODATA with the SOA for names without the type, referrals below
// delegations, and the records otherwise. It never returns nil.
func (z *Zone) Answer(q *dns.Msg) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	r.RecursionAvailable = false
	if q.Opcode != dns.OpcodeQuery {
		r.Rcode = dns.RcodeNotImplemented
		r.Question = nil
		return r
	}
	if len(q.Question) != 1 || q.Response {
		r.Rcode = dns.RcodeFormatError
		r.Question = nil
		return r
	}
	if opt := q.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			r.SetEdns0(1232, false)
			r.Rcode = dns.RcodeBadVers
			return r
		}
		r.SetEdns0(1232, false)
	}
	qs := q.Question[0]
	name := dns.CanonicalName(qs.Name)
	if (qs.Qclass != dns.ClassINET && qs.Qclass != dns.ClassANY) || !dns.IsSubDomain(z.origin, name) ||
		qs.Qtype == dns.TypeAXFR || qs.Qtype == dns.TypeIXFR {
		r.Rcode = dns.RcodeRefused
		return r
	}
	r.Authoritative = true
	// Delegation: the closest NS set strictly below the apex at or above name.
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		cut := name[off:]
		if cut == z.origin || len(cut) < len(z.origin) {
			break
		}
		if ns := z.names[cut][dns.TypeNS]; ns != nil && !(cut == name && qs.Qtype == dns.TypeDS) {
			r.Authoritative = false
			r.Ns = append(r.Ns, ns...)
			z.addGlue(r, ns)
			return r
		}
	}
	m, exists := z.names[name]
	switch {
	case !exists && !z.ents[name]:
		r.Rcode = dns.RcodeNameError
		r.Ns = append(r.Ns, z.negSOA())
	case qs.Qtype == dns.TypeANY:
		for _, t := range sortedTypes(m) {
			r.Answer = append(r.Answer, m[t]...)
		}
	case m[qs.Qtype] != nil:
		r.Answer = append(r.Answer, m[qs.Qtype]...)
		if qs.Qtype == dns.TypeNS || qs.Qtype == dns.TypeMX || qs.Qtype == dns.TypeSRV {
			z.addGlue(r, m[qs.Qtype])
		}
	case m[dns.TypeCNAME] != nil:
		r.Answer = append(r.Answer, m[dns.TypeCNAME]...)
	default:
		r.Ns = append(r.Ns, z.negSOA())
	}
	return r
}

// negSOA is the SOA for negative answers, TTL = min(SOA TTL, MINIMUM).
func (z *Zone) negSOA() dns.RR {
	s := dns.Copy(z.soa).(*dns.SOA)
	s.Hdr.Ttl = min(s.Hdr.Ttl, s.Minttl)
	return s
}

func (z *Zone) addGlue(r *dns.Msg, rrs []dns.RR) {
	for _, rr := range rrs {
		var target string
		switch v := rr.(type) {
		case *dns.NS:
			target = v.Ns
		case *dns.MX:
			target = v.Mx
		case *dns.SRV:
			target = v.Target
		}
		m := z.names[dns.CanonicalName(target)]
		r.Extra = append(r.Extra, m[dns.TypeA]...)
		r.Extra = append(r.Extra, m[dns.TypeAAAA]...)
	}
}

func sortedTypes(m map[uint16][]dns.RR) []uint16 {
	ts := make([]uint16, 0, len(m))
	for t := range m {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}
