// Package bindserver starts a throw-away BIND 9 named(8) — a real DNS
// server to test against — on loopback for tests and benchmarks: a fresh CA
// and server certificate (internal/testpki.NewServerPKI), a TLS 1.3 DoT
// listener with session tickets, optionally a TLS 1.2-only listener and a
// clear UDP/TCP listener, and one authoritative zone. It is the single copy
// of the launcher used by control/adot's interop tests, bench/dot, psavd's
// DoT run test and the LISP-Decent pull tests (which run it in a network
// namespace, Options.NetNS, and change the zone with BIND.Reload).
package bindserver

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/psavd/psavd/internal/syncbuf"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/internal/testtool"

	"github.com/miekg/dns"
)

// Defaults for Options.
const (
	DefaultServerName = "ns.example.test"
	DefaultZone       = "map-server.example.test."
)

// ErrNoNamed is returned by Start (and FindNamed) when named is not installed.
var ErrNoNamed = errors.New("bindserver: named (BIND 9) not installed: apt-get install bind9")

// FindNamed returns the path of named: PATH, then /usr/sbin and /sbin
// (testtool.Find).
func FindNamed() (string, error) {
	if p, ok := testtool.Find("named"); ok {
		return p, nil
	}
	return "", ErrNoNamed
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
	return 0, errors.New("bindserver: no port free for both UDP and TCP")
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
	ClearPort  int    // its port; default a free one (set it to tell a primary where to NOTIFY before named starts)
	// ResponsePadding, if > 0, pads answers to padded queries to a
	// multiple of this many octets (named.conf response-padding; BIND 9.18
	// does not pad without it).
	ResponsePadding int
	// StartTimeout bounds the wait for the first DoT answer; default 30 s.
	StartTimeout time.Duration

	// NetNS, if set, runs named inside this network namespace (through
	// "ip netns exec"); the namespace must already have ListenAddr.
	NetNS string
	// ListenAddr is the IPv4 address of every listener; default 127.0.0.1.
	ListenAddr string
	// Enter runs the readiness and reload checks (DoT queries made by this
	// package) where ListenAddr is reachable, e.g. inside a namespace;
	// default: in the calling process's namespace.
	Enter func(fn func() error) error

	// Secondary, if set, makes the zone a secondary one, transferred from
	// Secondary.Primary over TLS (RFC 9103 XoT) instead of read from
	// ZoneText; it implies Clear (NOTIFY arrives over UDP there). Start
	// then only waits until named answers at all: the zone comes when the
	// primary hands it over.
	Secondary *Secondary
}

// Secondary is the primary a secondary zone is transferred from over TLS.
type Secondary struct {
	Primary    string // "127.0.0.1:853": an IP address and port
	ServerName string // the name the primary's certificate must carry (remote-hostname)
	CAFile     string // PEM CA that verifies the primary (ca-file)
	// CertFile and KeyFile, if set, are the client certificate named
	// presents to the primary (mutual TLS).
	CertFile, KeyFile string
}

