package pull

import (
	"context"
	"crypto/tls"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/adot"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestIndexOwners(t *testing.T) {
	// Unsorted, with a duplicate: the assignment depends on the set only.
	ms := addrs("192.0.2.3", "192.0.2.1", "2001:db8::5", "192.0.2.1")
	got := IndexOwners(8, 2, ms)
	sorted := addrs("192.0.2.1", "192.0.2.3", "2001:db8::5")
	for i := uint64(0); i < 8; i++ {
		want := []netip.Addr{sorted[i%3], sorted[(i+1)%3]}
		if !slices.Equal(got[i], want) {
			t.Errorf("index %d: %v, want %v", i, got[i], want)
		}
	}
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	for i, o := range IndexOwners(8, 2, rev) {
		if !slices.Equal(o, got[i]) {
			t.Errorf("index %d depends on the order of the members: %v vs %v", i, o, got[i])
		}
	}
	// Every member owns about the same share.
	count := map[netip.Addr]int{}
	for _, o := range IndexOwners(300, 2, sorted) {
		for _, a := range o {
			count[a]++
		}
	}
	for a, n := range count {
		if n != 200 {
			t.Errorf("%v owns %d of 600 slots", a, n)
		}
	}
	if len(IndexOwners(4, 2, nil)) != 0 {
		t.Error("owners without members")
	}
	if o := IndexOwners(4, 5, sorted[:1]); len(o[3]) != 1 {
		t.Errorf("more replicas than members: %v", o)
	}
}

func TestIndexZoneRefuses(t *testing.T) {
	if _, err := IndexZone("map-server.example.test.", 30, 0, 1, addrs("192.0.2.1"), nil); err == nil {
		t.Error("modulus 0 accepted")
	}
	if _, err := IndexZone("map-server.example.test.", 30, 4, 1, addrs("192.0.2.1"), map[string][]string{"2": {"A 192.0.2.9"}}); err == nil {
		t.Error("static record on an index name accepted")
	}
}

// TestZoneFeedServesMembership: our DoT server's zone follows a changing
// membership, and a client resolving <index>.<suffix> over TLS sees the
// owners IndexOwners assigns — before and after a member leaves.
func TestZoneFeedServesMembership(t *testing.T) {
	cert, pool := testCert(t)
	// The server starts with the zone of an empty membership: only the
	// static records.
	static := map[string][]string{"@": {"NS ns." + testSuffix + "."}, "ns": {"A 192.0.2.53"}}
	z0, err := IndexZone(testSuffix+".", 1, 16, 2, nil, static)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: z0})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client, err := adot.NewClient(adot.Config{Servers: []string{srv.Addr().String()}, ServerName: "ns.example.test", RootCAs: pool, MaxCacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	var mu sync.Mutex
	members := addrs("192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::13")
	feed := &ZoneFeed{
		Server: srv, Origin: testSuffix + ".", TTL: 1, Modulus: 16, Replicas: 2,
		Static: static,
		Members: func(time.Time) []netip.Addr {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(members)
		},
	}
	check := func(ms []netip.Addr) {
		t.Helper()
		owners := IndexOwners(16, 2, ms)
		for i := uint64(0); i < 16; i++ {
			var got []netip.Addr
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				as, _, err := client.LookupInfo(context.Background(), Name(i, testSuffix), qt)
				if err != nil && qt == dns.TypeA && owners[i][0].Is4() {
					t.Fatalf("index %d: %v", i, err)
				}
				got = append(got, as...)
			}
			slices.SortFunc(got, func(a, b netip.Addr) int { return a.Compare(b) })
			want := slices.Clone(owners[i])
			slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
			if !slices.Equal(got, want) {
				t.Errorf("%s: %v, want %v", Name(i, testSuffix), got, want)
			}
		}
	}
	if changed, err := feed.Update(time.Now()); !changed || err != nil {
		t.Fatalf("first update: %v %v", changed, err)
	}
	check(members)
	if changed, _ := feed.Update(time.Now()); changed {
		t.Error("same membership installed a new zone")
	}
	mu.Lock()
	members = members[1:] // 192.0.2.10 leaves
	left := slices.Clone(members)
	mu.Unlock()
	if changed, err := feed.Update(time.Now()); !changed || err != nil {
		t.Fatalf("update after a leave: %v %v", changed, err)
	}
	check(left)
}
