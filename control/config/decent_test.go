package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/decent/push"
)

// decentBase is a routed xTR without register_to / map_resolver; the
// tests append a [lisp.decent] section (and what it needs).
const decentBase = `
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
[[route]]
prefix = "0.0.0.0/0"
port = "outside"
next_hop_mac = "02:00:00:00:00:01"
[lisp]
rlocs = ["192.0.2.1", "2001:db8:ff::1"]
control_listen = "192.0.2.1:4343"
[[lisp.site]]
name = "as65001"
key = "k1"
key_id = 2
eid_prefixes = ["198.51.100.0/24"]
[[lisp.site]]
name = "as65002"
key = "k2"
key_id = 1
eid_prefixes = ["203.0.113.0/24"]
accept_more_specifics = true
[[lisp.database]]
eid = "198.51.100.0/24"
rlocs = [{ address = "192.0.2.1", priority = 1, weight = 100 }]
`

const decentPush = decentBase + `
[lisp.decent]
mode = "push"
site = "as65001"
group = "239.1.2.3"
interface = "out"
members = ["192.0.2.2"]
membership_key = "group-secret"
membership_key_id = 2
refresh_interval = "10s"
registration_ttl = "30s"
`

const decentPull = decentBase + `
[lisp.map_server]
listen = "192.0.2.11:4342"
[lisp.decent]
mode = "pull"
site = "as65001"
suffix = "map-server.example.test"
modulus = 4
hash_mode = "draft"
hash_mask = 8
owned = [0, 2]
[adot]
servers = ["192.0.2.53:853"]
server_name = "dns.example.test"
`

