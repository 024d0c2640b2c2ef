package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/psavd/psavd/internal/testpki"
)

func TestRPKISection(t *testing.T) {
	base := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n")
	c, err := Parse("r.toml", []byte(base+"[rpki]\nserver = \"127.0.0.1:3323\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.RPKI.Policy != RPKIFailClosed || c.RPKI.TLS != nil || c.RPKI.Server != "127.0.0.1:3323" {
		t.Fatalf("plain TCP form: %+v", c.RPKI)
	}
	pki, err := testpki.NewServerPKI(t.TempDir(), "rtr.example.test")
	if err != nil {
		t.Fatal(err)
	}
	client, err := pki.CA.IssueServer("client.example.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ccert, ckey := dir+"/c.pem", dir+"/c.key"
	if err := testpki.WriteFiles(client, ccert, ckey); err != nil {
		t.Fatal(err)
	}
	tlsSection := "[rpki]\nserver = \"127.0.0.1:3324\"\npolicy = \"fail_open\"\ntransport = \"tls\"\ntls_server_name = \"rtr.example.test\"\ntls_ca = \"" + pki.CAFile + "\"\n"
	c, err = Parse("r.toml", []byte(base+tlsSection+"tls_cert = \""+ccert+"\"\ntls_key = \""+ckey+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RPKI; r.Policy != RPKIFailOpen || r.TLS == nil || r.TLS.ServerName != "rtr.example.test" || r.TLS.RootCAs == nil || len(r.TLS.Certificates) != 1 {
		t.Fatalf("TLS form: %+v", r)
	}
	for _, bad := range []struct{ name, section, key, reason string }{
		{"no server", "[rpki]\npolicy = \"fail_open\"\n", "rpki.server", "missing"},
		{"bad server", "[rpki]\nserver = \"rtr\"\n", "rpki.server", "host:port"},
		{"bad policy", "[rpki]\nserver = \"127.0.0.1:3323\"\npolicy = \"open\"\n", "rpki.policy", "not one of"},
		{"bad transport", "[rpki]\nserver = \"127.0.0.1:3323\"\ntransport = \"udp\"\n", "rpki.transport", "not one of"},
		{"tls key on tcp", "[rpki]\nserver = \"127.0.0.1:3323\"\ntls_ca = \"" + pki.CAFile + "\"\n", "rpki.tls_ca", "only with transport"},
		{"missing ca file", "[rpki]\nserver = \"127.0.0.1:3323\"\ntransport = \"tls\"\ntls_ca = \"/nonexistent/ca.pem\"\n", "rpki.tls_ca", "no such file"},
		{"ca not PEM", "[rpki]\nserver = \"127.0.0.1:3323\"\ntransport = \"tls\"\ntls_ca = \"" + ckey + "\"\n", "rpki.tls_ca", "no PEM certificate"},
		{"cert without key", tlsSection + "tls_cert = \"" + ccert + "\"\n", "rpki.tls_key", "missing"},
		{"key without cert", tlsSection + "tls_key = \"" + ckey + "\"\n", "rpki.tls_cert", "missing"},
		{"cert and key mismatch", tlsSection + "tls_cert = \"" + pki.CertFile + "\"\ntls_key = \"" + ckey + "\"\n", "rpki.tls_cert", "private key does not match"},
		{"not an ACS", "[rpki]\nserver = \"127.0.0.1:3323\"\n", "rpki", "only an ACS"},
	} {
		text := base + bad.section
		if bad.name == "not an ACS" {
			text = good + bad.section
		}
		_, err := Parse("r.toml", []byte(text))
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%s: want Problems, got %v", bad.name, err)
		}
		found := false
		for _, p := range ps {
			if p.File == "r.toml" && p.Key == bad.key && strings.Contains(p.Reason, bad.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no problem at %s with %q in %v", bad.name, bad.key, bad.reason, ps)
		}
	}
}
