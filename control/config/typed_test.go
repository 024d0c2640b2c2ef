package config

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports/afxdp"
)

// Load's typed Config says what the file says: prefixes, addresses,
// durations, keys, roles, port indexes.
func TestLoadTyped(t *testing.T) {
	text := edit(t, good, "[psav]\nasn = 65001", "[psav]\nasn = 65001\nepoch_seconds = 30\nt0 = 1700000000") +
		"\n[capture]\ndir = \"/tmp/cap\"\nper_second = 0\nkeep = 0\nreasons = [\"bad-tag\"]\n[log]\nlevel = \"debug\"\nformat = \"json\"\n"
	text = edit(t, text, "role = \"egress\"", "role = \"egress\"\nxdp_mode = \"generic\"\nqueues = [0, 3]")
	path := filepath.Join(t.TempDir(), "engine.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path || c.Source == nil || c.Source.PSAV.EpochSeconds != 30 || c.Source.Ports[1].XDPMode != "generic" {
		t.Fatalf("file %q source %+v", c.File, c.Source)
	}
	wantPSAV := PSAV{ASN: 65001, EpochSeconds: 30, T0: 1700000000,
		Members: []Member{
			{ASN: 65001, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}},
			{ASN: 65002, Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
		},
		StaticPeers: []StaticPeer{{ASN: 65002, StartEpoch: 1}}}
	for i := range wantPSAV.StaticPeers[0].S0 {
		wantPSAV.StaticPeers[0].S0[i] = byte(i)
	}
	if !reflect.DeepEqual(c.PSAV, wantPSAV) {
		t.Errorf("psav\n got %+v\nwant %+v", c.PSAV, wantPSAV)
	}
	wantPorts := []Port{
		{Name: "inside", Interface: "in", Role: engine.RoleIngress, Peer: 1, XDPMode: afxdp.ModeAuto, Encap: engine.EncapNone, MTU: 1500, XDPPrefilter: true},
		{Name: "outside", Interface: "out", Role: engine.RoleEgress, Peer: 0, XDPMode: afxdp.ModeGeneric, Encap: engine.EncapNone, MTU: 1500, Queues: []int{0, 3}, XDPPrefilter: true},
	}
	if !reflect.DeepEqual(c.Ports, wantPorts) {
		t.Errorf("ports\n got %+v\nwant %+v", c.Ports, wantPorts)
	}
	if c.Engine.Forwarding != engine.CrossConnect || c.Engine.Batch != 64 || c.Engine.Frames != 4096 || c.Engine.RingSize != 2048 ||
		c.Engine.CPUs != nil || c.Engine.Policy != (engine.Policy{}) {
		t.Errorf("engine %+v", c.Engine)
	}
	// busy_poll: typed once here; the budget defaults to the batch.
	bp, err := Parse("bp.toml", []byte(edit(t, good, "[psav]\nasn = 65001", "[engine]\nbatch = 32\nbusy_poll = \"50us\"\n[psav]\nasn = 65001")))
	if err != nil {
		t.Fatal(err)
	}
	if bp.Engine.BusyPoll != 50*time.Microsecond || bp.Engine.BusyPollBudget != 32 {
		t.Errorf("busy poll %v, budget %d; want 50µs, 32", bp.Engine.BusyPoll, bp.Engine.BusyPollBudget)
	}
	spec := c.EngineSpec()
	if len(spec.Ports) != 2 || spec.Ports[0].Peer != 1 || spec.Ports[1].Role != engine.RoleEgress || spec.Forwarding != engine.CrossConnect {
		t.Errorf("spec %+v", spec)
	}
	// per_second = 0 and keep = 0 are written: no limit, no rotated files.
	cp := c.Capture
	if cp.Dir != "/tmp/cap" || cp.Sampling.PerSecond != 0 || cp.Keep != 0 || cp.Sampling.Every != 100 || !cp.Sampling.Reasons[engine.DropBadTag] ||
		cp.Sampling.Reasons[engine.DropNoTag] {
		t.Errorf("capture %+v", cp)
	}
	if c.Log.Level != zapcore.DebugLevel || !c.Log.JSON {
		t.Errorf("log %+v", c.Log)
	}
}

