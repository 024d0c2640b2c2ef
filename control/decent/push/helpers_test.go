package push

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

var (
	pushMembershipKey = []byte("decent-membership-key")
	pushSiteKey       = []byte("site-key-as65001")
	pushT0            = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
)

func pushSites(key []byte) []mapserver.Site {
	return []mapserver.Site{{Name: "as65001", Key: key, KeyID: lisp.KeyIDHMACSHA256128,
		EIDPrefixes:         []mapserver.EIDPrefix{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, {Prefix: netip.MustParsePrefix("fd00::/8")}},
		AcceptMoreSpecifics: true}}
}

// pushEIDFor is what node i registers: 10.i.0.0/16.
func pushEIDFor(i int) EID {
	return EID{Site: "as65001", Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i))}
}

// pushTestConfig is a node's configuration in the tests; the caller sets
// Group, RLOC, Transport, Members and Core.
func pushTestConfig(i int, now func() time.Time) Config {
	return Config{
		Interface:       "eth0",
		MembershipKeyID: lisp.KeyIDHMACSHA256128, MembershipKey: pushMembershipKey,
		Sites: pushSites(pushSiteKey), EIDs: []EID{pushEIDFor(i)},
		RefreshInterval: 10 * time.Second, RegistrationTTL: 30 * time.Second, LookupInterval: 5 * time.Second,
		Now: now,
	}
}

// simNet delivers the datagrams of PushNodes to each other in memory, with
// an injected clock: multicast to every node whose group is the
// destination (not back to the sender), encapsulated copies to the node
// owning the RLOC on its data port, other unicast to its control port.
// Datagrams to addresses that are no node are kept in external.
type simNet struct {
	t        testing.TB
	now      time.Time
	nodes    []*Node
	down     map[netip.Addr]bool
	external map[netip.AddrPort][][]byte
	sent     int // datagrams delivered or attempted
}

func newSimNet(t testing.TB) *simNet {
	return &simNet{t: t, now: pushT0, down: map[netip.Addr]bool{}, external: map[netip.AddrPort][][]byte{}}
}

func (s *simNet) clock() time.Time { return s.now }

func (s *simNet) add(cfg Config) *Node {
	s.t.Helper()
	cfg.Now = s.clock
	n, err := New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.nodes = append(s.nodes, n)
	return n
}

func (s *simNet) node(a netip.Addr) *Node {
	for _, n := range s.nodes {
		if n.cfg.RLOC == a && !s.down[a] {
			return n
		}
	}
	return nil
}

type simPkt struct {
	from *Node
	out  lisp.Datagram
}

func (s *simNet) deliver(q []simPkt) {
	for len(q) > 0 {
		p := q[0]
		q = q[1:]
		s.sent++
		src := p.from.selfAP
		var replies []simPkt
		push := func(n *Node, out []lisp.Datagram) {
			for _, o := range out {
				replies = append(replies, simPkt{n, o})
			}
		}
		switch dst := p.out.To.Addr(); {
		case dst.IsMulticast():
			for _, n := range s.nodes {
				if n != p.from && !s.down[n.cfg.RLOC] && n.cfg.Group == dst && n.cfg.Transport == TransportMulticast {
					push(n, n.HandleControl(p.out.Data, src, s.now))
				}
			}
		case s.node(dst) != nil:
			n := s.node(dst)
			if p.out.Encapsulated {
				push(n, n.HandleData(p.out.Data, netip.AddrPortFrom(src.Addr(), 61000), s.now))
			} else {
				push(n, n.HandleControl(p.out.Data, src, s.now))
			}
		default:
			s.external[p.out.To] = append(s.external[p.out.To], p.out.Data)
		}
		q = append(q, replies...)
	}
}

// step advances the clock by d and runs every live node's Tick.
func (s *simNet) step(d time.Duration) {
	s.now = s.now.Add(d)
	var q []simPkt
	for _, n := range s.nodes {
		if s.down[n.cfg.RLOC] {
			continue
		}
		for _, o := range n.Tick(s.now) {
			q = append(q, simPkt{n, o})
		}
	}
	s.deliver(q)
}

// converged reports whether the live nodes in ns have one digest.
func simDigests(now time.Time, ns []*Node) (map[string]int, bool) {
	d := map[string]int{}
	for _, n := range ns {
		d[n.Digest(now)]++
	}
	return d, len(d) == 1
}

// runUntil steps by d until cond holds, at most max steps; returns the
// steps taken or fails.
func (s *simNet) runUntil(d time.Duration, max int, what string, cond func() bool) int {
	s.t.Helper()
	for i := 1; i <= max; i++ {
		s.step(d)
		if cond() {
			return i
		}
	}
	s.t.Fatalf("%s: not reached after %d steps of %v", what, max, d)
	return 0
}

func rlocsOf(ns []*Node) []netip.Addr {
	var out []netip.Addr
	for _, n := range ns {
		out = append(out, n.cfg.RLOC)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
