package rpki

import (
	"cmp"
	"net/netip"
	"slices"
	"time"
)

// VRP is a Validated ROA Payload: ASN may originate Prefix and any
// more-specific of it up to MaxLen bits.
type VRP struct {
	Prefix netip.Prefix
	MaxLen uint8
	ASN    uint32
}

// State is an RFC 6811 origin validation state.
type State uint8

// States.
const (
	NotFound State = iota // no VRP covers the prefix
	Valid                 // a VRP with this ASN covers it and allows its length
	Invalid               // covered by some VRP, but none matches (wrong ASN or too long)
)

func (s State) String() string {
	switch s {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	}
	return "not-found"
}

type asnPrefix struct {
	asn    uint32
	prefix netip.Prefix
}

// Validator is an immutable snapshot of the VRP set. It is safe for
// concurrent use. A nil *Validator holds no data: Covered reports every
// prefix as uncovered and State reports NotFound; callers that must tell
// "no RPKI data" from "not covered" check for nil first (see README).
type Validator struct {
	// byOrigin maps (ASN, VRP prefix) to the largest max length among the
	// VRPs with that ASN and prefix: the only thing RFC 6811 needs.
	byOrigin map[asnPrefix]uint8
	// prefixes holds every VRP prefix, to tell Invalid from NotFound.
	prefixes map[netip.Prefix]struct{}
	n        int

	version   uint8
	sessionID uint16
	serial    uint32
	updated   time.Time
	expires   time.Time // zero: never (a static Validator)
}

// NewValidator builds a snapshot from a list of VRPs (duplicates are
// harmless; invalid entries — bad prefix, host bits, max length out of
// range — are skipped). The client uses it; it also serves tests and a
// static VRP list from configuration.
func NewValidator(vrps []VRP) *Validator {
	v := &Validator{
		byOrigin: make(map[asnPrefix]uint8, len(vrps)),
		prefixes: make(map[netip.Prefix]struct{}, len(vrps)),
		updated:  time.Now(),
	}
	for _, r := range vrps {
		if !r.valid() {
			continue
		}
		k := asnPrefix{r.ASN, r.Prefix}
		if ml, ok := v.byOrigin[k]; !ok || r.MaxLen > ml {
			v.byOrigin[k] = r.MaxLen
		}
		v.prefixes[r.Prefix] = struct{}{}
		v.n++
	}
	return v
}

func (r VRP) valid() bool {
	p := r.Prefix
	return p.IsValid() && !p.Addr().Is4In6() && p.Addr().Zone() == "" && p.Masked() == p &&
		int(r.MaxLen) >= p.Bits() && int(r.MaxLen) <= p.Addr().BitLen()
}

// normalize returns p masked, or false for a prefix no VRP can match
// (invalid, zoned, IPv4-mapped IPv6).
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// State returns the RFC 6811 validation state of prefix p originated by asn.
// A VRP matches when its ASN equals asn, its prefix covers p and
// p's length ≤ its max length. A VRP with ASN 0 (RFC 6483 §4) never matches
// and asn 0 is never Valid.
func (v *Validator) State(asn uint32, p netip.Prefix) State {
	if v == nil {
		return NotFound
	}
	p, ok := normalize(p)
	if !ok {
		return NotFound
	}
	covered := false
	for bits := p.Bits(); bits >= 0; bits-- {
		q, _ := p.Addr().Prefix(bits)
		if asn != 0 {
			if ml, ok := v.byOrigin[asnPrefix{asn, q}]; ok && int(ml) >= p.Bits() {
				return Valid
			}
		}
		if !covered {
			_, covered = v.prefixes[q]
		}
	}
	if covered {
		return Invalid
	}
	return NotFound
}

// Covered reports whether every prefix is Valid for asn (RFC 6811): some VRP
// with that ASN covers it with max length ≥ its length. uncovered lists the
// prefixes that are not, in input order (NotFound and Invalid alike).
// docs/wire.md §3.2: a membership record with uncovered prefixes is refused.
// An empty prefix list is covered.
func (v *Validator) Covered(asn uint32, prefixes []netip.Prefix) (ok bool, uncovered []netip.Prefix) {
	for _, p := range prefixes {
		if v.State(asn, p) != Valid {
			uncovered = append(uncovered, p)
		}
	}
	return len(uncovered) == 0, uncovered
}

// Len is the number of valid VRPs the snapshot was built from.
func (v *Validator) Len() int {
	if v == nil {
		return 0
	}
	return v.n
}

// VRPs returns the snapshot's VRPs (deduplicated to the largest max length
// per ASN and prefix), sorted by prefix, then ASN.
func (v *Validator) VRPs() []VRP {
	if v == nil {
		return nil
	}
	out := make([]VRP, 0, len(v.byOrigin))
	for k, ml := range v.byOrigin {
		out = append(out, VRP{Prefix: k.prefix, MaxLen: ml, ASN: k.asn})
	}
	slices.SortFunc(out, func(a, b VRP) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.ASN, b.ASN)
	})
	return out
}

// Serial is the cache serial number the snapshot corresponds to.
func (v *Validator) Serial() uint32 { return v.serial }

// SessionID is the cache session the snapshot came from.
func (v *Validator) SessionID() uint16 { return v.sessionID }

// Version is the RTR protocol version the snapshot was received with.
func (v *Validator) Version() uint8 { return v.version }

// Updated is when the snapshot was last confirmed by the cache (End of Data).
func (v *Validator) Updated() time.Time { return v.updated }

// Expires is when the snapshot stops being usable if not refreshed (the
// cache's Expire Interval after Updated). Zero for a static Validator.
func (v *Validator) Expires() time.Time { return v.expires }

// expired reports whether v is past its expiry at now.
func (v *Validator) expired(now time.Time) bool {
	return !v.expires.IsZero() && !now.Before(v.expires)
}
