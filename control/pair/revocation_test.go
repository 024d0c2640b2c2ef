package pair

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/psavd/psavd/internal/testpki"
)

// A certificate in a CRL of the alliance CA is refused at the handshake,
// both as a client and as a server; a CRL put in force through Live
// applies from the next handshake on; a CRL another CA signed is refused.
func TestRevocation(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, f.ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crl, err := f.ca.CRLPEM(1, f.idA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := LoadRevocations([]string{write("ca.crl", crl)}, caFile)
	if err != nil {
		t.Fatal(err)
	}

	// B serves with the CRL, by way of Live: before SetRevocations A gets
	// in, after it A is refused.
	idB := f.idB
	idB.Live = NewCredentials(idB.Cert, idB.CA)
	srv := mustServer(t, idB)
	if _, _, cerr, serr := handshake(t, mustClient(t, f.idA, asB), srv); cerr != nil || serr != nil {
		t.Fatalf("before the CRL: %v %v", cerr, serr)
	}
	idB.Live.SetRevocations(revs)
	if _, _, _, serr := handshake(t, mustClient(t, f.idA, asB), srv); !errors.Is(serr, ErrRevoked) {
		t.Fatalf("a revoked client was served: %v", serr)
	}
	// Not revoked: AS 65003 still gets in.
	if _, _, cerr, serr := handshake(t, mustClient(t, f.idB2, asB), srv); cerr != nil || serr != nil {
		t.Fatalf("an unrevoked client: %v %v", cerr, serr)
	}
	// As a client: B refuses A's revoked server certificate.
	cl := f.idB
	cl.CRL = revs
	if _, _, cerr, _ := handshake(t, mustClient(t, cl, asA), mustServer(t, f.idA)); !errors.Is(cerr, ErrRevoked) {
		t.Fatalf("a revoked server was accepted: %v", cerr)
	}
	// A CRL by another CA is not taken.
	other, err := testpki.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := other.CRLPEM(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRevocations([]string{write("rogue.crl", rogue)}, caFile); err == nil {
		t.Fatal("a CRL of another CA was loaded")
	}
	if r, err := LoadRevocations(nil, caFile); r != nil || err != nil {
		t.Fatalf("no files: %v %v", r, err)
	}
}
