package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Scoped authority (docs/wire.md §3.2, "Authority"). Format 1 records carry
// only the AS signature and the community endorsement; format 2 adds three
// optional proofs that the Set checks against the record it already holds
// for the AS:
//
//   - Rotation: a signature by the key held for the AS over the new key, so
//     that a key change is signed by the old key and (as every record) by
//     the new one;
//   - Authority: a second endorsement, by the community the AS is leaving
//     (a move) or by the root community 0 (a move or a key override for
//     recovery);
//   - Covers: for a prefix inside another member's prefix, that member's
//     consent, signed by the key held for it.
//
// A record with none of them is encoded as format 1, byte for byte as
// before, so old records stay decodable and keep their hashes.

// MaxCovers bounds the cover endorsements one record may carry.
const MaxCovers = 16

// MaxVersionStep is the largest version increase over the held record of an
// AS that a record may make: nobody can burn an AS's version space (a record
// at 2^64−1 could never be superseded), and 2^16 updates fit in one step.
const MaxVersionStep = 1 << 16

// Cover is the consent of the member holding a covering prefix (ASN) to a
// more-specific Prefix being announced by the record's AS.
type Cover struct {
	ASN       uint32
	Prefix    netip.Prefix
	Signature []byte // by the key held for ASN over CoverBytes
}

const (
	ctxRotate    = "psavd/membership/v2/rotate\x00"
	ctxAuthority = "psavd/membership/v2/authority\x00"
	ctxCover     = "psavd/membership/v2/cover\x00"
)

// hasExtensions reports whether r needs format 2.
func (r *Record) hasExtensions() bool {
	return len(r.Rotation) != 0 || r.HasAuthority || len(r.Covers) != 0 || len(r.AuthoritySig) != 0
}

// RotationBytes is what the old key of an AS signs to hand over to newKey.
// It names the AS and the new key only, not a version: the proof can ride
// on every later record, so an ACS that missed the rotating version still
// accepts the next one.
func RotationBytes(asn uint32, newKey PublicKey) []byte {
	b := append([]byte(ctxRotate), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(ctxRotate):], asn)
	b = append(b, byte(newKey.Alg))
	b = binary.BigEndian.AppendUint16(b, uint16(len(newKey.Bytes)))
	return append(b, newKey.Bytes...)
}

// CoverBytes is what covering member coverer signs to let asn announce p.
func CoverBytes(asn, coverer uint32, p netip.Prefix) []byte {
	b := []byte(ctxCover)
	b = binary.BigEndian.AppendUint32(b, asn)
	b = binary.BigEndian.AppendUint32(b, coverer)
	return appendPrefix(b, p)
}

// SignRotation sets Rotation with old, the key held for the AS, over r.Key.
// Call it before Sign (the AS signature covers it).
func (r *Record) SignRotation(old Signer) error {
	sig, err := old.Sign(RotationBytes(r.ASN, r.Key))
	if err != nil {
		return err
	}
	r.Rotation = sig
	return nil
}

// AddCover adds coverer's consent to r announcing p, signed with coverer's
// key. Call it before Sign.
func (r *Record) AddCover(coverer uint32, p netip.Prefix, key Signer) error {
	sig, err := key.Sign(CoverBytes(r.ASN, coverer, p.Masked()))
	if err != nil {
		return err
	}
	r.Covers = append(r.Covers, Cover{ASN: coverer, Prefix: p.Masked(), Signature: sig})
	slices.SortFunc(r.Covers, compareCover)
	return nil
}

func compareCover(a, b Cover) int {
	if c := comparePrefix(a.Prefix, b.Prefix); c != 0 {
		return c
	}
	switch {
	case a.ASN < b.ASN:
		return -1
	case a.ASN > b.ASN:
		return 1
	}
	return 0
}

// RequestAuthority names community ascn as the authority that will endorse
// r a second time (EndorseAuthority). Call it before Sign: the AS signs
// which authority it asks for, so the request cannot be stripped.
func (r *Record) RequestAuthority(ascn uint32) {
	r.HasAuthority, r.AuthorityASCN = true, ascn
}

// AuthorityBytes is what the authority community signs: the endorsed
// record, endorsement included.
func (r *Record) AuthorityBytes() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := r.appendBody([]byte(ctxAuthority))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Signature)))
	b = append(b, r.Signature...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Endorsement)))
	return append(b, r.Endorsement...), nil
}

// EndorseAuthority sets AuthoritySig with a key of community AuthorityASCN.
// Endorse first.
func (r *Record) EndorseAuthority(authority Signer) error {
	if !r.HasAuthority {
		return errors.New("membership: no authority requested (RequestAuthority before Sign)")
	}
	if len(r.Endorsement) == 0 {
		return errors.New("membership: endorse by the authority after the community endorsement")
	}
	msg, err := r.AuthorityBytes()
	if err != nil {
		return err
	}
	sig, err := authority.Sign(msg)
	if err != nil {
		return err
	}
	r.AuthoritySig = sig
	return nil
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	a := p.Addr()
	if a.Is4() {
		v := a.As4()
		return append(append(b, 4, byte(p.Bits())), v[:]...)
	}
	v := a.As16()
	return append(append(b, 6, byte(p.Bits())), v[:]...)
}

