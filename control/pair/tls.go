package pair

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/psavd/psavd/control/pki"
)

// Identities in certificates (docs/wire.md §3.1): every certificate names one
// AS and one role in exactly one URI subject alternative name,
//
//	psav:as<N>:acs          the AS Control Server of AS N
//	psav:as<N>:abr:<name>   one of its border routers
//	psav:as<N>:op:<name>    one of its operators' tools
//
// parsed by control/pki. The subject CN is ignored: CN is not an identity
// field for modern X.509 validation, while a URI SAN is covered by the CA's
// signature and cannot be confused with a host name. A certificate with no
// psav URI, with two, with a malformed one or with the role-less
// psav:as<N> is refused, each with its own reason (IdentityError).

// Refusal reasons, the values of the reason label of the refusal counters.
const (
	ReasonNoIdentity = "no-identity" // no psav URI, several, or a malformed one
	ReasonRoleless   = "role-less"   // psav:as<N> without a role
	ReasonWrongRole  = "wrong-role"  // a role this service does not accept
	ReasonWrongAS    = "wrong-as"    // an AS this service does not accept
)

// IdentityError says why a certificate's identity is not accepted; Reason
// is one of the Reason constants.
type IdentityError struct {
	Reason string
	Msg    string
}

func (e *IdentityError) Error() string { return "pair: " + e.Msg }

// ReasonOf is the refusal reason of err, or ReasonNoIdentity for any other
// error (no certificate, a chain that does not verify).
func ReasonOf(err error) string {
	var r *IdentityError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ReasonNoIdentity
}

// CertIdentity returns the identity that c's one psav URI SAN names.
func CertIdentity(c *x509.Certificate) (pki.Identity, error) {
	var found []string
	for _, u := range c.URIs {
		if u.Scheme == "psav" {
			found = append(found, u.String())
		}
	}
	if len(found) != 1 {
		return pki.Identity{}, &IdentityError{Reason: ReasonNoIdentity, Msg: fmt.Sprintf(
			"certificate has %d psav URI SANs, want exactly one (psav:as<N>:acs, psav:as<N>:abr:<name> or psav:as<N>:op:<name>)", len(found))}
	}
	id, err := pki.Parse(found[0], false)
	if err != nil {
		if _, lerr := pki.Parse(found[0], true); lerr == nil {
			return pki.Identity{}, &IdentityError{Reason: ReasonRoleless, Msg: fmt.Sprintf(
				"certificate names %s, which has no role: issue one for %s:acs, %s:abr:<name> or %s:op:<name> (docs/wire.md §3.1)",
				found[0], found[0], found[0], found[0])}
		}
		return pki.Identity{}, &IdentityError{Reason: ReasonNoIdentity, Msg: "certificate: " + err.Error()}
	}
	return id, nil
}

// PeerIdentity returns the identity named by the peer's (verified) leaf
// certificate.
func PeerIdentity(cs tls.ConnectionState) (pki.Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return pki.Identity{}, &IdentityError{Reason: ReasonNoIdentity, Msg: "peer sent no certificate"}
	}
	return CertIdentity(cs.PeerCertificates[0])
}

// Require checks that id has role and, if asn is not 0, names asn; service
// names what is asking, for the message.
func Require(id pki.Identity, role pki.Role, asn uint32, service string) error {
	if id.Role != role {
		return &IdentityError{Reason: ReasonWrongRole, Msg: fmt.Sprintf("%s accepts only %s certificates, not %s", service, role, id)}
	}
	if asn != 0 && id.ASN != asn {
		return &IdentityError{Reason: ReasonWrongAS, Msg: fmt.Sprintf("%s accepts only AS%d's certificates, not %s", service, asn, id)}
	}
	return nil
}

// RequirePeer is PeerIdentity followed by Require.
func RequirePeer(cs tls.ConnectionState, role pki.Role, asn uint32, service string) (pki.Identity, error) {
	id, err := PeerIdentity(cs)
	if err != nil {
		return id, err
	}
	return id, Require(id, role, asn, service)
}

// Identity is a node's own side of its TLS sessions: its certificate (whose
// psav URI names ASN and Role) and the alliance trust anchors.
type Identity struct {
	ASN uint32
	// Role is the role the node's own certificate must name: acs for an
	// ACS, abr for an ABR's feed client, op for an operator's tool.
	Role pki.Role
	Cert tls.Certificate
	CA   *x509.CertPool
	// Time, if set, replaces time.Now for certificate validity (tests).
	Time func() time.Time
	// CRL, if set, revokes certificates of the chains it lists (a fixed
	// set; with Live, Live's revocations are used instead).
	CRL *Revocations
	// Live, if set, replaces Cert, CA and CRL at every handshake: a reload
	// renews them without a restart (Credentials.Set, SetRevocations).
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
	return CheckOwn(cert, id.ASN, id.Role)
}

