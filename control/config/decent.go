package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/decent/push"
	"github.com/psavd/psavd/control/lisp"
)

// Decent is [lisp.decent] (docs/wire.md §3.4): the node finds its
// Map-Servers and Map-Resolvers through LISP-Decent instead of
// [[lisp.register_to]] and [[lisp.map_resolver]]. Exactly one of Push and
// Pull is set.
type Decent struct {
	// Push is the push node's configuration, validated and with every
	// default filled in: its RLOC is the [lisp] rloc of the group's family,
	// its Map-Server holds the [[lisp.site]]s, it registers no EIDs itself
	// (the xTR registers the [[lisp.database]] with every member). The
	// caller sets OnMismatch.
	Push *push.Config
	// Pull is the pull configuration without its Resolver (the [adot]
	// client, made at start).
	Pull *pull.Config
	// Auth is the key of the [[lisp.site]] named by lisp.decent.site, which
	// signs this node's ETR registrations; nil when site is not given.
	Auth *lisp.AuthConfig
	// Owned (pull) are the indexes this node's [lisp.map_server] owns;
	// DropMismatched refuses registrations for the others.
	Owned          []uint64
	DropMismatched bool
}

var (
	decentPushKeys = []string{"group", "transport", "interface", "members", "core_group", "core_members", "membership_key",
		"membership_key_id", "refresh_interval", "registration_ttl", "lookup_interval", "multicast_ttl", "control_port", "data_port"}
	decentPullKeys = []string{"suffix", "modulus", "hash_mode", "hash_mask", "owned", "drop_mismatched"}
)

// Bounds of [lisp.decent].
const (
	maxDecentInterval = time.Hour      // refresh_interval, lookup_interval
	maxDecentTTL      = 24 * time.Hour // registration_ttl
	maxDecentModulus  = 1 << 32
	maxDecentHashMask = 255
)

// checkDecent checks [lisp.decent] and fills t.Decent (called by
// checkLISP, after t's sites are built).
func (c *Config) checkDecent(k *checker, f *schema.File, t *LISP) {
	l, d := f.LISP, f.LISP.Decent
	other := map[string][]string{"push": decentPullKeys, "pull": decentPushKeys}
	switch d.Mode {
	case "push", "pull":
		for _, key := range other[d.Mode] {
			if k.set("lisp.decent." + key) {
				k.add("lisp.decent."+key, "a %s-mode key, but lisp.decent.mode = %q", map[string]string{"push": "pull", "pull": "push"}[d.Mode], d.Mode)
			}
		}
	default:
		k.add("lisp.decent.mode", "%q is not one of push, pull", d.Mode)
		return
	}
	td := &Decent{}
	t.Decent = td
	if len(l.RegisterTo) > 0 {
		k.add("lisp.register_to", "LISP-Decent picks the Map-Servers ([lisp.decent]): remove [[lisp.register_to]]")
	}
	if len(l.MapResolvers) > 0 {
		k.add("lisp.map_resolver", "LISP-Decent picks the Map-Resolvers ([lisp.decent]): remove [[lisp.map_resolver]]")
	}
	if len(l.RLOCs) == 0 {
		k.add("lisp.rlocs", "missing: Map-Requests need an ITR-RLOC")
	}
	if d.Site != "" {
		for _, s := range t.Sites {
			if s.Name == d.Site {
				td.Auth = &lisp.AuthConfig{KeyID: s.KeyID, Key: s.Key}
				break
			}
		}
		if td.Auth == nil {
			k.add("lisp.decent.site", "no [[lisp.site]] named %q (its key signs this node's registrations)", d.Site)
		}
	} else if len(l.Database) > 0 {
		k.add("lisp.decent.site", "missing: the [[lisp.site]] whose key signs the [[lisp.database]] registrations")
	}
	if d.Mode == "pull" {
		td.Pull = pullConfig(k, d, t.InstanceID)
		td.Owned, td.DropMismatched = append([]uint64(nil), d.Owned...), d.DropMismatched
		if f.ADoT == nil || len(f.ADoT.Servers) == 0 {
			k.add("lisp.decent", "pull mode resolves <index>.<suffix> through the ADoT client: add [adot] servers")
		}
		if len(d.Owned) > 0 && l.MapServer == nil {
			k.add("lisp.decent.owned", "the indexes this node's Map-Server owns, but there is no [lisp.map_server]")
		}
		if d.DropMismatched && len(d.Owned) == 0 {
			k.add("lisp.decent.drop_mismatched", "needs lisp.decent.owned (what is not owned is what gets dropped)")
		}
		return
	}
	// push
	if l.MapServer != nil {
		k.add("lisp.map_server", "the push node is this node's Map-Server and Map-Resolver (on lisp.decent.control_port): remove [lisp.map_server]")
	}
	if len(l.Sites) == 0 {
		k.add("lisp.site", "missing: every member of the group holds every registration, so it needs every member's [[lisp.site]]")
	}
	td.Push = pushConfig(k, d, t)
	port := td.Push.ControlPort
	if sameSocket(t.ControlListen, ":"+strconv.Itoa(int(port))) {
		k.add("lisp.control_listen", "%q takes the push node's port %d (it listens on every address): give the xTR another port, e.g. \"<rloc>:4343\"", t.ControlListen, port)
	}
}