func TestLoadTypedRoutedLISP(t *testing.T) {
	text := edit(t, goodLISP, "[[lisp.map_resolver]]", "[[route]]\nprefix = \"2001:db8::/32\"\nport = \"inside\"\nnext_hop = \"2001:db8::1\"\n[[lisp.map_resolver]]")
	text = edit(t, text, "[lisp]", "[lisp]\ninstance_id = 7\non_miss = \"native\"\nicmp_rate = 5\ncontrol_listen = \"192.0.2.1:4343\"")
	text = edit(t, text, "[[lisp.database]]", "[[lisp.site]]\nname = \"s\"\nkey = \"k\"\nkey_id = 1\neid_prefixes = [\"198.51.100.0/24\"]\naccept_more_specifics = true\n[[lisp.database]]")
	c, err := Parse("x.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	wantRoutes := []Route{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 1, NextHopMAC: mac},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Port: 0, NextHop: netip.MustParseAddr("2001:db8::1")},
	}
	if !reflect.DeepEqual(c.Routes, wantRoutes) {
		t.Errorf("routes\n got %+v\nwant %+v", c.Routes, wantRoutes)
	}
	if c.Ports[0].Peer != -1 || c.Ports[1].Encap != engine.EncapLISP || c.Engine.Forwarding != engine.Routed {
		t.Errorf("ports %+v", c.Ports)
	}
	l := c.LISP
	rlocs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:ff::1")}
	want := &LISP{InstanceID: 7, RLOCs: rlocs, ControlListen: "192.0.2.1:4343", ProbeInterval: 30 * time.Second, ProbeTimeout: 5 * time.Second, ProbeRetries: 2,
		Sites: []mapserver.Site{{Name: "s", Key: []byte("k"), KeyID: 1, AcceptMoreSpecifics: true,
			EIDPrefixes: []mapserver.EIDPrefix{{IID: 7, Prefix: netip.MustParsePrefix("198.51.100.0/24")}}}},
		Database: []xtr.Mapping{{EID: netip.MustParsePrefix("198.51.100.0/24"),
			Locators: []xtr.Locator{{Addr: netip.MustParseAddr("192.0.2.1"), Priority: 1, Weight: 100}}}},
		RegisterTo: []xtr.MapServer{{Addr: netip.MustParseAddrPort("10.0.0.1:4342"), Auth: lisp.AuthConfig{KeyID: 2, Key: []byte("secret"), AuthLen: 32},
			WantNotify: true, AckNotify: true}},
		MapResolvers: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:4342")},
	}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("lisp\n got %+v\nwant %+v", l, want)
	}
	if p := c.Engine.Policy; !p.LISPMissNative || p.DropTooBig || p.TooBigPerSecond != 5 {
		t.Errorf("policy %+v", p)
	}
	spec := c.EngineSpec()
	if out := spec.Ports[1]; out.InstanceID != 7 || !reflect.DeepEqual(out.RLOCs, rlocs) || spec.Ports[0].RLOCs != nil {
		t.Errorf("spec ports %+v", spec.Ports)
	}
	spec.Ports[1].RLOCs[0] = netip.Addr{}
	if c.LISP.RLOCs[0] != rlocs[0] {
		t.Error("EngineSpec shares the configuration's locators")
	}
}

func TestLoadTypedACS(t *testing.T) {
	text := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n[[acs.peer]]\nasn = 65001\naddress = \"192.0.2.1:7443\"\n")
	c, err := Parse("a.toml", []byte(edit(t, text, "membership_dir", "heartbeat = \"250ms\"\ndead_after = 7\nmembership_dir")))
	if err != nil {
		t.Fatal(err)
	}
	a := c.ACS
	if a.Heartbeat != 250*time.Millisecond || a.DeadAfter != 7 || len(a.Anchors[0]) != 1 || a.Communities != nil ||
		!reflect.DeepEqual(a.Peers, []ACSPeer{{ASN: 65001, Address: "192.0.2.1:7443"}}) || a.Listen != "127.0.0.1:7443" {
		t.Errorf("acs %+v", a)
	}
	// Absent: 1s and 3.
	c, err = Parse("a.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.ACS.Heartbeat != time.Second || c.ACS.DeadAfter != 3 || c.ACS.Limits != (acs.Limits{MaxConns: 1024, MaxConnsPerSource: 32, HandshakeTimeout: 5 * time.Second, HelloTimeout: 5 * time.Second}) {
		t.Errorf("defaults %+v", c.ACS)
	}
	c, err = Parse("a.toml", []byte(edit(t, text, "membership_dir", "max_connections = 64\nmax_connections_per_source = 4\nhandshake_timeout = \"2s\"\nhello_timeout = \"3s\"\nmembership_dir")))
	if err != nil {
		t.Fatal(err)
	}
	if c.ACS.Limits != (acs.Limits{MaxConns: 64, MaxConnsPerSource: 4, HandshakeTimeout: 2 * time.Second, HelloTimeout: 3 * time.Second}) {
		t.Errorf("limits %+v", c.ACS.Limits)
	}
}
