package pull

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/netlab"
)

// bindLab is the pull-mode lab of pull_bind_test.go: a Linux bridge in its
// own namespace ("sw") and, each in its own namespace on a veth to the
// bridge, BIND 9 ("dns", 10.77.0.2, DoT on TLS 1.3), five map-servers
// ("ms0"…"ms4", 10.77.0.(10+i), UDP 4342) and the xTR ("xtr",
// 10.77.0.100), whose Node, DoT client and LISP sockets all live in that
// namespace.
type bindLab struct {
	t      *testing.T
	topo   *netlab.Topology
	xtr    string   // namespace of the xTR
	msNS   []string // namespace of map-server i
	bind   *bindserver.BIND
	client *adot.Client // the xTR's DoT client (cache off: Node's cache is what is tested)
	serial uint32
}

const bindLabServers = 5 // map-servers 0…3 carry the zone, 4 is the spare

func bindMSAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(10 + i)}) }

var (
	bindDNSAddr = netip.MustParseAddr("10.77.0.2")
	bindXTRAddr = netip.MustParseAddr("10.77.0.100")
)

// newBindLab builds the topology and starts named, or skips without root,
// iproute2 or named. Everything is removed on cleanup, also on failure:
// named first, then exactly the namespaces this run created.
func newBindLab(t *testing.T, spec zoneSpec) *bindLab {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	named := testtool.Path(t, "named", "bind9")
	l := &bindLab{t: t, topo: netlab.New()}
	t.Cleanup(func() {
		if err := l.topo.Close(); err != nil {
			t.Error(err)
		}
	})
	sw, err := l.topo.NS("sw")
	if err != nil {
		t.Skipf("network namespaces: %v", err)
	}
	for _, s := range [][]string{
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
	} {
		if err := netlab.IP(s...); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(role string, addr netip.Addr) string {
		ns, err := l.topo.NS(role)
		if err != nil {
			t.Fatal(err)
		}
		port := "p" + role
		if err := l.topo.Veth(ns, "eth0", "", sw, port, ""); err != nil {
			t.Fatal(err)
		}
		for _, s := range [][]string{
			{"-n", sw, "link", "set", port, "master", "br0"},
			{"-n", ns, "addr", "add", addr.String() + "/24", "dev", "eth0"},
		} {
			if err := netlab.IP(s...); err != nil {
				t.Fatal(err)
			}
		}
		return ns
	}
	dnsNS := attach("dns", bindDNSAddr)
	l.xtr = attach("xtr", bindXTRAddr)
	for i := range bindLabServers {
		l.msNS = append(l.msNS, attach(fmt.Sprintf("ms%d", i), bindMSAddr(i)))
	}

	l.serial = 1
	b, err := bindserver.Start("", bindserver.Options{
		Named: named, Zone: testSuffix + ".", ZoneText: l.zoneText(spec),
		NetNS: dnsNS, ListenAddr: bindDNSAddr.String(),
		// named's readiness is checked from the xTR, across the bridge.
		Enter: l.inXTR,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() }) // runs before the namespaces go
	l.bind = b
	if !strings.Contains(b.Log(), "9.18") {
		t.Logf("named is not 9.18:\n%s", firstLines(b.Log(), 3))
	}
	client, err := adot.NewClient(adot.Config{
		Servers: []string{b.TLSAddr}, ServerName: b.ServerName, RootCAs: b.PKI.CAPool, MaxCacheEntries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	l.client = client
	return l
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// inXTR runs fn with its sockets opened in the xTR's namespace. Every call
// that may resolve (and so dial BIND: the DoT client dials in the calling
// goroutine) goes through it.
func (l *bindLab) inXTR(fn func() error) error { return netlab.Do(l.xtr, fn) }

// zoneText renders spec (index → "A <addr>" records, as in pull_test.go
// but with the lab's addresses) under the current serial, TTL 1 h: with an
// injected clock in Node, Refresh decides when a name is re-resolved.
func (l *bindLab) zoneText(spec zoneSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s.\n$TTL 3600\n", testSuffix)
	fmt.Fprintf(&b, "@ IN SOA ns.example.test. hostmaster.example.test. %d 3600 600 86400 60\n", l.serial)
	fmt.Fprintf(&b, "@ IN NS ns.example.test.\n")
	idx := make([]uint64, 0, len(spec))
	for i := range spec {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		for _, rr := range spec[i] {
			fmt.Fprintf(&b, "%d IN %s\n", i, rr)
		}
	}
	return b.String()
}

// setZone rewrites the zone file and reloads named (no restart), returning
// once named serves the new serial.
func (l *bindLab) setZone(spec zoneSpec) {
	l.t.Helper()
	l.serial++
	if err := l.bind.Reload(l.zoneText(spec), 30*time.Second); err != nil {
		l.t.Fatal(err)
	}
}

// bindLayout: names 0…names-1, name i → map-server i mod servers.
func bindLayout(names, servers int) zoneSpec {
	z := zoneSpec{}
	for i := range names {
		z[uint64(i)] = []string{"A " + bindMSAddr(i%servers).String()}
	}
	return z
}

// bindMS is a map-server running in its namespace behind a Guard.
type bindMS struct {
	addr  netip.AddrPort
	srv   *mapserver.Server
	guard *Guard
}

// startMapServers starts a fresh mapserver.Server behind a Guard on
// 10.77.0.(10+i):4342 in namespace ms<i> for every map-server; server i
// owns owned(i) under srvCfg. They stop (sockets closed) at t's cleanup.
func (l *bindLab) startMapServers(t *testing.T, srvCfg Config, owned func(int) []uint64, drop bool) []*bindMS {
	t.Helper()
	srvCfg.Resolver, srvCfg.Suffix = l.client, testSuffix // the Guard only hashes; New requires both
	sp, err := New(srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns []*net.UDPConn
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	var out []*bindMS
	for i, ns := range l.msNS {
		ap := netip.AddrPortFrom(bindMSAddr(i), DefaultControlPort)
		var c *net.UDPConn
		if err := netlab.Do(ns, func() (err error) {
			c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		srv, err := mapserver.New(mapserver.Config{Sites: []mapserver.Site{{
			Name: "decent", Key: testKey, KeyID: lisp.KeyIDHMACSHA256128, AcceptMoreSpecifics: true,
			EIDPrefixes: []mapserver.EIDPrefix{{IID: 0, Prefix: netip.MustParsePrefix("0.0.0.0/0")}, {IID: 0, Prefix: netip.MustParsePrefix("::/0")}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		g := &Guard{Node: sp, Server: srv, Owned: owned(i), Drop: drop, Tick: 20 * time.Millisecond}
		g.OnMismatch = func(e *MismatchError) { t.Logf("map-server %d: %v", i, e) }
		out = append(out, &bindMS{addr: ap, srv: srv, guard: g})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Serve(ctx, c); err != nil {
				t.Errorf("map-server %d: Serve: %v", i, err)
			}
		}()
	}
	return out
}

// msIndex returns the map-server number of ap, -1 if none.
func msIndex(ms []*bindMS, ap netip.AddrPort) int {
	for i, m := range ms {
		if m.addr == ap {
			return i
		}
	}
	return -1
}

func msRegistered(m *bindMS) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range m.srv.Registrations(time.Now()) {
		out = append(out, r.EID.Prefix)
	}
	return sortPrefixes(out)
}

// pull is the xTR's Node (BIND through the xTR's DoT client, port 4342).
func (l *bindLab) pull(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Resolver, cfg.Suffix = l.client, testSuffix
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// xtrConn is a UDP socket of the xTR, 10.77.0.100:<ephemeral>.
func (l *bindLab) xtrConn(t *testing.T) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := l.inXTR(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bindXTRAddr, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mapServers is p.MapServers from the xTR's namespace.
func (l *bindLab) mapServers(p *Node, eid netip.Prefix) (s []netip.AddrPort, err error) {
	err = l.inXTR(func() (e error) { s, e = p.MapServers(context.Background(), eid); return e })
	return s, err
}

// nextMapServer is p.NextMapServer from the xTR's namespace.
func (l *bindLab) nextMapServer(p *Node, eid netip.Prefix) (s netip.AddrPort, err error) {
	err = l.inXTR(func() (e error) { s, e = p.NextMapServer(context.Background(), eid); return e })
	return s, err
}

// sendRegister is p.Register (resolving from the xTR's namespace) of one
// record for eid, M bit as given.
func (l *bindLab) sendRegister(p *Node, c *net.UDPConn, eid netip.Prefix, wantNotify bool) (sent []netip.AddrPort, err error) {
	m := &lisp.MapRegister{ProxyReply: true, WantMapNotify: wantNotify, Nonce: nonceSeq.Add(1), Records: []lisp.MappingRecord{record(eid)}}
	err = l.inXTR(func() (e error) { sent, e = p.Register(context.Background(), c, m, testAuth); return e })
	return sent, err
}

// register sends a Map-Register for eid (M set) and waits for a Map-Notify
// from every map-server it went to, across the bridge; it returns those.
func (l *bindLab) register(t *testing.T, p *Node, c *net.UDPConn, eid netip.Prefix) []netip.AddrPort {
	t.Helper()
	sent, err := l.sendRegister(p, c, eid, true)
	if err != nil {
		t.Fatalf("Register %v: %v", eid, err)
	}
	var from []netip.AddrPort
	buf := make([]byte, 65536)
	for range sent {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, f, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("Map-Notify for %v (sent to %v, got %v): %v", eid, sent, from, err)
		}
		if msg, err := lisp.Parse(buf[:n]); err != nil || msg.Type() != lisp.TypeMapNotify {
			t.Fatalf("from %v: %v %v", f, msg, err)
		}
		from = append(from, f)
	}
	slices.SortFunc(from, netip.AddrPort.Compare)
	slices.SortFunc(sent, netip.AddrPort.Compare)
	if !slices.Equal(from, sent) {
		t.Fatalf("Map-Notifies from %v, sent to %v", from, sent)
	}
	return sent
}
