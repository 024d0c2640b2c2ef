package pull

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

func mustIndex(mode HashMode, eid netip.Prefix, mask int, modulus uint64) uint64 {
	i, err := Index(mode, EIDString(0, eid), mask, modulus)
	if err != nil {
		panic(err)
	}
	return i
}

func ownedMod(modulus uint64, servers int) func(int) []uint64 {
	return func(n int) []uint64 {
		var o []uint64
		for i := uint64(0); i < modulus; i++ {
			if int(i)%servers == n {
				o = append(o, i)
			}
		}
		return o
	}
}

func testEIDs() []netip.Prefix {
	eids := []netip.Prefix{
		netip.MustParsePrefix("240.0.1.0/24"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	for i := range 6 {
		eids = append(eids,
			netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", 20+i)),
			netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", 0x100+i)),
			netip.MustParsePrefix(fmt.Sprintf("%d.0.2.0/24", 200+i)))
	}
	return eids
}

// Registrations land on exactly the map-servers the hash selects: 16 names
// in the zone, name i → map-server i mod 4, for modulus 4, 8 and 16 in both
// hash modes; the docs/wire.md §3.4 vectors are checked where the mask fits.
func TestPullPlacement(t *testing.T) {
	vectors := map[string]struct {
		mask            int
		draft, lispers3 [3]uint64
	}{
		"240.0.1.0/24":  {8, [3]uint64{0, 0, 8}, [3]uint64{3, 7, 15}},
		"10.1.0.0/16":   {0, [3]uint64{0, 4, 4}, [3]uint64{1, 5, 13}},
		"2001:db8::/32": {0, [3]uint64{0, 4, 12}, [3]uint64{2, 6, 6}},
	}
	for _, tc := range []struct {
		mode    HashMode
		mask    int
		modulus uint64
	}{
		{ModeDraft, 8, 4}, {ModeDraft, 0, 8}, {ModeDraft, 8, 16},
		{ModeLispersNet, 0, 4}, {ModeLispersNet, 0, 16},
	} {
		t.Run(fmt.Sprintf("%s/mask%d/mod%d", tc.mode, tc.mask, tc.modulus), func(t *testing.T) {
			cfg := Config{Mode: tc.mode, Mask: tc.mask, Modulus: tc.modulus, Suffix: testSuffix}
			l := newLab(t, 4, layout(16, 4), cfg, ownedMod(tc.modulus, 4), false)
			p := l.pull(t, cfg)
			c := etr(t)
			want := make([][]netip.Prefix, 4)
			hit := map[int]bool{}
			col := map[uint64]int{4: 0, 8: 1, 16: 2}[tc.modulus]
			for _, eid := range testEIDs() {
				idx := p.IndexOf(0, eid)
				if v, ok := vectors[eid.String()]; ok {
					switch {
					case tc.mode == ModeLispersNet && idx != v.lispers3[col]:
						t.Errorf("vector %v: index %d, want %d", eid, idx, v.lispers3[col])
					case tc.mode == ModeDraft && tc.mask == v.mask && idx != v.draft[col]:
						t.Errorf("vector %v: index %d, want %d", eid, idx, v.draft[col])
					}
				}
				n := int(idx % 4)
				sent := register(t, p, c, eid)
				if len(sent) != 1 || l.node(sent[0]) != n {
					t.Fatalf("%v (index %d) sent to %v, want map-server %d", eid, idx, sent, n)
				}
				ms, err := p.MapServers(context.Background(), eid)
				if err != nil || !slices.Equal(ms, sent) {
					t.Fatalf("MapServers(%v) = %v, %v", eid, ms, err)
				}
				want[n] = append(want[n], eid)
				hit[n] = true
			}
			if len(hit) < 2 {
				t.Errorf("EIDs hit only map-servers %v", hit)
			}
			for i := range l.ms {
				if got := l.registered(i); !slices.Equal(got, sortPrefixes(want[i])) {
					t.Errorf("map-server %d has %v, want %v", i, got, want[i])
				}
				if n, last := l.ms[i].guard.Mismatches(); n != 0 {
					t.Errorf("map-server %d: %d mismatches, last %v", i, n, last)
				}
			}
		})
	}
}

// With hash mask 8, a look-up of [0]240.0.1.77/32 goes to the map-server
// where [0]240.0.1.0/24 was registered (index 8 of 16 → map-server 0) and
// gets the /24 in a proxy Map-Reply.
func TestPullMoreSpecificLookup(t *testing.T) {
	cfg := Config{Mode: ModeDraft, Mask: 8, Modulus: 16, Suffix: testSuffix}
	l := newLab(t, 4, layout(16, 4), cfg, ownedMod(16, 4), false)
	p := l.pull(t, cfg)
	c := etr(t)
	cover, host := netip.MustParsePrefix("240.0.1.0/24"), netip.MustParsePrefix("240.0.1.77/32")
	if p.IndexOf(0, cover) != 8 || p.IndexOf(0, host) != 8 || p.NameOf(host) != "8."+testSuffix {
		t.Fatalf("indexes %d %d", p.IndexOf(0, cover), p.IndexOf(0, host))
	}
	sent := register(t, p, c, cover)
	if len(sent) != 1 || l.node(sent[0]) != 0 {
		t.Fatalf("registered at %v", sent)
	}
	ms, err := p.NextMapServer(context.Background(), host)
	if err != nil || ms != sent[0] {
		t.Fatalf("NextMapServer(%v) = %v, %v; registered at %v", host, ms, err, sent)
	}
	itr := etr(t)
	itrAP := netip.MustParseAddrPort(itr.LocalAddr().String())
	req, err := lisp.Marshal(&lisp.ECM{
		Inner: lisp.InnerHeader{Source: itrAP, Destination: netip.AddrPortFrom(host.Addr(), 4342), TTL: 64},
		Message: &lisp.MapRequest{Nonce: 77, ITRRLOCs: []lisp.Address{lisp.IPAddr(itrAP.Addr())},
			Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.IPAddr(host.Addr())}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := itr.WriteToUDPAddrPort(req, ms); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	itr.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := itr.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := lisp.ParseMapReply(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if rep.Nonce != 77 || len(rep.Records) != 1 || rep.Records[0].EIDMaskLen != 24 ||
		rep.Records[0].EID.IP != cover.Addr() || len(rep.Records[0].Locators) != 1 {
		t.Fatalf("Map-Reply %+v", rep)
	}
	for i := 1; i < 4; i++ {
		if got := l.registered(i); len(got) != 0 {
			t.Errorf("map-server %d has %v", i, got)
		}
	}
}

// A changed A record moves new registrations after the cached answer runs
// out (injected clock, Refresh 10 s); an added address takes effect the
// same way, and Map-Requests then alternate between the two.
func TestPullZoneChange(t *testing.T) {
	const mod = 4
	cfg := Config{Mode: ModeDraft, Modulus: mod, Suffix: testSuffix}
	spec := layout(mod, 4)
	// Server 4 (127.0.0.14) is the spare; it owns the moved index below.
	eid := netip.MustParsePrefix("10.1.0.0/16")
	k := mustIndex(ModeDraft, eid, 0, mod)
	l := newLab(t, 5, spec, cfg, func(n int) []uint64 {
		if n == 4 {
			return []uint64{k}
		}
		return ownedMod(mod, 4)(n)
	}, false)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	cfg.Refresh, cfg.Now = 10*time.Second, clk.Now
	p := l.pull(t, cfg)
	c := etr(t)
	old, spare := int(k), 4

	if s := register(t, p, c, eid); len(s) != 1 || l.node(s[0]) != old {
		t.Fatalf("first registration at %v, want map-server %d", s, old)
	}
	spec[k] = []string{"A " + msIP(spare).String()}
	l.dot.SetZone(buildZone(t, spec))

	// Still cached: the old map-server gets the refresh.
	clk.Add(9 * time.Second)
	if s := register(t, p, c, eid); len(s) != 1 || l.node(s[0]) != old {
		t.Fatalf("cached registration at %v, want map-server %d", s, old)
	}
	if got := l.registered(spare); len(got) != 0 {
		t.Fatalf("spare has %v before the refresh", got)
	}
	// Refresh elapsed: re-resolved, the spare gets it.
	clk.Add(time.Second)
	before := l.ms[old].srv.Stats().Refreshes
	if s := register(t, p, c, eid); len(s) != 1 || l.node(s[0]) != spare {
		t.Fatalf("registration after the zone change at %v, want map-server %d", s, spare)
	}
	if got := l.registered(spare); !slices.Equal(got, []netip.Prefix{eid}) {
		t.Fatalf("spare has %v", got)
	}
	if after := l.ms[old].srv.Stats().Refreshes; after != before {
		t.Fatalf("old map-server still refreshed (%d → %d)", before, after)
	}

	// Added server: both.
	spec[k] = []string{"A " + msIP(old).String(), "A " + msIP(spare).String()}
	l.dot.SetZone(buildZone(t, spec))
	clk.Add(10 * time.Second)
	s := register(t, p, c, eid)
	if len(s) != 2 || l.node(s[0]) < 0 || l.node(s[1]) < 0 || s[0] == s[1] {
		t.Fatalf("registration with two map-servers went to %v", s)
	}
	var rr []int
	for range 4 {
		ms, err := p.NextMapServer(context.Background(), eid)
		if err != nil {
			t.Fatal(err)
		}
		rr = append(rr, l.node(ms))
	}
	if rr[0] == rr[1] || rr[0] != rr[2] || rr[1] != rr[3] {
		t.Fatalf("round robin %v", rr)
	}

	// Removed: NXDOMAIN is an answer, not a failure: no stale answer.
	delete(spec, k)
	l.dot.SetZone(buildZone(t, spec))
	clk.Add(10 * time.Second)
	if s, err := p.MapServers(context.Background(), eid); !errors.Is(err, ErrNoMapServers) {
		t.Fatalf("after removal: %v, %v", s, err)
	}
}

// A map-server that receives a registration for an index it does not own
// reports it: here the registering node uses lispers.net hashing while the
// map-servers use draft; and a modulus 3 vs 4 disagreement.
func TestPullMismatch(t *testing.T) {
	srvCfg := Config{Mode: ModeDraft, Modulus: 4, Suffix: testSuffix}
	for _, tc := range []struct {
		name string
		node Config
		drop bool
	}{
		{"mode", Config{Mode: ModeLispersNet, Modulus: 4}, false},
		{"modulus", Config{Mode: ModeDraft, Modulus: 3}, false},
		{"modulus-drop", Config{Mode: ModeDraft, Modulus: 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 4, layout(4, 4), srvCfg, ownedMod(4, 4), tc.drop)
			p := l.pull(t, tc.node)
			sp := l.ms[0].guard.Node
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
			c := etr(t)
			if tc.drop {
				if _, err := p.Register(context.Background(), c, &lisp.MapRegister{Nonce: nonceSeq.Add(1),
					Records: []lisp.MappingRecord{record(eid)}}, testAuth); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for n, _ := l.ms[wrong].guard.Mismatches(); n == 0 && time.Now().Before(deadline); n, _ = l.ms[wrong].guard.Mismatches() {
					time.Sleep(5 * time.Millisecond)
				}
			} else if s := register(t, p, c, eid); len(s) != 1 || l.node(s[0]) != wrong {
				t.Fatalf("sent to %v, want map-server %d", s, wrong)
			}
			n, last := l.ms[wrong].guard.Mismatches()
			if n != 1 || last == nil || last.Index != right || !slices.Equal(last.Owned, []uint64{uint64(wrong)}) ||
				last.EID != EIDString(0, eid) || last.Modulus != 4 || last.Mode != ModeDraft {
				t.Fatalf("mismatches %d, last %+v", n, last)
			}
			t.Log(last)
			if got := l.registered(wrong); tc.drop == (len(got) != 0) {
				t.Fatalf("drop=%v: map-server %d has %v", tc.drop, wrong, got)
			}
			if sp.Owns(eid, Name(uint64(wrong), testSuffix)) || !sp.Owns(eid, Name(right, testSuffix+".")) {
				t.Fatal("Owns")
			}
		})
	}
}

// Caching: one A+AAAA resolution per Refresh; min(TTL, Refresh) with a
// TTLResolver; a failing resolver is answered from the stale answer and
// retried; NXDOMAIN and empty names are errors; A and AAAA are merged.
func TestPullResolveCache(t *testing.T) {
	eid := netip.MustParsePrefix("10.1.0.0/16")
	name := Name(mustIndex(ModeDraft, eid, 0, 4), testSuffix)
	f := &fakeResolver{answers: map[string][]netip.Addr{
		name: {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")},
	}}
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	p, err := New(Config{Modulus: 4, Suffix: testSuffix + ".", Resolver: f, Now: clk.Now, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if p.Config().Refresh != DefaultRefresh || p.Config().ControlPort != DefaultControlPort {
		t.Fatalf("defaults %+v", p.Config())
	}
	ctx := context.Background()
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:4342"), netip.MustParseAddrPort("[2001:db8::1]:4342")}
	for range 3 {
		if s, err := p.MapServers(ctx, eid); err != nil || !slices.Equal(s, want) {
			t.Fatalf("MapServers = %v, %v", s, err)
		}
		clk.Add(9 * time.Second)
	}
	if f.queries != 2 {
		t.Fatalf("%d queries within Refresh, want 2 (A+AAAA)", f.queries)
	}
	clk.Add(4 * time.Second) // 31 s
	p.MapServers(ctx, eid)
	if f.queries != 4 {
		t.Fatalf("%d queries after Refresh, want 4", f.queries)
	}
	// Resolver down: stale answer, retried after 5 s, not before.
	f.fail = true
	clk.Add(30 * time.Second)
	if s, err := p.MapServers(ctx, eid); err != nil || !slices.Equal(s, want) {
		t.Fatalf("stale MapServers = %v, %v", s, err)
	}
	p.MapServers(ctx, eid)
	if st := p.Stats(); f.queries != 6 || st.StaleAnswers != 1 || st.ResolveErrors != 1 {
		t.Fatalf("queries %d, stats %+v", f.queries, st)
	}
	clk.Add(5 * time.Second)
	p.MapServers(ctx, eid)
	if f.queries != 8 {
		t.Fatalf("queries %d, want a retry after 5 s", f.queries)
	}
	// Unknown name without a previous answer: error.
	if _, err := p.MapServersOfIndex(ctx, 3); err == nil || errors.Is(err, ErrNoMapServers) || Name(3, testSuffix) == name {
		t.Fatalf("index 3 with the resolver down: %v", err)
	}
	f.fail = false
	if _, err := p.MapServersOfIndex(ctx, 3); !errors.Is(err, ErrNoMapServers) {
		t.Fatalf("NXDOMAIN: %v", err)
	}
	clk.Add(time.Minute)
	f.answers[Name(3, testSuffix)] = nil
	if _, err := p.MapServersOfIndex(ctx, 3); !errors.Is(err, ErrNoMapServers) {
		t.Fatalf("empty name: %v", err)
	}

	// TTLResolver: cached for min(TTL, Refresh).
	f2 := &fakeResolver{answers: f.answers, ttl: 2 * time.Second}
	p2, _ := New(Config{Modulus: 4, Suffix: testSuffix, Resolver: fakeTTLResolver{f2}, Now: clk.Now})
	p2.MapServers(ctx, eid)
	clk.Add(time.Second)
	p2.MapServers(ctx, eid)
	clk.Add(time.Second)
	p2.MapServers(ctx, eid)
	if f2.queries != 4 {
		t.Fatalf("TTL 2 s: %d queries, want 4", f2.queries)
	}
}

func TestPullConfigAndRecords(t *testing.T) {
	f := &fakeResolver{}
	for _, bad := range []Config{
		{Suffix: testSuffix, Resolver: f},
		{Modulus: 4, Resolver: f},
		{Modulus: 4, Suffix: testSuffix},
		{Modulus: 4, Suffix: testSuffix, Resolver: f, Mask: -1},
		{Modulus: 4, Suffix: testSuffix, Resolver: f, Mode: 7},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
	p, _ := New(Config{Mode: ModeLispersNet, Modulus: 16, Suffix: "Map-Server.Example.Test.", Resolver: f, InstanceID: 0})
	for name, want := range map[string]int64{
		"8.map-server.example.test": 8, "15.MAP-SERVER.example.test.": 15, "16.map-server.example.test": -1,
		"x.map-server.example.test": -1, "8.other.test": -1, "map-server.example.test": -1, "1.2.map-server.example.test": -1,
	} {
		i, err := p.IndexOfName(name)
		if (want < 0) != (err != nil) || (err == nil && int64(i) != want) {
			t.Errorf("IndexOfName(%q) = %d, %v", name, i, err)
		}
	}
	// Record EIDs: Instance-ID and AS-Number LCAFs, multicast (S, G).
	pfx := netip.MustParsePrefix("240.0.1.0/24")
	r := record(pfx)
	r.EID = lisp.InstanceIDAddr(7, 32, lisp.ASNAddr(65001, lisp.IPAddr(pfx.Addr())))
	if i, s, err := p.RecordIndex(&r); err != nil || s != "[7]240.0.1.0/24" || i != p.IndexOf(7, pfx) {
		t.Fatalf("RecordIndex = %d %q %v", i, s, err)
	}
	g, src := netip.MustParsePrefix("224.1.1.1/32"), netip.MustParsePrefix("10.0.0.0/8")
	r.EID = lisp.MulticastAddr(3, lisp.IPAddr(src.Addr()), 8, lisp.IPAddr(g.Addr()), 32)
	// p is in lispers.net mode: the group address alone is hashed, so the
	// index is lispers.net's (hmac-sha256("lisp-decent", "[3]224.1.1.1/32"),
	// first 6 octets, mod 16 = 7; computed with lispers.net's formula).
	if i, s, err := p.RecordIndex(&r); err != nil || s != "[3]224.1.1.1/32" || i != 7 {
		t.Fatalf("lispers.net multicast RecordIndex = %d %q %v", i, s, err)
	}
	d, _ := New(Config{Modulus: 16, Suffix: testSuffix, Resolver: f})
	if _, s, err := d.RecordIndex(&r); err != nil || s != "[3]224.1.1.1/32-10.0.0.0/8" {
		t.Fatalf("draft multicast RecordIndex = %q %v", s, err)
	}
	// Records of one Map-Register must share an index.
	var a, b netip.Prefix
	for _, e := range testEIDs() {
		if !a.IsValid() {
			a = e
		} else if p.IndexOf(0, e) != p.IndexOf(0, a) {
			b = e
			break
		}
	}
	_, err := p.Register(context.Background(), nil, &lisp.MapRegister{Records: []lisp.MappingRecord{record(a), record(b)}}, testAuth)
	if !errors.Is(err, ErrMixedIndexes) {
		t.Fatalf("mixed indexes: %v", err)
	}
	// CheckRegister ignores non-Map-Registers and garbage.
	if err := p.CheckRegister([]byte{0x10, 1, 2}, netip.AddrPort{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckRegister([]byte{0x30, 1, 2}, netip.AddrPort{}, nil); err != nil {
		t.Fatal(err)
	}
	reg, _ := testAuth.Marshal(&lisp.MapRegister{Records: []lisp.MappingRecord{record(pfx)}})
	var me *MismatchError
	if err := p.CheckRegister(reg, netip.AddrPort{}, []uint64{p.IndexOf(0, pfx) ^ 1}); !errors.As(err, &me) {
		t.Fatalf("CheckRegister: %v", err)
	}
	if err := p.CheckRegister(reg, netip.AddrPort{}, []uint64{p.IndexOf(0, pfx)}); err != nil {
		t.Fatalf("owned: %v", err)
	}
}
