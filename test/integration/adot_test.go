package integration

import (
	"bufio"
	"fmt"
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

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/syncbuf"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/internal/testtool"
)

// TestADoTNoClearTextLeak (issue 17, must-show 1): a pull-mode psavd with
// fallback = "plaintext", inside a namespace of its own, a clear-text DNS
// server on 127.0.0.53:53 and tcpdump on port 53 of its loopback.
//
//  1. TLS blocked from the start (nothing on 127.0.0.53:853, connections
//     refused): its index name is asked A and AAAA again and again; the
//     capture holds no query at all, psavd_adot_fallback_refused_total
//     {reason="unanswered"} counts the refusals.
//  2. A psavd DoT server with the genuine certificate answers both; it
//     stops (refused again): now, and only now, clear-text queries go out,
//     only for those two (name, type) pairs — the capture can see a leak.
//  3. An impostor DoT server (a certificate of another CA) on the same
//     address, then nothing again (refused): from the first certificate
//     failure on, the capture holds no query; {reason="tls"} counts them.
func TestADoTNoClearTextLeak(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	tcpdump := testtool.Path(t, "tcpdump", "tcpdump")
	bin := psavdBinary(t)
	topo, _ := newTopology(t)
	ns, err := topo.NS("adot")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const (
		suffix  = "map.decent.test"
		dnsAddr = "127.0.0.53"
		eid     = "198.51.100.0/24"
		modulus = 16
		mask    = 8
	)
	index, err := pull.Index(pull.ModeDraft, pull.EIDString(0, netip.MustParsePrefix(eid)), mask, modulus)
	if err != nil {
		t.Fatal(err)
	}
	name := pull.Name(index, suffix) + "."
	genuine, err := testpki.NewServerPKI(mkdir(t, dir, "genuine"), "dns.decent.test")
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := testpki.NewServerPKI(mkdir(t, dir, "impostor"), "dns.decent.test")
	if err != nil {
		t.Fatal(err)
	}

	plain := startPlainDNS(t, ns, dnsAddr+":53")

	client := writeConfig(t, dir, "client.toml", fmt.Sprintf(`[psav]
asn = 65001
[control]
socket = %q
[metrics]
listen = "127.0.0.1:9101"
[lisp]
rlocs = ["127.0.0.1"]
control_listen = "127.0.0.1:4342"
[[lisp.site]]
name = "as65001"
key = "adot-leak-test"
key_id = 2
eid_prefixes = [%q]
[[lisp.database]]
eid = %q
rlocs = [{ address = "127.0.0.1", priority = 1, weight = 100 }]
[lisp.decent]
mode = "pull"
site = "as65001"
suffix = %q
modulus = %d
hash_mode = "draft"
hash_mask = %d
[adot]
servers = ["%s:853"]
server_name = "dns.decent.test"
ca = %q
fallback = "plaintext"
dial_timeout = "1s"
handshake_timeout = "1s"
query_timeout = "1s"
min_ttl = "1s"
`, filepath.Join(dir, "client.sock"), eid, eid, suffix, modulus, mask, dnsAddr, genuine.CAFile))
	dotConfig := func(file string, port int, p *testpki.ServerPKI) string {
		return writeConfig(t, dir, file, fmt.Sprintf(`[psav]
asn = 65002
[control]
socket = %q
[metrics]
listen = "127.0.0.1:%d"
[adot.server]
listen = "%s:853"
cert = %q
key = %q
zone = %q
ttl = 1
[adot.server.records]
"@" = ["NS dns.decent.test."]
"%d" = ["A 10.1.1.1"]
`, filepath.Join(dir, file+".sock"), port, dnsAddr, p.CertFile, p.KeyFile, suffix, index))
	}
	genuineCfg := dotConfig("genuine.toml", 9102, genuine)
	impostorCfg := dotConfig("impostor.toml", 9103, impostor)

	clientMetric := func(series string) float64 {
		return metricValue(t, rawMetrics(t, ns, "127.0.0.1:9101"), series)
	}
	waitMetric := func(series string, atLeast float64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for clientMetric(series) < atLeast {
			if time.Now().After(deadline) {
				t.Fatalf("%s stayed below %v within 60 s", series, atLeast)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	const (
		unanswered = `psavd_adot_fallback_refused_total{reason="unanswered",role="client"}`
		tlsFailed  = `psavd_adot_fallback_refused_total{reason="tls",role="client"}`
		plainSent  = `psavd_adot_plaintext_queries_total{role="client"}`
		answered   = `psavd_adot_queries_total{role="client"}`
	)

	// 1. TLS blocked from the start.
	capture := startCapture(t, tcpdump, ns, filepath.Join(dir, "blocked.pcap"))
	startPsavd(t, bin, ns, client, true)
	waitMetric(unanswered, 10) // five rounds of A and AAAA
	if got := capture.stop(t); len(got) != 0 {
		t.Fatalf("TLS blocked, nothing ever answered over TLS: clear-text queries captured: %v", got)
	}
	if n := clientMetric(plainSent); n != 0 {
		t.Fatalf("plaintext queries %v, want 0", n)
	}
	t.Logf("blocked: %v fallbacks refused (unanswered), no query on port 53", clientMetric(unanswered))

	// 2. Answered over TLS, then refused: clear text for exactly those.
	capture = startCapture(t, tcpdump, ns, filepath.Join(dir, "answered.pcap"))
	dot := startPsavd(t, bin, ns, genuineCfg, true)
	waitMetric(answered, 2)
	dot.Stop()
	waitMetric(plainSent, 2)
	got := capture.stop(t)
	if len(got) == 0 {
		raw, _ := exec.Command(tcpdump, "-n", "-r", filepath.Join(dir, "answered.pcap")).CombinedOutput()
		t.Fatalf("answered over TLS, then refused: no clear-text query captured (the capture would not see a leak); plain server saw %d; capture:\n%s", plain.count(), raw)
	}
	for _, q := range got {
		if q != "A? "+name && q != "AAAA? "+name {
			t.Fatalf("clear-text query %q: never answered over TLS (only %s A and AAAA were)", q, name)
		}
	}
	t.Logf("answered then refused: %d clear-text queries captured, all for %s A/AAAA; the plain server saw %d", len(got), name, plain.count())

	// 3. A certificate failure: from then on, nothing in clear text.
	bad := startPsavd(t, bin, ns, impostorCfg, true)
	waitMetric(tlsFailed, 1)
	capture = startCapture(t, tcpdump, ns, filepath.Join(dir, "impostor.pcap"))
	before := clientMetric(plainSent)
	base := clientMetric(tlsFailed)
	waitMetric(tlsFailed, base+2)
	bad.Stop()
	waitMetric(tlsFailed, base+4) // refused now, but a server failed TLS
	if got := capture.stop(t); len(got) != 0 {
		t.Fatalf("after a certificate failure: clear-text queries captured: %v", got)
	}
	if n := clientMetric(plainSent); n != before {
		t.Fatalf("plaintext queries went from %v to %v after a certificate failure", before, n)
	}
	t.Logf("after the certificate failure: %v fallbacks refused (tls), no query on port 53", clientMetric(tlsFailed)-base)
}

func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// plainDNS is a clear-text UDP DNS server inside a namespace, the
// fallback target: it answers A queries with 10.1.1.1, others NODATA.
type plainDNS struct{ n chan struct{} }

func (p *plainDNS) count() int { return len(p.n) }

func startPlainDNS(t *testing.T, ns, addr string) *plainDNS {
	t.Helper()
	var pc net.PacketConn
	if err := netlab.Do(ns, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	p := &plainDNS{n: make(chan struct{}, 1<<16)}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			select {
			case p.n <- struct{}{}:
			default:
			}
			r := new(dns.Msg)
			r.SetReply(q)
			if q.Question[0].Qtype == dns.TypeA {
				rr, _ := dns.NewRR(q.Question[0].Name + " 1 IN A 10.1.1.1")
				r.Answer = append(r.Answer, rr)
			}
			out, _ := r.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	return p
}

// capture is tcpdump on port 53 (UDP and TCP) of a namespace's loopback.
type capture struct {
	tcpdump, file, ns string
	cmd               *exec.Cmd
	done              chan struct{}
	log               syncbuf.Buffer // tcpdump's standard error
}

func startCapture(t *testing.T, tcpdump, ns, file string) *capture {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, tcpdump, "-i", "lo", "-n", "-U", "-w", file, "port", "53")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &capture{tcpdump: tcpdump, file: file, ns: ns, cmd: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			c.log.Write([]byte(sc.Text() + "\n"))
			if !said && strings.Contains(sc.Text(), "listening on") {
				said = true
				close(listening)
			}
		}
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.kill() })
	select {
	case <-listening:
	case <-c.done:
		t.Fatal("tcpdump exited before listening")
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump not listening within 10 s")
	}
	return c
}

func (c *capture) kill() { stopProcess(c.cmd, c.done, syscall.SIGINT) }

// dnsQuestion matches tcpdump's rendering of a query: "A? name." (answers
// carry no question mark).
var dnsQuestion = regexp.MustCompile(`\s([A-Z0-9]+\? \S+)`)

// captureEnd is the name of the marker query that ends a capture.
const captureEnd = "end-of-capture.invalid."

// stop ends the capture and returns the queries in it ("A? name."). It
// first sends a marker query to 127.0.0.1:53 and waits until tcpdump has
// written it: tcpdump drops what it has not read yet when interrupted, and
// everything before the marker is written before it.
func (c *capture) stop(t *testing.T) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(captureEnd, dns.TypeTXT)
	wire, _ := m.Pack()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := netlab.Do(c.ns, func() error {
			u, err := net.Dial("udp", "127.0.0.1:53")
			if err != nil {
				return err
			}
			defer u.Close()
			_, err = u.Write(wire)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		qs, marked := c.read(t)
		if marked {
			c.kill()
			return qs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the end-of-capture marker was not captured within 10 s", c.file)
		}
	}
}

// read returns the queries written so far (the marker excluded) and
// whether the marker is among them.
func (c *capture) read(t *testing.T) ([]string, bool) {
	t.Helper()
	out, err := exec.Command(c.tcpdump, "-n", "-r", c.file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", c.file, err, out)
	}
	var qs []string
	marked := false
	for _, line := range strings.Split(string(out), "\n") {
		if m := dnsQuestion.FindStringSubmatch(line); m != nil {
			if strings.HasSuffix(m[1], " "+captureEnd) {
				marked = true
				continue
			}
			qs = append(qs, m[1])
		}
	}
	return qs, marked
}
