package lisp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestLCAFVectors(t *testing.T) {
	for _, v := range lcafVectors {
		t.Run(v.name, func(t *testing.T) {
			got, n, err := ParseAddress(v.wire)
			if err != nil {
				t.Fatalf("ParseAddress: %v", err)
			}
			if n != len(v.wire) {
				t.Fatalf("consumed %d of %d", n, len(v.wire))
			}
			if !reflect.DeepEqual(got, v.addr) {
				t.Fatalf("decoded %v, want %v", got, v.addr)
			}
			enc, err := AppendAddress(nil, v.addr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, v.wire) {
				t.Fatalf("encoded\n%x\nwant\n%x", enc, v.wire)
			}
			for i := range len(v.wire) - 1 {
				if _, _, err := ParseAddress(v.wire[:i]); err == nil {
					t.Fatalf("truncated to %d accepted", i)
				}
			}
		})
	}
}

func TestMessageVectors(t *testing.T) {
	for _, v := range msgVectors {
		t.Run(v.name, func(t *testing.T) {
			got, err := Parse(v.wire)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, v.msg) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, v.msg)
			}
			if got.Type() != Type(v.wire[0]>>4) {
				t.Fatalf("type %v", got.Type())
			}
			enc, err := Marshal(v.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, v.wire) {
				t.Fatalf("encoded\n%x\nwant\n%x", enc, v.wire)
			}
			// Every strict prefix is refused, and so is any trailing octet.
			for i := range len(v.wire) {
				if _, err := Parse(v.wire[:i]); err == nil {
					t.Fatalf("truncated to %d accepted", i)
				}
			}
			if _, err := Parse(append(bytes.Clone(v.wire), 0)); err == nil {
				t.Fatal("trailing octet accepted")
			}
		})
	}
}

func TestTypedParsers(t *testing.T) {
	for _, v := range msgVectors {
		var err error
		switch v.msg.(type) {
		case *MapRequest:
			_, err = ParseMapRequest(v.wire)
		case *MapReply:
			_, err = ParseMapReply(v.wire)
		case *MapRegister:
			_, err = ParseMapRegister(v.wire)
		case *MapNotify:
			_, err = ParseMapNotify(v.wire)
		case *MapNotifyAck:
			_, err = ParseMapNotifyAck(v.wire)
		case *ECM:
			_, err = ParseECM(v.wire)
		}
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
		}
		if _, err := ParseMapReply(v.wire); err == nil && v.msg.Type() != TypeMapReply {
			t.Errorf("%s: ParseMapReply accepted a %v", v.name, v.msg.Type())
		}
	}
}

func TestRoundTrip(t *testing.T) {
	// Messages built in code, encoded, decoded and compared.
	msgs := []Message{
		&MapRequest{Authoritative: true, SMRInvoked: true, LocalXTR: true, DontMapReply: true, Nonce: 1,
			SourceEID: ASNAddr(1, IPAddr(ip("10.0.0.0"))),
			ITRRLOCs:  []Address{IPAddr(ip("::1")), IPAddr(ip("127.0.0.1"))},
			Records: []EIDRecord{{MaskLen: 64, EID: IPAddr(ip("2001:db8::"))},
				{MaskLen: 0, EID: AFIListAddr(IPAddr(ip("1.2.3.4")))}}},
		&MapReply{Security: true, Nonce: ^uint64(0), Records: []MappingRecord{{TTL: 1, Action: ActionAuthFailure, MapVersion: 4095,
			EIDMaskLen: 32, EID: InstanceIDAddr(0xffffffff, 32, IPAddr(ip("1.2.3.4")))}}},
		&MapRegister{ForRTR: true, Security: true, KeyID: 2, AuthData: make([]byte, 32),
			Records: []MappingRecord{asnRecordValue(), asnRecordValue()}, XTR: &XTRInfo{SiteID: 1}},
		&MapNotify{ForRTR: true, XTR: &XTRInfo{XTRID: xtrID}},
		&MapNotifyAck{KeyID: 1, AuthData: make([]byte, 20)},
		&ECM{ToETR: true, ToMS: true, DDT: true, Inner: InnerHeader{Source: ap("[::1]:1"), Destination: ap("[::2]:4342"), TTL: 1},
			Message: &MapRegister{KeyID: 1, AuthData: make([]byte, 12)}},
	}
	for _, m := range msgs {
		b, err := Marshal(m)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%v: %v (%x)", m.Type(), err, b)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%v: round trip\n%#v\nwant\n%#v", m.Type(), got, m)
		}
	}
}