// appendExtensions appends the format 2 part of the body.
func (r *Record) appendExtensions(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Rotation)))
	b = append(b, r.Rotation...)
	if r.HasAuthority {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint32(b, r.AuthorityASCN)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(len(r.Covers)))
	for _, c := range r.Covers {
		b = binary.BigEndian.AppendUint32(b, c.ASN)
		b = appendPrefix(b, c.Prefix)
		b = append(b, c.Signature...)
	}
	return b
}

// decodeExtensions reads the format 2 part of the body.
func (r *Record) decodeExtensions(d *reader) error {
	if rl := int(d.u16()); d.err == nil && rl != 0 && rl != SigSize {
		return fmt.Errorf("rotation signature length %d", rl)
	} else {
		r.Rotation = clone(d.take(rl))
	}
	switch d.u8() {
	case 0:
	case 1:
		r.HasAuthority = true
		r.AuthorityASCN = d.u32()
	default:
		if d.err == nil {
			return errors.New("authority flag not 0 or 1")
		}
	}
	nc := int(d.u8())
	if nc > MaxCovers {
		return fmt.Errorf("%d covers, max %d", nc, MaxCovers)
	}
	for i := 0; i < nc && d.err == nil; i++ {
		var c Cover
		c.ASN = d.u32()
		fam := d.u8()
		bits := int(d.u8())
		a := d.addr(fam)
		c.Signature = clone(d.take(SigSize))
		if d.err != nil {
			break
		}
		if bits > a.BitLen() {
			return fmt.Errorf("cover prefix length %d for IPv%d", bits, fam)
		}
		c.Prefix = netip.PrefixFrom(a, bits)
		r.Covers = append(r.Covers, c)
	}
	return d.err
}

// validateExtensions checks the shape of the format 2 fields.
func (r *Record) validateExtensions() error {
	if n := len(r.Rotation); n != 0 && n != SigSize {
		return fmt.Errorf("rotation signature is %d bytes", n)
	}
	if n := len(r.AuthoritySig); n != 0 && n != SigSize {
		return fmt.Errorf("authority signature is %d bytes", n)
	}
	if !r.HasAuthority && (r.AuthorityASCN != 0 || len(r.AuthoritySig) != 0) {
		return errors.New("authority signature or ASCN without an authority request")
	}
	if len(r.Covers) > MaxCovers {
		return fmt.Errorf("%d covers, max %d", len(r.Covers), MaxCovers)
	}
	if len(r.Covers) != 0 && r.Kind == KindExit {
		return errors.New("an exit announces no prefixes to cover")
	}
	for i, c := range r.Covers {
		if c.ASN == 0 || c.ASN == r.ASN {
			return fmt.Errorf("cover %d: by AS%d", i, c.ASN)
		}
		if err := checkAddr(c.Prefix.Addr()); err != nil {
			return fmt.Errorf("cover %d: %v", i, err)
		}
		if !c.Prefix.IsValid() || c.Prefix != c.Prefix.Masked() {
			return fmt.Errorf("cover prefix %v is not masked", c.Prefix)
		}
		if !slices.Contains(r.Prefixes, c.Prefix) {
			return fmt.Errorf("cover for %v, which the record does not announce", c.Prefix)
		}
		if len(c.Signature) != SigSize {
			return fmt.Errorf("cover %d: signature is %d bytes", i, len(c.Signature))
		}
		if i > 0 && compareCover(r.Covers[i-1], c) >= 0 {
			return errors.New("covers not in canonical order")
		}
	}
	return nil
}

// verifyAuthority checks the authority endorsement, which depends only on
// the record and the policy.
func (p *Policy) verifyAuthority(r *Record) (Reason, error) {
	if !r.HasAuthority {
		return ReasonNone, nil
	}
	keys, ok := p.communities[r.AuthorityASCN]
	if !ok {
		return ReasonUnknownCommunity, fmt.Errorf("authority community %d is not configured", r.AuthorityASCN)
	}
	if len(r.AuthoritySig) == 0 {
		return ReasonBadAuthority, fmt.Errorf("authority of community %d requested but not given", r.AuthorityASCN)
	}
	msg, _ := r.AuthorityBytes()
	for _, k := range keys {
		if k.Verify(msg, r.AuthoritySig) {
			return ReasonNone, nil
		}
	}
	return ReasonBadAuthority, fmt.Errorf("authority endorsement does not verify with any key of community %d", r.AuthorityASCN)
}

