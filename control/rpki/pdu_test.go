package rpki

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Hand-built vectors from the RFC 8210 §5 layouts.
func TestDecodeVectors(t *testing.T) {
	mp := netip.MustParsePrefix
	cases := []struct {
		name string
		hex  string
		want PDU
	}{
		{"serial notify v1", "01 00 1234 0000000c 00000007",
			PDU{Version: 1, Type: TypeSerialNotify, SessionID: 0x1234, Serial: 7}},
		{"serial query v0", "00 01 beef 0000000c ffffffff",
			PDU{Version: 0, Type: TypeSerialQuery, SessionID: 0xbeef, Serial: 0xffffffff}},
		{"reset query", "01 02 0000 00000008", PDU{Version: 1, Type: TypeResetQuery}},
		{"cache response", "01 03 0042 00000008", PDU{Version: 1, Type: TypeCacheResponse, SessionID: 0x42}},
		{"ipv4 announce", "01 04 0000 00000014 01 18 1a 00 c0000200 0000fbf4",
			PDU{Version: 1, Type: TypeIPv4Prefix, Announce: true, Prefix: mp("192.0.2.0/24"), MaxLen: 26, ASN: 64500}},
		{"ipv4 withdraw", "01 04 0000 00000014 00 00 00 00 00000000 00000000",
			PDU{Version: 1, Type: TypeIPv4Prefix, Prefix: mp("0.0.0.0/0")}},
		{"ipv6 announce", "01 06 0000 00000020 01 20 30 00 20010db8000000000000000000000000 0000fbf5",
			PDU{Version: 1, Type: TypeIPv6Prefix, Announce: true, Prefix: mp("2001:db8::/32"), MaxLen: 48, ASN: 64501}},
		{"end of data v0", "00 07 0042 0000000c 00000005",
			PDU{Version: 0, Type: TypeEndOfData, SessionID: 0x42, Serial: 5}},
		{"end of data v1", "01 07 0042 00000018 00000005 00000e10 00000258 00001c20",
			PDU{Version: 1, Type: TypeEndOfData, SessionID: 0x42, Serial: 5, Refresh: 3600, Retry: 600, Expire: 7200}},
		{"cache reset", "01 08 0000 00000008", PDU{Version: 1, Type: TypeCacheReset}},
		{"router key", "01 09 01 00 00000021 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4 aa",
			PDU{Version: 1, Type: TypeRouterKey, Announce: true, ASN: 64500,
				SKI:  [20]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
				SPKI: []byte{0xaa}}},
		{"error report", "01 0a 0004 0000001c 00000008 01020000 00000008 00000004 6f6f7073",
			PDU{Version: 1, Type: TypeErrorReport, Code: ErrUnsupportedVersion,
				Encapsulated: unhex(t, "0102000000000008"), Text: "oops"}},
		{"error report empty", "00 0a 0002 00000010 00000000 00000000",
			PDU{Version: 0, Type: TypeErrorReport, Code: ErrNoDataAvailable}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.hex)
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !pduEqual(got, tc.want) {
				t.Fatalf("Decode = %+v\nwant     %+v", got, tc.want)
			}
			if enc := tc.want.Encode(); !bytes.Equal(enc, b) {
				t.Fatalf("Encode = %x\nwant     %x", enc, b)
			}
			p, raw, err := ReadPDU(bytes.NewReader(b))
			if err != nil || !bytes.Equal(raw, b) || !pduEqual(p, tc.want) {
				t.Fatalf("ReadPDU = %+v, %x, %v", p, raw, err)
			}
		})
	}
}

