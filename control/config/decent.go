package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/decent/push"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

// LISPDecent is [lisp.decent]: this node finds its Map-Servers and
// Map-Resolvers through LISP-Decent (DESIGN §3.4) instead of
// [[lisp.register_to]] and [[lisp.map_resolver]]. docs/config.md lists the
// keys; Push and Pull turn them into the control/decent configurations.
type LISPDecent struct {
	Mode string `toml:"mode"` // "push" | "pull"
	// Site names the [[lisp.site]] whose key signs this node's ETR
	// registrations (needed with [[lisp.database]]).
	Site string `toml:"site"`

	// push: a registration group whose members all hold every registration.
	Group           string   `toml:"group"`     // G, IPv4 or IPv6 multicast
	Transport       string   `toml:"transport"` // "multicast" (default) | "unicast"
	Interface       string   `toml:"interface"` // where G is joined (multicast)
	Members         []string `toml:"members"`   // member RLOCs known by configuration
	CoreGroup       string   `toml:"core_group"`
	CoreMembers     []string `toml:"core_members"`
	MembershipKey   string   `toml:"membership_key"`    // signs the (0/0, G) membership registrations
	MembershipKeyID int      `toml:"membership_key_id"` // 1 | 2
	RefreshInterval string   `toml:"refresh_interval"`  // default 60s
	RegistrationTTL string   `toml:"registration_ttl"`  // default 3m
	LookupInterval  string   `toml:"lookup_interval"`   // default refresh_interval
	MulticastTTL    int      `toml:"multicast_ttl"`     // default 16
	ControlPort     int      `toml:"control_port"`      // default 4342
	DataPort        int      `toml:"data_port"`         // default 4341

	// pull: the EID's hash names <index>.<suffix>, resolved through [adot].
	Suffix         string   `toml:"suffix"`
	Modulus        uint64   `toml:"modulus"`
	HashMode       string   `toml:"hash_mode"` // "draft" (default) | "lispers.net"
	HashMask       int      `toml:"hash_mask"` // octets (draft only)
	Owned          []uint64 `toml:"owned"`     // indexes whose names list this node's [lisp.map_server]
	DropMismatched bool     `toml:"drop_mismatched"`
}

var (
	decentPushKeys = []string{"group", "transport", "interface", "members", "core_group", "core_members", "membership_key",
		"membership_key_id", "refresh_interval", "registration_ttl", "lookup_interval", "multicast_ttl", "control_port", "data_port"}
	decentPullKeys = []string{"suffix", "modulus", "hash_mode", "hash_mask", "owned", "drop_mismatched"}
)

// set reports which keys of a mode are given.
func (d *LISPDecent) set() map[string]bool {
	return map[string]bool{
		"group": d.Group != "", "transport": d.Transport != "", "interface": d.Interface != "", "members": len(d.Members) > 0,
		"core_group": d.CoreGroup != "", "core_members": len(d.CoreMembers) > 0, "membership_key": d.MembershipKey != "",
		"membership_key_id": d.MembershipKeyID != 0, "refresh_interval": d.RefreshInterval != "", "registration_ttl": d.RegistrationTTL != "",
		"lookup_interval": d.LookupInterval != "", "multicast_ttl": d.MulticastTTL != 0, "control_port": d.ControlPort != 0,
		"data_port": d.DataPort != 0,
		"suffix":    d.Suffix != "", "modulus": d.Modulus != 0, "hash_mode": d.HashMode != "", "hash_mask": d.HashMask != 0,
		"owned": len(d.Owned) > 0, "drop_mismatched": d.DropMismatched,
	}
}

// MapServerSites are the [[lisp.site]]s as the Map-Server takes them (checked by
// Load).
func (l *LISP) MapServerSites() []mapserver.Site {
	var sites []mapserver.Site
	for _, s := range l.Sites {
		site := mapserver.Site{Name: s.Name, Key: []byte(s.Key), KeyID: uint16(s.KeyID), AcceptMoreSpecifics: s.AcceptMoreSpecifics}
		for _, p := range s.EIDPrefixes {
			if pp, err := netip.ParsePrefix(p); err == nil {
				site.EIDPrefixes = append(site.EIDPrefixes, mapserver.EIDPrefix{IID: l.InstanceID, Prefix: pp})
			}
		}
		sites = append(sites, site)
	}
	return sites
}

// DecentAuth is the key that signs this node's ETR registrations: the
// [[lisp.site]] named by lisp.decent.site (false when there is none).
func (l *LISP) DecentAuth() (lisp.AuthConfig, bool) {
	if l.Decent == nil {
		return lisp.AuthConfig{}, false
	}
	for _, s := range l.Sites {
		if s.Name == l.Decent.Site {
			return lisp.AuthConfig{KeyID: uint16(s.KeyID), Key: []byte(s.Key)}, true
		}
	}
	return lisp.AuthConfig{}, false
}

