package pair

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// LoadIdentity reads a node's certificate and key (PEM) and the alliance CA
// bundle (PEM), as [acs] and [abr] name them, and checks that the
// certificate names the AS the node is configured for.
func LoadIdentity(asn uint32, certFile, keyFile, caFile string) (Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	got, err := CertASN(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	if got != asn {
		return Identity{}, fmt.Errorf("certificate %s names AS%d, but psav.asn is %d", certFile, got, asn)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return Identity{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return Identity{}, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
	}
	return Identity{ASN: asn, Cert: cert, CA: pool}, nil
}
