package push

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

var (
	pushGroup4 = netip.MustParseAddr("239.1.1.1")
	pushCore4  = netip.MustParseAddr("239.0.0.1")
)

func simRLOC(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}) }

// simGroup builds n nodes of group g; with unicast every node knows only
// node 0's RLOC (static member) and finds the rest by look-ups.
func simGroup(s *simNet, n int, tr Transport, g netip.Addr) []*Node {
	var ns []*Node
	for i := range n {
		c := pushTestConfig(i, nil)
		c.Group, c.RLOC, c.Transport = g, simRLOC(i), tr
		if tr == TransportUnicast {
			c.Members = []netip.Addr{simRLOC(0)}
		}
		ns = append(ns, s.add(c))
	}
	return ns
}

func TestPushSimConverge(t *testing.T) {
	for _, tr := range []Transport{TransportMulticast, TransportUnicast} {
		t.Run(tr.String(), func(t *testing.T) {
			s := newSimNet(t)
			ns := simGroup(s, 8, tr, pushGroup4)
			all := rlocsOf(ns)
			steps := s.runUntil(100*time.Millisecond, 100, "initial convergence", func() bool {
				_, ok := simDigests(s.now, ns)
				return ok && slices.Equal(ns[0].Members(pushGroup4, s.now), all)
			})
			t.Logf("%v: 8 nodes converged after %d ticks of 100 ms", tr, steps)
			for i, n := range ns {
				if got := n.Members(pushGroup4, s.now); !slices.Equal(got, all) {
					t.Fatalf("node %d: members %v, want %v", i, got, all)
				}
				if regs := n.MapServer().Registrations(s.now); len(regs) != 8 {
					t.Fatalf("node %d: %d EID registrations, want 8: %v", i, len(regs), regs)
				}
				for j := range ns {
					r, ok := n.MapServer().Lookup(0, netip.AddrFrom4([4]byte{10, byte(j), 1, 1}), s.now)
					if !ok || r.Record.Locators[0].Address.IP != simRLOC(j) || r.ETR.Addr() != simRLOC(j) {
						t.Fatalf("node %d: lookup of node %d's EID: %+v %v", i, j, r, ok)
					}
				}
				if st := n.Stats(); st.Mismatches != 0 || st.MixedRefused != 0 || st.DecapDropped != 0 {
					t.Fatalf("node %d: %+v", i, st)
				}
			}
			// A change at node 3: a second prefix. Count what it costs, once
			// every node has ticked since it learned the others.
			s.step(100 * time.Millisecond)
			before := ns[3].Stats().RegistersSent
			d0 := ns[0].Digest(s.now)
			if err := ns[3].SetEIDs([]EID{pushEIDFor(3), {Site: "as65001", Prefix: netip.MustParsePrefix("10.200.0.0/16")}}); err != nil {
				t.Fatal(err)
			}
			s.runUntil(100*time.Millisecond, 5, "convergence after a change", func() bool {
				_, ok := simDigests(s.now, ns)
				return ok && ns[0].Digest(s.now) != d0
			})
			sent := ns[3].Stats().RegistersSent - before
			want := uint64(1) // one site's Map-Register, multicast once
			if tr == TransportUnicast {
				want = 7 // one copy per other member
			}
			if sent != want {
				t.Errorf("change cost %d Map-Register datagrams, want %d", sent, want)
			}
			for i, n := range ns {
				if _, ok := n.MapServer().Lookup(0, netip.MustParseAddr("10.200.3.4"), s.now); !ok {
					t.Errorf("node %d lacks the new prefix", i)
				}
			}
			// Removing it deregisters it everywhere at once (TTL-0 record),
			// not after the registration TTL.
			if err := ns[3].SetEIDs([]EID{pushEIDFor(3)}); err != nil {
				t.Fatal(err)
			}
			s.runUntil(100*time.Millisecond, 3, "withdrawal", func() bool {
				_, ok := simDigests(s.now, ns)
				return ok && ns[0].Digest(s.now) == d0
			})
			if st := ns[5].MapServer().Stats(); st.Deregistrations != 1 {
				t.Errorf("deregistrations %d", st.Deregistrations)
			}
		})
	}
}

