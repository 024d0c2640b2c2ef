package lisp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"hash"
	"testing"
)

var testKey = []byte("psavd-site-key")

// authVector builds a Map-Register by hand (the map-register-asn vector with
// the given key id and a zeroed authentication field of authLen octets).
func authVector(typ byte, keyID uint16, authLen int) []byte {
	first := "38 00 01 01" // Map-Register: P=1, M=1, Record Count=1
	if typ != 3 {
		first = string("0123456789abcdef"[typ]) + "0 00 00 01" // Map-Notify(-Ack): Record Count=1
	}
	b := hx(first, nonce1)
	b = append(b, byte(keyID>>8), byte(keyID), byte(authLen>>8), byte(authLen))
	b = append(b, make([]byte, authLen)...)
	return append(b, hx(asnRecord)...)
}

func TestAuthVectors(t *testing.T) {
	cases := []struct {
		keyID uint16
		n     int
		h     func() hash.Hash
	}{
		{KeyIDHMACSHA1_96, 12, sha1.New},
		{KeyIDHMACSHA1_96, 20, sha1.New},
		{KeyIDHMACSHA256128, 16, sha256.New},
		{KeyIDHMACSHA256128, 32, sha256.New},
	}
	for _, typ := range []byte{3, 4, 5} {
		for _, c := range cases {
			zeroed := authVector(typ, c.keyID, c.n)
			if _, err := Parse(zeroed); err != nil {
				t.Fatalf("vector does not parse: %v", err)
			}
			mac := hmac.New(c.h, testKey)
			mac.Write(zeroed)
			want := mac.Sum(nil)[:c.n]

			msg := bytes.Clone(zeroed)
			if err := Sign(msg, c.keyID, testKey, c.n); err != nil {
				t.Fatalf("type %d key %d len %d: Sign: %v", typ, c.keyID, c.n, err)
			}
			if got := msg[16 : 16+c.n]; !bytes.Equal(got, want) {
				t.Fatalf("type %d key %d len %d: auth %x, want %x", typ, c.keyID, c.n, got, want)
			}
			if !bytes.Equal(msg[16+c.n:], zeroed[16+c.n:]) || !bytes.Equal(msg[:16], zeroed[:16]) {
				t.Fatal("Sign touched octets outside the authentication field")
			}
			if err := Verify(msg, testKey); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Re-signing a signed message gives the same field (it is zeroed first).
			again := bytes.Clone(msg)
			if err := Sign(again, c.keyID, testKey, c.n); err != nil || !bytes.Equal(again, msg) {
				t.Fatalf("re-sign: %v", err)
			}
			if err := Verify(msg, []byte("other")); !errors.Is(err, ErrAuthMismatch) {
				t.Fatalf("wrong key: %v", err)
			}
			bad := bytes.Clone(msg)
			bad[len(bad)-1] ^= 1
			if err := Verify(bad, testKey); !errors.Is(err, ErrAuthMismatch) {
				t.Fatalf("tampered: %v", err)
			}
			// AuthConfig signs the same bytes from the decoded message.
			m, err := Parse(zeroed)
			if err != nil {
				t.Fatal(err)
			}
			cfg := AuthConfig{KeyID: c.keyID, Key: testKey, AuthLen: c.n}
			enc, err := cfg.Marshal(m)
			if err != nil || !bytes.Equal(enc, msg) {
				t.Fatalf("AuthConfig.Marshal: %v\n%x\n%x", err, enc, msg)
			}
			if err := cfg.Verify(enc); err != nil {
				t.Fatal(err)
			}
			other := AuthConfig{KeyID: 3 - c.keyID, Key: testKey}
			if err := other.Verify(enc); !errors.Is(err, ErrAuthKeyID) {
				t.Fatalf("AuthConfig key id mismatch: %v", err)
			}
		}
	}
}

func TestAuthDefaultLengths(t *testing.T) {
	for keyID, n := range map[uint16]int{1: 12, 2: 16} {
		b, err := AuthConfig{KeyID: keyID, Key: testKey}.Marshal(&MapRegister{Records: []MappingRecord{asnRecordValue()}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseMapRegister(b)
		if err != nil || m.KeyID != keyID || len(m.AuthData) != n {
			t.Fatalf("key %d: %v %v", keyID, err, m)
		}
		if err := Verify(b, testKey); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuthRefusals(t *testing.T) {
	if err := Verify(authVector(3, 3, 12), testKey); !errors.Is(err, ErrAuthKeyID) {
		t.Errorf("key id 3: %v", err)
	}
	if err := Verify(authVector(3, 0, 0), testKey); !errors.Is(err, ErrAuthKeyID) {
		t.Errorf("key id 0: %v", err)
	}
	for _, n := range []int{0, 11, 13, 16, 32} {
		if err := Verify(authVector(3, 1, n), testKey); !errors.Is(err, ErrAuthLength) {
			t.Errorf("SHA-1 length %d: %v", n, err)
		}
	}
	for _, n := range []int{12, 20, 31} {
		if err := Verify(authVector(3, 2, n), testKey); !errors.Is(err, ErrAuthLength) {
			t.Errorf("SHA-256 length %d: %v", n, err)
		}
	}
	if err := Sign(authVector(3, 1, 12), 2, testKey, 16); !errors.Is(err, ErrAuthKeyID) {
		t.Errorf("Sign key id mismatch: %v", err)
	}
	if err := Sign(authVector(3, 1, 12), 1, testKey, 20); !errors.Is(err, ErrAuthLength) {
		t.Errorf("Sign length mismatch: %v", err)
	}
	if err := Sign(authVector(3, 1, 12), 1, testKey, 13); !errors.Is(err, ErrAuthLength) {
		t.Errorf("Sign bad length: %v", err)
	}
	if err := Verify(hx(mreqIPv4), testKey); !errors.Is(err, ErrAuthBadMessage) {
		t.Errorf("Map-Request: %v", err)
	}
	if err := Verify(authVector(3, 1, 12)[:20], testKey); !errors.Is(err, ErrAuthBadMessage) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := (AuthConfig{KeyID: 1, Key: testKey}).Marshal(&MapReply{}); !errors.Is(err, ErrAuthBadMessage) {
		t.Errorf("Map-Reply: %v", err)
	}
	var ae *AuthError
	if err := Verify(authVector(3, 1, 13), testKey); !errors.As(err, &ae) || ae.Length != 13 || ae.KeyID != 1 {
		t.Errorf("typed error: %#v", err)
	}
}
