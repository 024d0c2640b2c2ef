package pull

import (
	"crypto/tls"
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/adot"
)

// TestZoneFeedSerialAndSetStatic: every zone the feed installs carries a
// higher SOA serial (what secondaries compare before transferring); the
// same membership installs nothing; SetStatic (a reload) installs a new
// zone although the membership is the same.
func TestZoneFeedSerialAndSetStatic(t *testing.T) {
	cert, _ := testCert(t)
	static := map[string][]string{"@": {"NS ns.example.test."}}
	z0, err := IndexZone(testSuffix+".", 30, 4, 2, nil, static)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := adot.NewServer(adot.ServerConfig{Addr: "127.0.0.1:0", Certificates: []tls.Certificate{cert}, Zone: z0})
	if err != nil {
		t.Fatal(err)
	}
	members := addrs("192.0.2.10")
	feed := &ZoneFeed{Server: srv, Origin: testSuffix + ".", TTL: 30, Modulus: 4, Replicas: 2, Static: static,
		Members: func(time.Time) []netip.Addr { return members }}
	serial := srv.Zone().Serial()
	step := func(what string, wantChange bool) {
		t.Helper()
		changed, err := feed.Update(time.Now())
		if err != nil || changed != wantChange {
			t.Fatalf("%s: changed %v, %v; want %v", what, changed, err, wantChange)
		}
		s := srv.Zone().Serial()
		if wantChange && s <= serial || !wantChange && s != serial {
			t.Fatalf("%s: serial %d after %d", what, s, serial)
		}
		serial = s
	}
	step("first membership", true)
	step("same membership", false)
	members = addrs("192.0.2.10", "192.0.2.11")
	step("a member joins", true)
	feed.SetStatic(60, map[string][]string{"@": {"NS ns.example.test."}, "info": {"TXT \"v2\""}})
	step("reloaded static records", true)
	if srv.Zone().Len() != 2+4*2+1 { // SOA, NS, 4 indexes × 2 owners, TXT
		t.Fatalf("zone has %d records", srv.Zone().Len())
	}
	step("nothing new", false)
}