// CheckOwn verifies that a node's own certificate names asn and role.
func CheckOwn(cert tls.Certificate, asn uint32, role pki.Role) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("pair: own certificate: %w", err)
		}
	}
	got, err := CertIdentity(leaf)
	if err != nil {
		return fmt.Errorf("own %w", err)
	}
	if got.ASN != asn {
		return fmt.Errorf("pair: own certificate names %s, but the configured AS is %d", got, asn)
	}
	if got.Role != role {
		return fmt.Errorf("pair: own certificate names %s, but this service needs an %s certificate (psav:as%d:%s…)", got, role, asn, role)
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

// ServerConfig is the tls.Config of an ACS listener: TLS 1.3 only, a client
// certificate required and its chain verified against id.CA. Which
// identities are accepted is decided per service after the handshake
// (RequirePeer): one listener serves ACS peering (acs certificates of
// other ASes), the ABR feed (abr certificates of our AS) and operator
// calls (op certificates of our AS), and a refusal there reaches the
// client as a gRPC status with its reason, where a failed handshake would
// only say "bad certificate".
func ServerConfig(id Identity) (*tls.Config, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	c := id.config(true)
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.ClientCAs = id.CA
	c.VerifyConnection = func(cs tls.ConnectionState) error { return id.Revoked(cs) }
	return c, nil
}

// ClientConfig is the tls.Config for dialling the ACS of serverASN: every
// client of this project (an ACS dialling a peer, an ABR its feed, an
// operator's psavctl) talks to an ACS. The server is identified by the
// identity in its certificate, not by a host name: the chain is verified
// against id.CA (with the ServerAuth usage) in VerifyConnection, which also
// refuses a server that is not psav:as<serverASN>:acs. serverASN 0 means
// any AS but our own, for an ACS that learns which AS answered with
// CheckPeer. Go's host-name check is therefore disabled
// (InsecureSkipVerify) and replaced, not skipped.
func ClientConfig(id Identity, serverASN uint32) (*tls.Config, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	c := id.config(false)
	c.InsecureSkipVerify = true // replaced by VerifyConnection below
	now, local := id.Time, id.ASN
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		peer, err := VerifyServerChain(cs, id.Roots(), now)
		if err != nil {
			return err
		}
		if err := id.Revoked(cs); err != nil {
			return err
		}
		if err := Require(peer, pki.RoleACS, 0, "this client"); err != nil {
			return err
		}
		if serverASN != 0 && peer.ASN != serverASN {
			return &ASNMismatchError{Want: serverASN, Got: peer.ASN}
		}
		if serverASN == 0 && peer.ASN == local {
			return &IdentityError{Reason: ReasonWrongAS, Msg: fmt.Sprintf("peer certificate names our own AS%d", local)}
		}
		return nil
	}
	return c, nil
}

// VerifyServerChain verifies a server's certificate chain against roots
// (with the ServerAuth usage, at now() if now is set) and returns the
// identity its leaf names. It is what replaces Go's host-name check
// wherever peers are identified by AS (ClientConfig).
func VerifyServerChain(cs tls.ConnectionState, roots *x509.CertPool, now func() time.Time) (pki.Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return pki.Identity{}, errors.New("pair: server sent no certificate")
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
		return pki.Identity{}, fmt.Errorf("pair: server certificate: %w", err)
	}
	return CertIdentity(cs.PeerCertificates[0])
}

// ASNMismatchError: the peer's certificate names another AS than expected.
type ASNMismatchError struct{ Want, Got uint32 }

func (e *ASNMismatchError) Error() string {
	return fmt.Sprintf("pair: peer certificate names AS%d, expected AS%d", e.Got, e.Want)
}

// CheckPeer verifies, after the handshake, that the session is TLS 1.3,
// completed, and that the peer's certificate is the ACS of want (the two
// ends of a pair are ACS). It returns the peer's ASN.
func CheckPeer(cs tls.ConnectionState, want uint32) (uint32, error) {
	if !cs.HandshakeComplete || cs.Version != tls.VersionTLS13 {
		return 0, errors.New("pair: not a completed TLS 1.3 session")
	}
	id, err := PeerIdentity(cs)
	if err != nil {
		return 0, err
	}
	if id.Role != pki.RoleACS {
		return id.ASN, &IdentityError{Reason: ReasonWrongRole, Msg: fmt.Sprintf("the peer of a pair must be an ACS, not %s", id)}
	}
	if id.ASN != want {
		return id.ASN, &ASNMismatchError{Want: want, Got: id.ASN}
	}
	return id.ASN, nil
}

// GroupName is the negotiated key-exchange group of a session (e.g.
// "X25519MLKEM768"), for psavctl.
func GroupName(cs tls.ConnectionState) string {
	if cs.CurveID == 0 {
		return "none"
	}
	return cs.CurveID.String()
}