func TestPushSimLeave(t *testing.T) {
	for _, tr := range []Transport{TransportMulticast, TransportUnicast} {
		t.Run(tr.String(), func(t *testing.T) {
			s := newSimNet(t)
			ns := simGroup(s, 5, tr, pushGroup4)
			s.runUntil(100*time.Millisecond, 100, "convergence", func() bool {
				_, ok := simDigests(s.now, ns)
				return ok && len(ns[0].Members(pushGroup4, s.now)) == 5
			})
			gone := ns[4]
			s.down[gone.cfg.RLOC] = true
			live := ns[:4]
			left := s.now
			s.runUntil(time.Second, 60, "leaver timed out", func() bool {
				for _, n := range live {
					if slices.Contains(n.Members(pushGroup4, s.now), gone.cfg.RLOC) {
						return false
					}
				}
				_, ok := simDigests(s.now, live)
				return ok
			})
			// Its last refresh was at most 10 s before it left; the TTL is 30 s.
			if el := s.now.Sub(left); el < 20*time.Second {
				t.Fatalf("leaver removed after %v, before its registration could time out", el)
			}
			for i, n := range live {
				if got := n.Members(pushGroup4, s.now); len(got) != 4 {
					t.Errorf("node %d members %v", i, got)
				}
				if _, ok := n.MapServer().Lookup(0, netip.MustParseAddr("10.4.0.1"), s.now); ok {
					t.Errorf("node %d still has the leaver's EID", i)
				}
			}
		})
	}
}

// TestPushSimSeedGroups: core A, B, C (configured with each other); layer
// nodes I, J, K know only core node A's RLOC; they register their group
// in the core, find each other through it and converge; then L (knowing
// only A) joins.
func TestPushSimSeedGroups(t *testing.T) {
	for _, tr := range []Transport{TransportMulticast, TransportUnicast} {
		t.Run(tr.String(), func(t *testing.T) {
			s := newSimNet(t)
			var core, layer []*Node
			for i := range 3 {
				c := pushTestConfig(i, nil)
				c.Group, c.RLOC, c.Transport = pushCore4, simRLOC(i), tr
				c.Members = []netip.Addr{simRLOC(0), simRLOC(1), simRLOC(2)}
				core = append(core, s.add(c))
			}
			addLayer := func(i int) *Node {
				c := pushTestConfig(i, nil)
				c.Group, c.RLOC, c.Transport = pushGroup4, simRLOC(i), tr
				c.Core = &SeedGroup{Group: pushCore4, Members: []netip.Addr{simRLOC(0)}}
				return s.add(c)
			}
			for i := 10; i < 13; i++ {
				layer = append(layer, addLayer(i))
			}
			layerOK := func() bool {
				_, ok := simDigests(s.now, layer)
				return ok && len(layer[0].Members(pushGroup4, s.now)) == len(layer) &&
					len(layer[0].MapServer().Registrations(s.now)) == len(layer)
			}
			s.runUntil(100*time.Millisecond, 100, "layer convergence", layerOK)
			_, ok := simDigests(s.now, core)
			if !ok {
				t.Fatal("core members differ")
			}
			for i, c := range core {
				if got, want := c.Members(pushGroup4, s.now), rlocsOf(layer); !slices.Equal(got, want) {
					t.Fatalf("core %d: layer group RLE %v, want %v", i, got, want)
				}
				if got := c.Members(pushCore4, s.now); !slices.Equal(got, rlocsOf(core)) {
					t.Fatalf("core %d: core RLE %v", i, got)
				}
			}
			// The layer holds no core registrations, the core no layer EIDs.
			if len(core[0].MapServer().Registrations(s.now)) != 3 {
				t.Fatalf("core EID registrations: %v", core[0].MapServer().Registrations(s.now))
			}
			l := addLayer(13)
			layer = append(layer, l)
			steps := s.runUntil(100*time.Millisecond, 100, "new node convergence", layerOK)
			t.Logf("%v: node knowing only core node A converged with its group after %d ticks", tr, steps)
			if got := core[1].Members(pushGroup4, s.now); !slices.Equal(got, rlocsOf(layer)) {
				t.Fatalf("core: layer RLE %v after join", got)
			}
		})
	}
}