func TestDecentConfigPush(t *testing.T) {
	c, err := Parse("x.toml", []byte(decentPush))
	if err != nil {
		t.Fatal(err)
	}
	pc := c.LISP.Decent.Push
	if pc.Group != netip.MustParseAddr("239.1.2.3") || pc.RLOC != netip.MustParseAddr("192.0.2.1") || pc.Transport != push.TransportMulticast ||
		pc.Interface != "out" || len(pc.Members) != 1 || string(pc.MembershipKey) != "group-secret" || pc.MembershipKeyID != 2 ||
		pc.RefreshInterval != 10*time.Second || pc.RegistrationTTL != 30*time.Second || len(pc.Sites) != 2 || len(pc.EIDs) != 0 ||
		pc.ControlPort != 4342 || pc.DataPort != 4341 || pc.Core != nil {
		t.Fatalf("push config %+v", pc)
	}
	if a := c.LISP.Decent.Auth; a == nil || string(a.Key) != "k1" || a.KeyID != 2 || c.LISP.Decent.Pull != nil {
		t.Fatalf("auth %+v", a)
	}
	// An IPv6 group takes the IPv6 RLOC; a core seed-group.
	text := strings.NewReplacer(`group = "239.1.2.3"`, "group = \"ff15::1:1\"\ncore_group = \"ff15::1\"\ncore_members = [\"2001:db8:ff::9\"]\ntransport = \"unicast\"",
		`members = ["192.0.2.2"]`, "").Replace(decentPush)
	c, err = Parse("x.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	pc = c.LISP.Decent.Push
	if pc.RLOC != netip.MustParseAddr("2001:db8:ff::1") || pc.Transport != push.TransportUnicast || pc.Core == nil ||
		pc.Core.Group != netip.MustParseAddr("ff15::1") || len(pc.Core.Members) != 1 {
		t.Fatalf("IPv6 push config %+v", pc)
	}
}

func TestDecentConfigPull(t *testing.T) {
	c, err := Parse("x.toml", []byte(decentPull))
	if err != nil {
		t.Fatal(err)
	}
	pc := c.LISP.Decent.Pull
	if pc.Mode != pull.ModeDraft || pc.Mask != 8 || pc.Modulus != 4 || pc.Suffix != "map-server.example.test" || c.LISP.Decent.Owned[1] != 2 {
		t.Fatalf("pull config %+v", pc)
	}
	c, err = Parse("x.toml", []byte(strings.Replace(strings.Replace(decentPull, `hash_mode = "draft"`, `hash_mode = "lispers.net"`, 1), "hash_mask = 8\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if pc = c.LISP.Decent.Pull; pc.Mode != pull.ModeLispersNet {
		t.Fatalf("lispers.net: %+v", pc)
	}
}

// TestDecentConfigProblems: every refusal names the file, the key and
// the reason.
func TestDecentConfigProblems(t *testing.T) {
	for _, x := range []struct {
		name, base, from, to, key, reason string
	}{
		{"mode", decentPush, `mode = "push"`, `mode = "gossip"`, "lisp.decent.mode", "not one of push, pull"},
		{"static register_to too", decentPush, "[lisp.decent]", "[[lisp.register_to]]\naddress = \"10.0.0.1\"\nkey = \"k\"\nkey_id = 1\n[lisp.decent]", "lisp.register_to", "LISP-Decent picks"},
		{"static map_resolver too", decentPush, "[lisp.decent]", "[[lisp.map_resolver]]\naddress = \"10.0.0.1\"\n[lisp.decent]", "lisp.map_resolver", "LISP-Decent picks"},
		{"site missing", decentPush, "site = \"as65001\"\n", "", "lisp.decent.site", "missing"},
		{"site unknown", decentPush, `site = "as65001"`, `site = "as65009"`, "lisp.decent.site", "no [[lisp.site]] named"},
		{"no rlocs", decentPush, `rlocs = ["192.0.2.1", "2001:db8:ff::1"]`, `rlocs = []`, "lisp.rlocs", "ITR-RLOC"},
		{"push: pull key", decentPush, "[lisp.decent]\n", "[lisp.decent]\nmodulus = 4\n", "lisp.decent.modulus", "pull-mode key"},
		{"push: group missing", decentPush, "group = \"239.1.2.3\"\n", "", "lisp.decent.group", "missing"},
		{"push: group not multicast", decentPush, `group = "239.1.2.3"`, `group = "10.1.2.3"`, "lisp.decent.group", "multicast"},
		{"push: group not an address", decentPush, `group = "239.1.2.3"`, `group = "g"`, "lisp.decent.group", "not an address"},
		{"push: no rloc of the family", decentPush, `rlocs = ["192.0.2.1", "2001:db8:ff::1"]`, `rlocs = ["2001:db8:ff::1"]`, "lisp.rlocs", "group's family"},
		{"push: interface", decentPush, "interface = \"out\"\nmembers", "members", "lisp.decent.interface", "multicast"},
		{"push: transport", decentPush, "[lisp.decent]\n", "[lisp.decent]\ntransport = \"carrier-pigeon\"\n", "lisp.decent.transport", "not one of"},
		{"push: member", decentPush, `members = ["192.0.2.2"]`, `members = ["239.0.0.1"]`, "lisp.decent.members[0]", "unicast"},
		{"push: core members alone", decentPush, "[lisp.decent]\n", "[lisp.decent]\ncore_members = [\"192.0.2.9\"]\n", "lisp.decent.core_members", "without"},
		{"push: core group", decentPush, "[lisp.decent]\n", "[lisp.decent]\ncore_group = \"239.1.2.3\"\n", "lisp.decent.core_group", "equals group"},
		{"push: membership key", decentPush, "membership_key = \"group-secret\"\n", "", "lisp.decent.membership_key", "empty"},
		{"push: membership key id", decentPush, "membership_key_id = 2", "membership_key_id = 3", "lisp.decent.membership_key_id", "HMAC"},
		{"push: ttl vs refresh", decentPush, `registration_ttl = "30s"`, `registration_ttl = "5s"`, "lisp.decent.registration_ttl", "exceed"},
		{"push: duration", decentPush, `refresh_interval = "10s"`, `refresh_interval = "often"`, "lisp.decent.refresh_interval", "duration"},
		{"push: port", decentPush, "[lisp.decent]\n", "[lisp.decent]\ndata_port = 70000\n", "lisp.decent.data_port", "UDP port"},
		{"push: same ports", decentPush, "[lisp.decent]\n", "[lisp.decent]\ndata_port = 4342\n", "lisp.decent.data_port", "equals control_port"},
		{"push: map_server", decentPush, "[lisp.decent]", "[lisp.map_server]\nlisten = \"192.0.2.1:4342\"\n[lisp.decent]", "lisp.map_server", "push node is this node's Map-Server"},
		{"push: xTR on the push port", decentPush, `control_listen = "192.0.2.1:4343"`, `control_listen = "192.0.2.1:4342"`, "lisp.control_listen", "push node's port"},
		{"push: default control_listen", decentPush, "control_listen = \"192.0.2.1:4343\"\n", "", "lisp.control_listen", "push node's port"},
		{"push: prefix not allowed", decentPush, `"198.51.100.0/24"]`, `"198.51.100.0/33"]`, "lisp.site[0].eid_prefixes[0]", "not a prefix"},
		{"pull: push key", decentPull, "[lisp.decent]\n", "[lisp.decent]\ngroup = \"239.1.2.3\"\n", "lisp.decent.group", "push-mode key"},
		{"pull: suffix missing", decentPull, "suffix = \"map-server.example.test\"\n", "", "lisp.decent.suffix", "missing"},
		{"pull: suffix bad", decentPull, `suffix = "map-server.example.test"`, `suffix = "a..b"`, "lisp.decent.suffix", "not a domain name"},
		{"pull: modulus missing", decentPull, "modulus = 4\n", "", "lisp.decent.modulus", "missing"},
		{"pull: hash mode", decentPull, `hash_mode = "draft"`, `hash_mode = "md5"`, "lisp.decent.hash_mode", "not one of draft, lispers.net"},
		{"pull: mask negative", decentPull, "hash_mask = 8", "hash_mask = -1", "lisp.decent.hash_mask", "negative"},
		{"pull: mask with lispers.net", decentPull, `hash_mode = "draft"`, `hash_mode = "lispers.net"`, "lisp.decent.hash_mask", "no mask"},
		{"pull: owned out of range", decentPull, "owned = [0, 2]", "owned = [0, 4]", "lisp.decent.owned[1]", "below modulus"},
		{"pull: owned without map-server", decentPull, "[lisp.map_server]\nlisten = \"192.0.2.11:4342\"\n", "", "lisp.decent.owned", "no [lisp.map_server]"},
		{"pull: drop without owned", decentPull, "owned = [0, 2]", "drop_mismatched = true", "lisp.decent.drop_mismatched", "needs"},
		{"pull: no adot", decentPull, "[adot]\nservers = [\"192.0.2.53:853\"]\nserver_name = \"dns.example.test\"\n", "", "lisp.decent", "ADoT client"},
		{"unknown key", decentPull, "[lisp.decent]\n", "[lisp.decent]\nmodulo = 4\n", "lisp.decent.modulo", "unknown key"},
	} {
		t.Run(x.name, func(t *testing.T) {
			text := strings.Replace(x.base, x.from, x.to, 1)
			if text == x.base {
				t.Fatal("edit did not apply")
			}
			_, err := Parse("x.toml", []byte(text))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			for _, p := range ps {
				if p.File == "x.toml" && p.Key == x.key && strings.Contains(p.Reason, x.reason) {
					return
				}
			}
			t.Fatalf("no problem with key %q and reason %q in:\n%v", x.key, x.reason, err)
		})
	}
}
