package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/oorpeer"
)

// oorPair is two namespaces joined by one veth: psavd on a (10.77.0.1),
// OOR on b (10.77.0.2, its RLOC interface "rloc").
type oorPair struct {
	topo           *netlab.Topology
	psavdNS, oorNS string
	bin, buildDir  string
	dir            string
}

const (
	oorPsavdAddr = "10.77.0.1"
	oorRLOC      = "10.77.0.2"
	oorEIDHost   = "10.9.1.1"
)

// newOORBase skips where namespaces or the OOR sources are missing, builds
// OOR and returns a pair with an empty topology (deleted at cleanup) and a
// work directory.
func newOORBase(t *testing.T) *oorPair {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	bin, build := oorpeer.Need(t, filepath.Join("..", ".."))
	topo, _ := newTopology(t)
	return &oorPair{topo: topo, bin: bin, buildDir: build, dir: t.TempDir()}
}

// ns creates the namespace for role name.
func (p *oorPair) ns(t *testing.T, name string) string {
	t.Helper()
	n, err := p.topo.NS(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ip runs ip(8) commands, failing the test on the first error.
func ipCmds(t *testing.T, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if err := netlab.IP(c...); err != nil {
			t.Fatal(err)
		}
	}
}

func newOORPair(t *testing.T) *oorPair {
	t.Helper()
	p := newOORBase(t)
	p.psavdNS, p.oorNS = p.ns(t, "ops"), p.ns(t, "oor")
	if err := p.topo.Veth(p.psavdNS, "msl", "02:00:00:16:00:01", p.oorNS, "rloc", "02:00:00:16:00:02"); err != nil {
		t.Fatal(err)
	}
	ipCmds(t,
		[]string{"-n", p.psavdNS, "addr", "add", oorPsavdAddr + "/24", "dev", "msl"},
		[]string{"-n", p.oorNS, "addr", "add", oorRLOC + "/24", "dev", "rloc"},
		// An address of OOR's EID prefix for traffic into its ITR (its
		// source rule sends 10.9.1.0/24's packets to lispTun0).
		[]string{"-n", p.oorNS, "addr", "add", oorEIDHost + "/32", "dev", "lo"},
	)
	return p
}

// startOOR runs OOR in the pair's OOR namespace with conf; stopped at
// cleanup, its log shown when the test failed.
func (p *oorPair) startOOR(t *testing.T, name, conf string) *oorpeer.OOR {
	t.Helper()
	return p.startOORIn(t, p.oorNS, name, conf)
}

// startOORIn is startOOR in namespace ns.
func (p *oorPair) startOORIn(t *testing.T, ns, name, conf string) *oorpeer.OOR {
	t.Helper()
	wd := filepath.Join(p.dir, name)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := oorpeer.Start(p.bin, p.buildDir, ns, wd, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			log := o.Log()
			if len(log) > 20000 {
				log = "…" + log[len(log)-20000:]
			}
			t.Logf("OOR %s log:\n%s", name, log)
		}
	})
	return o
}

// oorConf joins OOR configuration blocks.
func oorConf(blocks ...string) string { return strings.Join(blocks, "\n") + "\n" }

// oorLab is two LISP sites and OOR's mapping system (issue 16, must-shows 2
// and 3):
//
//	ph ─ ops (psavd xTR, AF_XDP "in" / "out") ─┐
//	                                            ├ ul (bridge, 10.77.0.0/24) ─ oorms (OOR Map-Server + Map-Resolver)
//	oh ─ oor (OOR xTR, kernel "eid" / "rloc") ─┘
//
// psavd's site is 10.10.2.0/24 and 2001:db8:10:2::/64 (host ph .10 / ::10),
// OOR's 10.9.1.0/24 and 2001:db8:9:1::/64 (host oh .10 / ::10). The RLOCs
// are IPv4 only: psavd 10.77.0.1, OOR 10.77.0.2, the Map-Server 10.77.0.3
// (the IPv6 EIDs travel IPv6-in-IPv4). Every veth has transmit checksum
// offload off: an AF_XDP copy of a locally sent packet would otherwise
// carry a partial checksum, and the tests compare packets octet for octet.
type oorLab struct {
	*oorPair           // psavdNS: the psavd xTR; oorNS: the OOR xTR
	msNS, ulNS         string
	psavdHost, oorHost string
}

