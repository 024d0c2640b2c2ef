package membership

import (
	"bytes"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"net/netip"
	"reflect"
	"testing"
)

const goldenHex = "01010000fbf40000000000000000000000010100208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c00020418c0000200062020010db80000000000000000000000000104c0000201115c0040236ff07dbc3dfcc3f87caf1c20096e3946b5a39e704b56c1175e8457135b433be89792f34241d218f4b4edc1755a3ef103264375b9f8822f7a395c136d3f7a0800408985d6e756c1f13327e340ef0d8ffa9b240cbadacd961c6118dbb4936a075c9243c975e77f477d5ebebbdcb3c90b0599a3899fa5f101b9764e222fba03f43a01"
const goldenHash = "640ddd8e9ea88c4d2a0dab690dcb4b2983fc55b82c1ba337292b501b157fd89b"

// goldenRecord is README's worked example: AS64500 in the flat community,
// Ed25519 keys from seeds 0x01 (AS) and 0xC0 (community 0).
func goldenRecord(t testing.TB) Record {
	as := edSigner(t, 0x01)
	r := Record{
		Kind: KindJoin, ASN: 64500, ASCN: 0, Version: 1, Key: as.Public(),
		Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.0/24")},
		ACS:      []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4444")},
	}
	r.Canonicalize()
	if err := r.Sign(as); err != nil {
		t.Fatal(err)
	}
	if err := r.Endorse(edSigner(t, 0xC0)); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGoldenEncoding(t *testing.T) {
	r := goldenRecord(t)
	b := mustEncode(t, r)
	if got := hex.EncodeToString(b); got != goldenHex {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, goldenHex)
	}
	h := sha256.Sum256(b)
	if got := hex.EncodeToString(h[:]); got != goldenHash {
		t.Fatalf("hash %s, want %s", got, goldenHash)
	}
	// Rebuilding from scratch gives the same bytes: Ed25519 is
	// deterministic and the encoding has no free choices.
	if b2 := mustEncode(t, goldenRecord(t)); !bytes.Equal(b, b2) {
		t.Fatal("encoding not deterministic")
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, r) {
		t.Fatalf("round trip: %+v != %+v", d, r)
	}
	if reason, err := newWorld(t).policy.Verify(&d); reason != ReasonNone {
		t.Fatal(reason, err)
	}
}

func TestRoundTripBothAlgorithms(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name string
		as   Signer
		ascn uint32
	}{
		{"ed25519 in ecdsa community", edSigner(t, 7), 100},
		{"ecdsa in ed25519 community", ecSigner(t, 8), 0},
		{"ecdsa in ecdsa community", ecSigner(t, 9), 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := w.rec(KindJoin, 65001, c.ascn, 3, c.as, "10.0.0.0/8", "2001:db8:1::/48", "10.1.0.0/16")
			b := mustEncode(t, r)
			d, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d, r) {
				t.Fatal("round trip differs")
			}
			if reason, err := w.policy.Verify(&d); reason != ReasonNone {
				t.Fatal(reason, err)
			}
		})
	}
}

// TestECDSAHighSRefused: (r, n-s) verifies under plain ECDSA; we refuse it
// so nobody can mint a second hash for a record someone else signed.
func TestECDSAHighSRefused(t *testing.T) {
	w := newWorld(t)
	r := w.rec(KindJoin, 65002, 0, 1, ecSigner(t, 3), "10.2.0.0/16")
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(r.Signature[32:])
	s.Sub(n, s)
	sig := append([]byte(nil), r.Signature...)
	s.FillBytes(sig[32:])
	r.Signature = sig
	if reason, _ := w.policy.Verify(&r); reason != ReasonBadSignature {
		t.Fatalf("high-S accepted: %v", reason)
	}
}

func TestDecodeRefuses(t *testing.T) {
	w := newWorld(t)
	good := mustEncode(t, w.rec(KindJoin, 65003, 0, 1, edSigner(t, 4), "10.3.0.0/16", "10.4.0.0/16"))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// Offsets: 0 fmt, 1 kind, 2 asn, 6 ascn, 10 version, 18 alg, 19 keylen,
	// 21 key(32), 53 prefix count, 55 first prefix.
	cases := map[string][]byte{
		"empty":          {},
		"format version": mut(func(b []byte) []byte { b[0] = 2; return b }),
		"kind":           mut(func(b []byte) []byte { b[1] = 9; return b }),
		"asn 0":          mut(func(b []byte) []byte { copy(b[2:6], []byte{0, 0, 0, 0}); return b }),
		"version 0":      mut(func(b []byte) []byte { copy(b[10:18], make([]byte, 8)); return b }),
		"alg":            mut(func(b []byte) []byte { b[18] = 7; return b }),
		"key length":     mut(func(b []byte) []byte { b[20] = 31; return b }),
		"huge count":     mut(func(b []byte) []byte { b[53], b[54] = 0xff, 0xff; return b }),
		"count beyond":   mut(func(b []byte) []byte { b[54] = 200; return b }),
		"family":         mut(func(b []byte) []byte { b[55] = 5; return b }),
		"bits":           mut(func(b []byte) []byte { b[56] = 33; return b }),
		"unmasked":       mut(func(b []byte) []byte { b[60] = 1; return b }),
		"order":          mut(func(b []byte) []byte { b[57], b[63] = b[63], b[57]; b[58], b[64] = b[64], b[58]; return b }),
		"trailing":       mut(func(b []byte) []byte { return append(b, 0) }),
		"truncated":      good[:len(good)-1],
		"too long":       make([]byte, MaxRecordSize+1),
	}
	for name, b := range cases {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
}

func TestPublicKeyText(t *testing.T) {
	for _, alg := range []Alg{AlgEd25519, AlgECDSAP256} {
		s, err := GenerateSigner(alg)
		if err != nil {
			t.Fatal(err)
		}
		k := s.Public()
		back, err := ParsePublicKey(k.String())
		if err != nil || !back.Equal(k) {
			t.Fatalf("%s: %q → %v, %v", alg, k.String(), back, err)
		}
	}
	for _, bad := range []string{"ed25519", "rsa:AAAA", "ed25519:!!", "ed25519:AAAA"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
