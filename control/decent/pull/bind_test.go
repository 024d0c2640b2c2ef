package pull

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// TestPullAgainstBIND is issue 6 must-show 3: pull mode with BIND 9.18
// serving <index>.map-server.example.test over DoT (TLS 1.3 only,
// certificate made by the test) in its own network namespace, the
// map-servers and the xTR each in theirs on one bridge, LISP control
// messages on UDP 4342 across the veths. One topology and one named serve
// all subtests; each subtest loads the zone it needs (rewrite + reload)
// and starts fresh map-servers.
func TestPullAgainstBIND(t *testing.T) {
	l := newBindLab(t, bindLayout(16, 4))
	t.Run("Placement", func(t *testing.T) { testBINDPlacement(t, l) })
	t.Run("MoreSpecificLookup", func(t *testing.T) { testBINDMoreSpecific(t, l) })
	t.Run("ZoneChange", func(t *testing.T) { testBINDZoneChange(t, l) })
	t.Run("Mismatch", func(t *testing.T) { testBINDMismatch(t, l) })
}

// Registrations land on exactly the map-servers the hash selects: 16 names,
// name i → map-server i mod 4, modulus 4, 8 and 16, both hash modes.
func testBINDPlacement(t *testing.T, l *bindLab) {
	l.setZone(bindLayout(16, 4))
	for _, tc := range []struct {
		mode    HashMode
		mask    int
		modulus uint64
	}{
		{ModeDraft, 8, 4}, {ModeDraft, 0, 8}, {ModeDraft, 8, 16},
		{ModeLispersNet, 0, 4}, {ModeLispersNet, 0, 16},
	} {
		t.Run(fmt.Sprintf("%s/mask%d/mod%d", tc.mode, tc.mask, tc.modulus), func(t *testing.T) {
			cfg := Config{Mode: tc.mode, Mask: tc.mask, Modulus: tc.modulus}
			ms := l.startMapServers(t, cfg, ownedMod(tc.modulus, 4), false)
			p := l.pull(t, cfg)
			c := l.xtrConn(t)
			want := make([][]netip.Prefix, len(ms))
			hit := map[int]bool{}
			for _, eid := range testEIDs() {
				idx := p.IndexOf(0, eid)
				n := int(idx % 4)
				sent := l.register(t, p, c, eid)
				if len(sent) != 1 || msIndex(ms, sent[0]) != n {
					t.Fatalf("%v (index %d) sent to %v, want map-server %d (%v)", eid, idx, sent, n, ms[n].addr)
				}
				got, err := l.mapServers(p, eid)
				if err != nil || !slices.Equal(got, sent) {
					t.Fatalf("MapServers(%v) = %v, %v", eid, got, err)
				}
				want[n] = append(want[n], eid)
				hit[n] = true
			}
			if len(hit) < 2 {
				t.Errorf("EIDs hit only map-servers %v", hit)
			}
			for i, m := range ms {
				if got := msRegistered(m); !slices.Equal(got, sortPrefixes(want[i])) {
					t.Errorf("map-server %d has %v, want %v", i, got, want[i])
				}
				if n, last := m.guard.Mismatches(); n != 0 {
					t.Errorf("map-server %d: %d mismatches, last %v", i, n, last)
				}
			}
			if st := p.Stats(); st.ResolveErrors != 0 || st.Resolutions == 0 {
				t.Errorf("xTR stats %+v", st)
			}
		})
	}
}

