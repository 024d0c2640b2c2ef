package membership

import (
	"errors"
	"fmt"
)

// MaxCommunityKeys bounds how many keys a community may have at once (a
// current and a next key during rotation is the expected case). Each
// endorsement is tried against every key, so this bounds the work one
// forged record can cost.
const MaxCommunityKeys = 4

// Policy is the trust anchor set: which keys may endorse records for each
// community (ASCN). It comes from configuration, not from peers: a record
// can never introduce the key that endorses it.
type Policy struct {
	communities map[uint32][]PublicKey
	quotas      map[uint32]Quota
	// members pins ASNs to their community (ASN → ASCN), where the
	// configuration lists them: a record naming another community is
	// refused whatever this node holds.
	members map[uint32]uint32
}

// Quota bounds one community's share of the set: live members, and
// prefixes over all of them. A community key can endorse records, but not
// crowd the alliance.
type Quota struct {
	MaxMembers  int
	MaxPrefixes int
}

// Default quotas of a community that configures none.
const (
	DefaultMaxMembers  = 4096
	DefaultMaxPrefixes = 65536
)

// DefaultQuota is the quota of a community that configures none.
var DefaultQuota = Quota{MaxMembers: DefaultMaxMembers, MaxPrefixes: DefaultMaxPrefixes}

// SetQuotas sets the quotas of the communities given (others keep
// DefaultQuota). Call it before the policy is used by a Set.
func (p *Policy) SetQuotas(q map[uint32]Quota) error {
	for ascn, v := range q {
		if v.MaxMembers < 1 || v.MaxPrefixes < 1 {
			return fmt.Errorf("membership: community %d quota %+v: both must be at least 1", ascn, v)
		}
	}
	p.quotas = make(map[uint32]Quota, len(q))
	for ascn, v := range q {
		p.quotas[ascn] = v
	}
	return nil
}

// SetMembers pins ASNs to communities (ASN → ASCN), as listed in the
// configuration: every record of a pinned AS must name its community, on
// every ACS, even one that has never held a record of it. Call it before the
// policy is used by a Set.
func (p *Policy) SetMembers(m map[uint32]uint32) error {
	for asn, ascn := range m {
		if asn == 0 {
			return fmt.Errorf("membership: ASN 0 is reserved")
		}
		if _, ok := p.communities[ascn]; !ok {
			return fmt.Errorf("membership: AS%d pinned to community %d, which is not configured", asn, ascn)
		}
	}
	p.members = make(map[uint32]uint32, len(m))
	for asn, ascn := range m {
		p.members[asn] = ascn
	}
	return nil
}

// CommunityOf returns the community asn is pinned to by SetMembers.
func (p *Policy) CommunityOf(asn uint32) (uint32, bool) {
	ascn, ok := p.members[asn]
	return ascn, ok
}

// Quota returns community ascn's quota.
func (p *Policy) Quota(ascn uint32) Quota {
	if q, ok := p.quotas[ascn]; ok {
		return q
	}
	return DefaultQuota
}

// NewPolicy builds a policy from ASCN → endorsing keys.
func NewPolicy(communities map[uint32][]PublicKey) (*Policy, error) {
	p := &Policy{communities: make(map[uint32][]PublicKey, len(communities))}
	for ascn, keys := range communities {
		if len(keys) == 0 || len(keys) > MaxCommunityKeys {
			return nil, fmt.Errorf("membership: community %d has %d keys, want 1..%d", ascn, len(keys), MaxCommunityKeys)
		}
		for _, k := range keys {
			if err := k.validate(); err != nil {
				return nil, fmt.Errorf("membership: community %d key: %w", ascn, err)
			}
		}
		p.communities[ascn] = append([]PublicKey(nil), keys...)
	}
	return p, nil
}

// Verify checks r's AS signature and its community endorsement and returns
// the refusal reason, or ReasonNone. It does not look at the held set; a
// record that verifies here verifies everywhere with the same policy, which
// is what lets every ACS reach the same decision (see README, "Trust").
func (p *Policy) Verify(r *Record) (Reason, error) {
	if err := r.Validate(); err != nil {
		return ReasonMalformed, err
	}
	keys, ok := p.communities[r.ASCN]
	if !ok {
		return ReasonUnknownCommunity, fmt.Errorf("community %d is not configured", r.ASCN)
	}
	if pin, ok := p.members[r.ASN]; ok && pin != r.ASCN {
		return ReasonForeignCommunity, fmt.Errorf("AS%d is a member of community %d by configuration, not of %d", r.ASN, pin, r.ASCN)
	}
	if len(r.Signature) == 0 {
		return ReasonBadSignature, errors.New("no AS signature")
	}
	msg, _ := r.SignedBytes()
	if !r.Key.Verify(msg, r.Signature) {
		return ReasonBadSignature, errors.New("AS signature does not verify with the record's key")
	}
	if len(r.Endorsement) == 0 {
		return ReasonNoEndorsement, fmt.Errorf("no endorsement from community %d", r.ASCN)
	}
	emsg, _ := r.EndorsedBytes()
	for _, k := range keys {
		if k.Verify(emsg, r.Endorsement) {
			return p.verifyAuthority(r)
		}
	}
	return ReasonBadEndorsement, fmt.Errorf("endorsement does not verify with any key of community %d", r.ASCN)
}