func TestDecodeRefusals(t *testing.T) {
	cases := []struct {
		name string
		wire []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"unknown type", hx("60000000"), ErrUnknownType},
		{"unknown AFI", hx("10000001", nonce1, "0003 0a000001"), ErrUnknownAFI},
		{"zero records", hx("10000000", nonce1, "0000 0001c0000201"), ErrMalformed},
		{"IRC beyond data", hx("10001f01", nonce1, "0000 0001c0000201 00180001 0a010200"), ErrTruncated},
		{"record count beyond data", hx("200000ff", nonce1), ErrTruncated},
		{"locator count beyond data", hx("20000001", nonce1, "000005a0 ff180000 0000 0001 0a010200"), ErrTruncated},
		{"mask too long", hx("10000001", nonce1, "0000 0001c0000201 00210001 0a010200"), ErrMalformed},
		{"IID mask too long", hx("4003 0000 02 21 000a 00000001 0001 0a000000"), ErrMalformed},
		{"LCAF length past end", hx("4003 0000 03 00 00ff 00000001 0001 0a000000"), ErrTruncated},
		{"LCAF length short", hx("4003 0000 03 00 0009 00000001 0001 0a000000"), ErrTruncated},
		{"LCAF body slack", hx("4003 0000 03 00 000b 00000001 0001 0a000000 00"), ErrMalformed},
		{"auth length past end", hx("30000000", nonce1, "0001 ffff"), ErrTruncated},
		{"xTR-ID missing", hx("32000000", nonce1, "0000 0000"), ErrTruncated},
		{"ECM in ECM", append(hx("80000000 4500 0030 0000 0000 4011 0000 7f000001 7f000001 0001 10f6 001c 0000"), hx("80000000 45000014")...), ErrMalformed},
	}
	for _, c := range cases {
		var err error
		if c.wire != nil && c.wire[0]>>4 == 4 && len(c.wire) > 1 && c.wire[1] == 0x03 {
			_, _, err = ParseAddress(c.wire)
		} else {
			_, err = Parse(c.wire)
		}
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDepthCap(t *testing.T) {
	a := IPAddr(ip("10.0.0.0"))
	for i := 0; i <= MaxAddressDepth; i++ {
		a = InstanceIDAddr(uint32(i), 0, a)
	}
	if _, err := AppendAddress(nil, a); err == nil {
		t.Fatal("over-deep LCAF encoded")
	}
	inner := IPAddr(ip("10.0.0.0"))
	for i := 0; i < MaxAddressDepth; i++ {
		inner = InstanceIDAddr(uint32(i), 0, inner)
	}
	b, err := AppendAddress(nil, inner)
	if err != nil {
		t.Fatal(err)
	}
	// Wrap by hand one more level: AFI, rsvd, flags, type 2, mask, length, IID.
	deep := append(hx("4003 0000 02 00"), byte((len(b)+4)>>8), byte(len(b)+4), 0, 0, 0, 9)
	deep = append(deep, b...)
	if _, _, err := ParseAddress(deep); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over-deep LCAF: %v", err)
	}
}

func TestEncodeRefusals(t *testing.T) {
	bad := []Message{
		&MapRequest{Records: []EIDRecord{{}}},                                // no ITR-RLOC
		&MapRequest{ITRRLOCs: []Address{{}}},                                 // no record
		&MapRequest{ITRRLOCs: make([]Address, 33), Records: []EIDRecord{{}}}, // IRC overflow
		&MapReply{Records: []MappingRecord{{MapVersion: 4096}}},
		&MapReply{Records: []MappingRecord{{EIDMaskLen: 33, EID: IPAddr(ip("1.2.3.4"))}}},
		&MapReply{Records: []MappingRecord{{Action: 8}}},
		&ECM{},
		&ECM{Inner: InnerHeader{Source: ap("1.2.3.4:1"), Destination: ap("[::1]:2")}, Message: &MapNotify{}},
		&ECM{Inner: InnerHeader{Source: ap("1.2.3.4:1"), Destination: ap("1.2.3.4:2")}, Message: &ECM{}},
	}
	for i, m := range bad {
		if b, err := Marshal(m); err == nil {
			t.Errorf("case %d (%v) encoded: %x", i, m.Type(), b)
		}
	}
	both := Address{IP: ip("1.2.3.4"), LCAF: &LCAF{Type: LCAFASNumber}}
	if _, err := AppendAddress(nil, both); err == nil {
		t.Error("IP+LCAF address encoded")
	}
}

func TestInnerChecksum(t *testing.T) {
	for _, v := range msgVectors {
		e, ok := v.msg.(*ECM)
		if !ok {
			continue
		}
		// Corrupt one payload octet: the UDP checksum must catch it.
		b := bytes.Clone(v.wire)
		b[len(b)-1] ^= 1
		if _, err := Parse(b); err == nil {
			t.Errorf("%s: corrupted payload accepted", v.name)
		}
		hdr, payload, err := ParseInnerIPUDP(v.wire[4:])
		if err != nil || hdr != e.Inner || len(payload) != len(mreqIPv4Bytes()) {
			t.Errorf("%s: ParseInnerIPUDP %v %v %d", v.name, err, hdr, len(payload))
		}
	}
	// IPv6 inner UDP with a zero checksum (lispers.net's ECMs) is
	// accepted (issue 16).
	b := bytes.Clone(msgVectors[len(msgVectors)-1].wire)
	b[4+40+6], b[4+40+7] = 0, 0
	if m, err := Parse(b); err != nil {
		t.Errorf("IPv6 zero UDP checksum refused: %v", err)
	} else if _, ok := m.(*ECM).Message.(*MapRequest); !ok {
		t.Errorf("IPv6 zero UDP checksum: inner message %T", m.(*ECM).Message)
	}
}

func mreqIPv4Bytes() []byte { return hx(mreqIPv4) }