func pduEqual(a, b PDU) bool {
	return a.Version == b.Version && a.Type == b.Type && a.SessionID == b.SessionID &&
		a.Serial == b.Serial && a.Announce == b.Announce && a.Prefix == b.Prefix &&
		a.MaxLen == b.MaxLen && a.ASN == b.ASN && a.Refresh == b.Refresh &&
		a.Retry == b.Retry && a.Expire == b.Expire && a.SKI == b.SKI &&
		bytes.Equal(a.SPKI, b.SPKI) && a.Code == b.Code &&
		bytes.Equal(a.Encapsulated, b.Encapsulated) && a.Text == b.Text
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		code ErrorCode
	}{
		{"short", "01 02 0000", ErrCorruptData},
		{"length mismatch", "01 02 0000 00000009 00", ErrCorruptData},
		{"length field short", "01 02 0000 00000007", ErrCorruptData},
		{"version 2", "02 02 0000 00000008", ErrUnsupportedVersion},
		{"unknown type 5", "01 05 0000 00000008", ErrUnsupportedPDUType},
		{"aspa type 11", "01 0b 0000 00000008", ErrUnsupportedPDUType},
		{"reset query nonzero", "01 02 0001 00000008", ErrCorruptData},
		{"cache reset with body", "01 08 0000 0000000c 00000000", ErrCorruptData},
		{"serial notify short", "01 00 0001 00000008", ErrCorruptData},
		{"ipv4 flags 2", "01 04 0000 00000014 02 18 18 00 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 reserved byte", "01 04 0000 00000014 01 18 18 01 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 header field", "01 04 0001 00000014 01 18 18 00 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 maxlen < len", "01 04 0000 00000014 01 18 17 00 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 maxlen > 32", "01 04 0000 00000014 01 18 21 00 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 len > 32", "01 04 0000 00000014 01 21 21 00 c0000200 0000fbf4", ErrCorruptData},
		{"ipv4 host bits", "01 04 0000 00000014 01 18 18 00 c0000201 0000fbf4", ErrCorruptData},
		{"ipv4 long", "01 04 0000 00000015 01 18 18 00 c0000200 0000fbf4 00", ErrCorruptData},
		{"ipv6 maxlen > 128", "01 06 0000 00000020 01 20 81 00 20010db8000000000000000000000000 0000fbf5", ErrCorruptData},
		{"ipv6 as ipv4 size", "01 06 0000 00000014 01 18 18 00 c0000200 0000fbf4", ErrCorruptData},
		{"eod v1 with v0 size", "01 07 0042 0000000c 00000005", ErrCorruptData},
		{"eod v0 with v1 size", "00 07 0042 00000018 00000005 00000e10 00000258 00001c20", ErrCorruptData},
		{"eod refresh 0", "01 07 0042 00000018 00000005 00000000 00000258 00001c20", ErrCorruptData},
		{"eod retry too big", "01 07 0042 00000018 00000005 00000e10 00001c21 00001c20", ErrCorruptData},
		{"eod expire too small", "01 07 0042 00000018 00000005 00000e10 00000258 00000257", ErrCorruptData},
		{"router key v0", "00 09 01 00 00000021 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4 aa", ErrUnsupportedPDUType},
		{"router key no spki", "01 09 01 00 00000020 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4", ErrCorruptData},
		{"router key flags", "01 09 03 00 00000021 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4 aa", ErrCorruptData},
		{"router key zero", "01 09 01 01 00000021 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4 aa", ErrCorruptData},
		{"error short", "01 0a 0000 0000000c 00000000", ErrCorruptData},
		{"error enc too long", "01 0a 0000 00000010 00000001 00000000", ErrCorruptData},
		{"error enc huge", "01 0a 0000 00000010 ffffffff 00000000", ErrCorruptData},
		{"error text short", "01 0a 0000 00000011 00000000 00000000 41", ErrCorruptData},
		{"error text long", "01 0a 0000 00000010 00000000 00000001", ErrCorruptData},
		{"error text not utf8", "01 0a 0000 00000012 00000000 00000002 c328", ErrCorruptData},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(unhex(t, tc.hex))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Decode err = %v, want a ProtocolError", err)
			}
			if pe.Code != tc.code {
				t.Fatalf("code = %v, want %v (%v)", pe.Code, tc.code, pe)
			}
		})
	}
}

func TestReadPDUBounds(t *testing.T) {
	// A length field past MaxPDULength is refused before any allocation.
	_, _, err := ReadPDU(bytes.NewReader(unhex(t, "01 0a 0000 7fffffff")))
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != ErrCorruptData {
		t.Fatalf("huge length: err = %v", err)
	}
	// Truncated body: an I/O error, not a protocol error.
	_, _, err = ReadPDU(bytes.NewReader(unhex(t, "01 03 0000 0000000c 00")))
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("truncated: err = %v", err)
	}
	// Two PDUs back to back are read one at a time.
	r := bytes.NewReader(unhex(t, "01 03 0042 00000008 01 08 0000 00000008"))
	p1, _, err1 := ReadPDU(r)
	p2, _, err2 := ReadPDU(r)
	if err1 != nil || err2 != nil || p1.Type != TypeCacheResponse || p2.Type != TypeCacheReset {
		t.Fatalf("stream: %v %v %v %v", p1, err1, p2, err2)
	}
}
