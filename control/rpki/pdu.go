package rpki

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"unicode/utf8"
)

// PDU types of RFC 8210 §5 (and RFC 6810 for version 0).
const (
	TypeSerialNotify  uint8 = 0
	TypeSerialQuery   uint8 = 1
	TypeResetQuery    uint8 = 2
	TypeCacheResponse uint8 = 3
	TypeIPv4Prefix    uint8 = 4
	TypeIPv6Prefix    uint8 = 6
	TypeEndOfData     uint8 = 7
	TypeCacheReset    uint8 = 8
	TypeRouterKey     uint8 = 9 // version 1 only; decoded and ignored
	TypeErrorReport   uint8 = 10
)

// Protocol versions this package speaks.
const (
	Version0   uint8 = 0 // RFC 6810
	Version1   uint8 = 1 // RFC 8210
	MaxVersion       = Version1
)

// Sizes.
const (
	headerLen = 8
	// MaxPDULength bounds any PDU we accept. The largest legitimate PDUs are
	// Router Key (≈ 120 bytes) and Error Report (which may encapsulate one);
	// 64 KiB is far above both and caps what a peer can make us allocate.
	MaxPDULength = 64 << 10
	// errorTextMax bounds the text of Error Reports we send.
	errorTextMax = 512
)

// Interval ranges of RFC 8210 §6, in seconds.
const (
	minRefresh, maxRefresh = 1, 86400
	minRetry, maxRetry     = 1, 7200
	minExpire, maxExpire   = 600, 172800
)

// ErrorCode is an Error Report code (RFC 8210 §12).
type ErrorCode uint16

// Error codes.
const (
	ErrCorruptData             ErrorCode = 0
	ErrInternalError           ErrorCode = 1
	ErrNoDataAvailable         ErrorCode = 2
	ErrInvalidRequest          ErrorCode = 3
	ErrUnsupportedVersion      ErrorCode = 4
	ErrUnsupportedPDUType      ErrorCode = 5
	ErrWithdrawalUnknownRecord ErrorCode = 6
	ErrDuplicateAnnouncement   ErrorCode = 7
	ErrUnexpectedVersion       ErrorCode = 8
)

var errorCodeNames = [...]string{
	"corrupt-data", "internal-error", "no-data-available", "invalid-request",
	"unsupported-protocol-version", "unsupported-pdu-type",
	"withdrawal-of-unknown-record", "duplicate-announcement",
	"unexpected-protocol-version",
}

func (c ErrorCode) String() string {
	if int(c) < len(errorCodeNames) {
		return errorCodeNames[c]
	}
	return fmt.Sprintf("error-code-%d", uint16(c))
}

// ProtocolError is a violation of RFC 8210 found by the decoder or the
// client state machine. Code is the Error Report code to send the peer.
type ProtocolError struct {
	Code ErrorCode
	Msg  string
}

func (e *ProtocolError) Error() string { return fmt.Sprintf("rtr: %s: %s", e.Code, e.Msg) }