// With hash mask 8 (draft), [0]240.0.1.0/24 and [0]240.0.1.77/32 share
// index 8 of 16 → map-server 0: the xTR's Map-Request for .77 goes where
// the /24 was registered and gets it in a proxy Map-Reply. Without the
// mask (as in the reference implementation) the /32 hashes elsewhere.
func testBINDMoreSpecific(t *testing.T, l *bindLab) {
	l.setZone(bindLayout(16, 4))
	cfg := Config{Mode: ModeDraft, Mask: 8, Modulus: 16}
	ms := l.startMapServers(t, cfg, ownedMod(16, 4), false)
	p := l.pull(t, cfg)
	c := l.xtrConn(t)
	cover, host := netip.MustParsePrefix("240.0.1.0/24"), netip.MustParsePrefix("240.0.1.77/32")
	if p.IndexOf(0, cover) != 8 || p.IndexOf(0, host) != 8 {
		t.Fatalf("indexes %d %d, want 8 8", p.IndexOf(0, cover), p.IndexOf(0, host))
	}
	if a, b := mustIndex(ModeDraft, cover, 0, 16), mustIndex(ModeDraft, host, 0, 16); a%4 == b%4 {
		t.Fatalf("without the mask the /24 (index %d) and the /32 (index %d) share a map-server: the test would prove nothing", a, b)
	}
	sent := l.register(t, p, c, cover)
	if len(sent) != 1 || msIndex(ms, sent[0]) != 0 {
		t.Fatalf("registered at %v, want map-server 0", sent)
	}
	to, err := l.nextMapServer(p, host)
	if err != nil || to != sent[0] {
		t.Fatalf("NextMapServer(%v) = %v, %v; registered at %v", host, to, err, sent)
	}
	itr := l.xtrConn(t)
	itrAP := netip.MustParseAddrPort(itr.LocalAddr().String())
	req, err := lisp.Marshal(&lisp.ECM{
		Inner: lisp.InnerHeader{Source: itrAP, Destination: netip.AddrPortFrom(host.Addr(), 4342), TTL: 64},
		Message: &lisp.MapRequest{Nonce: 77, ITRRLOCs: []lisp.Address{lisp.IPAddr(itrAP.Addr())},
			Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.IPAddr(host.Addr())}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := itr.WriteToUDPAddrPort(req, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	itr.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := itr.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := lisp.ParseMapReply(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if from.Addr() != to.Addr() || rep.Nonce != 77 || len(rep.Records) != 1 || rep.Records[0].EIDMaskLen != 24 ||
		rep.Records[0].EID.IP != cover.Addr() || len(rep.Records[0].Locators) != 1 {
		t.Fatalf("Map-Reply from %v: %+v", from, rep)
	}
	for i := 1; i < len(ms); i++ {
		if got := msRegistered(ms[i]); len(got) != 0 {
			t.Errorf("map-server %d has %v", i, got)
		}
	}
}

// Changing an A record in BIND's zone file (rewrite + reload, named not
// restarted) moves registrations once Node's cached answer runs out
// (injected clock, Refresh 10 s), without restarting the xTR: same Node,
// same DoT client, same socket. Then an added A record → both map-servers
// get it and Map-Requests alternate; a removed name → ErrNoMapServers.
func testBINDZoneChange(t *testing.T, l *bindLab) {
	const mod = 4
	spec := bindLayout(mod, 4)
	l.setZone(spec)
	cfg := Config{Mode: ModeDraft, Modulus: mod}
	eid := netip.MustParsePrefix("10.1.0.0/16")
	k := mustIndex(ModeDraft, eid, 0, mod)
	old, spare := int(k), 4
	ms := l.startMapServers(t, cfg, func(n int) []uint64 {
		if n == spare {
			return []uint64{k}
		}
		return ownedMod(mod, 4)(n)
	}, false)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	cfg.Refresh, cfg.Now = 10*time.Second, clk.Now
	p := l.pull(t, cfg)
	c := l.xtrConn(t)

	if s := l.register(t, p, c, eid); len(s) != 1 || msIndex(ms, s[0]) != old {
		t.Fatalf("first registration at %v, want map-server %d", s, old)
	}
	spec[k] = []string{"A " + bindMSAddr(spare).String()}
	l.setZone(spec)

	// Still cached: the old map-server gets the refresh.
	clk.Add(9 * time.Second)
	if s := l.register(t, p, c, eid); len(s) != 1 || msIndex(ms, s[0]) != old {
		t.Fatalf("cached registration at %v, want map-server %d", s, old)
	}
	if got := msRegistered(ms[spare]); len(got) != 0 {
		t.Fatalf("spare has %v before the refresh", got)
	}
	// Refresh elapsed: re-resolved from BIND, the spare gets it.
	clk.Add(time.Second)
	before := ms[old].srv.Stats().Refreshes
	if s := l.register(t, p, c, eid); len(s) != 1 || msIndex(ms, s[0]) != spare {
		t.Fatalf("registration after the zone change at %v, want map-server %d", s, spare)
	}
	if got := msRegistered(ms[spare]); !slices.Equal(got, []netip.Prefix{eid}) {
		t.Fatalf("spare has %v", got)
	}
	if after := ms[old].srv.Stats().Refreshes; after != before {
		t.Fatalf("old map-server still refreshed (%d → %d)", before, after)
	}

	// Added A record: both.
	spec[k] = []string{"A " + bindMSAddr(old).String(), "A " + bindMSAddr(spare).String()}
	l.setZone(spec)
	clk.Add(10 * time.Second)
	s := l.register(t, p, c, eid)
	if len(s) != 2 || msIndex(ms, s[0]) < 0 || msIndex(ms, s[1]) < 0 || s[0] == s[1] {
		t.Fatalf("registration with two map-servers went to %v", s)
	}
	var rr []int
	for range 4 {
		to, err := l.nextMapServer(p, eid)
		if err != nil {
			t.Fatal(err)
		}
		rr = append(rr, msIndex(ms, to))
	}
	if rr[0] == rr[1] || rr[0] != rr[2] || rr[1] != rr[3] || min(rr[0], rr[1]) < 0 {
		t.Fatalf("round robin %v", rr)
	}

	// Removed name: BIND answers NXDOMAIN, an answer, not a failure.
	delete(spec, k)
	l.setZone(spec)
	clk.Add(10 * time.Second)
	if s, err := l.mapServers(p, eid); !errors.Is(err, ErrNoMapServers) {
		t.Fatalf("after removal: %v, %v", s, err)
	}
	if st := p.Stats(); st.ResolveErrors != 0 || st.StaleAnswers != 0 {
		t.Fatalf("xTR stats %+v", st)
	}
}

// A node whose modulus (or hash mode) differs from the map-servers' sends
// a registration to a map-server that does not own its index: the Guard
// reports it (and with Drop refuses it).
func testBINDMismatch(t *testing.T, l *bindLab) {
	l.setZone(bindLayout(4, 4))
	srvCfg := Config{Mode: ModeDraft, Modulus: 4}
	for _, tc := range []struct {
		name string
		node Config
		drop bool
	}{
		{"modulus", Config{Mode: ModeDraft, Modulus: 3}, false},
		{"modulus-drop", Config{Mode: ModeDraft, Modulus: 3}, true},
		{"mode", Config{Mode: ModeLispersNet, Modulus: 4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := l.startMapServers(t, srvCfg, ownedMod(4, 4), tc.drop)
			p := l.pull(t, tc.node)
			sp := ms[0].guard.Node
			var eid netip.Prefix
			for _, e := range testEIDs() {
				if p.IndexOf(0, e) != sp.IndexOf(0, e) {
					eid = e
					break
				}
			}
			if !eid.IsValid() {
				t.Fatal("no EID with differing indexes")
			}
			wrong, right := int(p.IndexOf(0, eid)), sp.IndexOf(0, eid)
			c := l.xtrConn(t)
			if tc.drop {
				// No Map-Notify comes back: wait for the Guard's report.
				sent, err := l.sendRegister(p, c, eid, false)
				if err != nil || len(sent) != 1 || msIndex(ms, sent[0]) != wrong {
					t.Fatalf("sent to %v, %v; want map-server %d", sent, err, wrong)
				}
				deadline := time.Now().Add(10 * time.Second)
				for n, _ := ms[wrong].guard.Mismatches(); n == 0 && time.Now().Before(deadline); n, _ = ms[wrong].guard.Mismatches() {
					time.Sleep(5 * time.Millisecond)
				}
			} else if s := l.register(t, p, c, eid); len(s) != 1 || msIndex(ms, s[0]) != wrong {
				t.Fatalf("sent to %v, want map-server %d", s, wrong)
			}
			n, last := ms[wrong].guard.Mismatches()
			if n != 1 || last == nil || last.Index != right || !slices.Equal(last.Owned, []uint64{uint64(wrong)}) ||
				last.EID != EIDString(0, eid) || last.Modulus != 4 || last.Mode != ModeDraft ||
				last.From.Addr() != bindXTRAddr {
				t.Fatalf("mismatches %d, last %+v", n, last)
			}
			t.Log(last)
			if got := msRegistered(ms[wrong]); tc.drop == (len(got) != 0) {
				t.Fatalf("drop=%v: map-server %d has %v", tc.drop, wrong, got)
			}
			for i, m := range ms {
				if n, _ := m.guard.Mismatches(); i != wrong && n != 0 {
					t.Errorf("map-server %d: %d mismatches", i, n)
				}
			}
		})
	}
}
