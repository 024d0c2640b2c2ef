package membership

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Alg identifies a signature algorithm. The numeric values are part of the
// wire encoding and must never be reused.
type Alg uint8

const (
	// AlgEd25519 is pure Ed25519 (RFC 8032); the key is 32 bytes.
	AlgEd25519 Alg = 1
	// AlgECDSAP256 is ECDSA over P-256 with SHA-256; the key is the 65-byte
	// uncompressed SEC 1 point and the signature is fixed-size r||s.
	AlgECDSAP256 Alg = 2
)

// SigSize is the signature length of every supported algorithm. Both
// algorithms produce 64 bytes (Ed25519 natively; ECDSA as fixed r||s), which
// is why the fixed form was chosen over ASN.1: the decoder can demand one
// exact length instead of parsing variable DER.
const SigSize = 64

func (a Alg) String() string {
	switch a {
	case AlgEd25519:
		return "ed25519"
	case AlgECDSAP256:
		return "ecdsa-p256"
	}
	return fmt.Sprintf("alg(%d)", uint8(a))
}

// keySize returns the encoded public-key length for a, or 0 if a is unknown.
func (a Alg) keySize() int {
	switch a {
	case AlgEd25519:
		return ed25519.PublicKeySize
	case AlgECDSAP256:
		return 65
	}
	return 0
}

// PublicKey is an algorithm id and the raw key bytes as they appear on the
// wire. Keeping the raw bytes (rather than a parsed crypto key) makes records
// comparable and re-encodable byte for byte.
type PublicKey struct {
	Alg   Alg
	Bytes []byte
}

// Equal reports whether two keys are the same algorithm and bytes.
func (k PublicKey) Equal(o PublicKey) bool {
	return k.Alg == o.Alg && bytes.Equal(k.Bytes, o.Bytes)
}

// validate checks the algorithm, the length and, for P-256, that the point
// is on the curve, so a malformed key is refused as malformed at decode time
// rather than surfacing later as a confusing signature failure.
func (k PublicKey) validate() error {
	n := k.Alg.keySize()
	if n == 0 {
		return fmt.Errorf("unknown key algorithm %d", uint8(k.Alg))
	}
	if len(k.Bytes) != n {
		return fmt.Errorf("%s key is %d bytes, want %d", k.Alg, len(k.Bytes), n)
	}
	if k.Alg == AlgECDSAP256 {
		if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), k.Bytes); err != nil {
			return fmt.Errorf("ecdsa-p256 key: %v", err)
		}
	}
	return nil
}

// halfN is n/2 for P-256: signatures with s > n/2 are refused, because
// (r, n-s) is also valid for the same message and would otherwise let anyone
// mint a second, differently hashed copy of a record that could win the
// equal-version tie-break.
var halfN = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// Verify reports whether sig is a valid signature by k over msg.
func (k PublicKey) Verify(msg, sig []byte) bool {
	if len(sig) != SigSize || k.validate() != nil {
		return false
	}
	switch k.Alg {
	case AlgEd25519:
		// crypto/ed25519 already refuses non-canonical S, so Ed25519
		// signatures are not malleable.
		return ed25519.Verify(ed25519.PublicKey(k.Bytes), msg, sig)
	case AlgECDSAP256:
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), k.Bytes)
		if err != nil {
			return false
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if s.Cmp(halfN) > 0 {
			return false
		}
		h := sha256.Sum256(msg)
		return ecdsa.Verify(pub, h[:], r, s)
	}
	return false
}

// Signer signs membership messages for one key.
type Signer interface {
	Public() PublicKey
	Sign(msg []byte) ([]byte, error)
}

type ed25519Signer struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// NewEd25519Signer wraps an Ed25519 private key.
func NewEd25519Signer(priv ed25519.PrivateKey) (Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("membership: bad ed25519 private key size")
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &ed25519Signer{priv: priv, pub: PublicKey{Alg: AlgEd25519, Bytes: append([]byte(nil), pub...)}}, nil
}

// NewEd25519SignerFromSeed builds a signer from a 32-byte seed (RFC 8032),
// which is how keys are usually stored and how tests get fixed vectors.
func NewEd25519SignerFromSeed(seed []byte) (Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("membership: ed25519 seed must be 32 bytes")
	}
	return NewEd25519Signer(ed25519.NewKeyFromSeed(seed))
}

func (s *ed25519Signer) Public() PublicKey { return s.pub }

func (s *ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, msg), nil
}

type ecdsaSigner struct {
	priv *ecdsa.PrivateKey
	pub  PublicKey
}

// NewECDSASigner wraps a P-256 private key. Signatures are randomized (the
// Go library always mixes in fresh entropy), so two signings of one record
// differ; the equal-version tie-break by hash makes that harmless.
func NewECDSASigner(priv *ecdsa.PrivateKey) (Signer, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errors.New("membership: ecdsa key must be P-256")
	}
	b, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("membership: ecdsa public key: %w", err)
	}
	return &ecdsaSigner{priv: priv, pub: PublicKey{Alg: AlgECDSAP256, Bytes: b}}, nil
}

// NewECDSASignerFromScalar builds a P-256 signer from a 32-byte big-endian
// private scalar.
func NewECDSASignerFromScalar(d []byte) (Signer, error) {
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		return nil, fmt.Errorf("membership: ecdsa scalar: %w", err)
	}
	return NewECDSASigner(priv)
}

// GenerateSigner makes a fresh key of the given algorithm.
func GenerateSigner(alg Alg) (Signer, error) {
	switch alg {
	case AlgEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return NewEd25519Signer(priv)
	case AlgECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return NewECDSASigner(priv)
	}
	return nil, fmt.Errorf("membership: unknown algorithm %d", uint8(alg))
}

func (s *ecdsaSigner) Public() PublicKey { return s.pub }

func (s *ecdsaSigner) Sign(msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, ss, err := ecdsa.Sign(rand.Reader, s.priv, h[:])
	if err != nil {
		return nil, err
	}
	// Normalize to low-S so our own signatures pass our own Verify.
	n := elliptic.P256().Params().N
	if ss.Cmp(halfN) > 0 {
		ss = new(big.Int).Sub(n, ss)
	}
	sig := make([]byte, SigSize)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig, nil
}

// String is the key's text form, "<alg>:<base64 of the wire bytes>", as
// configuration files give community keys (e.g. "ed25519:…").
func (k PublicKey) String() string {
	return k.Alg.String() + ":" + base64.StdEncoding.EncodeToString(k.Bytes)
}

// ParsePublicKey reads the text form written by PublicKey.String.
func ParsePublicKey(s string) (PublicKey, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return PublicKey{}, fmt.Errorf("key %q: want <algorithm>:<base64>", s)
	}
	var k PublicKey
	switch name {
	case AlgEd25519.String():
		k.Alg = AlgEd25519
	case AlgECDSAP256.String():
		k.Alg = AlgECDSAP256
	default:
		return PublicKey{}, fmt.Errorf("key algorithm %q is not ed25519 or ecdsa-p256", name)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return PublicKey{}, fmt.Errorf("key %q: %v", s, err)
	}
	k.Bytes = b
	if err := k.validate(); err != nil {
		return PublicKey{}, err
	}
	return k, nil
}
