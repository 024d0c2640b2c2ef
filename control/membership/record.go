package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// FormatVersion is the first octet of every encoded record. A decoder
// refuses any other value instead of guessing, so a future format can be
// introduced without old nodes misreading it.
const FormatVersion = 1

// FormatVersion2 marks a record carrying the authority extensions of
// authority.go (rotation, authority endorsement, covers). A record without
// them is always encoded as FormatVersion, so the encoding stays unique.
const FormatVersion2 = 2

// Limits on peer-supplied counts. They bound the memory one record can make
// us allocate; a real AS announces far fewer.
const (
	MaxPrefixes = 1024
	MaxACS      = 16
	// MaxRecordSize is the largest encoding the limits above allow; Decode
	// refuses anything longer before looking at it.
	MaxRecordSize = 1 + 1 + 4 + 4 + 8 + 1 + 2 + 65 + 2 + MaxPrefixes*18 + 1 + MaxACS*19 + 2*(2+SigSize) +
		(2 + SigSize) + (1 + 4) + 1 + MaxCovers*(4+18+SigSize) + (2 + SigSize) // format 2
)

// Kind is the operation a record announces.
type Kind uint8

const (
	KindJoin   Kind = 1
	KindUpdate Kind = 2
	KindExit   Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindJoin:
		return "join"
	case KindUpdate:
		return "update"
	case KindExit:
		return "exit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one AS's membership statement. Prefixes and ACS must be in
// canonical order (ascending, no duplicates; see Canonicalize) because the
// encoding, and therefore the hash and signatures, must be unique for a
// given content.
type Record struct {
	Kind Kind
	ASN  uint32
	// ASCN is the community the AS belongs to; 0 is the top level (a flat
	// alliance). The endorsement must come from a key of this community:
	// the community is the AS's parent in the tree of docs/wire.md §2.6.
	ASCN     uint32
	Version  uint64
	Key      PublicKey
	Prefixes []netip.Prefix
	ACS      []netip.AddrPort
	// Signature is by Key over SignedBytes.
	Signature []byte
	// Endorsement is by a key of community ASCN over EndorsedBytes (the
	// signed bytes plus the AS signature).
	Endorsement []byte

	// Format 2 (authority.go). Rotation is by the key held for the AS
	// over RotationBytes(ASN, Key): the old key hands over to Key.
	Rotation []byte
	// HasAuthority asks community AuthorityASCN (the community the AS
	// leaves, or the root 0) to endorse the record a second time, in
	// AuthoritySig over AuthorityBytes: needed to move the AS to another
	// community, and (root only) to replace its key without the old one.
	HasAuthority  bool
	AuthorityASCN uint32
	AuthoritySig  []byte
	// Covers are consents of the members holding covering prefixes,
	// ascending by prefix then ASN.
	Covers []Cover
}

// Domain-separation prefixes, so a signature made for one purpose can never
// be presented as another (an endorsement is not an AS signature, and
// neither is a signature over some other psavd message).
const (
	ctxAS      = "psavd/membership/v1/as\x00"
	ctxEndorse = "psavd/membership/v1/endorse\x00"
	ctxDigest  = "psavd/membership/v1/digest\x00"
)

// Canonicalize sorts and deduplicates Prefixes and ACS and masks prefixes,
// the form Encode requires. Call it before signing.
func (r *Record) Canonicalize() {
	for i, p := range r.Prefixes {
		r.Prefixes[i] = p.Masked()
	}
	slices.SortFunc(r.Prefixes, comparePrefix)
	r.Prefixes = slices.Compact(r.Prefixes)
	slices.SortFunc(r.ACS, netip.AddrPort.Compare)
	r.ACS = slices.Compact(r.ACS)
}

// comparePrefix orders IPv4 before IPv6, then by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Validate checks everything about r that does not need keys: field ranges,
// canonical order, and kind-specific shape.
func (r *Record) Validate() error {
	switch r.Kind {
	case KindJoin, KindUpdate, KindExit:
	default:
		return fmt.Errorf("unknown kind %d", uint8(r.Kind))
	}
	if r.ASN == 0 {
		return errors.New("ASN 0 is reserved")
	}
	if r.Version == 0 {
		// Versions start at 1 so that "no record" (0) is older than any.
		return errors.New("version 0 is reserved")
	}
	if err := r.Key.validate(); err != nil {
		return err
	}
	if len(r.Prefixes) > MaxPrefixes {
		return fmt.Errorf("%d prefixes, max %d", len(r.Prefixes), MaxPrefixes)
	}
	if len(r.ACS) > MaxACS {
		return fmt.Errorf("%d ACS addresses, max %d", len(r.ACS), MaxACS)
	}
	if r.Kind == KindExit {
		// An exit only names who leaves; carrying prefixes would invite
		// readers to think they are still owned.
		if len(r.Prefixes) != 0 || len(r.ACS) != 0 {
			return errors.New("exit must carry no prefixes and no ACS")
		}
	} else {
		if len(r.Prefixes) == 0 {
			return errors.New("join/update needs at least one prefix")
		}
		if len(r.ACS) == 0 {
			return errors.New("join/update needs at least one ACS address")
		}
	}
	for i, p := range r.Prefixes {
		if err := checkAddr(p.Addr()); err != nil {
			return fmt.Errorf("prefix %d: %v", i, err)
		}
		if !p.IsValid() || p != p.Masked() {
			return fmt.Errorf("prefix %v is not masked", p)
		}
		if i > 0 && comparePrefix(r.Prefixes[i-1], p) >= 0 {
			return errors.New("prefixes not in canonical order")
		}
	}
	for i, a := range r.ACS {
		if err := checkAddr(a.Addr()); err != nil {
			return fmt.Errorf("ACS %d: %v", i, err)
		}
		if a.Port() == 0 {
			return fmt.Errorf("ACS %v has port 0", a)
		}
		if i > 0 && r.ACS[i-1].Compare(a) >= 0 {
			return errors.New("ACS addresses not in canonical order")
		}
	}
	if n := len(r.Signature); n != 0 && n != SigSize {
		return fmt.Errorf("signature is %d bytes", n)
	}
	if n := len(r.Endorsement); n != 0 && n != SigSize {
		return fmt.Errorf("endorsement is %d bytes", n)
	}
	return r.validateExtensions()
}

// checkAddr refuses zones and IPv4-mapped IPv6, both of which would give
// one address two encodings.
func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("invalid address")
	case a.Zone() != "":
		return errors.New("address has a zone")
	case a.Is4In6():
		return errors.New("IPv4-mapped IPv6 address; use IPv4")
	}
	return nil
}

