package membership

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// pemPrivateKey is the PEM type of a PKCS #8 private key (RFC 5958).
const pemPrivateKey = "PRIVATE KEY"

// ParseSignerPEM loads a Signer from a PKCS #8 private key in PEM
// ("PRIVATE KEY"), as psavctl key generate and openssl genpkey write them:
// an Ed25519 key or an ECDSA P-256 key. Any other key type, curve or PEM
// block is refused, as is trailing data after the one block.
func ParseSignerPEM(b []byte) (Signer, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("membership: no PEM block")
	}
	if block.Type != pemPrivateKey {
		return nil, fmt.Errorf("membership: PEM block %q, want %q (PKCS #8)", block.Type, pemPrivateKey)
	}
	if len(pemTrim(rest)) != 0 {
		return nil, errors.New("membership: data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return NewEd25519Signer(k)
	case *ecdsa.PrivateKey:
		return NewECDSASigner(k)
	}
	return nil, fmt.Errorf("membership: %T is not an Ed25519 or ECDSA P-256 key", k)
}

// MarshalSignerPEM is the PKCS #8 PEM form of a signer made by this package
// (GenerateSigner, NewEd25519Signer, NewECDSASigner, ParseSignerPEM), which
// ParseSignerPEM reads back.
func MarshalSignerPEM(s Signer) ([]byte, error) {
	var key any
	switch s := s.(type) {
	case *ed25519Signer:
		key = s.priv
	case *ecdsaSigner:
		key = s.priv
	default:
		return nil, fmt.Errorf("membership: cannot export a %T", s)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// pemTrim drops the white space a file may carry after its PEM block.
func pemTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
