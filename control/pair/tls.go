package pair

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ASN-in-certificate convention: an ACS certificate names its AS with exactly
// one URI subject alternative name of the form
//
//	psav:as<decimal ASN>        e.g. psav:as65001
//
// (scheme "psav", opaque part "as" followed by the ASN in decimal, 1 to
// 4294967295, no sign, no leading zeros). The subject CN is ignored: CN is not
// an identity field for modern X.509 validation, while a URI SAN is covered by
// the CA's signature and cannot be confused with a host name. A certificate
// with no psav URI, with two, or with a malformed one is refused.
const asnURIPrefix = "psav:as"

// ASNURI returns the URI SAN naming asn ("psav:as65001").
func ASNURI(asn uint32) string { return asnURIPrefix + strconv.FormatUint(uint64(asn), 10) }

// ErrNoASN is returned for a certificate that does not name exactly one AS.
var ErrNoASN = errors.New("pair: certificate does not name exactly one AS (URI SAN psav:as<ASN>)")

// CertASN returns the ASN a certificate names (see the convention above).
func CertASN(c *x509.Certificate) (uint32, error) {
	var asn uint32
	n := 0
	for _, u := range c.URIs {
		if u.Scheme != "psav" {
			continue
		}
		n++
		v, err := parseASN(u.String())
		if err != nil {
			return 0, err
		}
		asn = v
	}
	if n != 1 {
		return 0, ErrNoASN
	}
	return asn, nil
}

func parseASN(s string) (uint32, error) {
	d, ok := strings.CutPrefix(s, asnURIPrefix)
	if !ok || d == "" || d[0] == '0' || len(d) > 10 {
		return 0, fmt.Errorf("pair: malformed AS URI %q", s)
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("pair: malformed AS URI %q", s)
		}
	}
	v, err := strconv.ParseUint(d, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("pair: malformed AS URI %q", s)
	}
	return uint32(v), nil
}

// Identity is what an ACS needs for ACS↔ACS sessions: its own certificate
// (whose psav URI names ASN) and the alliance trust anchors.
type Identity struct {
	ASN  uint32
	Cert tls.Certificate
	CA   *x509.CertPool
	// Time, if set, replaces time.Now for certificate validity (tests).
	Time func() time.Time
	// Live, if set, replaces Cert and CA at every handshake: a reload
	// renews them without a restart (Credentials.Set).
	Live *Credentials
}

func (id *Identity) check() error {
	cert, ca := id.current()
	if ca == nil {
		return errors.New("pair: no CA pool")
	}
	if len(cert.Certificate) == 0 {
		return errors.New("pair: no certificate")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("pair: own certificate: %w", err)
		}
	}
	asn, err := CertASN(leaf)
	if err != nil {
		return fmt.Errorf("pair: own certificate: %w", err)
	}
	if asn != id.ASN {
		return fmt.Errorf("pair: own certificate names AS%d, configured AS is %d", asn, id.ASN)
	}
	return nil
}

func (id *Identity) base() *tls.Config {
	return &tls.Config{
		// TLS 1.3 only. CurvePreferences is deliberately left unset: Go's
		// default key exchange includes the hybrid post-quantum
		// X25519MLKEM768 (docs/wire.md §3.1), and pinning curves could exclude it.
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		Time:         id.Time,
	}
}

// config is base() made to follow id.Live, if set.
func (id *Identity) config(server bool) *tls.Config {
	c := id.base()
	id.live(c, server)
	return c
}

// ServerConfig is the tls.Config for accepting ACS↔ACS sessions: TLS 1.3
// only, client certificate required and verified against id.CA, and the
// client certificate must name exactly one AS other than ours. Which AS the
// peer is (and whether it is expected) is decided after the handshake with
// CheckPeer, since any alliance member may dial.
func ServerConfig(id Identity) (*tls.Config, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	c := id.config(true)
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = id.CA
	local := id.ASN
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		asn, err := PeerASN(cs)
		if err != nil {
			return err
		}
		if asn == local {
			return fmt.Errorf("pair: peer certificate names our own AS%d", asn)
		}
		return nil
	}
	return c, nil
}

// ClientConfig is the tls.Config for dialling the ACS of peerASN. The server
// is identified by the AS in its certificate, not by a host name: the chain
// is verified against id.CA (with the ServerAuth usage) in VerifyConnection,
// which also refuses a server naming another AS than peerASN (0: any AS,
// to be checked with CheckPeer after the handshake). Go's host-name check
// is therefore disabled (InsecureSkipVerify) and replaced, not skipped.
func ClientConfig(id Identity, peerASN uint32) (*tls.Config, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	c := id.config(false)
	c.InsecureSkipVerify = true // replaced by VerifyConnection below
	now, local := id.Time, id.ASN
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		asn, err := VerifyServerChain(cs, id.Roots(), now)
		if err != nil {
			return err
		}
		if asn == local {
			return fmt.Errorf("pair: peer certificate names our own AS%d", asn)
		}
		if peerASN != 0 && asn != peerASN {
			return &ASNMismatchError{Want: peerASN, Got: asn}
		}
		return nil
	}
	return c, nil
}

// VerifyServerChain verifies a server's certificate chain against roots
// (with the ServerAuth usage, at now() if now is set) and returns the AS its
// leaf names. It is what replaces Go's host-name check wherever peers are
// identified by AS (ClientConfig, the ABR's feed client).
func VerifyServerChain(cs tls.ConnectionState, roots *x509.CertPool, now func() time.Time) (uint32, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errors.New("pair: server sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if now != nil {
		opts.CurrentTime = now()
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return 0, fmt.Errorf("pair: server certificate: %w", err)
	}
	return CertASN(cs.PeerCertificates[0])
}

// PeerASN returns the AS named by the peer's (verified) leaf certificate.
func PeerASN(cs tls.ConnectionState) (uint32, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errors.New("pair: peer sent no certificate")
	}
	return CertASN(cs.PeerCertificates[0])
}

// ASNMismatchError: the peer's certificate names another AS than expected.
type ASNMismatchError struct{ Want, Got uint32 }

func (e *ASNMismatchError) Error() string {
	return fmt.Sprintf("pair: peer certificate names AS%d, expected AS%d", e.Got, e.Want)
}

// CheckPeer verifies, after the handshake, that the session is TLS 1.3,
// completed, and that the peer's certificate names want. It returns the
// peer's ASN.
func CheckPeer(cs tls.ConnectionState, want uint32) (uint32, error) {
	if !cs.HandshakeComplete || cs.Version != tls.VersionTLS13 {
		return 0, errors.New("pair: not a completed TLS 1.3 session")
	}
	asn, err := PeerASN(cs)
	if err != nil {
		return 0, err
	}
	if asn != want {
		return asn, &ASNMismatchError{Want: want, Got: asn}
	}
	return asn, nil
}

// GroupName is the negotiated key-exchange group of a session (e.g.
// "X25519MLKEM768"), for psavctl.
func GroupName(cs tls.ConnectionState) string {
	if cs.CurveID == 0 {
		return "none"
	}
	return cs.CurveID.String()
}