// appendBody appends the signed part of the encoding (everything before the
// AS signature).
func (r *Record) appendBody(b []byte) []byte {
	format := byte(FormatVersion)
	if r.hasExtensions() {
		format = FormatVersion2
	}
	b = append(b, format, byte(r.Kind))
	b = binary.BigEndian.AppendUint32(b, r.ASN)
	b = binary.BigEndian.AppendUint32(b, r.ASCN)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = append(b, byte(r.Key.Alg))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Key.Bytes)))
	b = append(b, r.Key.Bytes...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Prefixes)))
	for _, p := range r.Prefixes {
		a := p.Addr()
		if a.Is4() {
			b = append(b, 4, byte(p.Bits()))
			v := a.As4()
			b = append(b, v[:]...)
		} else {
			b = append(b, 6, byte(p.Bits()))
			v := a.As16()
			b = append(b, v[:]...)
		}
	}
	b = append(b, byte(len(r.ACS)))
	for _, ap := range r.ACS {
		a := ap.Addr()
		if a.Is4() {
			b = append(b, 4)
			v := a.As4()
			b = append(b, v[:]...)
		} else {
			b = append(b, 6)
			v := a.As16()
			b = append(b, v[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, ap.Port())
	}
	if format == FormatVersion2 {
		b = r.appendExtensions(b)
	}
	return b
}

// SignedBytes is what the AS key signs: a context string then the body.
func (r *Record) SignedBytes() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r.appendBody([]byte(ctxAS)), nil
}

// EndorsedBytes is what the community key signs: a context string, the
// body, and the length-prefixed AS signature. Covering the AS signature
// means the community vouches for this exact signed statement.
func (r *Record) EndorsedBytes() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := r.appendBody([]byte(ctxEndorse))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Signature)))
	return append(b, r.Signature...), nil
}

// Sign sets Signature with the AS's key. The signer must hold r.Key: a
// record is always signed by the key it carries (see README, "Trust").
func (r *Record) Sign(as Signer) error {
	if !as.Public().Equal(r.Key) {
		return errors.New("membership: signer key differs from record key")
	}
	r.Signature, r.Endorsement, r.AuthoritySig = nil, nil, nil
	msg, err := r.SignedBytes()
	if err != nil {
		return err
	}
	sig, err := as.Sign(msg)
	if err != nil {
		return err
	}
	r.Signature = sig
	return nil
}

// Endorse sets Endorsement with the parent community's key. Sign first.
func (r *Record) Endorse(community Signer) error {
	if len(r.Signature) == 0 {
		return errors.New("membership: endorse after signing")
	}
	msg, err := r.EndorsedBytes()
	if err != nil {
		return err
	}
	sig, err := community.Sign(msg)
	if err != nil {
		return err
	}
	r.Endorsement, r.AuthoritySig = sig, nil
	return nil
}

// Encode returns the canonical encoding (README, "Encoding").
func (r *Record) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := r.appendBody(make([]byte, 0, 128+18*len(r.Prefixes)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Signature)))
	b = append(b, r.Signature...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Endorsement)))
	b = append(b, r.Endorsement...)
	if r.hasExtensions() {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.AuthoritySig)))
		b = append(b, r.AuthoritySig...)
	}
	return b, nil
}