// checkAuthority judges r against held, the record this set holds for the
// AS (nil: none): the community it belongs to, the key that speaks for it
// and the version it is at. s.mu held.
func checkAuthority(r *Record, held *Record) (Reason, error) {
	if held == nil {
		return ReasonNone, nil
	}
	root := r.HasAuthority && r.AuthorityASCN == 0
	if r.ASCN != held.ASCN && !root && !(r.HasAuthority && r.AuthorityASCN == held.ASCN) {
		return ReasonForeignCommunity, fmt.Errorf("AS%d belongs to community %d: moving it to %d needs the endorsement of community %d or of the root", r.ASN, held.ASCN, r.ASCN, held.ASCN)
	}
	if !r.Key.Equal(held.Key) && !root {
		if len(r.Rotation) == 0 {
			return ReasonWrongKey, fmt.Errorf("not signed by the key held for AS%d (%s), and no rotation signature by it", r.ASN, held.Key)
		}
		if !held.Key.Verify(RotationBytes(r.ASN, r.Key), r.Rotation) {
			return ReasonWrongKey, fmt.Errorf("rotation signature does not verify with the key held for AS%d (%s)", r.ASN, held.Key)
		}
	}
	if r.Version > held.Version && r.Version-held.Version > MaxVersionStep {
		return ReasonVersionJump, fmt.Errorf("version %d jumps more than %d above held %d", r.Version, MaxVersionStep, held.Version)
	}
	return ReasonNone, nil
}

// coveringOwner returns the other live member holding the longest prefix
// strictly containing p, if any; a prefix of asn itself on the way ends the
// search (the AS sub-divides its own space). s.mu held.
func (s *Set) coveringOwner(asn uint32, p netip.Prefix) (uint32, netip.Prefix, bool) {
	for bits := p.Bits() - 1; bits >= 0; bits-- {
		q, _ := p.Addr().Prefix(bits)
		if o, ok := s.owners[q]; ok {
			if o == asn {
				return 0, netip.Prefix{}, false
			}
			return o, q, true
		}
	}
	return 0, netip.Prefix{}, false
}

// checkMoreSpecific refuses a new prefix of r (one its held record does not
// already carry) inside a prefix of a member of another community, unless
// that member covers it (a Cover signed by the key held for it) or RPKI
// covers it for r's AS (coverCheck). Without this, any community could hand
// out a more-specific of any member's space and make that member's own
// border drop its sources as spoofed-inside (longest match wins). Inside
// one community the community is the authority over its members' space,
// as it endorses every record of both (and nesting there is how a provider
// delegates), so nesting is not judged. s.mu held.
func (s *Set) checkMoreSpecific(r *Record, held *Record) (Reason, error) {
	for _, p := range r.Prefixes {
		if held != nil && held.Kind != KindExit && slices.Contains(held.Prefixes, p) {
			continue
		}
		o, q, ok := s.coveringOwner(r.ASN, p)
		if !ok {
			continue
		}
		if s.coverCheck != nil && s.coverCheck(r.ASN, p) {
			continue
		}
		e := s.heldFor(o)
		if e != nil && e.rec.ASCN == r.ASCN {
			continue
		}
		covered := false
		for _, c := range r.Covers {
			if c.ASN == o && c.Prefix == p && e != nil && e.rec.Key.Verify(CoverBytes(r.ASN, o, p), c.Signature) {
				covered = true
				break
			}
		}
		if !covered {
			return ReasonMoreSpecific, fmt.Errorf("prefix %v lies inside %v of AS%d, which has not endorsed it, and no ROA covers it for AS%d", p, q, o, r.ASN)
		}
	}
	return ReasonNone, nil
}

// checkQuota refuses a join or update that would take its community over
// its quota of members or prefixes. Records held aside by Revalidate
// count: they still own their prefixes. s.mu held.
func (s *Set) checkQuota(r *Record) (Reason, error) {
	q := s.policy.Quota(r.ASCN)
	members, prefixes := 1, len(r.Prefixes)
	count := func(e *entry) {
		if e.rec.ASN == r.ASN || e.rec.ASCN != r.ASCN || e.rec.Kind == KindExit {
			return
		}
		members++
		prefixes += len(e.rec.Prefixes)
	}
	for _, e := range s.entries {
		count(e)
	}
	for _, e := range s.rv.aside {
		count(e)
	}
	if members > q.MaxMembers {
		return ReasonCommunityQuota, fmt.Errorf("community %d would have %d members, quota %d", r.ASCN, members, q.MaxMembers)
	}
	if prefixes > q.MaxPrefixes {
		return ReasonCommunityQuota, fmt.Errorf("community %d would hold %d prefixes, quota %d", r.ASCN, prefixes, q.MaxPrefixes)
	}
	return ReasonNone, nil
}
