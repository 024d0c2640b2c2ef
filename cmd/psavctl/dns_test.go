package main

import (
	"crypto/tls"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/internal/testpki"
)

// psavctl dns against our own DNS-over-TLS server on loopback: answers, one
// persistent connection for -count 3, and a resumed TLS session for a new
// connection (-new-conn).
func TestDNSCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "psavctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	pki, err := testpki.NewServerPKI(dir, "ns.example.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, caFile := pki.Cert, pki.CAFile
	zone, err := adot.ZoneFromMap("map-server.example.test.", 60, map[string][]string{
		"0.map-server.example.test.": {"A 192.0.2.1", "A 192.0.2.2", "AAAA 2001:db8::1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: zone})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"dns", "-server", srv.Addr().String(), "-ca", caFile}, args...)...).CombinedOutput()
		return string(out), err
	}

	out, err := run("-tls-name", "ns.example.test", "-count", "3", "0.map-server.example.test", "A")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"A\t192.0.2.1", "A\t192.0.2.2", "query 1/3: session new, connection new, TLS 1.3",
		"query 2/3: session new, connection reused", "query 3/3: session new, connection reused"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	out, err = run("-tls-name", "ns.example.test", "-count", "2", "-new-conn", "0.map-server.example.test", "AAAA")
	if err != nil || !strings.Contains(out, "2001:db8::1") || !strings.Contains(out, "query 2/2: session resumed, connection new") {
		t.Errorf("-new-conn: %v\n%s", err, out)
	}
	// A wrong name fails closed, with the cause.
	out, err = run("-tls-name", "other.example.test", "0.map-server.example.test")
	if err == nil || !strings.Contains(out, "failed (tls)") {
		t.Errorf("wrong TLS name: %v\n%s", err, out)
	}
}
