package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/promtext"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/internal/testtool"
)

// The node's roles under supervision and its reload, through the real
// binary (control/node). No timing assertions: the deadlines only stop a
// hung test.

// newTopology returns an empty topology of this test, deleted (namespaces
// and links) when the test ends, pass or fail, and a must that fails the
// test on an error.
func newTopology(t *testing.T) (*netlab.Topology, func(error)) {
	t.Helper()
	topo := netlab.New()
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	return topo, func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// httpGet fetches path from addr inside namespace ns: status code and body.
func httpGet(ns, addr, path string) (int, string) {
	var resp string
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		resp = string(b)
		return err
	})
	if err != nil {
		return 0, err.Error()
	}
	var code int
	if _, err := fmt.Sscanf(resp, "HTTP/1.%d %d", new(int), &code); err != nil {
		return 0, resp
	}
	_, body, _ := strings.Cut(resp, "\r\n\r\n")
	return code, body
}

// metric returns the sum of metric name with the given labels in psavd's
// /metrics at addr (on the host: namespace "").
func metric(t *testing.T, ns, addr, name string, labels map[string]string) float64 {
	t.Helper()
	if ns != "" {
		return promtext.Samples(parseScrape(t, rawMetrics(t, ns, addr))).Sum(name, labels)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss, err := promtext.Scrape(ctx, http.DefaultClient, "http://"+addr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return ss.Sum(name, labels)
}

// eventually polls cond until it holds (20 s bound).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// killSockets destroys the sockets ss selects (`ss -K`, the kernel's
// SOCK_DESTROY): the owner's next read or accept fails, as when a socket is
// closed under a role.
func killSockets(t *testing.T, args ...string) {
	t.Helper()
	ss := testtool.Path(t, "ss", "iproute2")
	out, err := exec.Command(ss, append([]string{"-K", "-n"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ss -K %v: %v\n%s", args, err, out)
	}
	if strings.Count(string(out), "\n") < 2 { // a header line, then the sockets
		t.Fatalf("ss -K %v found no socket:\n%s", args, out)
	}
}

// mapServerOnly is a node for other implementations' xTRs: no [psav], no
// ports.
const mapServerOnly = `[metrics]
listen = %q
[lisp]
rlocs = ["127.0.0.1"]
[lisp.map_server]
listen = %q
[[lisp.site]]
name = "as65010"
key = "secret"
key_id = 1
eid_prefixes = ["10.10.0.0/16"]
%s`

// TestRoleFailurePolicy: a role whose socket is closed under it does what
// its policy says. The Map-Server's UDP socket (restart): the role fails,
// is started again on a new socket and the node goes on, the role counted
// up with one restart. (The Fatal policy — exit non-zero naming the role
// and the cause, never ready again — is shown by control/node's supervisor
// tests: `ss -K` on a listening TCP socket does not wake an accept blocked
// in Go's netpoller, so the ACS listener cannot be failed from outside.)
func TestRoleFailurePolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ss -K)")
	}
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 2)
	msAddr, metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])

	t.Run("restart", func(t *testing.T) {
		cfg := al.write(t, "ms.toml", []byte(fmt.Sprintf(mapServerOnly, metricsAddr, msAddr, "")))
		p := startPsavd(t, bin, "", cfg, true)
		up := map[string]string{"role": "map-server"}
		if v := metric(t, "", metricsAddr, "psavd_role_up", up); v != 1 {
			t.Fatalf("map-server not up at ready: %v", v)
		}
		killSockets(t, "-u", "-a", fmt.Sprintf("sport = :%d", ports[0]))
		eventually(t, "the map-server role to fail and be restarted", func() bool {
			return metric(t, "", metricsAddr, "psavd_role_restarts_total", up) == 1 && metric(t, "", metricsAddr, "psavd_role_up", up) == 1
		})
		if !strings.Contains(p.log.String(), "role failed; restarting") {
			t.Fatalf("no restart logged:\n%s", p.log.String())
		}
		// The new socket is bound: the address is taken again.
		if c, err := net.ListenPacket("udp", msAddr); err == nil {
			c.Close()
			t.Fatal("the restarted map-server holds no socket")
		}
		select {
		case <-p.done:
			t.Fatalf("psavd exited after a restartable role failed:\n%s", p.log.String())
		default:
		}
	})
}

