package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/miekg/dns"
	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/testpki"
)

// TestDoTServerNode runs the real psavd binary as a DoT-server-only node
// ([adot.server] + [metrics], no ports): our client and kdig get the
// configured records over TLS 1.3, a new connection resumes its session,
// /metrics shows the server's counters, and SIGTERM stops it cleanly.
func TestDoTServerNode(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "psavd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	pki, err := testpki.NewServerPKI(dir, "ns.example.test")
	if err != nil {
		t.Fatal(err)
	}
	dotPort, err := bindserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := bindserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dotAddr := fmt.Sprintf("127.0.0.1:%d", dotPort)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	cfgFile := filepath.Join(dir, "dot.toml")
	cfg := fmt.Sprintf(`[psav]
asn = 65001

[metrics]
listen = "127.0.0.1:%d"

[adot.server]
listen = %q
cert = %q
key = %q
zone = "map-server.example.test"
ttl = 30
max_conns_per_client = 8

[adot.server.records]
"@" = ["NS ns.example.test."]
"0" = ["A 192.0.2.10", "AAAA 2001:db8::10"]
"1" = ["A 192.0.2.11"]
`, metricsPort, dotAddr, pki.CertFile, pki.KeyFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "-config", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-config", cfgFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var log strings.Builder
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if !said && readyLine.MatchString(sc.Text()) {
				said = true
				close(ready)
			}
		}
		done <- cmd.Wait()
	}()
	logText := func() string { logMu.Lock(); defer logMu.Unlock(); return log.String() }
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("psavd log:\n%s", logText())
		}
	})
	select {
	case <-ready:
	case err := <-done:
		stopped = true
		t.Fatalf("psavd exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("psavd not ready")
	}

	// Our client: A and AAAA over one connection, then a second client
	// sharing the session cache resumes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sessions := tls.NewLRUClientSessionCache(4)
	newClient := func() *adot.Client {
		c, err := adot.NewClient(adot.Config{Servers: []string{dotAddr}, ServerName: "ns.example.test",
			RootCAs: pki.CAPool, SessionCache: sessions})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := newClient()
	for _, q := range []struct {
		name  string
		qtype uint16
		want  string
	}{{"0.map-server.example.test", dns.TypeA, "192.0.2.10"}, {"0.map-server.example.test", dns.TypeAAAA, "2001:db8::10"},
		{"1.map-server.example.test", dns.TypeA, "192.0.2.11"}} {
		a, info, err := c.LookupInfo(ctx, q.name, q.qtype)
		if err != nil || len(a) != 1 || a[0] != netip.MustParseAddr(q.want) {
			t.Fatalf("%s %s = %v, %v; want %s", q.name, dns.TypeToString[q.qtype], a, err, q.want)
		}
		if info.TLSVersion != tls.VersionTLS13 {
			t.Fatalf("TLS version %x, want 1.3", info.TLSVersion)
		}
	}
	if _, info, err := newClient().LookupInfo(ctx, "1.map-server.example.test", dns.TypeA); err != nil || !info.Resumed {
		t.Fatalf("second client: resumed %v, %v", info.Resumed, err)
	}
	if _, err := c.Lookup(ctx, "www.example.org", dns.TypeA); adot.CauseOf(err) != adot.CauseRefused {
		t.Fatalf("outside the zone: %v, want REFUSED", err)
	}
	queries := 5.0
	if kdig, ok := testtool.Find("kdig"); !ok && testtool.Required() {
		t.Fatal("kdig not installed (knot-dnsutils), and make test requires it")
	} else if !ok {
		t.Log("kdig not installed (knot-dnsutils): skipping its query")
	} else {
		out, err := exec.CommandContext(ctx, kdig, "@127.0.0.1", "-p", strconv.Itoa(dotPort), "+tls", "+tls-ca="+pki.CAFile,
			"+tls-hostname=ns.example.test", "+short", "0.map-server.example.test", "AAAA").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2001:db8::10" {
			t.Fatalf("kdig: %v\n%s", err, out)
		}
		queries++
	}

	// /metrics: the server's series (role="server"), as counted.
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		text = string(b)
		// The server counts a query after writing its answer.
		if metricValue(text, `psavd_adot_queries_total{role="server"}`) >= queries || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range []struct {
		series string
		min    float64
	}{
		{`psavd_adot_queries_total{role="server"}`, queries},
		{`psavd_adot_handshakes_total{role="server"}`, 2},
		{`psavd_adot_resumptions_total{role="server"}`, 1},
		{`psavd_adot_failures_total{cause="refused",role="server"}`, 1},
		{`psavd_adot_open_connections{role="server"}`, 1},
		{`psavd_adot_query_rtt_seconds_count{role="server"}`, queries},
		{`psavd_adot_query_rtt_seconds_bucket{role="server",le="+Inf"}`, queries},
	} {
		if v := metricValue(text, m.series); v < m.min {
			t.Errorf("%s = %v, want ≥ %v", m.series, v, m.min)
		}
	}
	if strings.Contains(text, `role="client"`) {
		t.Error("a node without [adot] servers exports client series")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}

	// SIGTERM: a clean exit, and the DoT port is closed.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Fatalf("psavd exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("psavd did not stop on SIGTERM")
	}
	if !strings.Contains(logText(), "stopped") {
		t.Errorf("no stop in the log")
	}
	if conn, err := net.DialTimeout("tcp", dotAddr, time.Second); err == nil {
		conn.Close()
		t.Error("the DoT port still accepts after psavd stopped")
	}
}

// metricValue returns the value of one series line ("name{labels} value")
// of the Prometheus text, or -1.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// readyLine matches psavd's "ready" log line.
var readyLine = regexp.MustCompile(`\bready\b`)
