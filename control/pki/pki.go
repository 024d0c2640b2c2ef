// Package pki is the certificate side of joining a PSAV alliance: the
// identities of docs/wire.md §3.1 as URI SANs, certificate signing requests
// that carry exactly one of them, and a small file-based CA for labs and
// small alliances (psavctl cert request, ca init, ca sign).
//
// An identity names an AS and a role:
//
//	psav:as<N>:acs          the AS Control Server of AS N
//	psav:as<N>:abr:<name>   one of its border routers
//	psav:as<N>:op:<name>    one of its operators
//
// with N decimal, 1 … 4294967295, no leading zeros, and name 1–63 of
// [a-z0-9-]. The role-less form psav:as<N> is what control/pair verifies
// today; this package parses it only as a Legacy identity and formats it
// only when asked for one, so that later work can switch control/pair to
// the role form and refuse the legacy one.
//
// This package is for operators' real keys and certificates. The tests'
// throw-away CA is internal/testpki, which this package does not replace.
package pki

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Role is the role part of an identity.
type Role string

const (
	RoleACS Role = "acs"
	RoleABR Role = "abr"
	RoleOp  Role = "op"
)

// ParseRole reads "acs", "abr" or "op".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleACS, RoleABR, RoleOp:
		return r, nil
	}
	return "", fmt.Errorf("pki: role %q is not acs, abr or op", s)
}

// Identity is what one psav URI SAN names.
type Identity struct {
	ASN uint32
	// Role is empty for a Legacy identity.
	Role Role
	// Name is the ABR's or operator's name; empty for an ACS.
	Name string
	// Legacy marks today's role-less psav:as<N> (control/pair.ASNURI).
	Legacy bool
}

const scheme = "psav"

// Legacy returns the role-less identity of asn that control/pair accepts
// today.
func Legacy(asn uint32) Identity { return Identity{ASN: asn, Legacy: true} }

// Validate checks the ASN, the role and the name.
func (id Identity) Validate() error {
	if id.ASN == 0 {
		return errors.New("pki: ASN 0 is reserved")
	}
	if id.Legacy {
		if id.Role != "" || id.Name != "" {
			return errors.New("pki: a legacy identity has no role and no name")
		}
		return nil
	}
	switch id.Role {
	case RoleACS:
		if id.Name != "" {
			return errors.New("pki: an ACS identity has no name")
		}
	case RoleABR, RoleOp:
		if err := checkName(id.Name); err != nil {
			return err
		}
	default:
		return fmt.Errorf("pki: role %q is not acs, abr or op", id.Role)
	}
	return nil
}

func checkName(n string) error {
	if n == "" || len(n) > 63 {
		return fmt.Errorf("pki: name %q: want 1–63 characters of [a-z0-9-]", n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("pki: name %q: want 1–63 characters of [a-z0-9-]", n)
		}
	}
	return nil
}

// String is the URI text, e.g. "psav:as65001:abr:edge-1". It does not
// validate; see URI.
func (id Identity) String() string {
	s := scheme + ":as" + strconv.FormatUint(uint64(id.ASN), 10)
	if id.Legacy {
		return s
	}
	s += ":" + string(id.Role)
	if id.Name != "" {
		s += ":" + id.Name
	}
	return s
}

// URI is the identity as a URI SAN, after Validate.
func (id Identity) URI() (*url.URL, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	return &url.URL{Scheme: scheme, Opaque: strings.TrimPrefix(id.String(), scheme+":")}, nil
}

// Parse reads one psav URI. The role forms are returned as such; the bare
// psav:as<N> only if legacy is true, since it is otherwise refused by the
// contract.
func Parse(s string, legacy bool) (Identity, error) {
	rest, ok := strings.CutPrefix(s, scheme+":as")
	if !ok {
		return Identity{}, fmt.Errorf("pki: %q is not a psav:as<N>… URI", s)
	}
	parts := strings.Split(rest, ":")
	asn, err := parseASN(parts[0])
	if err != nil {
		return Identity{}, fmt.Errorf("pki: %q: %v", s, err)
	}
	var id Identity
	switch len(parts) {
	case 1:
		if !legacy {
			return Identity{}, fmt.Errorf("pki: %q has no role (want psav:as%d:acs, :abr:<name> or :op:<name>)", s, asn)
		}
		id = Legacy(asn)
	case 2:
		id = Identity{ASN: asn, Role: Role(parts[1])}
	case 3:
		id = Identity{ASN: asn, Role: Role(parts[1]), Name: parts[2]}
		if id.Role == RoleACS {
			return Identity{}, fmt.Errorf("pki: %q: an ACS identity has no name", s)
		}
	default:
		return Identity{}, fmt.Errorf("pki: %q: too many parts", s)
	}
	if id.Role == RoleABR || id.Role == RoleOp {
		if id.Name == "" {
			return Identity{}, fmt.Errorf("pki: %q: role %s needs a name", s, id.Role)
		}
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("pki: %q: %w", s, err)
	}
	return id, nil
}

func parseASN(s string) (uint32, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("ASN must be decimal without leading zeros")
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, errors.New("ASN out of range 1…4294967295")
	}
	return uint32(n), nil
}

// FromSANs finds the one identity among a certificate's or CSR's subject
// alternative names and refuses anything else: no DNS names, IP addresses
// or e-mail addresses, no other URIs, exactly one psav URI, well formed
// (the legacy form only if legacy).
func FromSANs(dns []string, ips int, emails []string, uris []*url.URL, legacy bool) (Identity, error) {
	if len(dns) != 0 || ips != 0 || len(emails) != 0 {
		return Identity{}, errors.New("pki: only one psav URI SAN is allowed (found DNS, IP or e-mail SANs)")
	}
	if len(uris) != 1 {
		return Identity{}, fmt.Errorf("pki: %d URI SANs, want exactly one psav URI", len(uris))
	}
	return Parse(uris[0].String(), legacy)
}