func perr(code ErrorCode, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// PDU is one decoded RTR PDU. Which fields are meaningful depends on Type:
//
//   - Serial Notify, Serial Query: SessionID, Serial
//   - Reset Query, Cache Reset: none
//   - Cache Response: SessionID
//   - IPv4/IPv6 Prefix: Announce, Prefix, MaxLen, ASN
//   - End of Data: SessionID, Serial; version 1 also Refresh, Retry, Expire
//   - Router Key: Announce, SKI, ASN, SPKI
//   - Error Report: Code, Encapsulated, Text
type PDU struct {
	Version   uint8
	Type      uint8
	SessionID uint16
	Serial    uint32

	Announce bool // prefix and router key flags bit 0: 1 announce, 0 withdraw
	Prefix   netip.Prefix
	MaxLen   uint8
	ASN      uint32

	Refresh, Retry, Expire uint32 // seconds

	SKI  [20]byte
	SPKI []byte

	Code         ErrorCode
	Encapsulated []byte
	Text         string
}

// Append encodes p and appends it to b. It encodes what it is given; use
// Decode on the result to check that p is valid.
func (p *PDU) Append(b []byte) []byte {
	start := len(b)
	b = append(b, p.Version, p.Type, 0, 0, 0, 0, 0, 0)
	hdr := b[start:]
	switch p.Type {
	case TypeSerialNotify, TypeSerialQuery:
		binary.BigEndian.PutUint16(hdr[2:], p.SessionID)
		b = binary.BigEndian.AppendUint32(b, p.Serial)
	case TypeCacheResponse:
		binary.BigEndian.PutUint16(hdr[2:], p.SessionID)
	case TypeIPv4Prefix, TypeIPv6Prefix:
		b = append(b, flag(p.Announce), uint8(p.Prefix.Bits()), p.MaxLen, 0)
		b = append(b, p.Prefix.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint32(b, p.ASN)
	case TypeEndOfData:
		binary.BigEndian.PutUint16(hdr[2:], p.SessionID)
		b = binary.BigEndian.AppendUint32(b, p.Serial)
		if p.Version >= Version1 {
			b = binary.BigEndian.AppendUint32(b, p.Refresh)
			b = binary.BigEndian.AppendUint32(b, p.Retry)
			b = binary.BigEndian.AppendUint32(b, p.Expire)
		}
	case TypeRouterKey:
		hdr[2] = flag(p.Announce)
		b = append(b, p.SKI[:]...)
		b = binary.BigEndian.AppendUint32(b, p.ASN)
		b = append(b, p.SPKI...)
	case TypeErrorReport:
		binary.BigEndian.PutUint16(hdr[2:], uint16(p.Code))
		b = binary.BigEndian.AppendUint32(b, uint32(len(p.Encapsulated)))
		b = append(b, p.Encapsulated...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(p.Text)))
		b = append(b, p.Text...)
	}
	binary.BigEndian.PutUint32(b[start+4:], uint32(len(b)-start))
	return b
}

// Encode returns the wire form of p.
func (p *PDU) Encode() []byte { return p.Append(nil) }

func flag(announce bool) uint8 {
	if announce {
		return 1
	}
	return 0
}

// Decode parses exactly one PDU that fills all of b. It is strict: every
// length is exact, reserved and zero fields must be zero, flags other than
// bit 0 must be clear, prefixes must have no host bits and
// length ≤ max length ≤ address width, intervals must be in the RFC 8210 §6
// ranges, Error Report text must be UTF-8. Anything else is a
// *ProtocolError carrying the code to report. Decode never panics and
// allocates at most len(b) bytes; it does not alias b.
func Decode(b []byte) (PDU, error) {
	var p PDU
	if len(b) < headerLen {
		return p, perr(ErrCorruptData, "PDU of %d bytes is shorter than the header", len(b))
	}
	p.Version, p.Type = b[0], b[1]
	field := binary.BigEndian.Uint16(b[2:])
	length := binary.BigEndian.Uint32(b[4:])
	if length != uint32(len(b)) {
		return p, perr(ErrCorruptData, "length field %d, PDU has %d bytes", length, len(b))
	}
	if length > MaxPDULength {
		return p, perr(ErrCorruptData, "PDU of %d bytes exceeds %d", length, MaxPDULength)
	}
	if p.Version > MaxVersion {
		return p, perr(ErrUnsupportedVersion, "protocol version %d", p.Version)
	}
	body := b[headerLen:]
	want := func(n int) error {
		if len(b) != n {
			return perr(ErrCorruptData, "%s PDU of %d bytes, want %d", typeName(p.Type), len(b), n)
		}
		return nil
	}
	zero := func() error {
		if field != 0 {
			return perr(ErrCorruptData, "%s PDU: reserved header field is %#x", typeName(p.Type), field)
		}
		return nil
	}
	switch p.Type {
	case TypeSerialNotify, TypeSerialQuery:
		if err := want(12); err != nil {
			return p, err
		}
		p.SessionID, p.Serial = field, binary.BigEndian.Uint32(body)
	case TypeResetQuery, TypeCacheReset:
		if err := want(8); err != nil {
			return p, err
		}
		if err := zero(); err != nil {
			return p, err
		}
	case TypeCacheResponse:
		if err := want(8); err != nil {
			return p, err
		}
		p.SessionID = field
	case TypeIPv4Prefix, TypeIPv6Prefix:
		alen := 4
		if p.Type == TypeIPv6Prefix {
			alen = 16
		}
		if err := want(headerLen + 4 + alen + 4); err != nil {
			return p, err
		}
		if err := zero(); err != nil {
			return p, err
		}
		flags, plen, maxLen, rsv := body[0], body[1], body[2], body[3]
		if flags > 1 {
			return p, perr(ErrCorruptData, "prefix flags %#x", flags)
		}
		if rsv != 0 {
			return p, perr(ErrCorruptData, "prefix reserved byte %#x", rsv)
		}
		addr, _ := netip.AddrFromSlice(body[4 : 4+alen])
		if int(plen) > addr.BitLen() || maxLen < plen || int(maxLen) > addr.BitLen() {
			return p, perr(ErrCorruptData, "prefix length %d, max length %d for a %d-bit address", plen, maxLen, addr.BitLen())
		}
		pfx := netip.PrefixFrom(addr, int(plen))
		if pfx.Masked() != pfx {
			return p, perr(ErrCorruptData, "prefix %s has host bits set", pfx)
		}
		p.Announce, p.Prefix, p.MaxLen = flags == 1, pfx, maxLen
		p.ASN = binary.BigEndian.Uint32(body[4+alen:])
	case TypeEndOfData:
		n := 12
		if p.Version >= Version1 {
			n = 24
		}
		if err := want(n); err != nil {
			return p, err
		}
		p.SessionID, p.Serial = field, binary.BigEndian.Uint32(body)
		if p.Version >= Version1 {
			p.Refresh = binary.BigEndian.Uint32(body[4:])
			p.Retry = binary.BigEndian.Uint32(body[8:])
			p.Expire = binary.BigEndian.Uint32(body[12:])
			if p.Refresh < minRefresh || p.Refresh > maxRefresh ||
				p.Retry < minRetry || p.Retry > maxRetry ||
				p.Expire < minExpire || p.Expire > maxExpire {
				return p, perr(ErrCorruptData, "End of Data intervals refresh %d, retry %d, expire %d out of the RFC 8210 §6 ranges", p.Refresh, p.Retry, p.Expire)
			}
		}
	case TypeRouterKey:
		if p.Version < Version1 {
			return p, perr(ErrUnsupportedPDUType, "Router Key PDU in protocol version 0")
		}
		if len(b) <= headerLen+20+4 {
			return p, perr(ErrCorruptData, "Router Key PDU of %d bytes has no SPKI", len(b))
		}
		if flags := b[2]; flags > 1 {
			return p, perr(ErrCorruptData, "router key flags %#x", flags)
		}
		if b[3] != 0 {
			return p, perr(ErrCorruptData, "router key zero byte %#x", b[3])
		}
		p.Announce = b[2] == 1
		copy(p.SKI[:], body[:20])
		p.ASN = binary.BigEndian.Uint32(body[20:])
		p.SPKI = append([]byte(nil), body[24:]...)
	case TypeErrorReport:
		p.Code = ErrorCode(field)
		if len(body) < 8 {
			return p, perr(ErrCorruptData, "Error Report PDU of %d bytes", len(b))
		}
		encLen := binary.BigEndian.Uint32(body)
		rest := body[4:]
		if uint64(encLen) > uint64(len(rest)-4) {
			return p, perr(ErrCorruptData, "Error Report encapsulated length %d exceeds the PDU", encLen)
		}
		if encLen > 0 {
			p.Encapsulated = append([]byte(nil), rest[:encLen]...)
		}
		rest = rest[encLen:]
		textLen := binary.BigEndian.Uint32(rest)
		if uint64(textLen) != uint64(len(rest)-4) {
			return p, perr(ErrCorruptData, "Error Report text length %d, %d bytes remain", textLen, len(rest)-4)
		}
		text := rest[4:]
		if !utf8.Valid(text) {
			return p, perr(ErrCorruptData, "Error Report text is not UTF-8")
		}
		p.Text = string(text)
	default:
		return p, perr(ErrUnsupportedPDUType, "PDU type %d", p.Type)
	}
	return p, nil
}

// ReadPDU reads one PDU from r. It reads the header, checks the length
// against MaxPDULength before reading (or allocating) the body, and decodes.
// raw is the PDU's bytes (for encapsulating it in an Error Report); it is
// returned whenever the whole PDU was read, also with a decode error. I/O
// errors are returned as they are (io.EOF for a clean close between PDUs).
func ReadPDU(r io.Reader) (p PDU, raw []byte, err error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return p, nil, err
	}
	length := binary.BigEndian.Uint32(hdr[4:])
	if length < headerLen || length > MaxPDULength {
		return p, hdr[:], perr(ErrCorruptData, "PDU length %d", length)
	}
	raw = make([]byte, length)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[headerLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return p, nil, err
	}
	p, err = Decode(raw)
	return p, raw, err
}

func typeName(t uint8) string {
	switch t {
	case TypeSerialNotify:
		return "Serial Notify"
	case TypeSerialQuery:
		return "Serial Query"
	case TypeResetQuery:
		return "Reset Query"
	case TypeCacheResponse:
		return "Cache Response"
	case TypeIPv4Prefix:
		return "IPv4 Prefix"
	case TypeIPv6Prefix:
		return "IPv6 Prefix"
	case TypeEndOfData:
		return "End of Data"
	case TypeCacheReset:
		return "Cache Reset"
	case TypeRouterKey:
		return "Router Key"
	case TypeErrorReport:
		return "Error Report"
	}
	return fmt.Sprintf("type-%d", t)
}