// DecentPull is the pull configuration of [lisp.decent] without its
// Resolver (the [adot] client, made at start). The error is Problems.
func (l *LISP) DecentPull(file string) (pull.Config, error) {
	k := &checker{file: file}
	d := l.Decent
	cfg := pull.Config{Mask: d.HashMask, Modulus: d.Modulus, Suffix: d.Suffix, InstanceID: l.InstanceID}
	mode := d.HashMode
	if mode == "" {
		mode = "draft"
	}
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
	}
	if d.HashMask < 0 {
		k.add("lisp.decent.hash_mask", "must not be negative, is %d", d.HashMask)
	}
	if d.HashMask > 0 && m == pull.ModeLispersNet {
		k.add("lisp.decent.hash_mask", "lispers.net mode hashes the whole EID string: no mask")
	}
	for i, o := range d.Owned {
		if d.Modulus > 0 && o >= d.Modulus {
			k.add(fmt.Sprintf("lisp.decent.owned[%d]", i), "index %d is not below modulus %d", o, d.Modulus)
		}
	}
	if k.ps != nil {
		return cfg, k.ps
	}
	return cfg, nil
}

// DecentPush is the push configuration of [lisp.decent]: the node's RLOC
// is the [lisp] rloc of the group's family; its Map-Server holds the
// [[lisp.site]]s; it registers no EIDs itself (the xTR registers the
// [[lisp.database]] with every member). The error is Problems, keys named
// as in engine.toml.
func (l *LISP) DecentPush(file string) (push.Config, error) {
	k := &checker{file: file}
	d := l.Decent
	var cfg push.Config
	addr := func(key, s string) netip.Addr {
		a, err := netip.ParseAddr(s)
		if err != nil {
			k.add(key, "%q is not an address", s)
		}
		return a
	}
	if d.Group == "" {
		k.add("lisp.decent.group", "missing: the registration group (an IPv4 or IPv6 multicast address)")
	} else {
		cfg.Group = addr("lisp.decent.group", d.Group)
	}
	for _, r := range l.RLOCs {
		if a, err := netip.ParseAddr(r); err == nil && cfg.Group.IsValid() && a.Unmap().Is4() == cfg.Group.Is4() {
			cfg.RLOC = a.Unmap()
		}
	}
	tr := d.Transport
	if tr == "" {
		tr = "multicast"
	}
	t, err := push.ParseTransport(tr)
	if err != nil {
		k.add("lisp.decent.transport", "%q is not one of multicast, unicast", d.Transport)
	}
	cfg.Transport, cfg.Interface, cfg.MulticastTTL = t, d.Interface, d.MulticastTTL
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
	cfg.RefreshInterval = k.duration("lisp.decent.refresh_interval", d.RefreshInterval)
	cfg.RegistrationTTL = k.duration("lisp.decent.registration_ttl", d.RegistrationTTL)
	cfg.LookupInterval = k.duration("lisp.decent.lookup_interval", d.LookupInterval)
	for key, v := range map[string]int{"control_port": d.ControlPort, "data_port": d.DataPort} {
		if v < 0 || v > 65535 {
			k.add("lisp.decent."+key, "%d is not a UDP port", v)
		}
	}
	cfg.ControlPort, cfg.DataPort = uint16(d.ControlPort), uint16(d.DataPort)
	cfg.Sites = l.MapServerSites()
	if k.ps != nil {
		return cfg, k.ps
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
		return cfg, k.ps
	}
	return cfg, nil
}

// checkDecent checks [lisp.decent] (called by checkLISP).
func (c *Config) checkDecent(k *checker, l *LISP) {
	d := l.Decent
	set := d.set()
	other := map[string][]string{"push": decentPullKeys, "pull": decentPushKeys}
	switch d.Mode {
	case "push", "pull":
		for _, key := range other[d.Mode] {
			if set[key] {
				k.add("lisp.decent."+key, "a %s-mode key, but lisp.decent.mode = %q", map[string]string{"push": "pull", "pull": "push"}[d.Mode], d.Mode)
			}
		}
	default:
		k.add("lisp.decent.mode", "%q is not one of push, pull", d.Mode)
		return
	}
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
		if _, ok := l.DecentAuth(); !ok {
			k.add("lisp.decent.site", "no [[lisp.site]] named %q (its key signs this node's registrations)", d.Site)
		}
	} else if len(l.Database) > 0 {
		k.add("lisp.decent.site", "missing: the [[lisp.site]] whose key signs the [[lisp.database]] registrations")
	}
	if d.Mode == "pull" {
		if _, err := l.DecentPull(c.File); err != nil {
			k.ps = append(k.ps, err.(Problems)...)
		}
		if c.ADoT == nil || len(c.ADoT.Servers) == 0 {
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
	if _, err := l.DecentPush(c.File); err != nil {
		k.ps = append(k.ps, err.(Problems)...)
	}
	port := d.ControlPort
	if port == 0 {
		port = push.DefaultLISPControlPort
	}
	if sameSocket(l.ControlListen, ":"+strconv.Itoa(port)) {
		k.add("lisp.control_listen", "%q takes the push node's port %d (it listens on every address): give the xTR another port, e.g. \"<rloc>:4343\"", l.ControlListen, port)
	}
}
