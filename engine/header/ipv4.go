package header

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IPv4 is a view of an IPv4 header (RFC 791), options included.
type IPv4 []byte

// IPv4 header lengths.
const (
	IPv4MinHeaderLen = 20
	IPv4MaxHeaderLen = 60
)

// IPv4 flags, as they stand in the high bits of the flags/fragment-offset
// word.
const (
	IPv4FlagDontFragment  = 0x4000
	IPv4FlagMoreFragments = 0x2000
)

// Version is the version field (4).
func (h IPv4) Version() uint8 { return h[0] >> 4 }

// HeaderLen is IHL in octets.
func (h IPv4) HeaderLen() int { return int(h[0]&0x0f) * 4 }

// TOS is the type of service (DSCP and ECN) octet.
func (h IPv4) TOS() uint8 { return h[1] }

// TotalLength is the Total Length field.
func (h IPv4) TotalLength() int { return int(binary.BigEndian.Uint16(h[2:4])) }

// ID is the identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[4:6]) }

// FlagsFragment is the flags and fragment-offset word.
func (h IPv4) FlagsFragment() uint16 { return binary.BigEndian.Uint16(h[6:8]) }

// DontFragment reports the DF flag.
func (h IPv4) DontFragment() bool { return h.FlagsFragment()&IPv4FlagDontFragment != 0 }

// MoreFragments reports the MF flag.
func (h IPv4) MoreFragments() bool { return h.FlagsFragment()&IPv4FlagMoreFragments != 0 }

// FragmentOffset is the fragment offset in 8-octet units.
func (h IPv4) FragmentOffset() int { return int(h.FlagsFragment() & 0x1fff) }

// TTL is the time to live.
func (h IPv4) TTL() uint8 { return h[8] }

// Protocol is the upper-layer protocol number.
func (h IPv4) Protocol() uint8 { return h[9] }

// Checksum is the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[10:12]) }

// Src is the source address.
func (h IPv4) Src() [4]byte { return [4]byte(h[12:16]) }

// Dst is the destination address.
func (h IPv4) Dst() [4]byte { return [4]byte(h[16:20]) }

// Options are the octets between the fixed header and HeaderLen.
func (h IPv4) Options() []byte { return h[IPv4MinHeaderLen:h.HeaderLen()] }

// SetVersionHeaderLen sets version 4 and IHL to n octets (a multiple of 4).
func (h IPv4) SetVersionHeaderLen(n int) { h[0] = 0x40 | byte(n/4) }

// SetHeaderLen sets IHL to n octets (a multiple of 4), keeping the version.
func (h IPv4) SetHeaderLen(n int) { h[0] = h[0]&0xf0 | byte(n/4) }

// SetTOS sets the type of service octet.
func (h IPv4) SetTOS(v uint8) { h[1] = v }

// SetTotalLength sets the Total Length field.
func (h IPv4) SetTotalLength(n int) { binary.BigEndian.PutUint16(h[2:4], uint16(n)) }

// SetID sets the identification field.
func (h IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(h[4:6], v) }

// SetFlagsFragment sets the flags and fragment-offset word.
func (h IPv4) SetFlagsFragment(v uint16) { binary.BigEndian.PutUint16(h[6:8], v) }

// SetTTL sets the time to live.
func (h IPv4) SetTTL(v uint8) { h[8] = v }

// SetProtocol sets the upper-layer protocol number.
func (h IPv4) SetProtocol(v uint8) { h[9] = v }

// SetChecksum sets the header checksum field.
func (h IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[10:12], v) }

// SetSrc sets the source address.
func (h IPv4) SetSrc(a [4]byte) { copy(h[12:16], a[:]) }

// SetDst sets the destination address.
func (h IPv4) SetDst(a [4]byte) { copy(h[16:20], a[:]) }

// UpdateChecksum recomputes the header checksum over HeaderLen octets.
func (h IPv4) UpdateChecksum() {
	h[10], h[11] = 0, 0
	h.SetChecksum(^Checksum(h[:h.HeaderLen()], 0))
}

// ChecksumValid reports whether the header checksum verifies.
func (h IPv4) ChecksumValid() bool { return Checksum(h[:h.HeaderLen()], 0) == 0xffff }

// AdjustChecksum updates the header checksum incrementally (RFC 1624,
// [ChecksumUpdate]) after words summing to removed were taken out of the
// header and words summing to added were put in.
func (h IPv4) AdjustChecksum(removed, added uint16) {
	ck := h[10:12]
	binary.BigEndian.PutUint16(ck, ChecksumUpdate(binary.BigEndian.Uint16(ck), removed, added))
}

// PseudoHeaderChecksum is the sum of the pseudo-header of an upper-layer
// packet of proto and length octets carried by this header.
func (h IPv4) PseudoHeaderChecksum(proto uint8, length int) uint16 {
	return Fold(uint64(binary.BigEndian.Uint32(h[12:16])) + uint64(binary.BigEndian.Uint32(h[16:20])) +
		uint64(proto) + uint64(length))
}

// IPv4Fields are the fields of an IPv4 header to build; lengths and the
// checksum are computed.
type IPv4Fields struct {
	TOS      uint8
	ID       uint16
	Flags    uint16 // IPv4FlagDontFragment, IPv4FlagMoreFragments, with the fragment offset (8-octet units)
	TTL      uint8
	Protocol uint8
	Src, Dst netip.Addr // IPv4
	Options  []byte     // a multiple of 4 octets, at most 40, placed as given
}

// AppendIPv4Header appends an IPv4 header for an upper-layer packet of
// payloadLen octets that the caller appends next.
func AppendIPv4Header(b []byte, f IPv4Fields, payloadLen int) []byte {
	if !f.Src.Is4() || !f.Dst.Is4() {
		panic(fmt.Sprintf("header: IPv4 header from %v to %v", f.Src, f.Dst))
	}
	if len(f.Options)%4 != 0 || len(f.Options) > IPv4MaxHeaderLen-IPv4MinHeaderLen {
		panic(fmt.Sprintf("header: %d octets of IPv4 options", len(f.Options)))
	}
	hl := IPv4MinHeaderLen + len(f.Options)
	if payloadLen < 0 || hl+payloadLen > 0xffff {
		panic(fmt.Sprintf("header: IPv4 packet of %d octets", hl+payloadLen))
	}
	start := len(b)
	b = append(b, make([]byte, IPv4MinHeaderLen)...)
	b = append(b, f.Options...)
	h := IPv4(b[start:])
	h.SetVersionHeaderLen(hl)
	h.SetTOS(f.TOS)
	h.SetTotalLength(hl + payloadLen)
	h.SetID(f.ID)
	h.SetFlagsFragment(f.Flags)
	h.SetTTL(f.TTL)
	h.SetProtocol(f.Protocol)
	h.SetSrc(f.Src.As4())
	h.SetDst(f.Dst.As4())
	h.UpdateChecksum()
	return b
}

// AppendIPv4 appends an IPv4 packet: the header of f, then payload.
func AppendIPv4(b []byte, f IPv4Fields, payload []byte) []byte {
	return append(AppendIPv4Header(b, f, len(payload)), payload...)
}
