package rpki

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/psavd/psavd/control/rpki/rpkitest"
	"github.com/psavd/psavd/internal/testpki"
)

// Interop with a real RTR cache: StayRTR serving a JSON VRP file the test
// writes (control/rpki/rpkitest).
func findStayRTR(t *testing.T) string { return rpkitest.Binary(t) }

func writeVRPs(t *testing.T, path string, vrps []VRP) {
	t.Helper()
	out := make([]rpkitest.VRP, len(vrps))
	for i, v := range vrps {
		out[i] = rpkitest.VRP(v)
	}
	rpkitest.WriteVRPs(t, path, out)
}

func startStayRTR(t *testing.T, bin, file string, extra ...string) string {
	t.Helper()
	return rpkitest.Start(t, bin, file, nil, extra...)
}

func TestStayRTRInterop(t *testing.T) {
	bin := findStayRTR(t)
	mp := netip.MustParsePrefix
	file := filepath.Join(t.TempDir(), "vrps.json")
	writeVRPs(t, file, []VRP{
		{mp("192.0.2.0/24"), 24, 64500},
		{mp("2001:db8::/32"), 48, 64500},
		{mp("198.51.100.0/24"), 24, 64501},
	})
	addr := startStayRTR(t, bin, file)

	updates := make(chan *Validator, 64)
	c, err := NewClient(Config{Addr: addr, Retry: 200 * time.Millisecond,
		OnUpdate: func(v *Validator) { updates <- v }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 3 })
	if c.Validator() == nil || v.Version() != 1 {
		t.Fatalf("snapshot version %d, Validator %v", v.Version(), c.Validator())
	}
	check := func(v *Validator, asn uint32, prefixes []netip.Prefix, wantOK bool, wantUnc []netip.Prefix) {
		t.Helper()
		ok, unc := v.Covered(asn, prefixes)
		if ok != wantOK || !slices.Equal(unc, wantUnc) {
			t.Errorf("Covered(AS%d, %v) = %v %v, want %v %v", asn, prefixes, ok, unc, wantOK, wantUnc)
		}
	}
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24"), mp("2001:db8::/32"), mp("2001:db8:ff::/48")}, true, nil)
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24"), mp("203.0.113.0/24")}, false, []netip.Prefix{mp("203.0.113.0/24")})                       // uncovered
	check(v, 64500, []netip.Prefix{mp("192.0.2.128/25"), mp("2001:db8::/49")}, false, []netip.Prefix{mp("192.0.2.128/25"), mp("2001:db8::/49")}) // past maxLength
	check(v, 64501, []netip.Prefix{mp("192.0.2.0/24"), mp("198.51.100.0/24")}, false, []netip.Prefix{mp("192.0.2.0/24")})                        // wrong ASN
	serial := v.Serial()

	// Change the file: StayRTR re-reads it within a second, bumps its serial
	// and sends Serial Notify; the client answers with Serial Query and gets
	// the delta (a withdrawal and an announcement).
	writeVRPs(t, file, []VRP{
		{mp("2001:db8::/32"), 48, 64500},
		{mp("198.51.100.0/24"), 24, 64501},
		{mp("203.0.113.0/24"), 24, 64500},
	})
	v2 := waitFor(t, updates, func(v *Validator) bool { return v.Serial() != serial })
	check(v2, 64500, []netip.Prefix{mp("203.0.113.0/24"), mp("2001:db8::/32")}, true, nil)
	check(v2, 64500, []netip.Prefix{mp("192.0.2.0/24")}, false, []netip.Prefix{mp("192.0.2.0/24")})
	if v2.Len() != 3 || v2.SessionID() != v.SessionID() {
		t.Errorf("after update: %d VRPs, session %d→%d", v2.Len(), v.SessionID(), v2.SessionID())
	}
	st := c.Status()
	if st.Notifies == 0 || st.SerialQueries == 0 || st.Resets != 1 || st.ErrorsSent != 0 || st.ErrorsReceived != 0 {
		t.Errorf("update did not come through Serial Notify/Serial Query: %+v", st)
	}
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24")}, true, nil) // old snapshot unchanged
}

// TestStayRTRVersion0 checks the version fallback against StayRTR limited
// to protocol version 0 (RFC 6810).
func TestStayRTRVersion0(t *testing.T) {
	bin := findStayRTR(t)
	file := filepath.Join(t.TempDir(), "vrps.json")
	writeVRPs(t, file, []VRP{{netip.MustParsePrefix("192.0.2.0/24"), 24, 64500}})
	addr := startStayRTR(t, bin, file, "-protocol", "0")
	updates := make(chan *Validator, 16)
	c, err := NewClient(Config{Addr: addr, Retry: 200 * time.Millisecond,
		OnUpdate: func(v *Validator) { updates <- v }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 1 })
	if v.Version() != 0 {
		t.Fatalf("version %d, want 0", v.Version())
	}
	if ok, _ := v.Covered(64500, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}); !ok {
		t.Fatal("not covered")
	}
}

func waitFor(t *testing.T, ch chan *Validator, cond func(*Validator) bool) *Validator {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case v := <-ch:
			if cond(v) {
				return v
			}
		case <-timeout:
			t.Fatal("no matching snapshot within 20 s")
		}
	}
}

