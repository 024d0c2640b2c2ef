package node

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/decent/push"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"
)

// zoneResolver answers A queries from a map that the test changes.
type zoneResolver struct {
	mu      sync.Mutex
	records map[string][]netip.Addr
}

func (z *zoneResolver) LookupInfo(_ context.Context, name string, qtype uint16) ([]netip.Addr, adot.Info, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if qtype != dns.TypeA {
		return nil, adot.Info{}, nil
	}
	return z.records[dns.Fqdn(name)], adot.Info{}, nil
}

// TestPullDirectory: the directory names the addresses of the EID's
// <index>.<suffix> — for a mapping, every one (P and M bits, the site's
// key); for a Map-Request, round robin — once resolved in the background;
// before that, none (the xTR retries); a name that moves moves them.
func TestPullDirectory(t *testing.T) {
	const suffix = "map-server.example.test"
	eid := netip.MustParsePrefix("240.0.1.0/24") // docs/wire.md §3.4 vector: index 8 with mask 8, modulus 16
	z := &zoneResolver{records: map[string][]netip.Addr{
		"8." + suffix + ".": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")},
	}}
	p, err := pull.New(pull.Config{Mode: pull.ModeDraft, Mask: 8, Modulus: 16, Suffix: suffix, Resolver: z, Refresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	auth := lisp.AuthConfig{KeyID: 2, Key: []byte("k")}
	d := newPullDirectory(p, 0, auth, zap.NewNop())
	if got := d.MapServers(xtr.Mapping{EID: eid}); len(got) != 0 {
		t.Fatalf("Map-Servers before any resolution: %v", got)
	}
	if _, ok := d.MapResolver(0, netip.MustParseAddr("240.0.1.77")); ok {
		t.Fatal("a resolver before any resolution")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.run(ctx)
	var ms []xtr.MapServer
	waitFor(t, func() bool { ms = d.MapServers(xtr.Mapping{EID: eid}); return len(ms) == 2 })
	for i, want := range []string{"192.0.2.10:4342", "192.0.2.11:4342"} {
		if ms[i].Addr != netip.MustParseAddrPort(want) || !ms[i].ProxyReply || !ms[i].WantNotify || string(ms[i].Auth.Key) != "k" {
			t.Fatalf("map-server %d: %+v", i, ms[i])
		}
	}
	// A more-specific EID hashes (mask 8) to the same name: round robin.
	var seen []netip.AddrPort
	waitFor(t, func() bool { _, ok := d.MapResolver(0, netip.MustParseAddr("240.0.1.77")); return ok })
	for i := 0; i < 4; i++ {
		a, _ := d.MapResolver(0, netip.MustParseAddr("240.0.1.77"))
		seen = append(seen, a)
	}
	if seen[0] == seen[1] || seen[0] != seen[2] || seen[1] != seen[3] {
		t.Fatalf("not round robin: %v", seen)
	}
	// The name moves: registrations follow without restart.
	z.mu.Lock()
	z.records["8."+suffix+"."] = []netip.Addr{netip.MustParseAddr("192.0.2.12")}
	z.mu.Unlock()
	waitFor(t, func() bool {
		ms = d.MapServers(xtr.Mapping{EID: eid})
		return len(ms) == 1 && ms[0].Addr == netip.MustParseAddrPort("192.0.2.12:4342")
	})
}

// TestPushDirectory: the ETR registers with every member of the group's
// RLE as the node's Map-Server holds it (here the node alone, once its
// own membership is in), and the ITR asks its own node.
func TestPushDirectory(t *testing.T) {
	rloc, g := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("239.1.2.3")
	node, err := push.New(push.Config{Group: g, RLOC: rloc, Transport: push.TransportUnicast, MembershipKeyID: 2, MembershipKey: []byte("m"),
		Sites: []mapserver.Site{{Name: "s", Key: []byte("k"), KeyID: 2, EIDPrefixes: []mapserver.EIDPrefix{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	d := &pushDirectory{node: node, group: g, port: 4342, self: netip.AddrPortFrom(rloc, 4342), auth: lisp.AuthConfig{KeyID: 2, Key: []byte("k")}}
	if ms := d.MapServers(xtr.Mapping{}); len(ms) != 0 {
		t.Fatalf("members before the node registered itself: %v", ms)
	}
	node.Tick(time.Now())
	ms := d.MapServers(xtr.Mapping{})
	if len(ms) != 1 || ms[0].Addr != netip.MustParseAddrPort("192.0.2.1:4342") || !ms[0].ProxyReply {
		t.Fatalf("map-servers %+v", ms)
	}
	if a, ok := d.MapResolver(0, netip.MustParseAddr("203.0.113.1")); !ok || a != d.self {
		t.Fatalf("resolver %v %v", a, ok)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