func TestPushSimMismatch(t *testing.T) {
	s := newSimNet(t)
	var ns []*Node
	var reported []Mismatch
	for i := range 3 {
		c := pushTestConfig(i, nil)
		c.Group, c.RLOC, c.Transport = pushGroup4, simRLOC(i), TransportMulticast
		if i == 2 {
			c.Sites = pushSites([]byte("another site key"))
		}
		if i == 0 {
			c.OnMismatch = func(m Mismatch) { reported = append(reported, m) }
		}
		ns = append(ns, s.add(c))
	}
	s.runUntil(100*time.Millisecond, 20, "mismatch seen", func() bool { return ns[0].Stats().Mismatches > 0 })
	m := ns[0].Mismatches()
	if len(m) == 0 || m[0].From.Addr() != simRLOC(2) || m[0].Reason != mapserver.ReasonAuthFailed || m[0].Membership ||
		!strings.Contains(m[0].String(), "10.2.0.0") {
		t.Fatalf("mismatches %+v", m)
	}
	if len(reported) == 0 || reported[0] != m[0] {
		t.Fatalf("OnMismatch got %+v", reported)
	}
	// The odd node refuses the others' EIDs too; membership (same key) is
	// accepted everywhere, so the group still forms.
	if ns[2].Stats().Mismatches == 0 || len(ns[2].Members(pushGroup4, s.now)) != 3 {
		t.Fatalf("odd node: %+v %v", ns[2].Stats(), ns[2].Members(pushGroup4, s.now))
	}
	if ns[0].Digest(s.now) == ns[2].Digest(s.now) || ns[0].Digest(s.now) != ns[1].Digest(s.now) {
		t.Fatal("digests: the odd node should differ, the others agree")
	}
	// A different membership key: its membership is refused and reported.
	c := pushTestConfig(3, nil)
	c.Group, c.RLOC, c.Transport = pushGroup4, simRLOC(3), TransportMulticast
	c.MembershipKey = []byte("other membership key")
	s.add(c)
	s.runUntil(100*time.Millisecond, 20, "membership mismatch", func() bool {
		for _, m := range ns[1].Mismatches() {
			if m.Membership && m.From.Addr() == simRLOC(3) {
				return true
			}
		}
		return false
	})
	if slices.Contains(ns[1].Members(pushGroup4, s.now), simRLOC(3)) {
		t.Fatal("node with another membership key became a member")
	}
}

// TestPushExternalLookup: an xTR outside the group asks one member for G
// (as an ECM Map-Request for (0/0, G), and for plain G) and gets the whole
// RLE; an unknown group gets a negative answer; unicast EIDs are answered
// by the Map-Resolver (proxy reply).
func TestPushExternalLookup(t *testing.T) {
	s := newSimNet(t)
	ns := simGroup(s, 4, TransportMulticast, pushGroup4)
	s.runUntil(100*time.Millisecond, 50, "convergence", func() bool { return len(ns[3].Members(pushGroup4, s.now)) == 4 })
	itr := netip.MustParseAddrPort("198.51.100.9:40000")
	ask := func(rec lisp.EIDRecord) *lisp.MapReply {
		t.Helper()
		req := &lisp.MapRequest{Nonce: 77, ITRRLOCs: []lisp.Address{lisp.IPAddr(itr.Addr())}, Records: []lisp.EIDRecord{rec}}
		b, err := (&lisp.ECM{Inner: lisp.InnerHeader{Source: itr, Destination: netip.AddrPortFrom(pushGroup4, 4342), TTL: 64}, Message: req}).Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		out := ns[2].HandleControl(b, netip.AddrPortFrom(itr.Addr(), 4342), s.now)
		if len(out) != 1 || out[0].To != itr || out[0].Encapsulated {
			t.Fatalf("answer %+v", out)
		}
		rep, err := lisp.ParseMapReply(out[0].Data)
		if err != nil || rep.Nonce != 77 || len(rep.Records) != 1 {
			t.Fatalf("reply %+v %v", rep, err)
		}
		return rep
	}
	for _, rec := range []lisp.EIDRecord{{MaskLen: 32, EID: groupEID(pushGroup4)}, {MaskLen: 32, EID: lisp.IPAddr(pushGroup4)}} {
		rep := ask(rec)
		g, ok := groupOfEID(rep.Records[0].EID)
		rle, ok2 := rleOf(&rep.Records[0])
		if !ok || !ok2 || g != pushGroup4 || !slices.Equal(rle, rlocsOf(ns)) {
			t.Fatalf("group answer %v %v", rep.Records[0].EID, rle)
		}
	}
	rep := ask(lisp.EIDRecord{MaskLen: 32, EID: groupEID(netip.MustParseAddr("239.9.9.9"))})
	if len(rep.Records[0].Locators) != 0 || rep.Records[0].Action != lisp.ActionNativelyForward {
		t.Fatalf("unknown group: %+v", rep.Records[0])
	}
	rep = ask(lisp.EIDRecord{MaskLen: 32, EID: lisp.IPAddr(netip.MustParseAddr("10.1.2.3"))})
	if len(rep.Records[0].Locators) != 1 || rep.Records[0].Locators[0].Address.IP != simRLOC(1) {
		t.Fatalf("unicast EID: %+v", rep.Records[0])
	}
}