// BIND is a running named.
type BIND struct {
	Dir        string             // working directory (named.conf, zone, keys)
	PKI        *testpki.ServerPKI // CA and server certificate; PKI.CAPool verifies it
	ServerName string
	Zone       string
	TLSAddr    string // TLS 1.3 DoT listener, "127.0.0.1:port" (Options.ListenAddr)
	TLS12Addr  string // TLS 1.2-only DoT listener, if Options.TLS12
	ClearAddr  string // clear UDP+TCP listener, if Options.Clear

	cmd   *exec.Cmd
	enter func(fn func() error) error
	// secondary: the zone may not be there yet (SERVFAIL is an answer)
	secondary bool
	exited    chan struct{}
	log       *syncbuf.Buffer
	ownDir    bool
	stopped   sync.Once
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
	if opts.ListenAddr == "" {
		opts.ListenAddr = "127.0.0.1"
	}
	if opts.Enter == nil {
		opts.Enter = func(fn func() error) error { return fn() }
	}
	la := opts.ListenAddr
	if opts.Secondary != nil {
		opts.Clear = true
	}
	b := &BIND{Dir: dir, ServerName: opts.ServerName, Zone: opts.Zone, log: &syncbuf.Buffer{}, exited: make(chan struct{}), enter: opts.Enter,
		secondary: opts.Secondary != nil}
	if dir == "" {
		d, err := os.MkdirTemp("", "bindserver-")
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
	if b.PKI, err = testpki.NewServerPKI(b.Dir, opts.ServerName); err != nil {
		return fail(err)
	}
	var listen strings.Builder
	p13, err := FreePort()
	if err != nil {
		return fail(err)
	}
	b.TLSAddr = net.JoinHostPort(la, strconv.Itoa(p13))
	fmt.Fprintf(&listen, "\tlisten-on port %d tls local-tls { %s; };\n", p13, la)
	if opts.TLS12 {
		p12, err := FreePort()
		if err != nil {
			return fail(err)
		}
		b.TLS12Addr = net.JoinHostPort(la, strconv.Itoa(p12))
		fmt.Fprintf(&listen, "\tlisten-on port %d tls tls12-only { %s; };\n", p12, la)
	}
	if opts.Clear {
		pc, err := opts.ClearPort, error(nil)
		if pc == 0 {
			pc, err = freeUDPTCPPort()
		}
		if err != nil {
			return fail(err)
		}
		b.ClearAddr = net.JoinHostPort(la, strconv.Itoa(pc))
		fmt.Fprintf(&listen, "\tlisten-on port %d { %s; };\n", pc, la)
	}
	if opts.ResponsePadding > 0 {
		fmt.Fprintf(&listen, "\tresponse-padding { any; } block-size %d;\n", opts.ResponsePadding)
	}
	zc, err := zoneConf(b.Dir, opts)
	if err != nil {
		return fail(err)
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
%[3]s`, b.Dir, listen.String(), zc)
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
	if opts.NetNS != "" {
		// ip netns exec execs named: the child is named itself (Kill, the
		// death signal and Reload's SIGHUP reach it).
		ip, err := exec.LookPath("ip")
		if err != nil {
			return fail(fmt.Errorf("bindserver: NetNS needs iproute2: %w", err))
		}
		cmd = exec.Command(ip, append([]string{"netns", "exec", opts.NetNS}, cmd.Args...)...)
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
			return nil, fmt.Errorf("bindserver: named exited early:\n%s", b.Log())
		default:
		}
		if b.enter(b.probe) == nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			_ = b.Stop()
			return nil, fmt.Errorf("bindserver: named did not answer on %s within %v:\n%s", b.TLSAddr, opts.StartTimeout, b.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zoneConf is named.conf's zone statement (and, for a secondary, the tls
// block it transfers with).
func zoneConf(dir string, opts Options) (string, error) {
	name := strings.TrimSuffix(opts.Zone, ".")
	sec := opts.Secondary
	if sec == nil {
		return fmt.Sprintf("zone %q {\n\ttype primary;\n\tfile \"%s/zone.db\";\n};\n", name, dir), nil
	}
	ap, err := netip.ParseAddrPort(sec.Primary)
	if err != nil {
		return "", fmt.Errorf("bindserver: Secondary.Primary: %w", err)
	}
	var client string
	if sec.CertFile != "" {
		client = fmt.Sprintf("\tcert-file %q;\n\tkey-file %q;\n", sec.CertFile, sec.KeyFile)
	}
	return fmt.Sprintf(`tls to-primary {
	ca-file %q;
	remote-hostname %q;
%s	protocols { TLSv1.3; };
};
zone %q {
	type secondary;
	primaries { %s port %d tls to-primary; };
	file "%s/secondary.db";
};
`, sec.CAFile, sec.ServerName, client, name, ap.Addr(), ap.Port(), dir), nil
}

// probe asks 0.<zone> A over TLS 1.3 (miekg/dns; bindserver must not import
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
	if r.Rcode != dns.RcodeSuccess && !b.secondary {
		return fmt.Errorf("bindserver: probe: %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}

// Reload replaces the zone file with zoneText, makes named reload it
// (SIGHUP) and waits, up to timeout, until the zone's SOA is served over
// TLS with zoneText's serial (so zoneText must bump it).
func (b *BIND) Reload(zoneText string, timeout time.Duration) error {
	serial, err := soaSerial(zoneText, b.Zone)
	if err != nil {
		return err
	}
	file := filepath.Join(b.Dir, "zone.db")
	if err := os.WriteFile(file, []byte(zoneText), 0o644); err != nil {
		return err
	}
	// named reloads a primary zone only if its file is newer than the last
	// load; a rewrite within the same clock tick must still count.
	future := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(file, future, future); err != nil {
		return err
	}
	if b.cmd == nil || b.cmd.Process == nil {
		return errors.New("bindserver: named not running")
	}
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("bindserver: SIGHUP: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		var got uint32
		err := b.enter(func() error {
			var err error
			got, err = b.servedSerial()
			return err
		})
		if err == nil && got == serial {
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("bindserver: named exited during reload:\n%s", b.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bindserver: serial %d not served within %v (last %d, %v):\n%s", serial, timeout, got, err, b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// soaSerial returns the serial of the SOA record in a zone file.
func soaSerial(zoneText, origin string) (uint32, error) {
	zp := dns.NewZoneParser(strings.NewReader(zoneText), origin, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			return soa.Serial, nil
		}
	}
	if err := zp.Err(); err != nil {
		return 0, fmt.Errorf("bindserver: zone text: %w", err)
	}
	return 0, errors.New("bindserver: zone text has no SOA")
}

// servedSerial asks the zone's SOA over TLS 1.3.
func (b *BIND) servedSerial() (uint32, error) {
	cl := &dns.Client{Net: "tcp-tls", Timeout: time.Second, TLSConfig: &tls.Config{
		ServerName: b.ServerName, RootCAs: b.PKI.CAPool, MinVersion: tls.VersionTLS13}}
	m := new(dns.Msg)
	m.SetQuestion(b.Zone, dns.TypeSOA)
	r, _, err := cl.Exchange(m, b.TLSAddr)
	if err != nil {
		return 0, err
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("bindserver: no SOA in answer (%s)", dns.RcodeToString[r.Rcode])
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
