package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// Request returns a PKCS #10 certificate signing request (DER) for key,
// whose only SAN is id's URI and whose CN is the same text.
func Request(id Identity, key crypto.Signer) ([]byte, error) {
	u, err := id.URI()
	if err != nil {
		return nil, err
	}
	if err := checkKey(key.Public()); err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.String()},
		URIs:    []*url.URL{u},
	}, key)
}

// checkKey allows the key types the control plane's TLS 1.3 takes and
// membership signs with: ECDSA P-256 and Ed25519.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
	}
	return fmt.Errorf("pki: %T key: want ECDSA P-256 or Ed25519", pub)
}

// CA is a certificate authority held in two files: its certificate and its
// PKCS #8 key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed ECDSA P-256 CA named name, valid from now for
// days days. It returns the CA and its certificate and key in PEM.
func NewCA(name string, days int) (ca *CA, certPEM, keyPEM []byte, err error) {
	if days <= 0 {
		return nil, nil, nil, errors.New("pki: validity must be at least one day")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	k8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return &CA{Cert: cert, Key: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k8}), nil
}

// LoadCA reads a CA certificate and its PKCS #8 key (PEM) and checks that
// they belong together and that the certificate is a CA.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("pki: the certificate is not a CA")
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := key.Public().(equaler); !ok || !e.Equal(cert.PublicKey) {
		return nil, errors.New("pki: the key is not the CA certificate's")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Sign issues a certificate for the CSR (PEM or DER), valid from now for
// days days, for TLS client and server authentication. The CSR's signature
// must verify and its SANs must be exactly one well-formed psav URI. With
// legacy, the certificate names today's role-less psav:as<N> of the CSR's
// AS (the CSR may carry the role or the legacy form), which is what
// control/pair accepts; without it, the role form is required and copied.
func (ca *CA) Sign(csr []byte, days int, legacy bool) (certDER []byte, id Identity, err error) {
	if days <= 0 {
		return nil, Identity{}, errors.New("pki: validity must be at least one day")
	}
	if b, _ := pem.Decode(csr); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, Identity{}, fmt.Errorf("pki: PEM block %q, want CERTIFICATE REQUEST", b.Type)
		}
		csr = b.Bytes
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("pki: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, Identity{}, fmt.Errorf("pki: CSR signature: %w", err)
	}
	if err := checkKey(req.PublicKey); err != nil {
		return nil, Identity{}, err
	}
	id, err = FromSANs(req.DNSNames, len(req.IPAddresses), req.EmailAddresses, req.URIs, legacy)
	if err != nil {
		return nil, Identity{}, err
	}
	if legacy {
		id = Legacy(id.ASN)
	}
	u, err := id.URI()
	if err != nil {
		return nil, Identity{}, err
	}
	now := time.Now()
	notAfter := now.AddDate(0, 0, days)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.String()},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, Identity{}, err
	}
	return der, id, nil
}

// ParseCertificatePEM reads the first certificate of a PEM file.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("pki: no CERTIFICATE in PEM")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// ParseKeyPEM reads a PKCS #8 private key (PEM "PRIVATE KEY") of a type
// checkKey allows.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("pki: want a PKCS #8 PEM key (PRIVATE KEY)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %T cannot sign", k)
	}
	if err := checkKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// CertPEM is der as a PEM CERTIFICATE.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// CSRPEM is der as a PEM CERTIFICATE REQUEST.
func CSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}
