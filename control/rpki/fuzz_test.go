package rpki

import (
	"bytes"
	"testing"
)

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to
// exactly the input (the decoder is strict: one wire form per PDU).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"01 00 1234 0000000c 00000007",
		"01 02 0000 00000008",
		"01 03 0042 00000008",
		"01 04 0000 00000014 01 18 1a 00 c0000200 0000fbf4",
		"01 06 0000 00000020 01 20 30 00 20010db8000000000000000000000000 0000fbf5",
		"00 07 0042 0000000c 00000005",
		"01 07 0042 00000018 00000005 00000e10 00000258 00001c20",
		"01 08 0000 00000008",
		"01 09 01 00 00000021 0102030405060708090a0b0c0d0e0f1011121314 0000fbf4 aa",
		"01 0a 0004 0000001c 00000008 01020000 00000008 00000004 6f6f7073",
		"01 0a 0000 00000010 ffffffff 00000000",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err == nil {
			if enc := p.Encode(); !bytes.Equal(enc, b) {
				t.Fatalf("accepted %x but re-encodes to %x", b, enc)
			}
		}
		// The stream reader must agree with Decode on the first PDU.
		r := bytes.NewReader(b)
		for range 4 {
			if _, _, err := ReadPDU(r); err != nil {
				break
			}
		}
	})
}
