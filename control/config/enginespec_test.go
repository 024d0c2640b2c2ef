package config_test

import (
	"net/netip"
	"testing"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/engine"
)

// TestLISPSpec: [lisp] and the port keys reach the engine's spec (Config.EngineSpec), and the
// result is an engine New accepts.
func TestLISPSpec(t *testing.T) {
	c, err := config.Parse("x.toml", []byte(`
[psav]
asn = 65001
[engine]
forwarding = "routed"
[[port]]
name = "inside"
interface = "in"
role = "ingress"
[[port]]
name = "outside"
interface = "out"
role = "egress"
encap = "lisp"
mtu = 1400
udp6_zero_checksum = true
[[route]]
prefix = "0.0.0.0/0"
port = "outside"
next_hop_mac = "02:00:00:00:00:01"
[lisp]
instance_id = 7
rlocs = ["192.0.2.1", "2001:db8:ff::1"]
on_miss = "native"
too_big = "drop"
icmp_rate = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.EngineSpec()
	in, out := s.Ports[0], s.Ports[1]
	if in.Encap != engine.EncapNone || len(in.RLOCs) != 0 ||
		out.Encap != engine.EncapLISP || out.MTU != 1400 || !out.ZeroUDP6Checksum || out.InstanceID != 7 ||
		len(out.RLOCs) != 2 || out.RLOCs[0] != netip.MustParseAddr("192.0.2.1") || out.RLOCs[1] != netip.MustParseAddr("2001:db8:ff::1") {
		t.Fatalf("ports %+v", s.Ports)
	}
	if !s.Policy.LISPMissNative || !s.Policy.DropTooBig || s.Policy.TooBigPerSecond != 5 {
		t.Fatalf("policy %+v", s.Policy)
	}
	if _, err := engine.New(s); err != nil {
		t.Fatal(err)
	}
}
