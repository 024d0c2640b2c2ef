package xtr

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// testDirectory picks Map-Servers per mapping (by EID) and a resolver per
// EID family, changeable while the xTR runs — the shape of LISP-Decent.
type testDirectory struct {
	mu        sync.Mutex
	servers   map[netip.Prefix][]MapServer
	resolver4 netip.AddrPort // invalid: none yet
	asked     []netip.Addr
}

func (d *testDirectory) MapServers(m Mapping) []MapServer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.servers[m.EID]
}

func (d *testDirectory) MapResolver(_ uint32, eid netip.Addr) (netip.AddrPort, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, eid)
	return d.resolver4, d.resolver4.IsValid()
}

func msAt(a string) MapServer {
	return MapServer{Addr: netip.MustParseAddrPort(a), Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}, WantNotify: true, ProxyReply: true}
}

// TestDirectoryRegistration: each mapping goes to the Map-Servers the
// Directory names for it (records grouped per Map-Server, P bit as asked);
// a mapping without Map-Servers is retried within a second, not at the
// 20 s interval; a change of Map-Servers is registered at once; a
// Map-Notify is accepted only from a Map-Server of the last round.
func TestDirectoryRegistration(t *testing.T) {
	v4, v6 := pfx("203.0.113.0/24"), pfx("2001:db8:2::/48")
	a, b, c := msAt("10.0.0.1:4342"), msAt("10.0.0.2:4342"), msAt("10.0.0.3:4342")
	d := &testDirectory{servers: map[netip.Prefix][]MapServer{v4: {a, b}}}
	now := t0
	x := newXTR(t, Config{ASN: 65002, Database: etrDatabase(), Directory: d, RLOCs: []netip.Addr{rloc}, Now: func() time.Time { return now }})
	got := func() map[netip.AddrPort][]netip.Prefix {
		t.Helper()
		m := map[netip.AddrPort][]netip.Prefix{}
		for _, o := range x.Tick(now) {
			r, err := lisp.ParseMapRegister(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			if err := lisp.Verify(o.Data, key); err != nil || !r.ProxyReply || !r.WantMapNotify {
				t.Fatalf("Map-Register to %v: verify %v, P %v, M %v", o.To, err, r.ProxyReply, r.WantMapNotify)
			}
			for _, rec := range r.Records {
				_, ip, _ := unwrapEID(rec.EID)
				m[o.To] = append(m[o.To], netip.PrefixFrom(ip, int(rec.EIDMaskLen)))
			}
			confirm(t, x, r, o.To, now) // the Map-Servers answer (no early retry)
		}
		return m
	}
	first := got()
	if len(first) != 2 || len(first[a.Addr]) != 1 || first[a.Addr][0] != v4 || len(first[b.Addr]) != 1 {
		t.Fatalf("first round: %v", first)
	}
	if x.Stats().NoMapServer != 1 {
		t.Fatalf("the IPv6 mapping had no Map-Server: NoMapServer = %d", x.Stats().NoMapServer)
	}
	// Nothing new within the second; then again (v6 still missing).
	now = now.Add(500 * time.Millisecond)
	if r := got(); len(r) != 0 {
		t.Fatalf("sent again after 500 ms: %v", r)
	}
	now = now.Add(500 * time.Millisecond)
	if r := got(); len(r) != 2 {
		t.Fatalf("not retried after 1 s: %v", r)
	}
	// The Directory now names c for both: registered at once.
	d.mu.Lock()
	d.servers[v4] = []MapServer{a, c}
	d.servers[v6] = []MapServer{c}
	d.mu.Unlock()
	now = now.Add(20 * time.Millisecond)
	r := got()
	if len(r) != 2 || len(r[c.Addr]) != 2 || len(r[a.Addr]) != 1 || r[b.Addr] != nil {
		t.Fatalf("after the change: %v", r)
	}
	// Stable now: next at the 20 s interval.
	now = now.Add(19 * time.Second)
	if r := got(); len(r) != 0 {
		t.Fatalf("sent before the interval: %v", r)
	}
	// b is no longer a Map-Server of ours: its Map-Notify is refused.
	n := x.Stats().NotifiesRefused
	notify, err := (lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}).Marshal(&lisp.MapNotify{Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	x.Handle(notify, b.Addr, now)
	if x.Stats().NotifiesRefused != n+1 {
		t.Fatal("Map-Notify from a Map-Server no longer named was accepted")
	}
}

// TestDirectoryResolver: Map-Requests go where the Directory says, per
// EID; while it knows nowhere the attempt counts as a try (nothing sent),
// so a name that never resolves ends in the hold-down like an unanswered
// request.
func TestDirectoryResolver(t *testing.T) {
	var misses []engine.Miss
	d := &testDirectory{}
	now := t0
	x := newXTR(t, Config{RLOCs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Directory: d, Now: func() time.Time { return now },
		Misses: func(dst []engine.Miss) []engine.Miss { dst = append(dst, misses...); misses = nil; return dst }})
	misses = []engine.Miss{{Addr: netip.MustParseAddr("203.0.113.10")}}
	for i := 0; i < 3; i++ {
		if out := x.Tick(now); len(out) != 0 {
			t.Fatalf("sent with no resolver: %v", out)
		}
		now = now.Add(time.Second)
	}
	x.Tick(now)
	if s := x.Stats(); s.NoResolver != 3 || s.GaveUp != 1 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Known now: the next miss (another EID) is asked at once, there.
	d.mu.Lock()
	d.resolver4 = netip.MustParseAddrPort("10.0.0.9:4342")
	d.mu.Unlock()
	misses = []engine.Miss{{Addr: netip.MustParseAddr("203.0.113.11")}}
	out := x.Tick(now)
	if len(out) != 1 || out[0].To != d.resolver4 {
		t.Fatalf("sent %v", out)
	}
	if req := requestNonce(t, out[0]); req == 0 {
		t.Fatal("no nonce")
	}
	if d.asked[len(d.asked)-1] != netip.MustParseAddr("203.0.113.11") {
		t.Fatalf("directory asked for %v", d.asked)
	}
}

// TestDirectoryExclusive: a Directory replaces the static lists.
func TestDirectoryExclusive(t *testing.T) {
	_, err := New(Config{RLOCs: []netip.Addr{rloc}, Directory: &testDirectory{}, MapResolvers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:4342")}})
	if err == nil {
		t.Fatal("Directory and MapResolvers both accepted")
	}
	if _, err := New(Config{Directory: &testDirectory{}}); err == nil {
		t.Fatal("a Directory without an ITR-RLOC accepted")
	}
}
