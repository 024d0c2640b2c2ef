package lisp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// AFI is an IANA Address Family Identifier as carried in LISP messages.
type AFI uint16

// Address families understood by the codec.
const (
	AFINone              AFI = 0     // no address (RFC 9301 §5: AFI 0, zero-length address)
	AFIIPv4              AFI = 1     // 4-octet IPv4 address
	AFIIPv6              AFI = 2     // 16-octet IPv6 address
	AFIDistinguishedName AFI = 17    // NUL-terminated ASCII name (RFC 8060 §3; lispers.net's named RLOCs)
	AFILCAF              AFI = 16387 // LISP Canonical Address Format, RFC 8060
)

// LCAFType is the Type octet of an LCAF header (RFC 8060 §3).
type LCAFType uint8

// LCAF types with a structured representation. Any other type is kept as an
// opaque body (see LCAF.Body).
const (
	LCAFAFIList       LCAFType = 1
	LCAFInstanceID    LCAFType = 2
	LCAFASNumber      LCAFType = 3
	LCAFMulticastInfo LCAFType = 9
	LCAFRLE           LCAFType = 13
)

// MaxAddressDepth caps the nesting of LCAFs inside LCAFs (for example an
// AS-Number LCAF inside an Instance-ID LCAF is depth 2). Deeper nesting is
// refused by the decoder and the encoder.
const MaxAddressDepth = 4

// Address is a LISP address: the zero value is AFI 0 (no address), a valid
// IP is AFI 1 or 2, and a non-nil LCAF is AFI 16387. Setting both IP and
// LCAF is an encoding error.
type Address struct {
	IP   netip.Addr
	LCAF *LCAF
	// Name is a Distinguished Name (AFI 17) when not "": printable ASCII,
	// no NUL, encoded NUL-terminated.
	Name string
}

// MaxNameLen bounds a Distinguished Name (AFI 17) we decode or encode.
const MaxNameLen = 255

// LCAF is a decoded LISP Canonical Address. Which fields are meaningful
// depends on Type:
//
//	AFI-list (1):         List
//	Instance-ID (2):      InstanceID, IIDMaskLen, Inner
//	AS Number (3):        ASN, Inner
//	Multicast Info (9):   InstanceID, MCFlags, SourceMaskLen, GroupMaskLen, Source, Group
//	RLE (13):             RLE
//	anything else:        Rsvd2 and Body, kept verbatim (opaque)
//
// The Rsvd1 and Flags octets of the LCAF header are reserved: they are sent
// as zero and ignored on receipt.
type LCAF struct {
	Type LCAFType

	List []Address

	InstanceID uint32
	IIDMaskLen uint8
	ASN        uint32
	Inner      Address

	MCFlags       uint8 // low three bits of Rsvd2: R (0x4), L (0x2), J (0x1)
	SourceMaskLen uint8
	GroupMaskLen  uint8
	Source        Address
	Group         Address

	RLE []RLEEntry

	Rsvd2 uint8
	Body  []byte
}

// Multicast Info flags (RFC 8060 §4.3, in the Rsvd2 octet).
const (
	MCFlagRP    uint8 = 0x4
	MCFlagLeave uint8 = 0x2
	MCFlagJoin  uint8 = 0x1
)

// RLEEntry is one replication target of a Replication List Entry LCAF.
type RLEEntry struct {
	Level   uint8
	Address Address
}

// IPAddr returns an Address for a plain IPv4 or IPv6 address.
func IPAddr(ip netip.Addr) Address { return Address{IP: ip} }

// InstanceIDAddr wraps inner in an Instance-ID LCAF.
func InstanceIDAddr(iid uint32, maskLen uint8, inner Address) Address {
	return Address{LCAF: &LCAF{Type: LCAFInstanceID, InstanceID: iid, IIDMaskLen: maskLen, Inner: inner}}
}

// ASNAddr wraps inner in an AS Number LCAF.
func ASNAddr(asn uint32, inner Address) Address {
	return Address{LCAF: &LCAF{Type: LCAFASNumber, ASN: asn, Inner: inner}}
}

// AFIListAddr returns an AFI-list LCAF holding addrs.
func AFIListAddr(addrs ...Address) Address {
	return Address{LCAF: &LCAF{Type: LCAFAFIList, List: addrs}}
}

// RLEAddr returns a Replication List Entry LCAF.
func RLEAddr(entries ...RLEEntry) Address {
	return Address{LCAF: &LCAF{Type: LCAFRLE, RLE: entries}}
}

// MulticastAddr returns a Multicast Info LCAF for (source/sLen, group/gLen).
func MulticastAddr(iid uint32, source Address, sLen uint8, group Address, gLen uint8) Address {
	return Address{LCAF: &LCAF{Type: LCAFMulticastInfo, InstanceID: iid, Source: source, SourceMaskLen: sLen, Group: group, GroupMaskLen: gLen}}
}

// AFI returns the address family the address is encoded with.
func (a Address) AFI() AFI {
	switch {
	case a.LCAF != nil:
		return AFILCAF
	case a.Name != "":
		return AFIDistinguishedName
	case a.IP.Is4():
		return AFIIPv4
	case a.IP.IsValid():
		return AFIIPv6
	}
	return AFINone
}

