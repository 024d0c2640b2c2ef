package lisp

import (
	"bytes"
	"net/netip"
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

// FuzzRegisterDecoder: the reusing decoder accepts exactly the
// Map-Registers Parse accepts and gives the same value, also when its
// storage holds a previous, larger message (decoded first each time).
func FuzzRegisterDecoder(f *testing.F) {
	for _, v := range msgVectors {
		f.Add(v.wire)
	}
	f.Add(authVector(3, 2, 32))
	var d RegisterDecoder
	var big []byte
	for _, v := range msgVectors {
		if m, err := Parse(v.wire); err == nil && m.Type() == TypeMapRegister && len(v.wire) > len(big) {
			big = v.wire
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if big != nil {
			if _, err := d.Decode(big); err != nil {
				t.Fatalf("the largest vector: %v", err)
			}
		}
		got, derr := d.Decode(b)
		m, err := Parse(b)
		want, isReg := m.(*MapRegister)
		if err != nil || !isReg {
			if derr == nil {
				t.Fatalf("Decode accepted what Parse does not as a Map-Register (%v): %x", err, b)
			}
			return
		}
		if derr != nil {
			t.Fatalf("Decode refused a Map-Register Parse accepts: %v\n%x", derr, b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode differs from Parse\n%#v\n%#v", got, want)
		}
		checkNotifyFor(t, want)
	})
}

// checkNotifyFor: the Map-Notify built from m and its records' encodings
// is the one MapNotify.Append encodes — also where the Map-Register had
// reserved bits set (they are not copied back).
func checkNotifyFor(t *testing.T, m *MapRegister) {
	t.Helper()
	want, err := (&MapNotify{Nonce: m.Nonce, KeyID: m.KeyID, AuthData: make([]byte, len(m.AuthData)), Records: m.Records, XTR: m.XTR}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []byte
	for i := range m.Records {
		if recs, err = AppendMappingRecord(recs, &m.Records[i]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := AppendNotifyFor([]byte{0xee}, m, recs)
	if err != nil || !bytes.Equal(got[1:], want) || got[0] != 0xee {
		t.Fatalf("AppendNotifyFor: %v\n%x\n want %x", err, got, want)
	}
}

func TestAppendNotifyFor(t *testing.T) {
	n := 0
	for _, v := range msgVectors {
		if m, err := Parse(v.wire); err == nil {
			if reg, ok := m.(*MapRegister); ok {
				checkNotifyFor(t, reg)
				n++
			}
		}
	}
	reg := &MapRegister{WantMapNotify: true, ProxyReply: true, Nonce: 7, KeyID: KeyIDHMACSHA256128, AuthData: bytes.Repeat([]byte{9}, 32),
		XTR: &XTRInfo{XTRID: [16]byte{1, 2, 3}, SiteID: 5},
		Records: []MappingRecord{
			{TTL: 1440, EIDMaskLen: 24, EID: InstanceIDAddr(7, 0, IPAddr(netip.MustParseAddr("10.1.2.0"))),
				Locators: []Locator{{Priority: 1, Weight: 50, Reachable: true, Address: IPAddr(netip.MustParseAddr("192.0.2.1"))}}},
			{TTL: 1440, EIDMaskLen: 48, EID: IPAddr(netip.MustParseAddr("2001:db8:1::"))},
		}}
	checkNotifyFor(t, reg)
	if _, err := AppendNotifyFor(nil, &MapRegister{Records: make([]MappingRecord, 256)}, nil); err == nil {
		t.Fatal("256 records taken")
	}
	if n == 0 {
		t.Fatal("no Map-Register among the vectors")
	}
}
