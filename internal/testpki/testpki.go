// Package testpki is the one throw-away PKI of psavd's tests, labs and
// benchmarks: a self-signed ECDSA P-256 CA (NewCA) that issues
//
//   - peer certificates of the PSAV control plane (ACS, ABR, operator),
//     named by a URI SAN (IssueURI; IssueAS for today's psav:as<N> form,
//     which control/pair verifies), usable for client and server
//     authentication;
//   - server certificates for DNS names (IssueServer), e.g. for
//     DNS-over-TLS; NewServerPKI makes a CA and one such certificate and
//     writes them as PEM files for programs that read files (named, psavd).
//
// Nothing here is meant for production: keys are generated per call, never
// protected, and the CA's key lives only in memory.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// CA is a throw-away certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed ECDSA P-256 CA named name (its CN), valid from
// an hour ago for ten years.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: c, key: key}, nil
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA certificate in PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// WriteFile writes the CA certificate in PEM to path (mode 0600).
func (ca *CA) WriteFile(path string) error { return os.WriteFile(path, ca.PEM(), 0o600) }

// Request describes a certificate for Issue.
type Request struct {
	CommonName string
	URIs       []string // URI SANs, e.g. "psav:as65001"; parsed, not checked
	DNSNames   []string
	// NotBefore and NotAfter bound the validity; zero means an hour ago and
	// a year from now.
	NotBefore, NotAfter time.Time
	// ExtKeyUsage defaults to client and server authentication.
	ExtKeyUsage []x509.ExtKeyUsage
}

// Issue returns a certificate signed by the CA for a fresh P-256 key, with
// Leaf set.
func (ca *CA) Issue(r Request) (tls.Certificate, error) {
	if r.NotBefore.IsZero() {
		r.NotBefore = time.Now().Add(-time.Hour)
	}
	if r.NotAfter.IsZero() {
		r.NotAfter = time.Now().AddDate(1, 0, 0)
	}
	if r.ExtKeyUsage == nil {
		r.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.CommonName},
		DNSNames:     r.DNSNames,
		NotBefore:    r.NotBefore,
		NotAfter:     r.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  r.ExtKeyUsage,
	}
	for _, s := range r.URIs {
		u, err := url.Parse(s)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("testpki: URI SAN %q: %w", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueURI returns a peer certificate (client and server authentication)
// whose only SAN is the URI uri, e.g. "psav:as65001:acs"; its CN is uri.
// Zero times mean an hour ago and a year from now.
func (ca *CA) IssueURI(uri string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	return ca.Issue(Request{CommonName: uri, URIs: []string{uri}, NotBefore: notBefore, NotAfter: notAfter})
}

// Identity URIs of docs/wire.md §3.1 (control/pki parses them; this
// package cannot import it, since pki's and pair's own tests use this one).

// ACSURI is "psav:as<asn>:acs".
func ACSURI(asn uint32) string { return "psav:as" + strconv.FormatUint(uint64(asn), 10) + ":acs" }

// ABRURI is "psav:as<asn>:abr:<name>".
func ABRURI(asn uint32, name string) string {
	return "psav:as" + strconv.FormatUint(uint64(asn), 10) + ":abr:" + name
}

// OpURI is "psav:as<asn>:op:<name>".
func OpURI(asn uint32, name string) string {
	return "psav:as" + strconv.FormatUint(uint64(asn), 10) + ":op:" + name
}

// IssueACS returns the certificate of AS asn's ACS (URI SAN ACSURI(asn)).
// Zero times mean an hour ago and a year from now.
func (ca *CA) IssueACS(asn uint32, notBefore, notAfter time.Time) (tls.Certificate, error) {
	return ca.IssueURI(ACSURI(asn), notBefore, notAfter)
}

// IssueABR returns the certificate of AS asn's border router name.
func (ca *CA) IssueABR(asn uint32, name string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	return ca.IssueURI(ABRURI(asn, name), notBefore, notAfter)
}

// IssueOp returns the certificate of an operator name of AS asn.
func (ca *CA) IssueOp(asn uint32, name string, notBefore, notAfter time.Time) (tls.Certificate, error) {
	return ca.IssueURI(OpURI(asn, name), notBefore, notAfter)
}

// IssueServer returns a server certificate (server authentication only) for
// the DNS names (names[0] is also the CN), valid from an hour ago for a year.
func (ca *CA) IssueServer(names ...string) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("testpki: a server certificate needs at least one name")
	}
	return ca.Issue(Request{CommonName: names[0], DNSNames: names, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// CertPEM returns c's certificate chain in PEM.
func CertPEM(c tls.Certificate) []byte {
	var b []byte
	for _, der := range c.Certificate {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

// KeyPEM returns c's private key in PEM (PKCS #8, "PRIVATE KEY").
func KeyPEM(c tls.Certificate) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteFiles writes c's certificate chain to certFile and its key to
// keyFile, both PEM (mode 0600).
func WriteFiles(c tls.Certificate, certFile, keyFile string) error {
	k, err := KeyPEM(c)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, CertPEM(c), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, k, 0o600)
}

// ServerPKI is a fresh CA and one server certificate it signed, as a
// DNS-over-TLS server and its clients need them.
type ServerPKI struct {
	CA       *CA
	CAPool   *x509.CertPool // verifies Cert
	CAPEM    []byte
	Cert     tls.Certificate
	Leaf     *x509.Certificate // Cert.Leaf
	CertFile string            // Cert's PEM ("" unless written to a directory)
	KeyFile  string
	CAFile   string
}

// NewServerPKI makes a CA and a server certificate for names (names[0] is
// also the CN). If dir is not empty, the certificate, its key and the CA
// are written there as server.crt, server.key and ca.crt.
func NewServerPKI(dir string, names ...string) (*ServerPKI, error) {
	ca, err := NewCA("psavd test CA")
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueServer(names...)
	if err != nil {
		return nil, err
	}
	p := &ServerPKI{CA: ca, CAPool: ca.Pool(), CAPEM: ca.PEM(), Cert: cert, Leaf: cert.Leaf}
	if dir != "" {
		p.CertFile = filepath.Join(dir, "server.crt")
		p.KeyFile = filepath.Join(dir, "server.key")
		p.CAFile = filepath.Join(dir, "ca.crt")
		if err := WriteFiles(cert, p.CertFile, p.KeyFile); err != nil {
			return nil, err
		}
		if err := ca.WriteFile(p.CAFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// CRLPEM returns a CRL of the CA (PEM "X509 CRL") revoking the leaves of
// revoked; valid from now for a day, number n (CRL numbers must grow).
func (ca *CA) CRLPEM(n int64, revoked ...tls.Certificate) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.Leaf.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}