// IsZero reports whether a is AFI 0.
func (a Address) IsZero() bool { return !a.IP.IsValid() && a.LCAF == nil && a.Name == "" }

// String renders the address for logs.
func (a Address) String() string {
	switch {
	case a.LCAF != nil:
		return a.LCAF.String()
	case a.IP.IsValid():
		return a.IP.String()
	case a.Name != "":
		return fmt.Sprintf("%q", a.Name)
	}
	return "no-address"
}

func (l *LCAF) String() string {
	switch l.Type {
	case LCAFAFIList:
		return fmt.Sprintf("afi-list%v", l.List)
	case LCAFInstanceID:
		return fmt.Sprintf("[%d/%d]%v", l.InstanceID, l.IIDMaskLen, l.Inner)
	case LCAFASNumber:
		return fmt.Sprintf("AS%d:%v", l.ASN, l.Inner)
	case LCAFMulticastInfo:
		return fmt.Sprintf("[%d](%v/%d,%v/%d)", l.InstanceID, l.Source, l.SourceMaskLen, l.Group, l.GroupMaskLen)
	case LCAFRLE:
		return fmt.Sprintf("rle%v", l.RLE)
	}
	return fmt.Sprintf("lcaf-%d(%x)", l.Type, l.Body)
}

// maxMaskLen returns the largest mask length that makes sense for a prefix
// of address a, or -1 when the codec does not constrain it.
func (a Address) maxMaskLen() int {
	switch {
	case a.LCAF != nil:
		if a.LCAF.Type == LCAFInstanceID || a.LCAF.Type == LCAFASNumber {
			return a.LCAF.Inner.maxMaskLen()
		}
		return -1
	case a.IP.IsValid():
		return a.IP.BitLen()
	}
	return 0
}

// AppendAddress appends the AFI-prefixed encoding of a to b.
func AppendAddress(b []byte, a Address) ([]byte, error) {
	return appendAddress(b, a, 0)
}

func appendAddress(b []byte, a Address, depth int) ([]byte, error) {
	if (a.LCAF != nil && a.IP.IsValid()) || (a.Name != "" && (a.LCAF != nil || a.IP.IsValid())) {
		return b, fmt.Errorf("%w: address has more than one of IP, LCAF, name", ErrInvalid)
	}
	switch {
	case a.Name != "":
		if len(a.Name) > MaxNameLen || !printable(a.Name) {
			return b, fmt.Errorf("%w: distinguished name %q", ErrInvalid, a.Name)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(AFIDistinguishedName))
		b = append(b, a.Name...)
		return append(b, 0), nil
	case a.LCAF != nil:
		return appendLCAF(b, a.LCAF, depth)
	case a.IP.Is4():
		b = binary.BigEndian.AppendUint16(b, uint16(AFIIPv4))
		v := a.IP.As4()
		return append(b, v[:]...), nil
	case a.IP.IsValid():
		if a.IP.Zone() != "" {
			return b, fmt.Errorf("%w: IPv6 zone %q cannot be encoded", ErrInvalid, a.IP.Zone())
		}
		b = binary.BigEndian.AppendUint16(b, uint16(AFIIPv6))
		v := a.IP.As16()
		return append(b, v[:]...), nil
	}
	return binary.BigEndian.AppendUint16(b, uint16(AFINone)), nil
}

func appendLCAF(b []byte, l *LCAF, depth int) ([]byte, error) {
	if depth >= MaxAddressDepth {
		return b, fmt.Errorf("%w: LCAF nesting deeper than %d", ErrInvalid, MaxAddressDepth)
	}
	rsvd2 := byte(0)
	switch l.Type {
	case LCAFInstanceID:
		rsvd2 = l.IIDMaskLen
		if l.IIDMaskLen > 32 {
			return b, fmt.Errorf("%w: IID mask length %d > 32", ErrInvalid, l.IIDMaskLen)
		}
	case LCAFMulticastInfo:
		if l.MCFlags&^0x7 != 0 {
			return b, fmt.Errorf("%w: multicast flags %#x", ErrInvalid, l.MCFlags)
		}
		rsvd2 = l.MCFlags
	case LCAFAFIList, LCAFASNumber, LCAFRLE:
	default:
		rsvd2 = l.Rsvd2
	}
	b = binary.BigEndian.AppendUint16(b, uint16(AFILCAF))
	b = append(b, 0, 0, byte(l.Type), rsvd2, 0, 0)
	start := len(b)
	var err error
	switch l.Type {
	case LCAFAFIList:
		for _, a := range l.List {
			if b, err = appendAddress(b, a, depth+1); err != nil {
				return b, err
			}
		}
	case LCAFInstanceID:
		b = binary.BigEndian.AppendUint32(b, l.InstanceID)
		b, err = appendAddress(b, l.Inner, depth+1)
	case LCAFASNumber:
		b = binary.BigEndian.AppendUint32(b, l.ASN)
		b, err = appendAddress(b, l.Inner, depth+1)
	case LCAFMulticastInfo:
		b = binary.BigEndian.AppendUint32(b, l.InstanceID)
		b = append(b, 0, 0, l.SourceMaskLen, l.GroupMaskLen)
		if b, err = appendAddress(b, l.Source, depth+1); err == nil {
			b, err = appendAddress(b, l.Group, depth+1)
		}
	case LCAFRLE:
		for _, e := range l.RLE {
			b = append(b, 0, 0, 0, e.Level)
			if b, err = appendAddress(b, e.Address, depth+1); err != nil {
				return b, err
			}
		}
	default:
		b = append(b, l.Body...)
	}
	if err != nil {
		return b, err
	}
	n := len(b) - start
	if n > 0xffff {
		return b, fmt.Errorf("%w: LCAF body of %d octets", ErrInvalid, n)
	}
	binary.BigEndian.PutUint16(b[start-2:], uint16(n))
	return b, nil
}

