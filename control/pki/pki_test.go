package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func TestParseAndFormat(t *testing.T) {
	for _, c := range []struct {
		s  string
		id Identity
	}{
		{"psav:as65001:acs", Identity{ASN: 65001, Role: RoleACS}},
		{"psav:as4294967295:abr:edge-1", Identity{ASN: 4294967295, Role: RoleABR, Name: "edge-1"}},
		{"psav:as1:op:alice", Identity{ASN: 1, Role: RoleOp, Name: "alice"}},
	} {
		id, err := Parse(c.s, false)
		if err != nil || id != c.id {
			t.Errorf("Parse(%q) = %+v, %v", c.s, id, err)
		}
		u, err := c.id.URI()
		if err != nil || u.String() != c.s || c.id.String() != c.s {
			t.Errorf("URI(%+v) = %v, %v", c.id, u, err)
		}
		// A certificate's URI goes through url.Parse and back.
		pu, err := url.Parse(c.s)
		if err != nil || pu.String() != c.s {
			t.Errorf("url round trip of %q: %v %v", c.s, pu, err)
		}
	}
	if id, err := Parse("psav:as65001", true); err != nil || id != Legacy(65001) || id.String() != "psav:as65001" {
		t.Errorf("legacy: %+v %v", id, err)
	}
	for _, s := range []string{
		"psav:as65001", // legacy refused by default
		"psav:as0:acs", "psav:as065001:acs", "psav:as4294967296:acs", "psav:as-1:acs", "psav:as:acs",
		"psav:as65001:acs:x", "psav:as65001:abr", "psav:as65001:abr:", "psav:as65001:op:Alice",
		"psav:as65001:abr:a_b", "psav:as65001:xyz", "psav:as65001:abr:a:b", "https://example.net/",
		"psav:as65001:abr:" + string(make([]byte, 64)),
		"psav:as65001:op:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", // 64
	} {
		if id, err := Parse(s, false); err == nil {
			t.Errorf("Parse(%q) accepted: %+v", s, id)
		}
	}
	if _, err := (Identity{ASN: 1, Role: RoleABR}).URI(); err == nil {
		t.Error("ABR without a name formatted")
	}
}

func TestRequestAndSign(t *testing.T) {
	ca, certPEM, keyPEM, err := NewCA("lab CA", 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _, _ := NewCA("other", 1)
	if _, err := LoadCA(certPEM, otherKey); err == nil {
		t.Error("LoadCA took a key of another CA")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	id := Identity{ASN: 65001, Role: RoleABR, Name: "edge-1"}
	for i, signer := range []any{ec, ed} {
		var csr []byte
		switch k := signer.(type) {
		case *ecdsa.PrivateKey:
			csr, err = Request(id, k)
		case ed25519.PrivateKey:
			csr, err = Request(id, k)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, legacy := range []bool{false, true} {
			der, got, err := ca.Sign(CSRPEM(csr), 10, legacy)
			if err != nil {
				t.Fatalf("key %d legacy %v: %v", i, legacy, err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			want := "psav:as65001:abr:edge-1"
			if legacy {
				want = "psav:as65001"
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != want || got.String() != want || len(c.DNSNames) != 0 {
				t.Errorf("legacy %v: SANs %v, identity %v", legacy, c.URIs, got)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client auth: %v", err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("server auth: %v", err)
			}
		}
	}
	// A legacy CSR is refused without -legacy, signed with it.
	legacyCSR, err := Request(Legacy(65002), ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Sign(legacyCSR, 10, false); err == nil {
		t.Error("legacy CSR signed without legacy")
	}
	if _, id, err := ca.Sign(legacyCSR, 10, true); err != nil || id != Legacy(65002) {
		t.Errorf("legacy CSR with legacy: %v %v", id, err)
	}
	// Anything but one psav URI is refused.
	u1, _ := url.Parse("psav:as65001:acs")
	u2, _ := url.Parse("psav:as65002:acs")
	u3, _ := url.Parse("https://example.net/")
	for name, tmpl := range map[string]*x509.CertificateRequest{
		"none":      {Subject: pkix.Name{CommonName: "psav:as65001:acs"}},
		"two":       {URIs: []*url.URL{u1, u2}},
		"other URI": {URIs: []*url.URL{u1, u3}},
		"dns":       {URIs: []*url.URL{u1}, DNSNames: []string{"acs.example.net"}},
	} {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, ec)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ca.Sign(der, 10, true); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	// A P-384 key is refused.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Request(id, p384); err == nil {
		t.Error("P-384 request made")
	}
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u1}}, p384)
	if _, _, err := ca.Sign(der, 10, false); err == nil {
		t.Error("P-384 CSR signed")
	}
	// A tampered CSR is refused.
	good, _ := Request(id, ec)
	good[len(good)-5] ^= 1
	if _, _, err := ca.Sign(good, 10, false); err == nil {
		t.Error("tampered CSR signed")
	}
}
