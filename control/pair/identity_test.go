package pair

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/internal/testpki"
)

func TestLoadIdentity(t *testing.T) {
	ca, err := testpki.NewCA("alliance")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueACS(65001, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := filepath.Join(dir, "abr.pem"), filepath.Join(dir, "abr.key")
	if err := testpki.WriteFiles(cert, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", ca.PEM())

	id, err := LoadIdentity(65001, pki.RoleACS, certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if id.ASN != 65001 || id.CA == nil || len(id.Cert.Certificate) == 0 {
		t.Fatalf("identity %+v", id)
	}
	if _, err := ServerConfig(id); err != nil {
		t.Fatalf("loaded identity not usable: %v", err)
	}
	if _, err := LoadIdentity(65002, pki.RoleACS, certFile, keyFile, caFile); err == nil || !strings.Contains(err.Error(), "names psav:as65001:acs") {
		t.Fatalf("wrong AS accepted: %v", err)
	}
	if _, err := LoadIdentity(65001, pki.RoleABR, certFile, keyFile, caFile); err == nil || !strings.Contains(err.Error(), "needs an abr certificate") {
		t.Fatalf("an ACS certificate loaded as an ABR's: %v", err)
	}
	if _, err := LoadIdentity(65001, pki.RoleACS, certFile, keyFile, certFile+".missing"); err == nil {
		t.Fatal("missing CA accepted")
	}
	if _, err := LoadIdentity(65001, pki.RoleACS, certFile, keyFile, keyFile); err == nil {
		t.Fatal("a key file accepted as CA bundle")
	}
}