// ParseAddress decodes one AFI-prefixed address from the front of b and
// returns it with the number of octets consumed.
func ParseAddress(b []byte) (Address, int, error) {
	r := reader{b: b}
	a := r.address(0)
	return a, r.off, r.err
}

// address decodes one AFI-prefixed address.
func (r *reader) address(depth int) Address {
	afi := AFI(r.u16())
	if r.err != nil {
		return Address{}
	}
	switch afi {
	case AFINone:
		return Address{}
	case AFIIPv4:
		v := r.bytes(4)
		if r.err != nil {
			return Address{}
		}
		return Address{IP: netip.AddrFrom4([4]byte(v))}
	case AFIIPv6:
		v := r.bytes(16)
		if r.err != nil {
			return Address{}
		}
		return Address{IP: netip.AddrFrom16([16]byte(v))}
	case AFILCAF:
		return r.lcaf(depth)
	case AFIDistinguishedName:
		rest := r.b[r.off:]
		n := bytes.IndexByte(rest[:min(len(rest), MaxNameLen+1)], 0)
		if n <= 0 || !printable(string(rest[:n])) {
			r.fail(fmt.Errorf("%w: distinguished name not NUL-terminated printable ASCII of 1 … %d octets", ErrInvalid, MaxNameLen))
			return Address{}
		}
		name := string(rest[:n])
		r.off += n + 1
		return Address{Name: name}
	}
	r.fail(fmt.Errorf("%w: AFI %d", ErrUnknownAFI, afi))
	return Address{}
}

func (r *reader) lcaf(depth int) Address {
	if depth >= MaxAddressDepth {
		r.fail(fmt.Errorf("%w: LCAF nesting deeper than %d", ErrMalformed, MaxAddressDepth))
		return Address{}
	}
	hdr := r.bytes(6)
	if r.err != nil {
		return Address{}
	}
	typ, rsvd2 := LCAFType(hdr[2]), hdr[3]
	n := int(binary.BigEndian.Uint16(hdr[4:]))
	body := r.bytes(n)
	if r.err != nil {
		return Address{}
	}
	sub := reader{b: body}
	l := &LCAF{Type: typ}
	switch typ {
	case LCAFAFIList:
		for sub.remaining() > 0 && sub.err == nil {
			a := sub.address(depth + 1)
			if sub.err == nil {
				l.List = append(l.List, a)
			}
		}
	case LCAFInstanceID:
		if rsvd2 > 32 {
			sub.fail(fmt.Errorf("%w: IID mask length %d > 32", ErrMalformed, rsvd2))
		}
		l.IIDMaskLen = rsvd2
		l.InstanceID = sub.u32()
		l.Inner = sub.address(depth + 1)
	case LCAFASNumber:
		l.ASN = sub.u32()
		l.Inner = sub.address(depth + 1)
	case LCAFMulticastInfo:
		l.MCFlags = rsvd2 & 0x7
		l.InstanceID = sub.u32()
		sub.u16() // reserved
		l.SourceMaskLen = sub.u8()
		l.GroupMaskLen = sub.u8()
		l.Source = sub.address(depth + 1)
		l.Group = sub.address(depth + 1)
	case LCAFRLE:
		for sub.remaining() > 0 && sub.err == nil {
			sub.bytes(3) // Rsvd3, Rsvd4
			lvl := sub.u8()
			a := sub.address(depth + 1)
			if sub.err == nil {
				l.RLE = append(l.RLE, RLEEntry{Level: lvl, Address: a})
			}
		}
	default:
		l.Rsvd2 = rsvd2
		if len(body) > 0 {
			l.Body = append([]byte(nil), body...)
		}
		sub.off = len(body)
	}
	if sub.err == nil && sub.remaining() != 0 {
		sub.fail(fmt.Errorf("%w: %d octets left in LCAF type %d body", ErrMalformed, sub.remaining(), typ))
	}
	if sub.err != nil {
		r.fail(fmt.Errorf("LCAF type %d: %w", typ, sub.err))
		return Address{}
	}
	return Address{LCAF: l}
}

// printable reports whether s is printable ASCII (what a Distinguished Name
// may hold here).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
