package lisp

import (
	"encoding/binary"
	"fmt"

	"github.com/psavd/psavd/engine/header"
)

// DataHeaderLen is the length of the LISP data-plane header (RFC 9300 §5.1).
const DataHeaderLen = header.LISPDataHeaderLen

// DecentInstanceID is the instance-ID of the LISP data header that carries
// a Map-Register LISP-encapsulated to a member of a LISP-Decent
// registration group (draft-farinacci-lisp-decent §4).
const DecentInstanceID = header.LISPDecentInstanceID

// DataHeader is the 8-octet LISP header that follows the outer UDP header
// (destination port 4341) of a LISP-encapsulated packet (RFC 9300 §5.3):
//
//	|N|L|E|V|I|R|K|K|  Nonce / Map-Version (24 bits)  |
//	|      Instance ID / Locator-Status-Bits (32 bits)   |
//
// N (nonce present) and V (map-version present) exclude each other. With I
// the second word is a 24-bit Instance ID and 8 Locator-Status-Bits,
// otherwise 32 Locator-Status-Bits. The R and K bits are reserved here:
// sent as zero and ignored on receipt.
type DataHeader struct {
	NoncePresent bool   // N
	LSBEnabled   bool   // L
	EchoNonce    bool   // E
	MapVersion   bool   // V
	Nonce        uint32 // 24 bits, meaningful with N
	SourceMapVer uint16 // 12 bits, meaningful with V
	DestMapVer   uint16 // 12 bits, meaningful with V
	IIDPresent   bool   // I
	InstanceID   uint32 // 24 bits, meaningful with I
	LSBs         uint32 // 8 bits with I, 32 bits without
}

// AppendDataHeader appends the 8-octet encoding of h to b.
func AppendDataHeader(b []byte, h DataHeader) ([]byte, error) {
	switch {
	case h.NoncePresent && h.MapVersion:
		return b, fmt.Errorf("%w: LISP data header with both N and V", ErrInvalid)
	case h.Nonce > 0xffffff || h.SourceMapVer > maxMapVersion || h.DestMapVer > maxMapVersion:
		return b, fmt.Errorf("%w: LISP data header nonce or map-version out of range", ErrInvalid)
	case h.IIDPresent && (h.InstanceID > 0xffffff || h.LSBs > 0xff):
		return b, fmt.Errorf("%w: LISP data header instance ID %#x / LSBs %#x out of range", ErrInvalid, h.InstanceID, h.LSBs)
	}
	var f byte
	for i, v := range []bool{h.NoncePresent, h.LSBEnabled, h.EchoNonce, h.MapVersion, h.IIDPresent} {
		if v {
			f |= 0x80 >> i
		}
	}
	var mid uint32
	switch {
	case h.NoncePresent:
		mid = h.Nonce
	case h.MapVersion:
		mid = uint32(h.SourceMapVer)<<12 | uint32(h.DestMapVer)
	}
	b = append(b, f, byte(mid>>16), byte(mid>>8), byte(mid))
	if h.IIDPresent {
		return binary.BigEndian.AppendUint32(b, h.InstanceID<<8|h.LSBs), nil
	}
	return binary.BigEndian.AppendUint32(b, h.LSBs), nil
}

// ParseDataHeader decodes the LISP data header at the front of b and returns
// it with the payload that follows (the inner IP packet). A header with both
// N and V set is refused (RFC 9300 §5.3).
func ParseDataHeader(b []byte) (DataHeader, []byte, error) {
	if len(b) < DataHeaderLen {
		return DataHeader{}, nil, fmt.Errorf("%w: LISP data header needs %d octets, have %d", ErrTruncated, DataHeaderLen, len(b))
	}
	f := b[0]
	h := DataHeader{
		NoncePresent: f&0x80 != 0, LSBEnabled: f&0x40 != 0, EchoNonce: f&0x20 != 0,
		MapVersion: f&0x10 != 0, IIDPresent: f&0x08 != 0,
	}
	if h.NoncePresent && h.MapVersion {
		return DataHeader{}, nil, fmt.Errorf("%w: LISP data header with both N and V", ErrMalformed)
	}
	mid := uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	switch {
	case h.NoncePresent:
		h.Nonce = mid
	case h.MapVersion:
		h.SourceMapVer, h.DestMapVer = uint16(mid>>12), uint16(mid&maxMapVersion)
	}
	w := binary.BigEndian.Uint32(b[4:8])
	if h.IIDPresent {
		h.InstanceID, h.LSBs = w>>8, w&0xff
	} else {
		h.LSBs = w
	}
	return h, b[DataHeaderLen:], nil
}
