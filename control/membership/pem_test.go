package membership

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestSignerPEMRoundTrip(t *testing.T) {
	for _, alg := range []Alg{AlgEd25519, AlgECDSAP256} {
		s, err := GenerateSigner(alg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := MarshalSignerPEM(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----\n") {
			t.Fatalf("%s: not PKCS #8 PEM:\n%s", alg, b)
		}
		s2, err := ParseSignerPEM(append(b, '\n'))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if !s2.Public().Equal(s.Public()) {
			t.Fatalf("%s: public key changed", alg)
		}
		// The text form is what [[acs.community]] keys and ParsePublicKey take.
		k, err := ParsePublicKey(s2.Public().String())
		if err != nil || !k.Equal(s.Public()) || !strings.HasPrefix(s.Public().String(), alg.String()+":") {
			t.Fatalf("%s: text form %q: %v", alg, s.Public(), err)
		}
		msg := []byte("m")
		sig, err := s2.Sign(msg)
		if err != nil || !s.Public().Verify(msg, sig) {
			t.Fatalf("%s: loaded key does not sign for the original: %v", alg, err)
		}
	}
}

func TestParseSignerPEMRefuses(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	pk8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	s, _ := GenerateSigner(AlgEd25519)
	good, _ := MarshalSignerPEM(s)
	sec1, _ := x509.MarshalECPrivateKey(p384)
	for name, b := range map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("not a key"),
		"p384":     pk8(p384),
		"rsa":      pk8(rsaKey),
		"sec1":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"trailing": append(append([]byte(nil), good...), good...),
		"bad der":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := ParseSignerPEM(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