func TestPushDecapsulation(t *testing.T) {
	s := newSimNet(t)
	ns := simGroup(s, 2, TransportUnicast, pushGroup4)
	a, b := ns[0], ns[1]
	b.mu.Lock()
	msgs := b.buildRegisters(true, true)
	b.mu.Unlock()
	good, err := b.encapsulate(msgs[1], pushGroup4)
	if err != nil {
		t.Fatal(err)
	}
	// Checked field by field: 8-octet LISP header with I and IID 0xffffff,
	// IPv4 192.0.2.11 -> 239.1.1.1, UDP 4342 -> 4342.
	if got := fmt.Sprintf("%x", good[:8]); got != "08000000ffffff00" {
		t.Fatalf("LISP header %s", got)
	}
	if good[8] != 0x45 || netip.AddrFrom4([4]byte(good[20:24])) != simRLOC(1) || netip.AddrFrom4([4]byte(good[24:28])) != pushGroup4 ||
		good[28] != 0x10 || good[29] != 0xf6 || good[30] != 0x10 || good[31] != 0xf6 {
		t.Fatalf("inner headers %x", good[8:36])
	}
	bad := map[string][]byte{}
	h := func(iid uint32) []byte {
		x, _ := lisp.AppendDataHeader(nil, lisp.DataHeader{IIDPresent: true, InstanceID: iid})
		return x
	}
	inner := good[8:]
	bad["other iid"] = append(h(5), inner...)
	noI, _ := lisp.AppendDataHeader(nil, lisp.DataHeader{LSBs: 0xffffff})
	bad["no I bit"] = append(noI, inner...)
	other, _ := lisp.AppendInnerIPUDP(h(lisp.DecentInstanceID), lisp.InnerHeader{Source: b.selfAP, Destination: netip.MustParseAddrPort("239.5.5.5:4342"), TTL: 1}, msgs[1])
	bad["other group"] = other
	port, _ := lisp.AppendInnerIPUDP(h(lisp.DecentInstanceID), lisp.InnerHeader{Source: b.selfAP, Destination: netip.MustParseAddrPort("239.1.1.1:4341"), TTL: 1}, msgs[1])
	bad["other port"] = port
	req, _ := groupMapRequest(1, pushGroup4, b.selfAP)
	notReg, _ := lisp.AppendInnerIPUDP(h(lisp.DecentInstanceID), lisp.InnerHeader{Source: b.selfAP, Destination: netip.AddrPortFrom(pushGroup4, 4342), TTL: 1}, req)
	bad["not a Map-Register"] = notReg
	bad["checksum"] = append(slices.Clone(good[:len(good)-1]), good[len(good)-1]^1)
	bad["truncated"] = good[:20]
	for name, pkt := range bad {
		before := a.Stats().DecapDropped
		if out := a.HandleData(pkt, netip.AddrPortFrom(simRLOC(1), 5000), s.now); out != nil || a.Stats().DecapDropped != before+1 {
			t.Errorf("%s: not dropped (%v)", name, out)
		}
	}
	if len(a.MapServer().Registrations(s.now)) != 0 {
		t.Fatal("a bad packet registered something")
	}
	a.HandleData(good, netip.AddrPortFrom(simRLOC(1), 5000), s.now)
	regs := a.MapServer().Registrations(s.now)
	if len(regs) != 1 || a.Stats().Decapsulated != 1 {
		t.Fatalf("good packet: %v %+v", regs, a.Stats())
	}
	if regs[0].ETR != b.selfAP {
		t.Fatalf("registration's ETR %v, want the inner source %v", regs[0].ETR, b.selfAP)
	}
	// Replayed: refused by the Map-Server, not a mismatch.
	a.HandleData(good, netip.AddrPortFrom(simRLOC(1), 5000), s.now)
	if st := a.Stats(); st.Mismatches != 0 || a.MapServer().Stats().Refused[mapserver.ReasonReplay] != 1 {
		t.Fatalf("replay: %+v %v", st, a.MapServer().Stats().Refused)
	}
	// Mixed group and unicast records are refused.
	mixed := &lisp.MapRegister{Nonce: 1 << 62, Records: []lisp.MappingRecord{
		groupRecord(pushGroup4, []netip.Addr{simRLOC(1)}, 1),
		{TTL: 1, EIDMaskLen: 16, EID: lisp.IPAddr(netip.MustParseAddr("10.1.0.0"))}}}
	mb, _ := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: pushMembershipKey}.Marshal(mixed)
	a.HandleControl(mb, b.selfAP, s.now)
	if a.Stats().MixedRefused != 1 {
		t.Fatal("mixed Map-Register not refused")
	}
}