const (
	oorMSAddr        = "10.77.0.3"
	oorLabPsavdEIDs  = "10.10.2.0/24"
	oorLabPsavdHost  = "10.10.2.10"
	oorLabOOREIDs    = "10.9.1.0/24"
	oorLabOORHost    = "10.9.1.10"
	oorLabPsavdEIDs6 = "2001:db8:10:2::/64"
	oorLabPsavdHost6 = "2001:db8:10:2::10"
	oorLabOOREIDs6   = "2001:db8:9:1::/64"
	oorLabOORHost6   = "2001:db8:9:1::10"
	oorLabPsavdKey   = "psavd-site-secret"
	oorLabOORKey     = "oor-site-secret"
	oorLabPhMAC      = "02:00:00:16:01:10"
	oorLabInMAC      = "02:00:00:16:01:01"
	oorLabOutMAC     = "02:00:00:16:02:01"
	oorLabOORRLOCMAC = "02:00:00:16:02:02"
)

// oorLabRegisterTOML has psavd's ETR register with OOR's Map-Server (no AS
// Number LCAF, which OOR does not decode) and its ITR resolve through OOR's
// Map-Resolver.
var oorLabRegisterTOML = fmt.Sprintf(`[[lisp.register_to]]
address = %[1]q
key = %[2]q
key_id = 1
want_notify = true
as_number_lcaf = false
[[lisp.map_resolver]]
address = %[1]q
`, oorMSAddr, oorLabPsavdKey)