// pullConfig checks and compiles the pull keys.
func pullConfig(k *checker, d *schema.LISPDecent, iid uint32) *pull.Config {
	cfg := &pull.Config{Mask: d.HashMask, Modulus: d.Modulus, Suffix: d.Suffix, InstanceID: iid}
	mode := orDefault(k.set("lisp.decent.hash_mode"), d.HashMode, "draft")
	m, err := pull.ParseMode(mode)
	if err != nil {
		k.add("lisp.decent.hash_mode", "%q is not one of draft, lispers.net", d.HashMode)
	}
	cfg.Mode = m
	if d.Suffix == "" {
		k.add("lisp.decent.suffix", "missing: the DNS suffix of the <index>.<suffix> names")
	} else if _, ok := dns.IsDomainName(d.Suffix); !ok || strings.Contains(d.Suffix, " ") {
		k.add("lisp.decent.suffix", "%q is not a domain name", d.Suffix)
	}
	if d.Modulus == 0 {
		k.add("lisp.decent.modulus", "missing: the number of indexes (shared by every member)")
	} else if d.Modulus > maxDecentModulus {
		k.add("lisp.decent.modulus", "must be at most %d, is %d", uint64(maxDecentModulus), d.Modulus)
	}
	if d.HashMask < 0 {
		k.add("lisp.decent.hash_mask", "must not be negative, is %d", d.HashMask)
	} else if d.HashMask > maxDecentHashMask {
		k.add("lisp.decent.hash_mask", "must be at most %d octets, is %d", maxDecentHashMask, d.HashMask)
	}
	if d.HashMask > 0 && m == pull.ModeLispersNet {
		k.add("lisp.decent.hash_mask", "lispers.net mode hashes the whole EID string: no mask")
	}
	for i, o := range d.Owned {
		if d.Modulus > 0 && o >= d.Modulus {
			k.add(fmt.Sprintf("lisp.decent.owned[%d]", i), "index %d is not below modulus %d", o, d.Modulus)
		}
	}
	return cfg
}

// pushConfig checks and compiles the push keys; problems of push.Config's
// own validation are named as in engine.toml.
func pushConfig(k *checker, d *schema.LISPDecent, t *LISP) *push.Config {
	before := len(k.ps)
	cfg := &push.Config{Interface: d.Interface}
	addr := func(key, s string) netip.Addr {
		a, _ := k.addr(key, s)
		return a
	}
	if d.Group == "" {
		k.add("lisp.decent.group", "missing: the registration group (an IPv4 or IPv6 multicast address)")
	} else {
		cfg.Group = addr("lisp.decent.group", d.Group)
	}
	for _, a := range t.RLOCs {
		if cfg.Group.IsValid() && a.Is4() == cfg.Group.Is4() {
			cfg.RLOC = a
		}
	}
	tr := orDefault(k.set("lisp.decent.transport"), d.Transport, "multicast")
	var err error
	if cfg.Transport, err = push.ParseTransport(tr); err != nil {
		k.add("lisp.decent.transport", "%q is not one of multicast, unicast", d.Transport)
	}
	for i, m := range d.Members {
		cfg.Members = append(cfg.Members, addr(fmt.Sprintf("lisp.decent.members[%d]", i), m))
	}
	if d.CoreGroup != "" {
		cfg.Core = &push.SeedGroup{Group: addr("lisp.decent.core_group", d.CoreGroup)}
		for i, m := range d.CoreMembers {
			cfg.Core.Members = append(cfg.Core.Members, addr(fmt.Sprintf("lisp.decent.core_members[%d]", i), m))
		}
	} else if len(d.CoreMembers) > 0 {
		k.add("lisp.decent.core_members", "given without lisp.decent.core_group")
	}
	cfg.MembershipKey, cfg.MembershipKeyID = []byte(d.MembershipKey), uint16(d.MembershipKeyID)
	if d.MembershipKeyID < 0 || d.MembershipKeyID > 0xffff {
		cfg.MembershipKeyID = 0 // refused by Validate as not 1 or 2
	}
	cfg.RefreshInterval = k.duration("lisp.decent.refresh_interval", d.RefreshInterval, push.DefaultRefresh, time.Second, maxDecentInterval)
	cfg.RegistrationTTL = k.duration("lisp.decent.registration_ttl", d.RegistrationTTL, push.DefaultTTL, time.Second, maxDecentTTL)
	cfg.LookupInterval = k.duration("lisp.decent.lookup_interval", d.LookupInterval, cfg.RefreshInterval, time.Second, maxDecentInterval)
	cfg.MulticastTTL = orDefault(k.set("lisp.decent.multicast_ttl"), d.MulticastTTL, push.DefaultMulticastTTL)
	between(k, "lisp.decent.multicast_ttl", cfg.MulticastTTL, 1, 255)
	port := func(key string, v, def int) uint16 {
		v = orDefault(k.set(key), v, def)
		if v < 1 || v > 65535 {
			k.add(key, "%d is not a UDP port", v)
			return uint16(def)
		}
		return uint16(v)
	}
	cfg.ControlPort = port("lisp.decent.control_port", d.ControlPort, push.DefaultLISPControlPort)
	cfg.DataPort = port("lisp.decent.data_port", d.DataPort, push.DefaultLISPDataPort)
	cfg.Sites = t.Sites
	if len(k.ps) > before {
		return cfg
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range err.(push.ConfigErrors) {
			key := "lisp.decent." + strings.NewReplacer("core.group", "core_group", "core.members", "core_members").Replace(e.Field)
			switch {
			case e.Field == "rloc":
				key = "lisp.rlocs"
				e.Reason = "no locator of the group's family (the push node's address): " + e.Reason
			case e.Field == "site":
				key = "lisp.site"
			}
			k.add(key, "%s", e.Reason)
		}
	}
	return cfg
}