func TestPushConfigValidate(t *testing.T) {
	good := func() Config {
		c := pushTestConfig(1, nil)
		c.Group, c.RLOC = pushGroup4, simRLOC(1)
		return c
	}
	if c := good(); c.Validate() != nil {
		t.Fatal(c.Validate())
	}
	cases := []struct {
		field string
		edit  func(*Config)
	}{
		{"group", func(c *Config) { c.Group = netip.MustParseAddr("10.0.0.1") }},
		{"rloc", func(c *Config) { c.RLOC = netip.MustParseAddr("2001:db8::1") }},
		{"rloc", func(c *Config) { c.RLOC = netip.Addr{} }},
		{"interface", func(c *Config) { c.Interface = "" }},
		{"transport", func(c *Config) { c.Transport = 7 }},
		{"multicast_ttl", func(c *Config) { c.MulticastTTL = 300 }},
		{"members[1]", func(c *Config) { c.Members = []netip.Addr{simRLOC(2), pushGroup4} }},
		{"core.group", func(c *Config) { c.Core = &SeedGroup{Group: pushGroup4, Members: []netip.Addr{simRLOC(0)}} }},
		{"core.group", func(c *Config) { c.Core = &SeedGroup{Group: netip.MustParseAddr("ff0e::1")} }},
		{"core.members", func(c *Config) { c.Transport = TransportUnicast; c.Core = &SeedGroup{Group: pushCore4} }},
		{"core.members[0]", func(c *Config) {
			c.Core = &SeedGroup{Group: pushCore4, Members: []netip.Addr{netip.MustParseAddr("::1")}}
		}},
		{"membership_key_id", func(c *Config) { c.MembershipKeyID = 9 }},
		{"membership_key", func(c *Config) { c.MembershipKey = nil }},
		{"site", func(c *Config) { c.Sites[0].Key = nil }},
		{"eid[0].site", func(c *Config) { c.EIDs[0].Site = "nobody" }},
		{"eid[0].prefix", func(c *Config) { c.EIDs[0].Prefix = netip.MustParsePrefix("192.168.0.0/16") }},
		{"eid[0].prefix", func(c *Config) { c.EIDs[0].Prefix = netip.MustParsePrefix("10.1.2.3/16") }},
		{"registration_ttl", func(c *Config) { c.RegistrationTTL = c.RefreshInterval }},
		{"data_port", func(c *Config) { c.DataPort = 4342 }},
	}
	for _, tc := range cases {
		c := good()
		c.Sites = pushSites(pushSiteKey)
		tc.edit(&c)
		err := c.Validate()
		var es ConfigErrors
		if !errors.As(err, &es) {
			t.Errorf("%s: err %v", tc.field, err)
			continue
		}
		found := false
		for _, e := range es {
			found = found || e.Field == tc.field
		}
		if !found {
			t.Errorf("%s: errors %v do not name the field", tc.field, es)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted", tc.field)
		}
	}
	if tr, err := ParseTransport("unicast"); err != nil || tr != TransportUnicast {
		t.Fatal(tr, err)
	}
	if _, err := ParseTransport("anycast"); err == nil {
		t.Fatal("anycast accepted")
	}
}

