package pull

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/internal/testpki"
)

const testSuffix = "map-server.example.test"

var (
	testKey   = []byte("lisp-decent-test-key")
	testAuth  = lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: testKey}
	nonceSeq  atomic.Uint64
	msAddrFmt = "127.0.0.%d"
)

// zoneSpec maps an index label to the map-server numbers (127.0.0.(10+n))
// and extra records.
type zoneSpec map[uint64][]string

func layout(names, servers int) zoneSpec {
	z := zoneSpec{}
	for i := range names {
		z[uint64(i)] = []string{"A " + msIP(i%servers).String()}
	}
	return z
}

func msIP(n int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf(msAddrFmt, 10+n)) }

func buildZone(t testing.TB, spec zoneSpec) *adot.Zone {
	t.Helper()
	m := map[string][]string{"@": {"NS ns.example.test."}}
	for i, rrs := range spec {
		m[fmt.Sprint(i)] = rrs
	}
	// TTL 1 h: with the clock injected into Node, Refresh (≤ 30 s), not the
	// TTL, decides when a name is re-resolved (pull_ttl_test.go tests TTLs).
	z, err := adot.ZoneFromMap(testSuffix+".", 3600, m)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// testCert is a server certificate for ns.example.test and the pool of the
// CA that issued it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	p, err := testpki.NewServerPKI("", "ns.example.test")
	if err != nil {
		t.Fatal(err)
	}
	return p.Cert, p.CAPool
}

// lab: our DoT server for the zone, a DoT client without its own cache
// (so that Node's cache is what is tested), and map-servers 127.0.0.10+n,
// all on one UDP port.
type lab struct {
	dot    *adot.Server
	client *adot.Client
	port   uint16
	ms     []*msNode
}

type msNode struct {
	addr  netip.AddrPort
	srv   *mapserver.Server
	guard *Guard
}

// newLab starts n map-servers; server n owns the indexes owned(n) under
// the servers' configuration srvCfg (Resolver not needed there).
func newLab(t *testing.T, n int, spec zoneSpec, srvCfg Config, owned func(int) []uint64, drop bool) *lab {
	t.Helper()
	cert, pool := testCert(t)
	dot, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: buildZone(t, spec)})
	if err != nil {
		t.Fatal(err)
	}
	if err := dot.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dot.Close() })
	client, err := adot.NewClient(adot.Config{
		Servers: []string{dot.Addr().String()}, ServerName: "ns.example.test", RootCAs: pool, MaxCacheEntries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	conns := listenSamePort(t, n)
	l := &lab{dot: dot, client: client, port: conns[0].LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	srvCfg.Resolver = client
	sp, err := New(srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, c := range conns {
		srv, err := mapserver.New(mapserver.Config{Sites: []mapserver.Site{{
			Name: "decent", Key: testKey, KeyID: lisp.KeyIDHMACSHA256128, AcceptMoreSpecifics: true,
			EIDPrefixes: []mapserver.EIDPrefix{{IID: 0, Prefix: netip.MustParsePrefix("0.0.0.0/0")}, {IID: 0, Prefix: netip.MustParsePrefix("::/0")}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		g := &Guard{Node: sp, Server: srv, Owned: owned(i), Drop: drop, Tick: 20 * time.Millisecond}
		g.OnMismatch = func(e *MismatchError) { t.Logf("map-server %d: %v", i, e) }
		node := &msNode{addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), srv: srv, guard: g}
		l.ms = append(l.ms, node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Serve(ctx, c); err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()
	}
	return l
}

// listenSamePort binds 127.0.0.10 … 127.0.0.(10+n-1) on one UDP port.
func listenSamePort(t *testing.T, n int) []*net.UDPConn {
	t.Helper()
	for range 20 {
		first, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(msIP(0), 0)))
		if err != nil {
			t.Skipf("loopback %v: %v", msIP(0), err)
		}
		port := first.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		conns := []*net.UDPConn{first}
		for i := 1; i < n; i++ {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(msIP(i), port)))
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		if len(conns) == n {
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			return conns
		}
		for _, c := range conns {
			c.Close()
		}
	}
	t.Skip("could not bind the map-server addresses on one port")
	return nil
}

// pull is a node's Node against the lab.
func (l *lab) pull(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Resolver, cfg.ControlPort, cfg.Suffix = l.client, l.port, testSuffix
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (l *lab) node(ap netip.AddrPort) int {
	for i, m := range l.ms {
		if m.addr == ap {
			return i
		}
	}
	return -1
}

func etr(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Skipf("loopback: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func record(p netip.Prefix) lisp.MappingRecord {
	return lisp.MappingRecord{
		TTL: 1440, EIDMaskLen: uint8(p.Bits()), Authoritative: true, EID: lisp.IPAddr(p.Addr()),
		Locators: []lisp.Locator{{Priority: 1, Weight: 100, Reachable: true, Address: lisp.IPAddr(netip.MustParseAddr("192.0.2.1"))}},
	}
}

// register sends a Map-Register (M and P set) for eid through p and waits
// for the Map-Notify of every map-server it went to; it returns those.
func register(t *testing.T, p *Node, c *net.UDPConn, eid netip.Prefix) []netip.AddrPort {
	t.Helper()
	m := &lisp.MapRegister{ProxyReply: true, WantMapNotify: true, Nonce: nonceSeq.Add(1), Records: []lisp.MappingRecord{record(eid)}}
	sent, err := p.Register(context.Background(), c, m, testAuth)
	if err != nil {
		t.Fatalf("Register %v: %v", eid, err)
	}
	var from []netip.AddrPort
	buf := make([]byte, 65536)
	for range sent {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
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

// registered returns the EID prefixes registered on node i.
func (l *lab) registered(i int) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range l.ms[i].srv.Registrations(time.Now()) {
		out = append(out, r.EID.Prefix)
	}
	return sortPrefixes(out)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sortPrefixes(p []netip.Prefix) []netip.Prefix {
	slices.SortFunc(p, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*2 + cmpInt(a.Bits(), b.Bits()) })
	return p
}

// fakeResolver answers from a map and counts queries.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr // name → addresses (both families)
	fail    bool
	queries int
	ttl     time.Duration // >0: also a TTLResolver
}

func (f *fakeResolver) LookupInfo(_ context.Context, name string, qtype uint16) ([]netip.Addr, adot.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	if f.fail {
		return nil, adot.Info{}, fmt.Errorf("resolver down")
	}
	a, ok := f.answers[name]
	if !ok {
		return nil, adot.Info{}, &adot.Error{Cause: adot.CauseNXDomain, Name: name}
	}
	var out []netip.Addr
	for _, x := range a {
		if x.Is4() == (qtype == 1) {
			out = append(out, x)
		}
	}
	return out, adot.Info{}, nil
}

type fakeTTLResolver struct{ *fakeResolver }

func (f fakeTTLResolver) LookupTTL(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	a, _, err := f.LookupInfo(ctx, name, qtype)
	return a, f.ttl, err
}

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
