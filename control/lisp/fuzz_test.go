package lisp

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; whatever it accepts re-encodes, and the
// re-encoding decodes to the same message and is a fixed point.
func FuzzParse(f *testing.F) {
	for _, v := range msgVectors {
		f.Add(v.wire)
	}
	for _, typ := range []byte{3, 4, 5} {
		f.Add(authVector(typ, 2, 32))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		enc, err := Marshal(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v\n%#v", err, m)
		}
		m2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-encoding refused: %v\n%x", err, enc)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip differs\n%#v\n%#v", m, m2)
		}
		enc2, _ := Marshal(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable\n%x\n%x", enc, enc2)
		}
		if m.Type() != TypeECM && len(enc) != len(b) { // IPv4 options in an ECM are dropped
			t.Fatalf("re-encoding is %d octets, input %d", len(enc), len(b))
		}
		_ = Verify(b, []byte("k"))
	})
}

// FuzzParseAddress covers the AFI/LCAF decoder on its own.
func FuzzParseAddress(f *testing.F) {
	for _, v := range lcafVectors {
		f.Add(v.wire)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, n, err := ParseAddress(b)
		if err != nil {
			return
		}
		enc, err := AppendAddress(nil, a)
		if err != nil {
			t.Fatalf("accepted address does not encode: %v", err)
		}
		if len(enc) != n {
			t.Fatalf("re-encoding is %d octets, consumed %d", len(enc), n)
		}
		a2, n2, err := ParseAddress(enc)
		if err != nil || n2 != len(enc) || !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip: %v\n%v\n%v", err, a, a2)
		}
	})
}

// FuzzParseMappingRecord covers the mapping-record decoder.
func FuzzParseMappingRecord(f *testing.F) {
	f.Add(hx(asnRecord))
	f.Add(msgVectors[3].wire[12:])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := ParseMappingRecord(b)
		if err != nil {
			return
		}
		enc, err := AppendMappingRecord(nil, &m)
		if err != nil || len(enc) != n {
			t.Fatalf("re-encode: %v, %d vs %d", err, len(enc), n)
		}
		m2, _, err := ParseMappingRecord(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseInnerIPUDP covers the ECM inner-header decoder.
func FuzzParseInnerIPUDP(f *testing.F) {
	for _, v := range msgVectors {
		if v.wire[0]>>4 == 8 {
			f.Add(v.wire[4:])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseInnerIPUDP(b)
		if err != nil {
			return
		}
		enc, err := AppendInnerIPUDP(nil, h, payload)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		h2, p2, err := ParseInnerIPUDP(enc)
		if err != nil || h2 != h || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
