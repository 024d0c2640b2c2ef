// Package bindtest starts a throw-away BIND 9 named(8) on loopback for tests
// and benchmarks: a fresh CA and server certificate, a TLS 1.3 DoT listener
// with session tickets, optionally a TLS 1.2-only listener and a clear
// UDP/TCP listener, and one authoritative zone. It is the single copy of the
// launcher used by control/adot's interop tests and bench/dot.
package bindtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Defaults for Options.
const (
	DefaultServerName = "ns.example.test"
	DefaultZone       = "map-server.example.test."
)

// ErrNoNamed is returned by Start (and FindNamed) when named is not installed.
var ErrNoNamed = errors.New("bindtest: named (BIND 9) not installed: apt-get install bind9")

// FindNamed returns the path of named: $PATH, then /usr/sbin/named.
func FindNamed() (string, error) {
	if p, err := exec.LookPath("named"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/named"); err == nil {
		return "/usr/sbin/named", nil
	}
	return "", ErrNoNamed
}

// PKI is a throw-away CA and a server certificate it signed.
type PKI struct {
	CAPool   *x509.CertPool
	CAPEM    []byte
	Leaf     *x509.Certificate
	Cert     tls.Certificate
	CertFile string // leaf PEM ("" unless written to a directory)
	KeyFile  string
	CAFile   string
}

