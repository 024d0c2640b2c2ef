package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

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
	// RTR over SSH: the client key and the cache's pinned host key.
	_, clientKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	sshKey, hostKey := dir+"/id", dir+"/host.pub"
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshHost, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sshKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostKey, ssh.MarshalAuthorizedKey(sshHost), 0o644); err != nil {
		t.Fatal(err)
	}
	sshSection := "[rpki]\nserver = \"127.0.0.1:3325\"\ntransport = \"ssh\"\nssh_key = \"" + sshKey + "\"\nssh_host_key = \"" + hostKey + "\"\n"
	c, err = Parse("r.toml", []byte(base+sshSection))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RPKI; r.SSH == nil || r.SSH.User != "rpki" || len(r.SSH.Auth) != 1 || r.SSH.HostKeyCallback == nil || r.TLS != nil {
		t.Fatalf("SSH form: %+v", r)
	}
	if r := c.RPKI.SSH; r.HostKeyCallback("127.0.0.1:3325", nil, sshHost) != nil {
		t.Fatal("the pinned host key is refused")
	}
	for _, bad := range []struct{ name, section, key, reason string }{
		{"ssh without key", "[rpki]\nserver = \"127.0.0.1:3325\"\ntransport = \"ssh\"\nssh_host_key = \"" + hostKey + "\"\n", "rpki.ssh_key", "missing"},
		{"ssh without host key", "[rpki]\nserver = \"127.0.0.1:3325\"\ntransport = \"ssh\"\nssh_key = \"" + sshKey + "\"\n", "rpki.ssh_host_key", "missing"},
		{"ssh key not a key", "[rpki]\nserver = \"127.0.0.1:3325\"\ntransport = \"ssh\"\nssh_key = \"" + hostKey + "\"\nssh_host_key = \"" + hostKey + "\"\n", "rpki.ssh_key", "host.pub"},
		{"host key not a public key", "[rpki]\nserver = \"127.0.0.1:3325\"\ntransport = \"ssh\"\nssh_key = \"" + sshKey + "\"\nssh_host_key = \"" + sshKey + "\"\n", "rpki.ssh_host_key", "id"},
		{"ssh key on tls", tlsSection + "ssh_user = \"rpki\"\n", "rpki.ssh_user", "only with transport = \"ssh\""},
		{"tls key on ssh", sshSection + "tls_server_name = \"rtr\"\n", "rpki.tls_server_name", "only with transport = \"tls\""},
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
