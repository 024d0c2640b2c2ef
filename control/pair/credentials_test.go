package pair

import (
	"bytes"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testpki"
)

// Live credentials: a renewed certificate is presented at the next
// handshake, and a new trust-anchor bundle decides the next handshake, on
// both sides, with the tls.Configs made once.
func TestLiveCredentials(t *testing.T) {
	f := newFixture(t)
	server := f.idA
	server.Live = NewCredentials(f.idA.Cert, f.idA.CA)
	client := f.idB
	client.Live = NewCredentials(f.idB.Cert, f.idB.CA)
	sc, cc := mustServer(t, server), mustClient(t, client, asA)

	cs, ss, cerr, serr := handshake(t, cc, sc)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: %v / %v", cerr, serr)
	}
	if !bytes.Equal(cs.PeerCertificates[0].Raw, f.idA.Cert.Certificate[0]) || !bytes.Equal(ss.PeerCertificates[0].Raw, f.idB.Cert.Certificate[0]) {
		t.Fatal("not the configured certificates")
	}

	// Renewal: a new certificate for AS A from the same CA.
	renewed, err := f.ca.IssueACS(asA, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !server.Live.Set(renewed, f.idA.CA) || server.Live.Set(renewed, f.idA.CA) {
		t.Fatal("Set reports no change for a new certificate, or a change for the same one")
	}
	cs, _, cerr, serr = handshake(t, cc, sc)
	if cerr != nil || serr != nil || !bytes.Equal(cs.PeerCertificates[0].Raw, renewed.Certificate[0]) {
		t.Fatalf("renewed certificate not presented: %v / %v", cerr, serr)
	}

	// A new alliance CA on the server: the client's old certificate is
	// refused at the next handshake.
	other, err := testpki.NewCA("another alliance")
	if err != nil {
		t.Fatal(err)
	}
	server.Live.Set(renewed, other.Pool())
	if _, _, _, serr = handshake(t, cc, sc); serr == nil {
		t.Fatal("a client of the old CA still accepted")
	}
	// And on the client: the server's chain no longer verifies.
	server.Live.Set(renewed, f.idA.CA)
	client.Live.Set(f.idB.Cert, other.Pool())
	if _, _, cerr, _ = handshake(t, cc, sc); cerr == nil {
		t.Fatal("the client still trusts the old CA")
	}
}