// NewPKI makes a P-256 CA and a server certificate for names (names[0] is
// also the CN), valid from an hour ago for a day. If dir is not empty the
// leaf, key and CA are written there as server.crt, server.key and ca.crt.
func NewPKI(dir string, names ...string) (*PKI, error) {
	if len(names) == 0 {
		return nil, errors.New("bindtest: NewPKI needs at least one name")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
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
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
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
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &PKI{CAPool: x509.NewCertPool(), Leaf: leaf}
	p.CAPool.AddCert(ca)
	p.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if p.Cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	if dir != "" {
		p.CertFile = filepath.Join(dir, "server.crt")
		p.KeyFile = filepath.Join(dir, "server.key")
		p.CAFile = filepath.Join(dir, "ca.crt")
		for f, b := range map[string][]byte{p.CertFile: certPEM, p.KeyFile: keyPEM, p.CAFile: p.CAPEM} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freeUDPTCPPort returns a port free for both UDP and TCP on 127.0.0.1.
func freeUDPTCPPort() (int, error) {
	for i := 0; i < 20; i++ {
		p, err := FreePort()
		if err != nil {
			return 0, err
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			u.Close()
			return p, nil
		}
	}
	return 0, errors.New("bindtest: no port free for both UDP and TCP")
}

// ZoneText is the standard test zone for origin (with trailing dot):
// i.<origin> has A 192.0.2.(10+i) and AAAA 2001:db8::(10+i) for i in 0..3.
func ZoneText(origin string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 300\n", origin)
	fmt.Fprintf(&b, "@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60\n")
	fmt.Fprintf(&b, "@ IN NS ns.example.test.\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "%d IN A 192.0.2.%d\n%d IN AAAA 2001:db8::%d\n", i, 10+i, i, 10+i)
	}
	return b.String()
}

// Options configures Start. The zero value gives a TLS 1.3 listener only,
// serving DefaultZone with ZoneText, certificate for DefaultServerName.
type Options struct {
	Named      string // path of named; "" = FindNamed
	ServerName string // certificate name; default DefaultServerName
	Zone       string // origin with trailing dot; default DefaultZone
	ZoneText   string // zone file; default ZoneText(Zone)
	TLS12      bool   // also a TLS 1.2-only DoT listener (TLS12Addr)
	Clear      bool   // also a clear UDP+TCP listener (ClearAddr)
	// StartTimeout bounds the wait for the first DoT answer; default 30 s.
	StartTimeout time.Duration
}

// BIND is a running named.
type BIND struct {
	Dir        string // working directory (named.conf, zone, keys)
	PKI        *PKI   // CA and server certificate; PKI.CAPool verifies it
	ServerName string
	Zone       string
	TLSAddr    string // TLS 1.3 DoT listener, "127.0.0.1:port"
	TLS12Addr  string // TLS 1.2-only DoT listener, if Options.TLS12
	ClearAddr  string // clear UDP+TCP listener, if Options.Clear

	cmd     *exec.Cmd
	exited  chan struct{}
	log     *lockedBuf
	ownDir  bool
	stopped sync.Once
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

// Log returns what named has written to stdout/stderr so far (-g).
func (b *BIND) Log() string { return b.log.String() }

// Start writes a certificate, named.conf and the zone into dir ("" = a new
// temporary directory, removed by Stop), starts named in the foreground and
// waits until it answers a query for 0.<zone> over TLS. It returns an error
// wrapping ErrNoNamed if named is not installed.
func Start(dir string, opts Options) (*BIND, error) {
	named := opts.Named
	if named == "" {
		var err error
		if named, err = FindNamed(); err != nil {
			return nil, err
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = DefaultServerName
	}
	if opts.Zone == "" {
		opts.Zone = DefaultZone
	}
	opts.Zone = dns.Fqdn(opts.Zone)
	if opts.ZoneText == "" {
		opts.ZoneText = ZoneText(opts.Zone)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	b := &BIND{Dir: dir, ServerName: opts.ServerName, Zone: opts.Zone, log: &lockedBuf{}, exited: make(chan struct{})}
	if dir == "" {
		d, err := os.MkdirTemp("", "bindtest-")
		if err != nil {
			return nil, err
		}
		b.Dir, b.ownDir = d, true
	}
	fail := func(err error) (*BIND, error) {
		if b.ownDir {
			_ = os.RemoveAll(b.Dir)
		}
		return nil, err
	}
	var err error
	if b.PKI, err = NewPKI(b.Dir, opts.ServerName); err != nil {
		return fail(err)
	}
	var listen strings.Builder
	p13, err := FreePort()
	if err != nil {
		return fail(err)
	}
	b.TLSAddr = "127.0.0.1:" + strconv.Itoa(p13)
	fmt.Fprintf(&listen, "\tlisten-on port %d tls local-tls { 127.0.0.1; };\n", p13)
	if opts.TLS12 {
		p12, err := FreePort()
		if err != nil {
			return fail(err)
		}
		b.TLS12Addr = "127.0.0.1:" + strconv.Itoa(p12)
		fmt.Fprintf(&listen, "\tlisten-on port %d tls tls12-only { 127.0.0.1; };\n", p12)
	}
	if opts.Clear {
		pc, err := freeUDPTCPPort()
		if err != nil {
			return fail(err)
		}
		b.ClearAddr = "127.0.0.1:" + strconv.Itoa(pc)
		fmt.Fprintf(&listen, "\tlisten-on port %d { 127.0.0.1; };\n", pc)
	}
	conf := fmt.Sprintf(`
options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
%[2]s	listen-on-v6 { none; };
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
zone "%[3]s" {
	type primary;
	file "%[1]s/zone.db";
};
`, b.Dir, listen.String(), strings.TrimSuffix(opts.Zone, "."))
	if err := os.WriteFile(filepath.Join(b.Dir, "named.conf"), []byte(conf), 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "zone.db"), []byte(opts.ZoneText), 0o644); err != nil {
		return fail(err)
	}
	cmd := exec.Command(named, "-g", "-c", filepath.Join(b.Dir, "named.conf"))
	if os.Geteuid() == 0 {
		cmd.Args = append(cmd.Args, "-u", "root")
	}
	cmd.Stdout, cmd.Stderr = b.log, b.log
	setDeathSignal(cmd) // dies with this process where supported
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	b.cmd = cmd
	go func() { _ = cmd.Wait(); close(b.exited) }()

	deadline := time.Now().Add(opts.StartTimeout)
	for {
		select {
		case <-b.exited:
			_ = b.Stop()
			return nil, fmt.Errorf("bindtest: named exited early:\n%s", b.Log())
		default:
		}
		if b.probe() == nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			_ = b.Stop()
			return nil, fmt.Errorf("bindtest: named did not answer on %s within %v:\n%s", b.TLSAddr, opts.StartTimeout, b.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// probe asks 0.<zone> A over TLS 1.3 (miekg/dns; bindtest must not import
// control/adot, whose own tests use this package).
func (b *BIND) probe() error {
	cl := &dns.Client{Net: "tcp-tls", Timeout: time.Second, TLSConfig: &tls.Config{
		ServerName: b.ServerName, RootCAs: b.PKI.CAPool, MinVersion: tls.VersionTLS13}}
	m := new(dns.Msg)
	m.SetQuestion("0."+b.Zone, dns.TypeA)
	r, _, err := cl.Exchange(m, b.TLSAddr)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("bindtest: probe: %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}

// Stop kills named, waits for it and removes the directory if Start made
// it. Safe to call more than once.
func (b *BIND) Stop() error {
	b.stopped.Do(func() {
		if b.cmd != nil && b.cmd.Process != nil {
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
		if b.ownDir {
			_ = os.RemoveAll(b.Dir)
		}
	})
	return nil
}