// TestStayRTROverTLS runs the session over TLS (RFC 8210 §9.3) against
// StayRTR's TLS listener: the cache's certificate verified for its name,
// a withdrawal picked up through Serial Notify; a client that trusts
// another CA, or expects another name, never gets data.
func TestStayRTROverTLS(t *testing.T) {
	bin := findStayRTR(t)
	dir := t.TempDir()
	pki, err := testpki.NewServerPKI(dir, "rtr.example.test")
	if err != nil {
		t.Fatal(err)
	}
	mp := netip.MustParsePrefix
	file := filepath.Join(dir, "vrps.json")
	writeVRPs(t, file, []VRP{{mp("192.0.2.0/24"), 24, 64500}, {mp("198.51.100.0/24"), 24, 64501}})
	addr := rpkitest.Start(t, bin, file, &rpkitest.TLS{CertFile: pki.CertFile, KeyFile: pki.KeyFile})

	run := func(cfg *tls.Config) (*Client, chan *Validator) {
		t.Helper()
		updates := make(chan *Validator, 64)
		c, err := NewClient(Config{Addr: addr, TLS: cfg, Retry: 200 * time.Millisecond,
			OnUpdate: func(v *Validator) { updates <- v }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		return c, updates
	}
	c, updates := run(&tls.Config{ServerName: "rtr.example.test", RootCAs: pki.CAPool})
	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 2 })
	if ok, _ := v.Covered(64500, []netip.Prefix{mp("192.0.2.0/24")}); !ok {
		t.Fatal("192.0.2.0/24 not covered for AS64500 over TLS")
	}
	if st := c.Status(); st.Transport != "tls" || !st.Connected {
		t.Fatalf("status %+v", st)
	}
	serial := v.Serial()
	writeVRPs(t, file, []VRP{{mp("198.51.100.0/24"), 24, 64501}}) // withdraw 192.0.2.0/24
	v2 := waitFor(t, updates, func(v *Validator) bool { return v.Serial() != serial })
	if ok, _ := v2.Covered(64500, []netip.Prefix{mp("192.0.2.0/24")}); ok {
		t.Fatal("withdrawn VRP still covers")
	}

	other, err := testpki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"unknown CA": {ServerName: "rtr.example.test", RootCAs: other.Pool()},
		"wrong name": {ServerName: "other.example.test", RootCAs: pki.CAPool},
	} {
		bad, _ := run(cfg)
		deadline := time.Now().Add(20 * time.Second)
		for bad.Status().LastError == "" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if st := bad.Status(); bad.Validator() != nil || st.Updates != 0 || !strings.Contains(st.LastError, "tls") {
			t.Errorf("%s: %+v", name, st)
		}
	}
}

// TestStayRTROverSSH runs the session over SSH (RFC 8210 §9.2, subsystem
// rpki-rtr) against StayRTR's SSH listener with key authentication; a
// client that expects another host key never gets data.
func TestStayRTROverSSH(t *testing.T) {
	bin := findStayRTR(t)
	dir := t.TempDir()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostDER, err := x509.MarshalPKCS8PrivateKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(dir, "host.pem")
	if err := os.WriteFile(hostFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: hostDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientSigner, err := ssh.NewSignerFromKey(clientPriv)
	if err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authFile, ssh.MarshalAuthorizedKey(clientSigner.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	mp := netip.MustParsePrefix
	file := filepath.Join(dir, "vrps.json")
	writeVRPs(t, file, []VRP{{mp("192.0.2.0/24"), 24, 64500}})
	addr := rpkitest.Start(t, bin, file, &rpkitest.SSH{HostKeyFile: hostFile, AuthorizedKeysFile: authFile, User: "rpki"})

	run := func(hostKey ssh.PublicKey) (*Client, chan *Validator) {
		updates := make(chan *Validator, 64)
		c, err := NewClient(Config{Addr: addr, Retry: 200 * time.Millisecond,
			SSH:      &ssh.ClientConfig{User: "rpki", Auth: []ssh.AuthMethod{ssh.PublicKeys(clientSigner)}, HostKeyCallback: ssh.FixedHostKey(hostKey)},
			OnUpdate: func(v *Validator) { updates <- v }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		return c, updates
	}
	c, updates := run(hostSigner.PublicKey())
	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 1 })
	if ok, _ := v.Covered(64500, []netip.Prefix{mp("192.0.2.0/24")}); !ok {
		t.Fatal("not covered over SSH")
	}
	serial := v.Serial()
	writeVRPs(t, file, []VRP{{mp("198.51.100.0/24"), 24, 64500}})
	v2 := waitFor(t, updates, func(v *Validator) bool { return v.Serial() != serial })
	if ok, _ := v2.Covered(64500, []netip.Prefix{mp("192.0.2.0/24")}); ok || v2.Len() != 1 {
		t.Fatal("withdrawal not seen over SSH")
	}
	if st := c.Status(); st.Transport != "ssh" || !st.Connected {
		t.Fatalf("status %+v", st)
	}
	bad, _ := run(clientSigner.PublicKey()) // not the host's key
	deadline := time.Now().Add(20 * time.Second)
	for bad.Status().LastError == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := bad.Status(); bad.Validator() != nil || !strings.Contains(st.LastError, "ssh") {
		t.Errorf("wrong host key: %+v", st)
	}
}
