package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/syncbuf"
	"github.com/psavd/psavd/internal/testpki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// TestTwoACSProcesses runs two real psavd processes as AS Control Servers
// on loopback, configured only through engine.toml and files (certificates,
// the community's endorsement key, each AS's signed record): they peer over
// mutual TLS 1.3 with the post-quantum hybrid group, negotiate their state
// machine, and end up with the same membership — as psavctl would see it
// through the Status RPC.
func TestTwoACSProcesses(t *testing.T) {
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 2)
	asns := []uint32{65001, 65002}
	prefixes := []string{"198.51.100.0/24", "203.0.113.0/24"}
	for i, asn := range asns {
		other := 1 - i
		cfg := fmt.Sprintf("[psav]\nasn = %d\nepoch_seconds = 60\n", asn) +
			al.acsSection(t, asn, prefixes[i], fmt.Sprintf("127.0.0.1:%d", ports[i]), asns[other], fmt.Sprintf("127.0.0.1:%d", ports[other]))
		startPsavd(t, bin, "", al.write(t, fmt.Sprintf("as%d.toml", asn), []byte(cfg)), false)
	}
	ca := al.ca
	// psavctl's view: the Status RPC over mutual TLS, with an operator's
	// certificate of each AS (docs/wire.md §3.1: Status answers only its
	// own AS's op certificates).
	var ops [2]tls.Certificate
	for i, asn := range asns {
		var err error
		if ops[i], err = ca.IssueOp(asn, "noc", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	status := func(i int) (*acspb.StatusReply, error) {
		id := pair.Identity{ASN: asns[i], Role: pki.RoleOp, Cert: ops[i], CA: ca.Pool()}
		tlsCfg, err := pair.ClientConfig(id, asns[i])
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", ports[i]), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return acspb.NewACSClient(conn).Status(ctx, &acspb.StatusRequest{})
	}
	var last [2]*acspb.StatusReply
	ok := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		up := 0
		for i := range asns {
			st, err := status(i)
			if err != nil {
				continue
			}
			last[i] = st
			for _, p := range st.Peers {
				if p.State == "up" && p.TlsGroup == "X25519MLKEM768" && len(st.Members) == 2 {
					up++
				}
			}
		}
		if up == 2 && string(last[0].MembershipDigest) == string(last[1].MembershipDigest) {
			ok = true
			break
		}
	}
	if !ok {
		t.Fatalf("ACS did not peer and converge: %v / %v", last[0], last[1])
	}
	for i, st := range last {
		if st.Asn != asns[i] || !strings.Contains(fmt.Sprint(st.Members), "65001") || !strings.Contains(fmt.Sprint(st.Members), "65002") {
			t.Errorf("status of AS%d: %v", asns[i], st)
		}
	}

	// The operator's tool shows the same, as a table and as JSON.
	ctl := psavctlBinary(t)
	certFile, keyFile := al.issueFiles(t, "as65001-op-noc", testpki.OpURI(65001, "noc"))
	out, err := exec.Command(ctl, "status", "-acs", fmt.Sprintf("127.0.0.1:%d", ports[0]), "-asn", "65001",
		"-cert", certFile, "-key", keyFile, "-ca", al.caFile).CombinedOutput()
	if err != nil {
		t.Fatalf("psavctl status: %v\n%s", err, out)
	}
	for _, want := range []string{"ACS of AS65001", "AS65002", " up ", "X25519MLKEM768", "2 members"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("psavctl status lacks %q:\n%s", want, out)
		}
	}
	// Another AS's ACS answers only its own operators (docs/wire.md §3.1).
	out, err = exec.Command(ctl, "status", "-json", "-acs", fmt.Sprintf("127.0.0.1:%d", ports[1]), "-asn", "65001", "-target-asn", "65002",
		"-cert", certFile, "-key", keyFile, "-ca", al.caFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PermissionDenied") || !strings.Contains(string(out), "accepts only AS65002's certificates") {
		t.Errorf("psavctl status -json of the other AS's ACS with AS65001's operator certificate: %v\n%s", err, out)
	}
	op2Cert, op2Key := al.issueFiles(t, "as65002-op-noc", testpki.OpURI(65002, "noc"))
	out, err = exec.Command(ctl, "status", "-json", "-acs", fmt.Sprintf("127.0.0.1:%d", ports[1]), "-asn", "65002",
		"-cert", op2Cert, "-key", op2Key, "-ca", al.caFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"asn": 65002`) || !strings.Contains(string(out), `"tlsGroup": "X25519MLKEM768"`) {
		t.Errorf("psavctl status -json of AS65002's ACS by its operator: %v\n%s", err, out)
	}

	// The tables each ACS pushes to its ABRs: the other AS is the tag and
	// validate peer, and both sides hold the same key for some epoch
	// (compared by fingerprint: psavctl never prints a key).
	var keyLines [2]map[string]bool
	for i, asn := range asns {
		cf, kf := al.issueFiles(t, fmt.Sprintf("as%d-op-noc", asn), testpki.OpURI(asn, "noc"))
		out, err := exec.Command(ctl, "tables", "-acs", fmt.Sprintf("127.0.0.1:%d", ports[i]), "-asn", fmt.Sprint(asn),
			"-cert", cf, "-key", kf, "-ca", al.caFile).CombinedOutput()
		if err != nil {
			t.Fatalf("psavctl tables of AS%d: %v\n%s", asn, err, out)
		}
		other := asns[1-i]
		if !strings.Contains(string(out), fmt.Sprintf("tables of AS%d", asn)) ||
			!regexp.MustCompile(fmt.Sprintf(`AS%d +AS%d +AS%d +\[`, other, other, other)).Match(out) {
			t.Errorf("psavctl tables of AS%d:\n%s", asn, out)
		}
		keyLines[i] = map[string]bool{}
		for _, m := range regexp.MustCompile(`\d+ \([0-9a-f]{8}\)`).FindAllString(string(out), -1) {
			keyLines[i][m] = true
		}
	}
	common := 0
	for k := range keyLines[0] {
		if keyLines[1][k] {
			common++
		}
	}
	if common == 0 {
		t.Errorf("the two ACS push no common key: %v / %v", keyLines[0], keyLines[1])
	}
}

// alliance is the trust material of a test alliance: a CA for the ACS and
// ABR certificates and one community key that endorses membership records.
type alliance struct {
	dir       string
	ca        *testpki.CA
	caFile    string
	community membership.Signer
}

func newAlliance(t *testing.T) *alliance {
	t.Helper()
	ca, err := testpki.NewCA("alliance")
	if err != nil {
		t.Fatal(err)
	}
	community, err := membership.NewEd25519SignerFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	al := &alliance{dir: t.TempDir(), ca: ca, community: community}
	al.caFile = al.write(t, "ca.pem", ca.PEM())
	return al
}

func (al *alliance) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(al.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// certFiles issues the certificate of AS asn's ACS and writes it and its
// key as PEM (as<asn>.pem, as<asn>.key).
func (al *alliance) certFiles(t *testing.T, asn uint32) (certFile, keyFile string) {
	t.Helper()
	return al.issueFiles(t, fmt.Sprintf("as%d", asn), testpki.ACSURI(asn))
}

// abrCertFiles issues the certificate of AS asn's border router name
// (as<asn>-<name>.pem, .key).
func (al *alliance) abrCertFiles(t *testing.T, asn uint32, name string) (certFile, keyFile string) {
	t.Helper()
	return al.issueFiles(t, fmt.Sprintf("as%d-%s", asn, name), testpki.ABRURI(asn, name))
}

func (al *alliance) issueFiles(t *testing.T, base, uri string) (certFile, keyFile string) {
	t.Helper()
	cert, err := al.ca.IssueURI(uri, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(al.dir, base+".pem"), filepath.Join(al.dir, base+".key")
	if err := testpki.WriteFiles(cert, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// acsSection is the [acs] part of engine.toml for asn: certificate, the AS's
// own record (its prefixes, signed by its key and endorsed by the
// community), the community key, and one peer.
func (al *alliance) acsSection(t *testing.T, asn uint32, prefixes, listen string, peerASN uint32, peerAddr string) string {
	t.Helper()
	certFile, keyFile := al.certFiles(t, asn)
	seed := make([]byte, 32)
	seed[0], seed[1] = byte(asn>>8), byte(asn)
	asKey, err := membership.NewEd25519SignerFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	rec := membership.Record{Kind: membership.KindJoin, ASN: asn, Version: 1, Key: asKey.Public(),
		ACS: []netip.AddrPort{netip.MustParseAddrPort(listen)}}
	for _, p := range strings.Split(prefixes, ",") {
		rec.Prefixes = append(rec.Prefixes, netip.MustParsePrefix(p))
	}
	rec.Canonicalize()
	if err := rec.Sign(asKey); err != nil {
		t.Fatal(err)
	}
	if err := rec.Endorse(al.community); err != nil {
		t.Fatal(err)
	}
	enc, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	recFile := al.write(t, fmt.Sprintf("as%d.rec", asn), enc)
	return fmt.Sprintf(`[acs]
listen = %q
cert = %q
key = %q
ca = %q
heartbeat = "200ms"
dead_after = 3
membership_dir = %q
record = %q
[[acs.community]]
ascn = 0
keys = [%q]
[[acs.peer]]
asn = %d
address = %q
`, listen, certFile, keyFile, al.caFile, filepath.Join(al.dir, fmt.Sprintf("members%d", asn)), recFile,
		al.community.Public().String(), peerASN, peerAddr)
}

// readyWord matches psavd's "ready" log line (not "already").
var readyWord = regexp.MustCompile(`\bready\b`)

// psavdProc is a running psavd of a test.
type psavdProc struct {
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	done chan struct{}
}

// Stop sends SIGTERM and waits (SIGKILL after 10 s). Safe to call twice.
func (p *psavdProc) Stop() { stopProcess(p.cmd, p.done, syscall.SIGTERM) }

// stopProcess ends a child the test started: sig, then SIGKILL if it has
// not exited (done closed) within 10 s. Nothing if it has exited already.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, sig os.Signal) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// startPsavd checks and starts psavd with cfgFile (inside namespace ns
// unless ns is ""), optionally waiting for "ready"; it is stopped at
// cleanup, its log shown if the test failed.
func startPsavd(t *testing.T, bin, ns, cfgFile string, waitReady bool) *psavdProc {
	t.Helper()
	if out, err := exec.Command(bin, "check", "-config", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	args := []string{bin, "-config", cfgFile}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &psavdProc{cmd: cmd, log: &syncbuf.Buffer{}, done: make(chan struct{})}
	var stdout syncbuf.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			p.log.Write([]byte(sc.Text() + "\n"))
			if !said && readyWord.MatchString(sc.Text()) {
				said = true
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("psavd %s:\n%s%s", cfgFile, p.log.String(), stdout.String())
		}
	})
	if waitReady {
		select {
		case <-ready:
		case <-p.done:
			t.Fatalf("psavd %s exited:\n%s", cfgFile, p.log.String())
		case <-time.After(60 * time.Second):
			t.Fatalf("psavd %s not ready:\n%s", cfgFile, p.log.String())
		}
	}
	return p
}

// rawMetrics fetches psavd's Prometheus text from inside namespace ns. The
// connection is dialled inside the namespace: an http.Transport would dial
// from another goroutine, on a thread outside it.
func rawMetrics(t *testing.T, ns, addr string) string {
	t.Helper()
	var body []byte
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// freePorts reserves n loopback TCP ports (closed again before use: a small
// race with other processes, acceptable on a test machine).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
