package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertRequestAndCA(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	out := mustCtl(t, "ca", "init", "-out-cert", p("ca.pem"), "-out-key", p("ca.key"), "-name", "lab CA", "-days", "30")
	if !strings.HasPrefix(out, `CA "lab CA", valid until `) {
		t.Errorf("ca init printed %q", out)
	}
	if st, _ := os.Stat(p("ca.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v", st.Mode())
	}
	if code, _, _ := ctl("ca", "init", "-out-cert", p("ca.pem"), "-out-key", p("ca2.key")); code == 0 {
		t.Error("ca init overwrote the CA certificate")
	}
	caPEM, _ := os.ReadFile(p("ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	load := func(f string) *x509.Certificate {
		b, _ := os.ReadFile(f)
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", f)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		return c
	}
	for _, c := range []struct{ alg, role, name, uri string }{
		{"ecdsa-p256", "acs", "", "psav:as65001:acs"},
		{"ed25519", "abr", "edge-1", "psav:as65001:abr:edge-1"},
		{"ecdsa-p256", "op", "alice", "psav:as65001:op:alice"},
	} {
		key, csr, crt := p(c.role+".key"), p(c.role+".csr"), p(c.role+".pem")
		mustCtl(t, "key", "generate", "-alg", c.alg, "-out", key)
		args := []string{"cert", "request", "-role", c.role, "-asn", "65001", "-key", key, "-out", csr}
		if c.name != "" {
			args = append(args, "-name", c.name)
		}
		if got := strings.TrimSpace(mustCtl(t, args...)); got != c.uri {
			t.Errorf("cert request printed %q, want %q", got, c.uri)
		}
		if out := mustCtl(t, "ca", "sign", "-ca", p("ca.pem"), "-ca-key", p("ca.key"), "-csr", csr, "-out", crt); !strings.Contains(out, c.uri+", serial ") {
			t.Errorf("ca sign printed %q", out)
		}
		if cert := load(crt); len(cert.URIs) != 1 || cert.URIs[0].String() != c.uri {
			t.Errorf("certificate SANs %v, want %s", cert.URIs, c.uri)
		}
	}
	// Refusals: ABR without a name, ACS with one, bad role, a bad name.
	for _, args := range [][]string{
		{"-role", "abr"}, {"-role", "acs", "-name", "x"}, {"-role", "router"}, {"-role", "op", "-name", "Alice"},
	} {
		a := append([]string{"cert", "request", "-asn", "65001", "-key", p("acs.key"), "-out", p("x.csr")}, args...)
		if code, _, _ := ctl(a...); code == 0 {
			t.Errorf("cert request %v accepted", args)
		}
	}
	// -legacy is gone: every certificate names a role.
	if code, _, _ := ctl("cert", "request", "-legacy", "-asn", "65002", "-key", p("acs.key"), "-out", p("legacy.csr")); code != 2 {
		t.Errorf("cert request -legacy: exit %d, want 2 (unknown flag)", code)
	}
	if code, _, _ := ctl("ca", "sign", "-legacy", "-ca", p("ca.pem"), "-ca-key", p("ca.key"), "-csr", p("acs.csr"), "-out", p("x.pem")); code != 2 {
		t.Errorf("ca sign -legacy: exit %d, want 2 (unknown flag)", code)
	}
	// A CSR with the role-less psav:as<N> (from some other tool) is refused.
	keyPEM, _ := os.ReadFile(p("acs.key"))
	blk, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	bare, _ := url.Parse("psav:as65002")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{bare}}, k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p("bare.csr"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
	if code, _, errs := ctl("ca", "sign", "-ca", p("ca.pem"), "-ca-key", p("ca.key"), "-csr", p("bare.csr"), "-out", p("x.pem")); code == 0 || !strings.Contains(errs, "no role") {
		t.Errorf("a bare psav:as<N> CSR was signed (exit %d): %s", code, errs)
	}
	// A CA key that is not the CA's.
	mustCtl(t, "key", "generate", "-alg", "ecdsa-p256", "-out", p("wrong.key"))
	if code, _, _ := ctl("ca", "sign", "-ca", p("ca.pem"), "-ca-key", p("wrong.key"), "-csr", p("acs.csr"), "-out", p("x.pem")); code == 0 {
		t.Error("signed with a key that is not the CA's")
	}
}
