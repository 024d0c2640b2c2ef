package pair

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/psavd/psavd/control/pki"
)

// LoadIdentity reads a node's certificate and key (PEM) and the alliance CA
// bundle (PEM), as [acs] and [abr] name them, and checks that the
// certificate names the AS the node is configured for, in the role it
// serves (acs for an ACS, abr for an ABR, op for psavctl).
func LoadIdentity(asn uint32, role pki.Role, certFile, keyFile, caFile string) (Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	if err := CheckOwn(cert, asn, role); err != nil {
		return Identity{}, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return Identity{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return Identity{}, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
	}
	return Identity{ASN: asn, Role: role, Cert: cert, CA: pool}, nil
}
