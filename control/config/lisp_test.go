package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/psavd/psavd/engine"
)

// goodLISP is a routed xTR: port "outside" encapsulates, [lisp] registers
// and resolves.
const goodLISP = `
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
mtu = 1500
[[route]]
prefix = "0.0.0.0/0"
port = "outside"
next_hop_mac = "02:00:00:00:00:01"
[lisp]
rlocs = ["192.0.2.1", "2001:db8:ff::1"]
[[lisp.database]]
eid = "198.51.100.0/24"
rlocs = [{ address = "192.0.2.1", priority = 1, weight = 100 }]
[[lisp.register_to]]
address = "10.0.0.1"
key = "secret"
key_id = 2
want_notify = true
ack_notify = true
[[lisp.map_resolver]]
address = "10.0.0.1"
`

func TestLISPConfig(t *testing.T) {
	c, err := Parse("x.toml", []byte(goodLISP))
	if err != nil {
		t.Fatal(err)
	}
	if c.LISP.ControlListen != ":4342" || c.Engine.Policy.LISPMissNative || c.Engine.Policy.DropTooBig || c.Engine.Policy.TooBigPerSecond != 100 ||
		c.Ports[0].Encap != engine.EncapNone || c.Ports[1].Encap != engine.EncapLISP || !c.LISP.RegisterTo[0].AckNotify {
		t.Fatalf("defaults/keys: %+v %+v", c.LISP, c.Ports)
	}
	for _, x := range []struct{ name, from, to, key, reason string }{
		{"encap value", `encap = "lisp"`, `encap = "vxlan"`, "port[1].encap", "not one of"},
		{"encap cross-connect", `forwarding = "routed"`, `forwarding = "cross-connect"`, "port[1].encap", "routed"},
		{"encap without rlocs", `rlocs = ["192.0.2.1", "2001:db8:ff::1"]`, `rlocs = []`, "port[1].encap", "rlocs"},
		{"mtu", `mtu = 1500`, `mtu = 9000`, "port[1].mtu", "1280"},
		{"two IPv4 rlocs", `"2001:db8:ff::1"]`, `"192.0.2.9"]`, "lisp.rlocs", "at most one IPv4"},
		{"on_miss", `[lisp]`, "[lisp]\non_miss = \"queue\"", "lisp.on_miss", "not one of"},
		{"too_big", `[lisp]`, "[lisp]\ntoo_big = \"fragment\"", "lisp.too_big", "not one of"},
		{"instance_id", `[lisp]`, "[lisp]\ninstance_id = 16777216", "lisp.instance_id", "24 bits"},
		{"database without map-server", "[[lisp.register_to]]\naddress = \"10.0.0.1\"\nkey = \"secret\"\nkey_id = 2\nwant_notify = true\nack_notify = true\n", "", "lisp.register_to", "missing"},
		{"nothing to register", "[[lisp.database]]\neid = \"198.51.100.0/24\"\nrlocs = [{ address = \"192.0.2.1\", priority = 1, weight = 100 }]\n", "", "lisp.database", "nothing to register"},
		{"socket shared with the Map-Server", `[lisp]`, "[lisp]\ncontrol_listen = \"0.0.0.0:4342\"\n[lisp.map_server]\nlisten = \"10.0.0.1:4342\"\n[lisp.x]\n", "lisp.control_listen", "Map-Server's socket"},
	} {
		t.Run(x.name, func(t *testing.T) {
			text := strings.Replace(goodLISP, x.from, x.to, 1)
			if text == goodLISP {
				t.Fatal("edit did not apply")
			}
			if x.name == "socket shared with the Map-Server" {
				text = strings.Replace(text, "[lisp.x]\n", "", 1)
			}
			_, err := Parse("x.toml", []byte(text))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			for _, p := range ps {
				if p.File == "x.toml" && strings.Contains(p.Key, x.key) && strings.Contains(p.String(), x.reason) {
					return
				}
			}
			t.Fatalf("no problem with key %q and reason %q in:\n%v", x.key, x.reason, err)
		})
	}
}