// TestReloadPortlessNodes: SIGHUP on an ACS-only, a Map-Server-only and a
// DoT-only node: the process lives and reloads — what can change live is
// applied, a change that needs a restart is refused naming its key, and
// psavd_config_reload_success says which.
func TestReloadPortlessNodes(t *testing.T) {
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	hup := func(t *testing.T, p *psavdProc, path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	alive := func(t *testing.T, p *psavdProc) {
		t.Helper()
		select {
		case <-p.done:
			t.Fatalf("psavd died of SIGHUP (exit %d):\n%s", p.cmd.ProcessState.ExitCode(), p.log.String())
		default:
		}
	}
	reloaded := func(t *testing.T, p *psavdProc, metricsAt, want string, success float64) {
		t.Helper()
		eventually(t, "reload outcome "+want, func() bool { return strings.Contains(p.log.String(), want) })
		alive(t, p)
		if v := metric(t, "", metricsAt, "psavd_config_reload_success", nil); v != success {
			t.Fatalf("psavd_config_reload_success = %v, want %v", v, success)
		}
	}

	t.Run("acs-only", func(t *testing.T) {
		base := psavTOML(65001) + metricsTOML(addr(0)) +
			al.acsSection(t, 65001, "198.51.100.0/24", addr(1), 65002, "127.0.0.1:1")
		path := al.write(t, "acs-only.toml", []byte(base))
		p := startPsavd(t, bin, "", path, true)
		hup(t, p, path, base+"[log]\nlevel = \"debug\"\n")
		reloaded(t, p, addr(0), "applied: log.level changed", 1)
		// A renewed certificate written over the old file: in force at the
		// next handshake after SIGHUP, no restart.
		served := func() []byte {
			cert, err := al.ca.IssueACS(65002, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			c, err := tls.Dial("tcp", addr(1), &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].Raw
		}
		before := served()
		certFile, keyFile := al.certFiles(t, 65001)
		renewed, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(before, renewed.Certificate[0]) {
			t.Fatal("certFiles issued the same certificate again")
		}
		hup(t, p, path, base+"[log]\nlevel = \"debug\"\n")
		reloaded(t, p, addr(0), "applied: acs.cert changed", 1)
		if !bytes.Equal(served(), renewed.Certificate[0]) {
			t.Fatal("the ACS still presents its old certificate after the reload")
		}
		hup(t, p, path, strings.Replace(base, "heartbeat = \"200ms\"", "heartbeat = \"300ms\"", 1))
		reloaded(t, p, addr(0), "needs a restart: acs.heartbeat changed", 0)
	})

	t.Run("map-server-only", func(t *testing.T) {
		base := fmt.Sprintf(mapServerOnly, addr(2), addr(3), "")
		path := al.write(t, "ms-only.toml", []byte(base))
		p := startPsavd(t, bin, "", path, true)
		hup(t, p, path, fmt.Sprintf(mapServerOnly, addr(2), addr(3), `[[lisp.site]]
name = "as65011"
key = "other"
key_id = 2
eid_prefixes = ["10.11.0.0/16"]
`))
		reloaded(t, p, addr(2), "applied: lisp.site[1] added", 1)
		hup(t, p, path, base+"\nbogus = 1\n")
		eventually(t, "the broken file refused", func() bool { return strings.Contains(p.log.String(), "bogus: unknown key") })
		alive(t, p)
		if v := metric(t, "", addr(2), "psavd_config_reload_success", nil); v != 0 {
			t.Fatalf("psavd_config_reload_success = %v after a broken file", v)
		}
	})

	t.Run("dot-only", func(t *testing.T) {
		dir := t.TempDir()
		pki, err := testpki.NewServerPKI(dir, "ns.example.test")
		if err != nil {
			t.Fatal(err)
		}
		cfg := func(a string) string {
			return fmt.Sprintf(`[psav]
asn = 65001
[metrics]
listen = %q
[adot.server]
listen = %q
cert = %q
key = %q
zone = "map-server.example.test"
[adot.server.records]
"@" = ["NS ns.example.test."]
"0" = ["A %s"]
`, addr(4), addr(5), pki.CertFile, pki.KeyFile, a)
		}
		path := al.write(t, "dot-only.toml", []byte(cfg("192.0.2.10")))
		p := startPsavd(t, bin, "", path, true)
		// A new client each time: a client caches answers by their TTL.
		lookup := func() string {
			client, err := adot.NewClient(adot.Config{Servers: []string{addr(5)}, ServerName: "ns.example.test", RootCAs: pki.CAPool})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			as, _, err := client.LookupInfo(ctx, "0.map-server.example.test.", 1)
			if err != nil || len(as) != 1 {
				return fmt.Sprint(as, err)
			}
			return as[0].String()
		}
		if got := lookup(); got != "192.0.2.10" {
			t.Fatalf("before reload: %s", got)
		}
		hup(t, p, path, cfg("192.0.2.99"))
		reloaded(t, p, addr(4), "applied: adot.server.records.0 changed", 1)
		eventually(t, "the new record served", func() bool { return lookup() == "192.0.2.99" })
	})
}

// TestRouteReloadOnACSFedABR: on a routed ABR whose keys come from its
// ACS (a separate process), a [[route]] added to the file is in force
// after SIGHUP, while a stream through the ABR's AF_XDP sockets loses no
// datagram: routes are their own part of the tables, and the feed keeps
// owning the PSAV part.
func TestRouteReloadOnACSFedABR(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	al := newAlliance(t)
	topo, must := newTopology(t)
	h1, err := topo.NS("nh1")
	must(err)
	abr, err := topo.NS("nabr")
	must(err)
	h2, err := topo.NS("nh2")
	must(err)
	const h1MAC, inMAC, outMAC, h2MAC = "02:00:00:00:03:10", "02:00:00:00:03:01", "02:00:00:00:04:01", "02:00:00:00:04:10"
	must(topo.Veth(h1, "eth0", h1MAC, abr, "in", inMAC))
	must(topo.Veth(abr, "out", outMAC, h2, "eth0", h2MAC))
	for _, c := range [][]string{
		{"-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"},
		{"-n", h1, "route", "add", "default", "via", "198.51.100.1"},
		{"-n", abr, "addr", "add", "198.51.100.1/24", "dev", "in"},
		{"-n", abr, "addr", "add", "203.0.113.1/24", "dev", "out"},
		{"-n", abr, "link", "set", "lo", "up"},
		{"-n", h2, "addr", "add", "203.0.113.10/24", "dev", "eth0"},
		{"-n", h2, "addr", "add", "192.0.2.10/24", "dev", "eth0"},
		{"-n", h2, "route", "add", "default", "via", "203.0.113.1"},
	} {
		must(netlab.IP(c...))
	}
	for _, ns := range []string{h1, h2} {
		if _, err := netlab.Exec(ns, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
	}

	// AS 65001's ACS in its own process (in the ABR's namespace, on
	// loopback), its peer absent: the feed carries this AS's tables.
	const acsAt, metricsAt = "127.0.0.1:7443", "127.0.0.1:9100"
	acsCfg := psavTOML(65001, "198.51.100.0/24") +
		al.acsSection(t, 65001, "198.51.100.0/24", acsAt, 65002, "127.0.0.1:1")

	abrCfg := psavTOML(65001, "198.51.100.0/24") + routedPorts + metricsTOML(metricsAt) +
		controlTOML(filepath.Join(al.dir, "nabr.sock")) + al.abrSection(t, 65001, "nabr", acsAt) +
		routeTOML("203.0.113.0/24", "outside", h2MAC) + routeTOML("198.51.100.0/24", "outside", h1MAC)
	path := al.write(t, "nabr.toml", []byte(abrCfg))
	// The ABR first: alive (/healthz) but not ready (/readyz 503, naming
	// the feed) until the tables of its ACS are in force.
	p := startPsavd(t, bin, abr, path, false)
	eventually(t, "/healthz", func() bool { code, _ := httpGet(abr, metricsAt, "/healthz"); return code == 200 })
	if code, body := httpGet(abr, metricsAt, "/readyz"); code != 503 || !strings.Contains(body, "abr-feed") {
		t.Fatalf("/readyz before the ACS runs: %d %q", code, body)
	}
	startPsavd(t, bin, abr, al.write(t, "nacs.toml", []byte(acsCfg)), true)
	eventually(t, "/readyz 200 once the feed's tables are in force", func() bool {
		code, _ := httpGet(abr, metricsAt, "/readyz")
		return code == 200
	})
	eventually(t, "the ready log line", func() bool { return readyWord.MatchString(p.log.String()) })
	eventually(t, "the feed to connect", func() bool {
		return metric(t, abr, metricsAt, "psavd_abr_feed_state", map[string]string{"state": "connected"}) == 1
	})
	// The ABR-only node through psavctl and its socket.
	abrSock := filepath.Join(al.dir, "nabr.sock")
	if out := psavctl(t, abrSock, "status"); !strings.Contains(out, "connected") || !strings.Contains(out, "abr-feed") {
		t.Fatalf("status of the ABR:\n%s", out)
	}
	if m := psavctlJSON(t, abrSock, "status"); m["abrFeedState"] != "connected" {
		t.Fatalf("status -json of the ABR: %v", m)
	}

	// Receivers at h2 for the stream (203.0.113.10) and for the new
	// route's destination (192.0.2.10).
	var streamSink, newSink net.PacketConn
	must(netlab.Do(h2, func() error {
		var err error
		if streamSink, err = net.ListenPacket("udp", "203.0.113.10:5555"); err != nil {
			return err
		}
		newSink, err = net.ListenPacket("udp", "192.0.2.10:5556")
		return err
	}))
	defer streamSink.Close()
	defer newSink.Close()
	var got sync.Map
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := streamSink.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 10 && string(buf[:2]) == "rr" {
				got.Store(binary.BigEndian.Uint64(buf[2:10]), true)
			}
		}
	}()
	var newArrived atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := newSink.ReadFrom(buf); err != nil {
				return
			}
			newArrived.Add(1)
		}
	}()

	// The stream h1 → 203.0.113.10, one datagram every 2 ms, across the
	// reload.
	var sent atomic.Uint64
	stop := make(chan struct{})
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- netlab.Do(h1, func() error {
			c, err := net.Dial("udp", "203.0.113.10:5555")
			if err != nil {
				return err
			}
			defer c.Close()
			var b [10]byte
			copy(b[:], "rr")
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return nil
				case <-time.After(2 * time.Millisecond):
				}
				binary.BigEndian.PutUint64(b[2:], i)
				if _, err := c.Write(b[:]); err != nil {
					return err
				}
				sent.Add(1)
			}
		})
	}()
	eventually(t, "the stream through the ABR", func() bool { _, ok := got.Load(uint64(20)); return ok })

	toNew := func() { must(sendDatagram(h1, "192.0.2.10:5556", "new-route")) }
	noRoute := map[string]string{"reason": "no-route"}
	toNew()
	eventually(t, "192.0.2.10 dropped no-route before the reload", func() bool {
		return metric(t, abr, metricsAt, "psavd_drops_total", noRoute) >= 1
	})

	must(os.WriteFile(path, []byte(abrCfg+routeTOML("192.0.2.0/24", "outside", h2MAC)), 0o600))
	must(p.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, "the route reload applied", func() bool { return strings.Contains(p.log.String(), "applied: route[2] added") })
	eventually(t, "192.0.2.10 reached through the new route", func() bool {
		toNew()
		time.Sleep(50 * time.Millisecond)
		return newArrived.Load() > 0
	})
	if v := metric(t, abr, metricsAt, "psavd_abr_feed_state", map[string]string{"state": "connected"}); v != 1 {
		t.Fatal("the feed is no longer connected after the route reload")
	}
	if out := psavctl(t, abrSock, "counters"); !strings.Contains(out, "outside") || !strings.Contains(out, "transmitted") {
		t.Fatalf("counters of the ABR:\n%s", out)
	}
	psavctlJSON(t, abrSock, "counters")
	if out := psavctl(t, abrSock, "reload"); !strings.Contains(out, "no change") {
		t.Fatalf("reload of the ABR: %s", out)
	}

	// Run on past the reload, then count: none of the stream lost.
	mark := sent.Load() + 200
	eventually(t, "the stream to run on", func() bool { return sent.Load() >= mark })
	close(stop)
	must(<-streamDone)
	n := sent.Load()
	var lost []uint64
	eventually(t, "every datagram of the stream at h2", func() bool {
		lost = lost[:0]
		for i := uint64(0); i < n; i++ {
			if _, ok := got.Load(i); !ok {
				lost = append(lost, i)
			}
		}
		return len(lost) == 0
	})
	t.Logf("%d datagrams across the route reload, none lost", n)
}