func TestPushDigest(t *testing.T) {
	s := newSimNet(t)
	ns := simGroup(s, 2, TransportMulticast, pushGroup4)
	d0 := ns[0].Digest(s.now)
	if d0 != ns[1].Digest(s.now) || len(d0) != 64 {
		t.Fatal("empty digests differ")
	}
	s.step(100 * time.Millisecond)
	d1 := ns[0].Digest(s.now)
	if d1 == d0 || d1 != ns[1].Digest(s.now) {
		t.Fatal("digest did not follow registrations")
	}
	// Refreshes change expiry only: same digest.
	s.step(11 * time.Second)
	if ns[0].Digest(s.now) != d1 {
		t.Fatalf("refresh changed the digest:\n%v", ns[0].registrationLines(s.now))
	}
}

// FuzzPushHandle: no datagram on either port panics a node, and its
// registration set changes only when the datagram carries, byte for byte,
// one of the validly signed Map-Registers of the seed corpus (anything
// else fails authentication, so it must not register anything).
func FuzzPushHandle(f *testing.F) {
	s := newSimNet(f)
	ns := simGroup(s, 2, TransportUnicast, pushGroup4)
	ns[1].mu.Lock()
	ns[1].nonce = 1 << 60 // the same signed seeds in every run
	msgs := ns[1].buildRegisters(true, true)
	ns[1].mu.Unlock()
	for _, m := range msgs {
		f.Add(m, false)
		enc, _ := ns[1].encapsulate(m, pushGroup4)
		f.Add(enc, true)
	}
	req, _ := groupMapRequest(1, pushGroup4, ns[1].selfAP)
	f.Add(req, false)
	rep, _ := (&lisp.MapReply{Nonce: 1, Records: []lisp.MappingRecord{groupRecord(pushGroup4, []netip.Addr{simRLOC(3)}, 1)}}).Append(nil)
	f.Add(rep, false)
	n := ns[0]
	n.Tick(s.now) // its own registrations are in before the fuzzing starts
	f.Fuzz(func(t *testing.T, pkt []byte, data bool) {
		from := netip.AddrPortFrom(simRLOC(1), 4342)
		before := n.Digest(s.now)
		reg := pkt
		if data {
			reg, _, _ = n.decapsulate(pkt)
			n.HandleData(pkt, from, s.now)
		} else {
			n.HandleControl(pkt, from, s.now)
		}
		n.Tick(s.now)
		if n.Digest(s.now) != before && !slices.ContainsFunc(msgs, func(m []byte) bool { return bytes.Equal(m, reg) }) {
			t.Fatalf("registration set changed by a datagram that is no signed seed: %x", pkt)
		}
	})
}

// TestPushSimChangeMeetsNewcomer: a member whose EIDs change in the tick
// where it first sees a newcomer sends the newcomer its membership too,
// not only the changed EIDs.
func TestPushSimChangeMeetsNewcomer(t *testing.T) {
	for _, tr := range []Transport{TransportMulticast, TransportUnicast} {
		t.Run(tr.String(), func(t *testing.T) {
			s := newSimNet(t)
			ns := simGroup(s, 3, tr, pushGroup4)
			s.runUntil(100*time.Millisecond, 50, "convergence", func() bool { return len(ns[2].Members(pushGroup4, s.now)) == 3 })
			s.step(100 * time.Millisecond)
			c := pushTestConfig(3, nil)
			c.Group, c.RLOC, c.Transport = pushGroup4, simRLOC(3), tr
			c.Members = []netip.Addr{simRLOC(0)}
			late := s.add(c)
			late.mu.Lock()
			late.lookupRR, late.nextLookup = 0, pushT0.Add(time.Hour) // learns members only from what they send
			late.mu.Unlock()
			s.step(100 * time.Millisecond) // the newcomer registers; node 0 hears it
			if err := ns[0].SetEIDs([]EID{pushEIDFor(0), {Site: "as65001", Prefix: netip.MustParsePrefix("10.99.0.0/16")}}); err != nil {
				t.Fatal(err)
			}
			s.step(100 * time.Millisecond)
			if !slices.Contains(late.Members(pushGroup4, s.now), simRLOC(0)) {
				t.Fatalf("newcomer lacks node 0's membership: %v", late.Members(pushGroup4, s.now))
			}
			if _, ok := late.MapServer().Lookup(0, netip.MustParseAddr("10.99.1.1"), s.now); !ok {
				t.Fatal("newcomer lacks node 0's changed EIDs")
			}
		})
	}
}
