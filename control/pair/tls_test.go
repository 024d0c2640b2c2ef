package pair

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/testpki"
)

const (
	asA = 65001
	asB = 65002
)

type fixture struct {
	ca     *testpki.CA
	idA    Identity
	idB    Identity
	idB2   Identity // AS 65003, same CA
	now    time.Time
	period uint32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := testpki.NewCA("psav test alliance")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, now: time.Now(), period: DefaultPeriod}
	f.idA = f.identity(t, ca, asA)
	f.idB = f.identity(t, ca, asB)
	f.idB2 = f.identity(t, ca, 65003)
	return f
}

func (f *fixture) identity(t *testing.T, ca *testpki.CA, asn uint32) Identity {
	t.Helper()
	c, err := ca.IssueACS(asn, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return Identity{ASN: asn, Role: pki.RoleACS, Cert: c, CA: ca.Pool()}
}

// handshake runs a real TLS handshake over loopback TCP (buffered, so an
// alert from one side never blocks it) and returns both connection states
// (client first) and both errors.
func handshake(t *testing.T, client, server *tls.Config) (cs, ss tls.ConnectionState, cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	type result struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		t.Cleanup(func() { s.Close() })
		s.SetDeadline(deadline)
		ts := tls.Server(s, server)
		err = ts.Handshake()
		done <- result{ts.ConnectionState(), err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(deadline)
	tc := tls.Client(c, client)
	cerr = tc.Handshake()
	if cerr != nil {
		c.Close()
	}
	r := <-done
	return tc.ConnectionState(), r.st, cerr, r.err
}

func mustServer(t *testing.T, id Identity) *tls.Config {
	t.Helper()
	c, err := ServerConfig(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustClient(t *testing.T, id Identity, peer uint32) *tls.Config {
	t.Helper()
	c, err := ClientConfig(id, peer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigs(t *testing.T) {
	f := newFixture(t)
	for _, c := range []*tls.Config{mustServer(t, f.idA), mustClient(t, f.idA, asB)} {
		if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 {
			t.Errorf("versions %x…%x, want TLS 1.3 only", c.MinVersion, c.MaxVersion)
		}
		if c.CurvePreferences != nil {
			t.Errorf("CurvePreferences set: %v", c.CurvePreferences)
		}
	}
	if c := mustServer(t, f.idA); c.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v", c.ClientAuth)
	}
	bad := f.idA
	bad.ASN = asB
	if _, err := ServerConfig(bad); err == nil {
		t.Error("identity whose certificate names another AS accepted")
	}
}

func TestCertIdentity(t *testing.T) {
	f := newFixture(t)
	id, err := CertIdentity(f.idA.Cert.Leaf)
	if err != nil || id != (pki.Identity{ASN: asA, Role: pki.RoleACS}) {
		t.Fatalf("CertIdentity = %v, %v", id, err)
	}
	for _, c := range []struct {
		uris   []string
		reason string
	}{
		{nil, ReasonNoIdentity},
		{[]string{"psav:as"}, ReasonNoIdentity},
		{[]string{"psav:as065001:acs"}, ReasonNoIdentity},
		{[]string{"psav:as4294967296:acs"}, ReasonNoIdentity},
		{[]string{"psav:as65001x:acs"}, ReasonNoIdentity},
		{[]string{"psav:AS65001:acs"}, ReasonNoIdentity},
		{[]string{"psav:as65001:acs:name"}, ReasonNoIdentity},
		{[]string{"psav:as65001:abr"}, ReasonNoIdentity},
		{[]string{"psav:as65001:abr:Edge"}, ReasonNoIdentity},
		{[]string{"psav:as65001:root"}, ReasonNoIdentity},
		{[]string{"psav:as65001:acs", "psav:as65002:acs"}, ReasonNoIdentity},
		{[]string{"psav:as65001"}, ReasonRoleless},
	} {
		c2, err := f.ca.Issue(testpki.Request{CommonName: "AS65001", URIs: c.uris})
		if err != nil {
			t.Fatal(err)
		}
		id, err := CertIdentity(c2.Leaf)
		if err == nil {
			t.Errorf("%q: accepted as %v", c.uris, id)
			continue
		}
		if got := ReasonOf(err); got != c.reason {
			t.Errorf("%q: reason %s (%v), want %s", c.uris, got, err, c.reason)
		}
	}
	// The role-less form says what to do instead.
	bare, _ := f.ca.Issue(testpki.Request{CommonName: "x", URIs: []string{"psav:as65001"}})
	if _, err := CertIdentity(bare.Leaf); err == nil || !strings.Contains(err.Error(), "psav:as65001:acs") {
		t.Errorf("role-less: %v", err)
	}
	c, _ := f.ca.Issue(testpki.Request{CommonName: "x", URIs: []string{"https://example.net/", "psav:as4294967295:abr:edge-1"}})
	if id, err := CertIdentity(c.Leaf); err != nil || id != (pki.Identity{ASN: 4294967295, Role: pki.RoleABR, Name: "edge-1"}) {
		t.Errorf("max ASN: %v, %v", id, err)
	}
}

// Each service's rule of docs/wire.md §3.1, as Require applies it.
func TestRequire(t *testing.T) {
	acs := pki.Identity{ASN: asA, Role: pki.RoleACS}
	abr := pki.Identity{ASN: asA, Role: pki.RoleABR, Name: "edge-1"}
	op := pki.Identity{ASN: asA, Role: pki.RoleOp, Name: "alice"}
	for _, c := range []struct {
		id     pki.Identity
		role   pki.Role
		asn    uint32
		reason string // "" = accepted
	}{
		{acs, pki.RoleACS, 0, ""},
		{acs, pki.RoleACS, asA, ""},
		{acs, pki.RoleACS, asB, ReasonWrongAS},
		{abr, pki.RoleACS, 0, ReasonWrongRole},
		{op, pki.RoleACS, asA, ReasonWrongRole},
		{abr, pki.RoleABR, asA, ""},
		{abr, pki.RoleABR, asB, ReasonWrongAS},
		{acs, pki.RoleABR, asA, ReasonWrongRole},
		{op, pki.RoleOp, asA, ""},
		{abr, pki.RoleOp, asA, ReasonWrongRole},
	} {
		err := Require(c.id, c.role, c.asn, "test")
		if c.reason == "" && err != nil || c.reason != "" && (err == nil || ReasonOf(err) != c.reason) {
			t.Errorf("%v as %s of AS%d: %v, want %q", c.id, c.role, c.asn, err, c.reason)
		}
	}
}

// A node's own certificate must carry its configured role: an ABR's
// certificate cannot be an ACS's identity, nor the other way round.
func TestOwnRole(t *testing.T) {
	f := newFixture(t)
	abr, err := f.ca.IssueABR(asA, "edge-1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ServerConfig(Identity{ASN: asA, Role: pki.RoleACS, Cert: abr, CA: f.ca.Pool()}); err == nil {
		t.Error("an ABR certificate served as the ACS")
	}
	if _, err := ClientConfig(Identity{ASN: asA, Role: pki.RoleABR, Cert: abr, CA: f.ca.Pool()}, asA); err != nil {
		t.Errorf("ABR client: %v", err)
	}
	if _, err := ClientConfig(Identity{ASN: asA, Role: pki.RoleABR, Cert: f.idA.Cert, CA: f.ca.Pool()}, asA); err == nil {
		t.Error("an ACS certificate used as an ABR's")
	}
	// An ABR dialling a server that presents an ABR certificate of its
	// own AS (posing as the ACS) is refused in the handshake.
	srv := mustServer(t, f.idA)
	srv.Certificates = []tls.Certificate{abr}
	_, _, cerr, _ := handshake(t, mustClient(t, Identity{ASN: asA, Role: pki.RoleABR, Cert: abr, CA: f.ca.Pool()}, asA), srv)
	if ReasonOf(cerr) != ReasonWrongRole {
		t.Errorf("ABR reached an ABR posing as its ACS: %v", cerr)
	}
}

// Test 1: both ends derive the same S0, equal to an independent exporter
// call with a hand-built context, and the same keys as engine's machine.
func TestSeedBothSides(t *testing.T) {
	f := newFixture(t)
	cs, ss, cerr, serr := handshake(t, mustClient(t, f.idA, asB), mustServer(t, f.idB))
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if cs.Version != tls.VersionTLS13 || ss.Version != tls.VersionTLS13 {
		t.Fatalf("versions %x %x", cs.Version, ss.Version)
	}
	if asn, err := CheckPeer(ss, asA); err != nil || asn != asA {
		t.Fatalf("server sees %d, %v", asn, err)
	}
	if asn, err := CheckPeer(cs, asB); err != nil || asn != asB {
		t.Fatalf("client sees %d, %v", asn, err)
	}

	const e0 = 29000123
	sA, err := DeriveS0(cs, asA, asB, e0)
	if err != nil {
		t.Fatal(err)
	}
	sB, err := DeriveS0(ss, asB, asA, e0)
	if err != nil {
		t.Fatal(err)
	}
	if sA != sB {
		t.Fatalf("S0 differs: %x vs %x", sA, sB)
	}
	if sA == (engine.State{}) {
		t.Fatal("S0 is zero")
	}

	// Independent computation: the context built by hand.
	manual := make([]byte, 16)
	binary.BigEndian.PutUint32(manual[0:], 65001)
	binary.BigEndian.PutUint32(manual[4:], 65002)
	binary.BigEndian.PutUint64(manual[8:], e0)
	want := []byte{0, 0, 0xfd, 0xe9, 0, 0, 0xfd, 0xea, 0, 0, 0, 0, 0x01, 0xba, 0x81, 0xbb}
	if !bytes.Equal(manual, want) {
		t.Fatalf("manual context %x", manual)
	}
	for _, ctx := range [][16]byte{ExporterContext(asA, asB, e0), ExporterContext(asB, asA, e0)} {
		if !bytes.Equal(ctx[:], manual) {
			t.Fatalf("ExporterContext %x, want %x", ctx, manual)
		}
	}
	for i, st := range []tls.ConnectionState{cs, ss} {
		raw, err := st.ExportKeyingMaterial("EXPORTER-psav-state-machine", manual, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, sA[:]) {
			t.Errorf("side %d: independent exporter %x, DeriveS0 %x", i, raw, sA)
		}
	}
	// Another e0 gives another state.
	if s2, _ := DeriveS0(cs, asA, asB, e0+1); s2 == sA {
		t.Error("S0 does not depend on e0")
	}

	// Machines on both sides: keys e0 … e0+3 equal engine's.
	p := Proposal{ID: 1, T0: 0, Period: 60, E0: e0}
	mA, err := Establish(cs, asA, asB, p)
	if err != nil {
		t.Fatal(err)
	}
	mB, err := Establish(ss, asB, asA, p)
	if err != nil {
		t.Fatal(err)
	}
	ref := engine.NewStateMachine(e0, sA)
	at := int64(e0+1) * 60 // epoch e0+1: window e0 … e0+3
	kA, kB := mA.KeysAt(at), mB.KeysAt(at)
	if kA.ASN != asB || kB.ASN != asA {
		t.Errorf("ASNs %d %d", kA.ASN, kB.ASN)
	}
	for e := int64(e0); e <= e0+3; e++ {
		k, _ := ref.Key(uint64(e))
		r0, r1 := k.Halves()
		for side, pk := range []engine.PeerKeys{kA, kB} {
			k0, k1, ok := pk.Key(e)
			if !ok || k0 != r0 || k1 != r1 {
				t.Errorf("side %d epoch %d: key %x%x ok=%v, want %x%x", side, e, k0, k1, ok, r0, r1)
			}
		}
	}
}

// Test 2: refusals.
func TestRefusals(t *testing.T) {
	f := newFixture(t)

	t.Run("other CA", func(t *testing.T) {
		other, err := testpki.NewCA("rogue")
		if err != nil {
			t.Fatal(err)
		}
		rogue := f.identity(t, other, asA)
		rogue.CA = f.ca.Pool()
		// In TLS 1.3 the client may finish before the server refuses its
		// certificate, so only the server's verdict is certain here.
		_, _, _, serr := handshake(t, mustClient(t, rogue, asB), mustServer(t, f.idB))
		if serr == nil {
			t.Error("server accepted a client certificate from another CA")
		}
		// And the other way round: a server with a foreign certificate.
		rogueB := f.identity(t, other, asB)
		rogueB.CA = f.ca.Pool()
		_, _, cerr, _ := handshake(t, mustClient(t, f.idA, asB), mustServer(t, rogueB))
		if cerr == nil {
			t.Error("client accepted a server certificate from another CA")
		}
	})

	t.Run("expired", func(t *testing.T) {
		c, err := f.ca.IssueACS(asA, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		old := Identity{ASN: asA, Role: pki.RoleACS, Cert: c, CA: f.ca.Pool()}
		_, _, cerr, serr := handshake(t, mustClient(t, old, asB), mustServer(t, f.idB))
		// In TLS 1.3 the client finishes before the server has checked its
		// certificate: the server's refusal is what counts.
		if serr == nil {
			t.Errorf("expired client certificate: client %v, server %v", cerr, serr)
		}
		oldB := Identity{ASN: asB, Role: pki.RoleACS, Cert: c, CA: f.ca.Pool()}
		oldB.Cert, _ = f.ca.IssueACS(asB, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		_, _, cerr, _ = handshake(t, mustClient(t, f.idA, asB), mustServer(t, oldB))
		if cerr == nil {
			t.Error("client accepted an expired server certificate")
		}
	})

	t.Run("TLS 1.2", func(t *testing.T) {
		c := mustClient(t, f.idA, asB)
		c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		_, _, cerr, serr := handshake(t, c, mustServer(t, f.idB))
		if cerr == nil || serr == nil {
			t.Errorf("TLS 1.2 client: client %v, server %v", cerr, serr)
		}
	})

	t.Run("ASN mismatch after handshake", func(t *testing.T) {
		// AS 65003 dials the ACS of 65002, which expects 65001 on this
		// session: the handshake succeeds (same alliance CA), the AS check
		// after it refuses, and no state can be derived.
		cs, ss, cerr, serr := handshake(t, mustClient(t, f.idB2, asB), mustServer(t, f.idB))
		if cerr != nil || serr != nil {
			t.Fatalf("handshake: %v %v", cerr, serr)
		}
		var mm *ASNMismatchError
		if _, err := CheckPeer(ss, asA); !errors.As(err, &mm) || mm.Got != 65003 || mm.Want != asA {
			t.Errorf("CheckPeer: %v", err)
		}
		if _, err := DeriveS0(ss, asB, asA, 10); err == nil {
			t.Error("DeriveS0 on a session with the wrong AS")
		}
		if _, err := Establish(cs, 65003, asA, Proposal{ID: 1, Period: 60, E0: 10}); err == nil {
			t.Error("Establish on a session with the wrong AS")
		}
	})

	t.Run("ASN mismatch, client side in handshake", func(t *testing.T) {
		_, _, cerr, _ := handshake(t, mustClient(t, f.idA, asB), mustServer(t, f.idB2))
		var mm *ASNMismatchError
		if !errors.As(cerr, &mm) {
			t.Errorf("client dialling AS65002 reached AS65003: %v", cerr)
		}
	})

	t.Run("own AS", func(t *testing.T) {
		_, _, cerr, serr := handshake(t, mustClient(t, f.idA, 0), mustServer(t, f.identity(t, f.ca, asA)))
		if cerr == nil && serr == nil {
			t.Error("session between two certificates of the same AS")
		}
	})
}

// Test 5: the default key exchange is the hybrid post-quantum group.
func TestGroupName(t *testing.T) {
	f := newFixture(t)
	cs, ss, cerr, serr := handshake(t, mustClient(t, f.idA, asB), mustServer(t, f.idB))
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	if GroupName(cs) != GroupName(ss) {
		t.Fatalf("sides disagree: %s %s", GroupName(cs), GroupName(ss))
	}
	if g := GroupName(cs); g != "X25519MLKEM768" {
		t.Skipf("runtime negotiated %s, not X25519MLKEM768 (GODEBUG tlsmlkem=0?)", g)
	}
}
