package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPeerCertificates(t *testing.T) {
	ca, err := NewCA("alliance")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "alliance" {
		t.Fatalf("CA %+v", ca.Cert.Subject)
	}
	as, err := ca.IssueACS(65001, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Leaf.URIs) != 1 || as.Leaf.URIs[0].String() != "psav:as65001:acs" {
		t.Fatalf("IssueACS: URIs %v", as.Leaf.URIs)
	}
	nb, na := time.Now().Add(-2*time.Hour).Truncate(time.Second), time.Now().Add(time.Hour).Truncate(time.Second)
	op, err := ca.IssueURI("psav:as65001:op:alice", nb, na)
	if err != nil {
		t.Fatal(err)
	}
	if len(op.Leaf.URIs) != 1 || op.Leaf.URIs[0].String() != "psav:as65001:op:alice" ||
		!op.Leaf.NotBefore.Equal(nb) || !op.Leaf.NotAfter.Equal(na) {
		t.Fatalf("IssueURI: URIs %v, %v–%v", op.Leaf.URIs, op.Leaf.NotBefore, op.Leaf.NotAfter)
	}
	for _, c := range []tls.Certificate{as, op} {
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("%v for usage %v: %v", c.Leaf.URIs, u, err)
			}
		}
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("verified by another CA")
	}
	if ACSURI(4294967295) != "psav:as4294967295:acs" || ABRURI(1, "b-1") != "psav:as1:abr:b-1" || OpURI(2, "o") != "psav:as2:op:o" {
		t.Fatal(ACSURI(4294967295), ABRURI(1, "b-1"), OpURI(2, "o"))
	}
}

// A server PKI written to files works for a TLS 1.3 handshake by name.
func TestServerPKI(t *testing.T) {
	dir := t.TempDir()
	p, err := NewServerPKI(dir, "ns.example.test", "other.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if p.Leaf.Subject.CommonName != "ns.example.test" || len(p.Leaf.DNSNames) != 2 || len(p.Leaf.URIs) != 0 {
		t.Fatalf("leaf %v %v %v", p.Leaf.Subject, p.Leaf.DNSNames, p.Leaf.URIs)
	}
	if _, err := p.Leaf.Verify(x509.VerifyOptions{Roots: p.CAPool, DNSName: "other.example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Leaf.Verify(x509.VerifyOptions{Roots: p.CAPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("a server certificate verified for client authentication")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{ServerName: "ns.example.test", RootCAs: pool, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := NewServerPKI(""); err == nil {
		t.Fatal("no name accepted")
	}
}