// Hash is SHA-256 of the canonical encoding; it names a record and breaks
// equal-version ties.
func (r *Record) Hash() ([32]byte, error) {
	b, err := r.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// reader is a bounds-checked cursor: every read checks the remaining length
// first, so no length from the wire is trusted and nothing can panic.
type reader struct {
	b   []byte
	err error
}

func (d *reader) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errors.New("truncated")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) u8() uint8 {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *reader) u16() uint16 {
	v := d.take(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (d *reader) u32() uint32 {
	v := d.take(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (d *reader) u64() uint64 {
	v := d.take(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (d *reader) addr(family uint8) netip.Addr {
	switch family {
	case 4:
		if v := d.take(4); v != nil {
			return netip.AddrFrom4([4]byte(v))
		}
	case 6:
		if v := d.take(16); v != nil {
			return netip.AddrFrom16([16]byte(v))
		}
	default:
		if d.err == nil {
			d.err = fmt.Errorf("unknown address family %d", family)
		}
	}
	return netip.Addr{}
}

// Decode parses one canonical record. It refuses unknown format versions,
// counts above the limits, non-canonical content and trailing bytes, so
// that Decode(b) succeeds only if Encode of the result gives back b.
// It does not verify signatures; Set.Apply does.
func Decode(b []byte) (Record, error) {
	r, err := decode(b)
	if err != nil {
		return Record{}, fmt.Errorf("membership: decode: %w", err)
	}
	return r, nil
}

func decode(b []byte) (Record, error) {
	var r Record
	if len(b) > MaxRecordSize {
		return r, fmt.Errorf("%d bytes, max %d", len(b), MaxRecordSize)
	}
	d := &reader{b: b}
	format := d.u8()
	if d.err == nil && format != FormatVersion && format != FormatVersion2 {
		return r, fmt.Errorf("format version %d, want %d or %d", format, FormatVersion, FormatVersion2)
	}
	r.Kind = Kind(d.u8())
	r.ASN = d.u32()
	r.ASCN = d.u32()
	r.Version = d.u64()
	r.Key.Alg = Alg(d.u8())
	kl := int(d.u16())
	if d.err == nil && kl != r.Key.Alg.keySize() {
		return r, fmt.Errorf("key length %d for %s", kl, r.Key.Alg)
	}
	r.Key.Bytes = clone(d.take(kl))
	np := int(d.u16())
	if np > MaxPrefixes {
		return r, fmt.Errorf("%d prefixes, max %d", np, MaxPrefixes)
	}
	if np > 0 && d.err == nil {
		// Each prefix is at least 6 bytes: refuse before allocating if
		// the input cannot possibly hold them.
		if np*6 > len(d.b) {
			return r, errors.New("truncated prefixes")
		}
		r.Prefixes = make([]netip.Prefix, 0, np)
	}
	for i := 0; i < np && d.err == nil; i++ {
		fam := d.u8()
		bits := int(d.u8())
		a := d.addr(fam)
		if d.err != nil {
			break
		}
		if bits > a.BitLen() {
			return r, fmt.Errorf("prefix length %d for IPv%d", bits, fam)
		}
		r.Prefixes = append(r.Prefixes, netip.PrefixFrom(a, bits))
	}
	na := int(d.u8())
	if na > MaxACS {
		return r, fmt.Errorf("%d ACS addresses, max %d", na, MaxACS)
	}
	if na > 0 && d.err == nil {
		r.ACS = make([]netip.AddrPort, 0, na)
	}
	for i := 0; i < na && d.err == nil; i++ {
		a := d.addr(d.u8())
		p := d.u16()
		if d.err != nil {
			break
		}
		r.ACS = append(r.ACS, netip.AddrPortFrom(a, p))
	}
	if format == FormatVersion2 && d.err == nil {
		if err := r.decodeExtensions(d); err != nil {
			return r, err
		}
	}
	if sl := int(d.u16()); d.err == nil && sl != 0 && sl != SigSize {
		return r, fmt.Errorf("signature length %d", sl)
	} else {
		r.Signature = clone(d.take(sl))
	}
	if el := int(d.u16()); d.err == nil && el != 0 && el != SigSize {
		return r, fmt.Errorf("endorsement length %d", el)
	} else {
		r.Endorsement = clone(d.take(el))
	}
	if format == FormatVersion2 && d.err == nil {
		if al := int(d.u16()); d.err == nil && al != 0 && al != SigSize {
			return r, fmt.Errorf("authority signature length %d", al)
		} else {
			r.AuthoritySig = clone(d.take(al))
		}
	}
	if d.err != nil {
		return r, d.err
	}
	if len(d.b) != 0 {
		return r, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	if format == FormatVersion2 && !r.hasExtensions() {
		// Would re-encode as format 1: two encodings of one record.
		return r, errors.New("format 2 without any format 2 field")
	}
	return r, nil
}

// clone copies peer bytes so a Record never aliases a network buffer, and
// keeps empty fields nil so decoded and freshly built records compare equal.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
