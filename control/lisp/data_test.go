package lisp

import (
	"bytes"
	"errors"
	"testing"
)

// Data header vectors written from the RFC 9300 §5.3 layout, flag by flag.
var dataHeaderVectors = []struct {
	name string
	wire []byte
	h    DataHeader
}{
	{"decent-iid", hx(
		"08",     // N0 L0 E0 V0 I1 R0 K0 K0
		"000000", // no nonce, no map-version
		"ffffff", // Instance ID 0xffffff (LISP-Decent)
		"00",     // LSBs (8 bits with I)
	), DataHeader{IIDPresent: true, InstanceID: DecentInstanceID}},
	{"nonce-lsb", hx(
		"c0",       // N1 L1
		"abcdef",   // Nonce
		"00000005", // LSBs: locators 0 and 2 up
	), DataHeader{NoncePresent: true, LSBEnabled: true, Nonce: 0xabcdef, LSBs: 5}},
	{"echo-iid-lsb", hx(
		"e8",     // N1 L1 E1 I1
		"000001", // Nonce 1
		"00002a", // Instance ID 42
		"03",     // LSBs
	), DataHeader{NoncePresent: true, LSBEnabled: true, EchoNonce: true, Nonce: 1, IIDPresent: true, InstanceID: 42, LSBs: 3}},
	{"map-version", hx(
		"10",     // V1
		"123456", // Source Map-Version 0x123, Dest Map-Version 0x456
		"00000000",
	), DataHeader{MapVersion: true, SourceMapVer: 0x123, DestMapVer: 0x456}},
}

func TestDataHeaderVectors(t *testing.T) {
	for _, v := range dataHeaderVectors {
		got, rest, err := ParseDataHeader(append(bytes.Clone(v.wire), 0x45))
		if err != nil || got != v.h || !bytes.Equal(rest, []byte{0x45}) {
			t.Errorf("%s: decoded %+v rest %x err %v, want %+v", v.name, got, rest, err, v.h)
		}
		enc, err := AppendDataHeader(nil, v.h)
		if err != nil || !bytes.Equal(enc, v.wire) {
			t.Errorf("%s: encoded %x err %v, want %x", v.name, enc, err, v.wire)
		}
	}
	for n := range DataHeaderLen {
		if _, _, err := ParseDataHeader(dataHeaderVectors[0].wire[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("%d octets: err %v, want truncated", n, err)
		}
	}
	if _, _, err := ParseDataHeader(hx("90 000000 00000000")); !errors.Is(err, ErrMalformed) {
		t.Errorf("N and V: err %v", err)
	}
	for _, h := range []DataHeader{
		{NoncePresent: true, MapVersion: true},
		{NoncePresent: true, Nonce: 1 << 24},
		{MapVersion: true, DestMapVer: 0x1000},
		{IIDPresent: true, InstanceID: 1 << 24},
		{IIDPresent: true, LSBs: 0x100},
	} {
		if _, err := AppendDataHeader(nil, h); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want invalid", h, err)
		}
	}
}

// FuzzParseDataHeader: never panics; an accepted header re-encodes to the
// same octets except the reserved bits and the fields its flags leave unused.
func FuzzParseDataHeader(f *testing.F) {
	for _, v := range dataHeaderVectors {
		f.Add(v.wire)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, rest, err := ParseDataHeader(b)
		if err != nil {
			return
		}
		enc, err := AppendDataHeader(nil, h)
		if err != nil {
			t.Fatalf("accepted header does not encode: %v %+v", err, h)
		}
		h2, _, err := ParseDataHeader(enc)
		if err != nil || h2 != h {
			t.Fatalf("round trip %+v -> %x -> %+v (%v)", h, enc, h2, err)
		}
		if len(rest) != len(b)-DataHeaderLen {
			t.Fatalf("payload of %d octets from %d", len(rest), len(b))
		}
		if enc[0] != b[0]&0xf8 || !bytes.Equal(enc[4:], b[4:8]) {
			t.Fatalf("re-encoding %x differs from %x beyond reserved bits", enc, b[:8])
		}
	})
}