// psavctl runs the psavctl binary (built beside psavd) against the node
// whose control socket is sock; it fails the test on a non-zero exit.
func psavctl(t *testing.T, sock string, args ...string) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(psavdBinary(t)), "psavctl")
	out, err := exec.Command(bin, append([]string{"-socket", sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("psavctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// psavctlJSON runs psavctl … -json and decodes its output.
func psavctlJSON(t *testing.T, sock string, args ...string) map[string]any {
	t.Helper()
	out := psavctl(t, sock, append(args, "-json")...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("psavctl %v -json: %v\n%s", args, err, out)
	}
	return m
}

// TestPsavctlThroughSocket: psavctl's local commands through the
// management socket, text and -json, against an ACS-only, a
// Map-Server-only and an xTR-only node (the ABR-only one is in
// TestRouteReloadOnACSFedABR); a command for a role the node does not run
// is refused, naming why.
func TestPsavctlThroughSocket(t *testing.T) {
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 3)
	dir := t.TempDir()
	sock := func(name string) string { return filepath.Join(dir, name+".sock") }
	control := func(name string) string { return controlTOML(sock(name)) }

	acsCfg := psavTOML(65001) + control("acs") +
		al.acsSection(t, 65001, "198.51.100.0/24", fmt.Sprintf("127.0.0.1:%d", ports[0]), 65002, "127.0.0.1:1")
	startPsavd(t, bin, "", al.write(t, "ctl-acs.toml", []byte(acsCfg)), true)
	msAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	startPsavd(t, bin, "", al.write(t, "ctl-ms.toml", []byte(strings.Replace(fmt.Sprintf(mapServerOnly, "127.0.0.1:0", msAddr, ""),
		"[metrics]\nlisten = \"127.0.0.1:0\"\n", control("ms"), 1))), true)
	xtrCfg := control("xtr") + fmt.Sprintf(`[lisp]
rlocs = ["127.0.0.1"]
control_listen = "127.0.0.1:%d"
[[lisp.database]]
eid = "10.10.1.0/24"
rlocs = [{ address = "127.0.0.1", priority = 1, weight = 100 }]
[[lisp.register_to]]
address = "127.0.0.1"
key = "secret"
key_id = 1
want_notify = true
[[lisp.map_resolver]]
address = "127.0.0.1"
`, ports[2])
	// The xTR registers at 127.0.0.1:4342: the Map-Server listens there
	// only if ports[1] is 4342, so registrations are checked on the
	// Map-Server by listing, not by content.
	startPsavd(t, bin, "", al.write(t, "ctl-xtr.toml", []byte(xtrCfg)), true)

	// ACS-only.
	st := psavctl(t, sock("acs"), "status")
	for _, want := range []string{"node", "psavd ", "asn", "65001", "ready", "acs", "ACS:"} {
		if !strings.Contains(st, want) {
			t.Fatalf("status of the ACS lacks %q:\n%s", want, st)
		}
	}
	if m := psavctlJSON(t, sock("acs"), "status"); m["ready"] != true || m["acs"] == nil {
		t.Fatalf("status -json: %v", m)
	}
	if out := psavctl(t, sock("acs"), "members"); !strings.Contains(out, "65001") || !strings.Contains(out, "198.51.100.0/24") {
		t.Fatalf("members:\n%s", out)
	}
	if m := psavctlJSON(t, sock("acs"), "members"); len(m["digest"].(string)) != 64 {
		t.Fatalf("members -json: %v", m)
	}
	psavctl(t, sock("acs"), "tables")
	psavctlJSON(t, sock("acs"), "tables")
	if out := psavctl(t, sock("acs"), "reload"); !strings.Contains(out, "no change") {
		t.Fatalf("reload: %s", out)
	}
	if m := psavctlJSON(t, sock("acs"), "reload"); m["applied"] != true {
		t.Fatalf("reload -json: %v", m)
	}

	// Map-Server-only.
	if out := psavctl(t, sock("ms"), "status"); !strings.Contains(out, "map-server") {
		t.Fatalf("status of the Map-Server:\n%s", out)
	}
	if out := psavctl(t, sock("ms"), "registrations"); !strings.Contains(out, "site") {
		t.Fatalf("registrations:\n%s", out)
	}
	psavctlJSON(t, sock("ms"), "registrations")
	psavctl(t, sock("ms"), "reload")

	// xTR-only.
	if out := psavctl(t, sock("xtr"), "map-cache"); !strings.Contains(out, "eid") {
		t.Fatalf("map-cache:\n%s", out)
	}
	psavctlJSON(t, sock("xtr"), "map-cache")
	if out := psavctl(t, sock("xtr"), "status"); !strings.Contains(out, "xtr") {
		t.Fatalf("status of the xTR:\n%s", out)
	}

	// A role the node does not run: refused with the reason, exit 1.
	ctl := filepath.Join(filepath.Dir(bin), "psavctl")
	out, err := exec.Command(ctl, "-socket", sock("ms"), "members").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "runs no ACS") {
		t.Fatalf("members on a Map-Server: %v\n%s", err, out)
	}
	if _, err := exec.Command(ctl, "-socket", filepath.Join(dir, "none.sock"), "status").CombinedOutput(); err == nil {
		t.Fatal("status without a node succeeded")
	}
}

// TestQuarantineAtStart: a stored membership record the ACS can no longer
// take (corrupted here; a retired community key is the same case) does not
// keep the ACS down: it starts, moves the file to the quarantine
// directory, says so in the log and in psavd_membership_quarantined_files.
func TestQuarantineAtStart(t *testing.T) {
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 2)
	cfg := psavTOML(65001) + metricsTOML(fmt.Sprintf("127.0.0.1:%d", ports[1])) +
		al.acsSection(t, 65001, "198.51.100.0/24", fmt.Sprintf("127.0.0.1:%d", ports[0]), 65002, "127.0.0.1:1")
	path := al.write(t, "quarantine.toml", []byte(cfg))
	p := startPsavd(t, bin, "", path, true)
	p.Stop()
	dir := filepath.Join(al.dir, "members65001")
	bad := filepath.Join(dir, "AS65009.rec")
	if err := os.WriteFile(bad, []byte("not a record"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startPsavd(t, bin, "", path, true)
	if !strings.Contains(p.log.String(), "membership record quarantined") || !strings.Contains(p.log.String(), "AS65009.rec") {
		t.Fatalf("no quarantine logged:\n%s", p.log.String())
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatal("the bad file is still in the membership directory")
	}
	if q, _ := filepath.Glob(filepath.Join(dir, "quarantine", "AS65009.rec.*")); len(q) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
	if v := metric(t, "", fmt.Sprintf("127.0.0.1:%d", ports[1]), "psavd_membership_quarantined_files", nil); v != 1 {
		t.Fatalf("psavd_membership_quarantined_files = %v", v)
	}
}
