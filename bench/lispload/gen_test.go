package lispload

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp/mapserver"
)

var testKey = []byte("bench-site-secret")

// startMapServer serves a psavd Map-Server (in this process) on loopback
// with one site, 10.0.0.0/8 and more specifics, HMAC-SHA-1.
func startMapServer(t testing.TB) (*mapserver.Server, netip.AddrPort) {
	t.Helper()
	s, err := mapserver.New(mapserver.Config{Replay: mapserver.ReplayRecent, Sites: []mapserver.Site{{Name: "bench", Key: testKey, KeyID: 1,
		AcceptMoreSpecifics: true, EIDPrefixes: []mapserver.EIDPrefix{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		c.Close()
	})
	return s, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func newGen(t testing.TB, to netip.AddrPort) *Gen {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g, err := New(Config{Conn: c, To: to, Key: testKey, Base: netip.MustParseAddr("10.0.0.0"), RLOC: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGenAgainstMapServer: every Map-Register the generator sends (new
// EIDs, then refreshes of them) is accepted by psavd's Map-Server and
// answered with a Map-Notify; the table has exactly the new EIDs.
func TestGenAgainstMapServer(t *testing.T) {
	s, to := startMapServer(t)
	g := newGen(t, to)
	const n = 20000
	r, err := g.Run(n, false, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Notifies != n || r.Lost != 0 || r.Table != n {
		t.Fatalf("new EIDs: %+v; server %+v", r, s.Stats())
	}
	r, err = g.Run(n/2, true, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Notifies != n/2 || r.Table != n {
		t.Fatalf("refreshes: %+v", r)
	}
	st := s.Stats()
	if len(st.Refused) != 0 || st.Registrations != n || st.Refreshes != n/2 || st.MapNotifies != n+n/2 {
		t.Fatalf("server stats %+v", st)
	}
	if regs := s.Registrations(time.Now()); len(regs) != n {
		t.Fatalf("%d registrations, want %d", len(regs), n)
	}
}

// TestGenFillAllocs: building and signing a Map-Register allocates
// nothing (the generator must not be what limits the rate).
func TestGenFillAllocs(t *testing.T) {
	g := newGen(t, netip.MustParseAddrPort("127.0.0.1:4342"))
	b := make([]byte, len(g.tmpl))
	if a := testing.AllocsPerRun(100, func() { g.fill(b, 7) }); a != 0 {
		t.Fatalf("fill allocates %v times", a)
	}
}

// TestGenSources: with Sources the Map-Registers come from those
// addresses, each EID always from the same one (its refresh is a refresh,
// not a second ETR), and every one is answered there.
func TestGenSources(t *testing.T) {
	s, to := startMapServer(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var srcs []netip.Addr
	for i := 2; i <= 5; i++ {
		srcs = append(srcs, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	g, err := New(Config{Conn: c, To: to, Key: testKey, Base: netip.MustParseAddr("10.0.0.0"), RLOC: netip.MustParseAddr("127.0.0.1"), Sources: srcs})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	if r, err := g.Run(n, false, 2*time.Second); err != nil || r.Notifies != n || r.Lost != 0 {
		t.Fatalf("new EIDs: %+v, %v", r, err)
	}
	if r, err := g.Run(n, true, 2*time.Second); err != nil || r.Notifies != n {
		t.Fatalf("refreshes: %+v, %v", r, err)
	}
	if st := s.Stats(); st.Registrations != n || st.Refreshes != n || len(st.Refused) != 0 {
		t.Fatalf("server stats %+v", st)
	}
	per := map[netip.Addr]int{}
	for _, r := range s.Registrations(time.Now()) {
		per[r.ETR.Addr()]++
	}
	for _, a := range srcs {
		if per[a] != n/len(srcs) {
			t.Fatalf("registrations per ETR %v, want %d from each of %v", per, n/len(srcs), srcs)
		}
	}
}
