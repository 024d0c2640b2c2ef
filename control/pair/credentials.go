package pair

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
)

// Credentials are a node's certificate and its trust anchors as they may
// change while it runs: a renewed certificate or a new CA bundle, put in
// force by a reload without a restart. Every handshake from then on uses
// the new ones; sessions already up stay as they are.
type Credentials struct {
	v   atomic.Pointer[credentials]
	crl atomic.Pointer[Revocations]
}

type credentials struct {
	cert tls.Certificate
	ca   *x509.CertPool
}

// NewCredentials starts with cert and ca.
func NewCredentials(cert tls.Certificate, ca *x509.CertPool) *Credentials {
	c := &Credentials{}
	c.Set(cert, ca)
	return c
}

// Set replaces the certificate and the trust anchors. It reports whether
// anything changed.
func (c *Credentials) Set(cert tls.Certificate, ca *x509.CertPool) bool {
	if !c.Differs(cert, ca) {
		return false
	}
	c.v.Store(&credentials{cert: cert, ca: ca})
	return true
}

// Differs reports whether cert or ca differ from those in force.
func (c *Credentials) Differs(cert tls.Certificate, ca *x509.CertPool) bool {
	old := c.v.Load()
	return old == nil || !sameChain(old.cert, cert) || !old.ca.Equal(ca)
}

func sameChain(a, b tls.Certificate) bool {
	if len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if !bytes.Equal(a.Certificate[i], b.Certificate[i]) {
			return false
		}
	}
	return true
}

func (c *Credentials) load() *credentials { return c.v.Load() }

// current returns the certificate and pool in force: id.Live's when set,
// else the fixed ones.
func (id *Identity) current() (tls.Certificate, *x509.CertPool) {
	if id.Live != nil {
		s := id.Live.load()
		return s.cert, s.ca
	}
	return id.Cert, id.CA
}

// Roots returns the trust anchors in force (for a VerifyConnection that
// checks a chain itself).
func (id *Identity) Roots() *x509.CertPool {
	_, ca := id.current()
	return ca
}

// live makes c take the certificate (both as server and client) and, on a
// server, the client CAs from id.Live at every handshake.
func (id *Identity) live(c *tls.Config, server bool) {
	if id.Live == nil {
		return
	}
	live := id.Live
	c.Certificates = nil
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		s := live.load()
		return &s.cert, nil
	}
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		s := live.load()
		return &s.cert, nil
	}
	if server {
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cc := c.Clone()
			cc.GetConfigForClient = nil
			cc.ClientCAs = live.load().ca
			return cc, nil
		}
	}
}
