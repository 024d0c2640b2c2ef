package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/internal/netlab"
)

func TestDefaultTopologyParses(t *testing.T) {
	topo, err := Parse(DefaultTopology)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(topo.ABRs()); got != 2 {
		t.Fatalf("%d ABR nodes, want 2", got)
	}
	if len(topo.Flows) < 20 {
		t.Fatalf("only %d flows", len(topo.Flows))
	}
	if _, err := Parse([]byte("[lab]\npackets = 1\nbogus = 2\n")); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown key accepted: %v", err)
	}
}

func TestEngineConfig(t *testing.T) {
	topo, err := Parse(StaticTopology)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Topo: topo, Run: "abcdef", S0: strings.Repeat("ab", 32), StartEpoch: 41}
	b, err := e.EngineConfig("abr2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"asn = 65002", "epoch_seconds = 60", "[[psav.member]]", "[[psav.static_peer]]",
		"asn = 65001\n    start_epoch = 41", `s0 = "abab`, `forwarding = "cross-connect"`,
		`interface = "out"`, `role = "egress"`, `listen = "127.0.0.1:9100"`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("engine.toml lacks %q:\n%s", want, b)
		}
	}
}

func TestEpoch(t *testing.T) {
	topo := &Topology{PSAV: PSAV{EpochSeconds: 60, T0: 0}}
	if got := topo.Epoch(time.Unix(1740000059, 0)); got != 29000000 {
		t.Fatalf("epoch %d", got)
	}
}

func TestMarkers(t *testing.T) {
	m := Markers([]byte("xx"+MarkerText("a1b2c3", Marker{7, 12})+"yy"+MarkerText("a1b2c3", Marker{8, 99999})), "a1b2c3")
	if len(m) != 2 || m[0] != (Marker{7, 12}) || m[1] != (Marker{8, 99999}) {
		t.Fatalf("markers %v", m)
	}
}

func TestParseMetrics(t *testing.T) {
	c, err := ParseMetrics(strings.NewReader(`# HELP psavd_drops_total x
# TYPE psavd_drops_total counter
psavd_drops_total{port="outside",reason="no-tag"} 20
psavd_drops_total{reason="bad-tag",port="outside"} 3
psavd_packets_total{port="inside",action="tagged"} 1e+01
psavd_other 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Total("drops", "no-tag") != 20 || c.Total("drops", "bad-tag") != 3 || c.Total("packets", "tagged") != 10 {
		t.Fatalf("%v", c)
	}
}

// bridgeStandIn replaces psavd by a Linux bridge of the ABR's ports: it
// carries everything, so the lab's plumbing (topology, sockets, forged
// frames, sniffers) can be tested without psavd.
func bridgeStandIn(ctx context.Context, e *Env) error {
	for _, n := range e.Topo.ABRs() {
		ns := e.NS(n.Name)
		if err := netlab.IP("-n", ns, "link", "add", "br0", "type", "bridge"); err != nil {
			return err
		}
		for _, p := range n.ABR.Ports {
			if err := netlab.IP("-n", ns, "link", "set", p.Interface, "master", "br0"); err != nil {
				return err
			}
		}
		if err := netlab.IP("-n", ns, "link", "set", "br0", "up"); err != nil {
			return err
		}
		e.addStandIn(n.Name, func() error { return nil })
	}
	return nil
}

// TestLabPlumbing runs the static-key lab with bridges instead of psavd: every
// flow, forged ones included, must then be delivered.
func TestLabPlumbing(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	var out bytes.Buffer
	res, err := Run(context.Background(), Options{Topology: StaticTopology, PacketsPerFlow: 5, standIn: bridgeStandIn}, &out)
	t.Logf("Run: %v", err)
	t.Log("\n" + out.String())
	if len(res.Flows) == 0 {
		t.Fatal("no flow ran")
	}
	for _, r := range res.Flows {
		if r.Delivered != r.Sent || r.Sent != 5 {
			t.Errorf("%s: sent %d, delivered %d", r.Flow.Label(), r.Sent, r.Delivered)
		}
		if r.Flow.Proto == "icmp" && !r.Flow.Spoofed() && r.Replies != r.Sent {
			t.Errorf("%s: %d replies", r.Flow.Label(), r.Replies)
		}
	}
	if !strings.Contains(out.String(), "torn down") {
		t.Error("no teardown line")
	}
}

// TestHierarchyEngineConfig: in the community tree each ACS gets the whole
// tree and peers only with the ACS it shares a key with.
func TestHierarchyEngineConfig(t *testing.T) {
	topo, err := Parse(HierarchyTopology)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Topo: topo, Run: "abcdef", Dir: t.TempDir()}
	want := map[string][]string{
		"abr1": {"asn = 65002\n"},
		"abr2": {"asn = 65001\n", "asn = 65003\n"},
		"abr3": {"asn = 65002\n", "asn = 65004\n"},
		"abr4": {"asn = 65003\n"},
	}
	for node, peers := range want {
		b, err := e.EngineConfig(node)
		if err != nil {
			t.Fatal(err)
		}
		_, acsPeers, _ := strings.Cut(string(b), "[[acs.peer]]")
		if got := strings.Count(acsPeers, "[[acs.peer]]") + 1; got != len(peers) {
			t.Errorf("%s: %d ACS peers, want %d:\n%s", node, got, len(peers), b)
		}
		for _, p := range peers {
			if !strings.Contains(acsPeers, p) {
				t.Errorf("%s: no ACS peer %q:\n%s", node, p, b)
			}
		}
		for _, s := range []string{"ascn = 1\n", "border = 65002", "parent_peer = 65003"} {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s: the tree lacks %q:\n%s", node, s, b)
			}
		}
		// What the lab writes is what psavd reads: the root community (ascn
		// 0, left out as a zero value) and the tree, through config itself.
		c, err := config.Parse(node+".toml", b)
		if err != nil {
			t.Fatalf("%s: psavd would refuse the generated file: %v\n%s", node, err, b)
		}
		if _, ok := c.ACS.Anchors[0]; !ok || len(c.ACS.Communities) != 1 || c.ACS.Communities[0].Border != 65002 {
			t.Errorf("%s: tree as read by config: anchors %v, communities %+v", node, c.ACS.Anchors, c.ACS.Communities)
		}
	}
	for _, bad := range []string{
		"[[community]]\nascn = 1\nparent = 0\nborder = 65002\n",                      // no parent peer
		"[[community]]\nascn = 1\nparent = 7\nborder = 65002\nparent_peer = 65003\n", // unknown parent
	} {
		text := strings.Replace(string(HierarchyTopology), "[[community]]\nascn = 1\nparent = 0\nborder = 65002\nparent_peer = 65003\n", bad, 1)
		if _, err := Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), "community") {
			t.Errorf("broken tree accepted: %v", err)
		}
	}
}
