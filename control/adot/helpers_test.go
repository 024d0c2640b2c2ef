package adot

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	testServerName = "ns.example.test"
	testZone       = "map-server.example.test."
)

// testPKI is a throw-away CA and a server certificate it signed.
type testPKI struct {
	caPool   *x509.CertPool
	caPEM    []byte
	leaf     *x509.Certificate
	cert     tls.Certificate
	certFile string // leaf PEM
	keyFile  string
	caFile   string
}

func newPKI(t testing.TB, dir string, names ...string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "psavd test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := &testPKI{caPool: x509.NewCertPool(), leaf: leaf}
	p.caPool.AddCert(ca)
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	p.cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if dir != "" {
		p.certFile = filepath.Join(dir, "server.crt")
		p.keyFile = filepath.Join(dir, "server.key")
		p.caFile = filepath.Join(dir, "ca.crt")
		for f, b := range map[string][]byte{p.certFile: certPEM, p.keyFile: keyPEM, p.caFile: p.caPEM} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// zoneText is the test zone: i.map-server.example.test has 192.0.2.(10+i)
// and 2001:db8::(10+i) for i in 0..3.
func zoneText() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 300\n", testZone)
	fmt.Fprintf(&b, "@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n")
	fmt.Fprintf(&b, "@ IN NS ns.example.test.\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "%d IN A 192.0.2.%d\n%d IN AAAA 2001:db8::%d\n", i, 10+i, i, 10+i)
	}
	return b.String()
}

// bind is a named(8) started by a test.
type bind struct {
	dir       string
	pki       *testPKI
	tls13Addr string
	tls12Addr string
	stderr    *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var bindOnce struct {
	sync.Mutex
	b *bind
}

// startBIND starts one named for the whole test binary run on first use
// (killed by TestMain), or skips if named is not installed.
func startBIND(t *testing.T) *bind {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/named"); e == nil {
			named = "/usr/sbin/named"
		} else {
			t.Skip("named (BIND 9) not installed: apt-get install bind9; skipping BIND interop tests")
		}
	}
	bindOnce.Lock()
	defer bindOnce.Unlock()
	if bindOnce.b != nil {
		return bindOnce.b
	}
	dir, err := os.MkdirTemp("", "adot-bind-")
	if err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t, dir, testServerName)
	p13, p12 := freePort(t), freePort(t)
	conf := fmt.Sprintf(`
options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d tls local-tls { 127.0.0.1; };
	listen-on port %[3]d tls tls12-only { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	dnssec-validation no;
	tcp-initial-timeout 25;
	tcp-idle-timeout 10;
	tcp-keepalive-timeout 10;
};
controls { };
tls local-tls {
	key-file "%[1]s/server.key";
	cert-file "%[1]s/server.crt";
	protocols { TLSv1.3; };
	session-tickets yes;
};
tls tls12-only {
	key-file "%[1]s/server.key";
	cert-file "%[1]s/server.crt";
	protocols { TLSv1.2; };
};
zone "map-server.example.test" {
	type primary;
	file "%[1]s/zone.db";
};
`, dir, p13, p12)
	if err := os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zone.db"), []byte(zoneText()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(named, "-g", "-c", filepath.Join(dir, "named.conf"))
	if os.Geteuid() == 0 {
		cmd.Args = append(cmd.Args, "-u", "root")
	}
	b := &bind{dir: dir, pki: pki, stderr: &lockedBuf{},
		tls13Addr: "127.0.0.1:" + strconv.Itoa(p13), tls12Addr: "127.0.0.1:" + strconv.Itoa(p12)}
	cmd.Stdout, cmd.Stderr = b.stderr, b.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	cleanups = append(cleanups, func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = os.RemoveAll(dir)
	})
	// Wait until it answers over TLS.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("named exited early:\n%s", b.stderr)
		default:
		}
		if probeTLS(b.tls13Addr, pki.caPool) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not answer on %s within 30 s:\n%s", b.tls13Addr, b.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	bindOnce.b = b
	return b
}

func probeTLS(addr string, pool *x509.CertPool) error {
	c, err := NewClient(Config{Servers: []string{addr}, ServerName: testServerName, RootCAs: pool,
		DialTimeout: time.Second, HandshakeTimeout: time.Second, QueryTimeout: time.Second, MaxCacheEntries: -1})
	if err != nil {
		return err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("0."+testZone, dns.TypeA)
	_, _, err = c.Exchange(context.Background(), m)
	return err
}

// cleanups run after all tests (TestMain), so one named serves every test.
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}
