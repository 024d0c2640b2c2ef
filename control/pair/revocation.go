package pair

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Revocations are the certificate revocation lists of the trust anchors
// ([acs] crl, [abr] crl: one file per anchor, PEM or DER), each verified
// against the anchor that signed it. They are read at start and again on
// every reload, and checked on every handshake (ServerConfig,
// ClientConfig); a reload also closes the live sessions of certificates
// revoked since (acs.Node.CloseRevoked).
type Revocations struct {
	lists []*x509.RevocationList
	// revoked: issuer (raw subject) → serial numbers (big-endian bytes).
	revoked map[string]map[string]bool
}

// LoadRevocations reads the CRL files and checks each against the CA
// certificates of caFile: a CRL no anchor signed is refused.
func LoadRevocations(files []string, caFile string) (*Revocations, error) {
	if len(files) == 0 {
		return nil, nil
	}
	anchors, err := readCerts(caFile)
	if err != nil {
		return nil, err
	}
	r := &Revocations{revoked: map[string]map[string]bool{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if blk, _ := pem.Decode(b); blk != nil {
			if blk.Type != "X509 CRL" {
				return nil, fmt.Errorf("CRL %s: a PEM %q block, want \"X509 CRL\"", f, blk.Type)
			}
			b = blk.Bytes
		}
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("CRL %s: %w", f, err)
		}
		var signer *x509.Certificate
		for _, a := range anchors {
			if bytes.Equal(a.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(a) == nil {
				signer = a
				break
			}
		}
		if signer == nil {
			return nil, fmt.Errorf("CRL %s: not signed by a CA of %s", f, caFile)
		}
		r.lists = append(r.lists, l)
		set := r.revoked[string(l.RawIssuer)]
		if set == nil {
			set = map[string]bool{}
			r.revoked[string(l.RawIssuer)] = set
		}
		for _, e := range l.RevokedCertificateEntries {
			set[string(e.SerialNumber.Bytes())] = true
		}
	}
	return r, nil
}

func readCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle %s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", file)
	}
	return out, nil
}

// ErrRevoked: a certificate of the chain is in a CRL.
var ErrRevoked = errors.New("pair: certificate revoked")

// Check refuses a chain of which any certificate is revoked. A nil set
// revokes nothing.
func (r *Revocations) Check(chain []*x509.Certificate) error {
	if r == nil {
		return nil
	}
	for _, c := range chain {
		if r.revoked[string(c.RawIssuer)][string(c.SerialNumber.Bytes())] {
			return fmt.Errorf("%w: serial %x of %s", ErrRevoked, c.SerialNumber, c.Subject)
		}
	}
	return nil
}

// Stale returns the CRLs past their NextUpdate at now, by issuer, for a
// warning: a stale list still revokes what it lists.
func (r *Revocations) Stale(now time.Time) []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, l := range r.lists {
		if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
			out = append(out, l.Issuer.String())
		}
	}
	return out
}

// revocations in force: id.Live's when set, else id.CRL.
func (id *Identity) revocations() *Revocations {
	if id.Live != nil {
		return id.Live.crl.Load()
	}
	return id.CRL
}

// Revoked checks a session's peer chain against the revocations in force.
func (id *Identity) Revoked(cs tls.ConnectionState) error {
	return id.revocations().Check(cs.PeerCertificates)
}

// SetRevocations puts r in force for every handshake from now on.
func (c *Credentials) SetRevocations(r *Revocations) { c.crl.Store(r) }