func newOORLab(t *testing.T) *oorLab {
	t.Helper()
	skipUnlessLab(t)
	l := &oorLab{oorPair: newOORBase(t)}
	p := l.oorPair
	p.psavdNS, p.oorNS = p.ns(t, "ops"), p.ns(t, "oor")
	l.msNS, l.ulNS = p.ns(t, "oorms"), p.ns(t, "ul")
	l.psavdHost, l.oorHost = p.ns(t, "ph"), p.ns(t, "oh")
	type end struct{ ns, dev, mac string }
	links := [][2]end{
		{{l.psavdHost, "eth0", oorLabPhMAC}, {p.psavdNS, "in", oorLabInMAC}},
		{{p.psavdNS, "out", oorLabOutMAC}, {l.ulNS, "p1", ""}},
		{{p.oorNS, "rloc", oorLabOORRLOCMAC}, {l.ulNS, "p2", ""}},
		{{l.msNS, "rloc", "02:00:00:16:02:03"}, {l.ulNS, "p3", ""}},
		{{l.oorHost, "eth0", "02:00:00:16:03:10"}, {p.oorNS, "eid", "02:00:00:16:03:01"}},
	}
	for _, k := range links {
		if err := p.topo.Veth(k[0].ns, k[0].dev, k[0].mac, k[1].ns, k[1].dev, k[1].mac); err != nil {
			t.Fatal(err)
		}
	}
	ipCmds(t,
		[]string{"-n", l.ulNS, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", l.ulNS, "link", "set", "br0", "up"},
		[]string{"-n", l.ulNS, "link", "set", "p1", "master", "br0"},
		[]string{"-n", l.ulNS, "link", "set", "p2", "master", "br0"},
		[]string{"-n", l.ulNS, "link", "set", "p3", "master", "br0"},
		[]string{"-n", l.psavdHost, "addr", "add", oorLabPsavdHost + "/24", "dev", "eth0"},
		[]string{"-n", l.psavdHost, "route", "add", "default", "via", "10.10.2.1"},
		[]string{"-n", p.psavdNS, "addr", "add", "10.10.2.1/24", "dev", "in"},
		[]string{"-n", p.psavdNS, "addr", "add", oorPsavdAddr + "/24", "dev", "out"},
		[]string{"-n", p.oorNS, "addr", "add", oorRLOC + "/24", "dev", "rloc"},
		[]string{"-n", p.oorNS, "addr", "add", oorEIDHost + "/24", "dev", "eid"},
		[]string{"-n", l.msNS, "addr", "add", oorMSAddr + "/24", "dev", "rloc"},
		[]string{"-n", l.oorHost, "addr", "add", oorLabOORHost + "/24", "dev", "eth0"},
		[]string{"-n", l.oorHost, "route", "add", "default", "via", oorEIDHost},
		[]string{"-n", l.psavdHost, "addr", "add", oorLabPsavdHost6 + "/64", "dev", "eth0", "nodad"},
		[]string{"-n", l.psavdHost, "-6", "route", "add", "default", "via", "2001:db8:10:2::1"},
		[]string{"-n", p.psavdNS, "addr", "add", "2001:db8:10:2::1/64", "dev", "in", "nodad"},
		[]string{"-n", p.oorNS, "addr", "add", "2001:db8:9:1::1/64", "dev", "eid", "nodad"},
		[]string{"-n", l.oorHost, "addr", "add", oorLabOORHost6 + "/64", "dev", "eth0", "nodad"},
		[]string{"-n", l.oorHost, "-6", "route", "add", "default", "via", "2001:db8:9:1::1"},
	)
	// OOR's xTR is a kernel router between its EID link and lispTun0 (the
	// decapsulated packets arrive there with sources no route points back
	// through).
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"} {
		if _, err := netlab.Exec(p.oorNS, "sysctl", "-w", s); err != nil {
			t.Fatalf("sysctl %s: %v", s, err)
		}
	}
	for _, x := range [][2]string{{l.psavdHost, "eth0"}, {p.psavdNS, "in"}, {p.psavdNS, "out"}, {p.oorNS, "rloc"}, {p.oorNS, "eid"},
		{l.msNS, "rloc"}, {l.oorHost, "eth0"}, {l.ulNS, "p1"}, {l.ulNS, "p2"}, {l.ulNS, "p3"}} {
		if _, err := netlab.Exec(x[0], "ethtool", "-K", x[1], "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
	}
	return l
}

// startMapServer runs OOR's Map-Server (which is its Map-Resolver too)
// with a site for each prefix. Map-Requests for OOR's IPv6 prefix are
// proxy-replied by the Map-Server; all others go on to the ETR that
// registered (neither xTR asks for proxy replies), so both ways of
// answering are exercised.
func (l *oorLab) startMapServer(t *testing.T) *oorpeer.OOR {
	t.Helper()
	site := func(eids, key string, proxy bool) string {
		return fmt.Sprintf("lisp-site {\n eid-prefix = %s\n key-type = 1\n key = %s\n iid = 0\n accept-more-specifics = false\n proxy-reply = %v\n}", eids, key, proxy)
	}
	o := l.startOORIn(t, l.msNS, "ms", oorConf("debug = 2", "operating-mode = MS", "control-iface = rloc",
		site(oorLabOOREIDs, oorLabOORKey, false), site(oorLabOOREIDs6, oorLabOORKey, true),
		site(oorLabPsavdEIDs, oorLabPsavdKey, false), site(oorLabPsavdEIDs6, oorLabPsavdKey, false)))
	if err := o.Wait(30*time.Second, func() bool { return strings.Contains(o.Log(), "started") }); err != nil {
		t.Fatalf("OOR Map-Server not started: %v", err)
	}
	return o
}

// startOORxTR runs OOR's xTR for 10.9.1.0/24 and 2001:db8:9:1::/64 (IPv4
// locator; tun data plane, LISP encapsulation), registering with and
// resolving through OOR's Map-Server, and waits for both registrations to
// be confirmed.
func (l *oorLab) startOORxTR(t *testing.T) *oorpeer.OOR {
	t.Helper()
	db := func(eids string) string {
		return fmt.Sprintf("database-mapping {\n eid-prefix = %s\n iid = 0\n ttl = 10\n rloc-iface {\n  interface = rloc\n  ip_version = 4\n  priority = 1\n  weight = 100\n }\n}", eids)
	}
	o := l.startOOR(t, "xtr", oorConf(
		"debug = 2", "operating-mode = xTR", "encapsulation = LISP",
		fmt.Sprintf("map-resolver = { %s }", oorMSAddr),
		fmt.Sprintf("map-server {\n address = %s\n key-type = 1\n key = %s\n proxy-reply = off\n}", oorMSAddr, oorLabOORKey),
		db(oorLabOOREIDs), db(oorLabOOREIDs6),
	))
	for _, eids := range []string{oorLabOOREIDs, oorLabOOREIDs6} {
		confirmed := "Map-Notify message confirms correct registration of " + eids
		if err := o.Wait(60*time.Second, func() bool { return o.Count(confirmed) >= 1 }); err != nil {
			t.Fatalf("OOR xTR's registration of %s not confirmed: %v", eids, err)
		}
	}
	return o
}

// startPsavdxTR runs psavd as the xTR of 10.10.2.0/24 and
// 2001:db8:10:2::/64 (IPv4 locator) on AF_XDP ports (routed; "out"
// encapsulates LISP towards the OOR xTR's MAC, the only next hop on the
// bridge; neither site is another PSAV member, so nothing is tagged): its ETR registers with OOR's Map-Server (no AS
// Number LCAF, which OOR does not decode), its ITR resolves through OOR's
// Map-Resolver. It returns the control socket and the metrics address.
func (l *oorLab) startPsavdxTR(t *testing.T) (sock, metricsAt string) {
	t.Helper()
	sock, metricsAt = filepath.Join(l.dir, "psavd.sock"), "127.0.0.1:9118"
	cfg := controlTOML(sock) + metricsTOML(metricsAt) + psavTOML(65002, oorLabPsavdEIDs, oorLabPsavdEIDs6) + routedLISPPorts +
		routeTOML(oorLabPsavdEIDs, "inside", oorLabPhMAC) + routeTOML(oorLabPsavdEIDs6, "inside", oorLabPhMAC) +
		routeTOML("0.0.0.0/0", "outside", oorLabOORRLOCMAC) + routeTOML("::/0", "outside", oorLabOORRLOCMAC) +
		fmt.Sprintf(`[lisp]
rlocs = [%[1]q]
control_listen = "%[1]s:4342"
[[lisp.database]]
eid = %[2]q
rlocs = [{ address = %[1]q, priority = 1, weight = 100 }]
[[lisp.database]]
eid = %[3]q
rlocs = [{ address = %[1]q, priority = 1, weight = 100 }]
`, oorPsavdAddr, oorLabPsavdEIDs, oorLabPsavdEIDs6) + oorLabRegisterTOML
	path := filepath.Join(l.dir, "xtr.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startPsavd(t, psavdBinary(t), l.psavdNS, path, true)
	etr := func(event string) float64 {
		return metric(t, l.psavdNS, metricsAt, "psavd_lisp_xtr_etr_total", map[string]string{"event": event})
	}
	deadline := time.Now().Add(60 * time.Second)
	for etr("notify") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("psavd's registration with OOR's Map-Server not confirmed (registers %v, notifies refused %v)", etr("register"), etr("notify-refused"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	return sock, metricsAt
}

// udpSink is a UDP socket in a host namespace that keeps the payloads it
// receives (so the hosts answer no ICMP Port Unreachable, and the test
// sees the kernel accepted each datagram, checksum included).
type udpSink struct {
	c  *net.UDPConn
	mu sync.Mutex
	in []string
}

func newUDPSink(t *testing.T, ns, addr string) *udpSink {
	t.Helper()
	s := &udpSink{}
	if err := netlab.Do(ns, func() error {
		var err error
		s.c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := s.c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.in = append(s.in, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) got(payload string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.in, payload)
}

// ipPacket is the IP packet of a captured frame without link padding, or
// nil.
func ipPacket(f []byte) []byte {
	p := lab.IPOf(f)
	switch {
	case p == nil:
		return nil
	case p[0]>>4 == 4 && len(p) >= header.IPv4MinHeaderLen && header.IPv4(p).TotalLength() <= len(p):
		return p[:header.IPv4(p).TotalLength()]
	case p[0]>>4 == 6 && len(p) >= header.IPv6HeaderLen && header.IPv6HeaderLen+header.IPv6(p).PayloadLength() <= len(p):
		return p[:header.IPv6HeaderLen+header.IPv6(p).PayloadLength()]
	}
	return nil
}

// deliver sends UDP datagrams from namespace from to dst (a sink's
// address) until sink has one, numbering the payloads after prefix (the
// first ones may be dropped while the ITRs resolve), and returns the
// payload that arrived. The padding makes the datagram size.
func deliver(t *testing.T, from, dst, prefix string, size int, sink *udpSink) string {
	t.Helper()
	for i := range 60 {
		payload := fmt.Sprintf("%s-%03d-", prefix, i)
		payload += strings.Repeat("x", max(0, size-len(payload)))
		if err := sendDatagram(from, dst, payload); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if sink.got(payload) {
				return payload
			}
		}
	}
	t.Fatalf("no datagram %s-… to %s delivered in 60 tries", prefix, dst)
	return ""
}
