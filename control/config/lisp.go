package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"
)

// LISP is [lisp] (docs/wire.md §4.1, plus the keys docs/config.md adds).
// Its data-plane choices (on_miss, too_big, icmp_rate) are in
// Engine.Policy; the locators and the instance reach the encap ports
// through Config.EngineSpec.
type LISP struct {
	InstanceID uint32       // 24 bits
	RLOCs      []netip.Addr // at most one IPv4 (unmapped) and one IPv6
	MapServer  *LISPMapServer
	// Sites are the [[lisp.site]]s as the Map-Server takes them, their EID
	// prefixes in InstanceID.
	Sites        []mapserver.Site
	Database     []xtr.Mapping
	RegisterTo   []xtr.MapServer  // on port 4342
	MapResolvers []netip.AddrPort // on port 4342
	Decent       *Decent          // [lisp.decent]
	// ControlListen is the xTR's UDP socket (host:port), default ":4342".
	ControlListen string
	// RLOC-probing by the ITR (xtr.Config.Probe*): interval 0 is off.
	ProbeInterval, ProbeTimeout time.Duration
	ProbeRetries                int
}

// XTR reports whether the node runs an xTR: an ETR for a database, an ITR
// for map-resolvers, or both with LISP-Decent.
func (l *LISP) XTR() bool {
	return len(l.Database) > 0 || len(l.MapResolvers) > 0 || l.Decent != nil
}

// LISPMapServer is [lisp.map_server].
type LISPMapServer struct {
	Listen string // host:port, UDP
	// Replay is the sites' default anti-replay policy (mapserver.ReplayRecent
	// unless lisp.map_server.replay says otherwise).
	Replay mapserver.ReplayPolicy
}

// Bounds of [lisp].
const (
	MaxInstanceID = 1<<24 - 1
	MaxICMPRate   = 1_000_000
)

// lispControlPort is the LISP control port (RFC 9301) of Map-Servers and
// Map-Resolvers given by address alone.
const lispControlPort = 4342

func (c *Config) checkLISP(k *checker, f *schema.File) {
	l := f.LISP
	if l == nil {
		return
	}
	t := &LISP{InstanceID: l.InstanceID, ControlListen: orDefault(k.set("lisp.control_listen"), l.ControlListen, ":4342")}
	c.LISP = t
	keyID := func(key string, id int) bool {
		if id != 1 && id != 2 {
			k.add(key, "must be 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128), is %d", id)
			return false
		}
		return true
	}
	if l.InstanceID > MaxInstanceID {
		k.add("lisp.instance_id", "must fit 24 bits (0 … 16777215)")
	}
	var v4, v6 int
	for i, r := range l.RLOCs {
		if a, ok := k.addr(fmt.Sprintf("lisp.rlocs[%d]", i), r); ok {
			a = a.Unmap()
			if a.Is4() {
				v4++
			} else {
				v6++
			}
			t.RLOCs = append(t.RLOCs, a)
		}
	}
	if v4 > 1 || v6 > 1 {
		k.add("lisp.rlocs", "at most one IPv4 and one IPv6 locator (the outer source addresses of encap ports)")
	}
	if l.MapServer != nil {
		k.hostPort("lisp.map_server.listen", l.MapServer.Listen)
		t.MapServer = &LISPMapServer{Listen: l.MapServer.Listen, Replay: replayPolicy(k, "lisp.map_server.replay", l.MapServer.Replay, mapserver.ReplayRecent)}
	}
	authLength := func(key string, n, id int, def int) int {
		if n == 0 {
			return def
		}
		if id == 1 || id == 2 {
			if n != lisp.AuthLength(uint16(id), false) && n != lisp.AuthLength(uint16(id), true) {
				k.add(key, "must be %d or %d for key_id %d, is %d", lisp.AuthLength(uint16(id), false), lisp.AuthLength(uint16(id), true), id, n)
			}
		}
		return n
	}
	sharedKeyID := func(key string, n int) uint8 {
		between(k, key, n, 0, 255)
		return uint8(n)
	}
	siteNames := map[string]int{}
	for i, s := range l.Sites {
		key := fmt.Sprintf("lisp.site[%d]", i)
		if s.Name == "" {
			k.add(key+".name", "missing")
		} else if j, dup := siteNames[s.Name]; dup {
			k.add(key+".name", "%q is already lisp.site[%d]", s.Name, j)
		} else {
			siteNames[s.Name] = i
		}
		if s.Key == "" {
			k.add(key+".key", "missing")
		}
		keyID(key+".key_id", s.KeyID)
		site := mapserver.Site{Name: s.Name, Key: []byte(s.Key), KeyID: uint16(s.KeyID), AcceptMoreSpecifics: s.AcceptMoreSpecifics,
			AuthLen: authLength(key+".auth_length", s.AuthLength, s.KeyID, 0), SharedKeyID: sharedKeyID(key+".shared_key_id", s.SharedKeyID)}
		if s.Replay != "" {
			p := replayPolicy(k, key+".replay", s.Replay, mapserver.ReplayRecent)
			site.Replay = &p
		}
		for j, p := range s.EIDPrefixes {
			if pp, ok := k.prefix(fmt.Sprintf("%s.eid_prefixes[%d]", key, j), p); ok {
				site.EIDPrefixes = append(site.EIDPrefixes, mapserver.EIDPrefix{IID: l.InstanceID, Prefix: pp})
			}
		}
		t.Sites = append(t.Sites, site)
	}
	for i, d := range l.Database {
		key := fmt.Sprintf("lisp.database[%d]", i)
		var m xtr.Mapping
		m.EID, _ = k.prefix(key+".eid", d.EID)
		for j, r := range d.RLOCs {
			rk := fmt.Sprintf("%s.rlocs[%d]", key, j)
			a, _ := k.addr(rk+".address", r.Address)
			between(k, rk+".priority", r.Priority, 0, 255)
			between(k, rk+".weight", r.Weight, 0, 255)
			m.Locators = append(m.Locators, xtr.Locator{Addr: a.Unmap(), Priority: uint8(r.Priority), Weight: uint8(r.Weight)})
		}
		t.Database = append(t.Database, m)
	}
	for i, r := range l.RegisterTo {
		key := fmt.Sprintf("lisp.register_to[%d]", i)
		a, _ := k.addr(key+".address", r.Address)
		if r.Key == "" {
			k.add(key+".key", "missing")
		}
		keyID(key+".key_id", r.KeyID)
		// Deployed Map-Servers (OOR, lispers.net) expect the untruncated
		// HMAC: 20 or 32 octets unless auth_length says otherwise.
		auth := lisp.AuthConfig{KeyID: uint16(r.KeyID), Key: []byte(r.Key), SharedKeyID: sharedKeyID(key+".shared_key_id", r.SharedKeyID),
			AuthLen: authLength(key+".auth_length", r.AuthLength, r.KeyID, lisp.AuthLength(uint16(r.KeyID), true))}
		t.RegisterTo = append(t.RegisterTo, xtr.MapServer{Addr: netip.AddrPortFrom(a.Unmap(), lispControlPort),
			Auth: auth, WantNotify: r.WantNotify, AckNotify: r.AckNotify, NoASN: r.ASNumberLCAF != nil && !*r.ASNumberLCAF})
	}
	for i, r := range l.MapResolvers {
		a, _ := k.addr(fmt.Sprintf("lisp.map_resolver[%d].address", i), r.Address)
		t.MapResolvers = append(t.MapResolvers, netip.AddrPortFrom(a.Unmap(), lispControlPort))
	}

	// RLOC-probing (RFC 9301 §7.1).
	if l.RLOCProbeInterval != "off" {
		t.ProbeInterval = k.duration("lisp.rloc_probe_interval", l.RLOCProbeInterval, 30*time.Second, time.Second, time.Hour)
	}
	t.ProbeTimeout = k.duration("lisp.rloc_probe_timeout", l.RLOCProbeTimeout, 5*time.Second, 100*time.Millisecond, time.Minute)
	t.ProbeRetries = orDefault(k.set("lisp.rloc_probe_retries"), l.RLOCProbeRetries, 2)
	between(k, "lisp.rloc_probe_retries", t.ProbeRetries, 0, 10)
	if t.ProbeInterval > 0 && t.ProbeTimeout*time.Duration(t.ProbeRetries+1) >= t.ProbeInterval {
		k.add("lisp.rloc_probe_timeout", "%s × %d sends does not fit in rloc_probe_interval %s: a round must end before the next", shortDuration(t.ProbeTimeout), t.ProbeRetries+1, shortDuration(t.ProbeInterval))
	}

	// The data plane's LISP policy.
	if v := orDefault(k.set("lisp.on_miss"), l.OnMiss, "drop"); k.oneOf("lisp.on_miss", v, "drop", "native") {
		c.Engine.Policy.LISPMissNative = v == "native"
	}
	if v := orDefault(k.set("lisp.too_big"), l.TooBig, "icmp"); k.oneOf("lisp.too_big", v, "icmp", "drop") {
		c.Engine.Policy.DropTooBig = v == "drop"
	}
	c.Engine.Policy.TooBigPerSecond = orDefault(k.set("lisp.icmp_rate"), l.ICMPRate, 100)
	if r := c.Engine.Policy.TooBigPerSecond; r < 0 {
		k.add("lisp.icmp_rate", "must not be negative")
	} else if r == 0 || r > MaxICMPRate {
		// 0 would be the engine's default, not "none": too_big = "drop" is.
		k.add("lisp.icmp_rate", "must be 1 … %d, is %d (too_big = \"drop\" sends none)", MaxICMPRate, r)
	}

	if l.Decent != nil {
		c.checkDecent(k, f, t)
	}
	if len(l.Database) > 0 && len(l.RegisterTo) == 0 && l.Decent == nil {
		k.add("lisp.register_to", "missing: [[lisp.database]] is registered with at least one Map-Server")
	}
	if len(l.RegisterTo) > 0 && len(l.Database) == 0 {
		k.add("lisp.database", "missing: nothing to register with [[lisp.register_to]]")
	}
	if len(l.MapResolvers) > 0 && len(l.RLOCs) == 0 {
		k.add("lisp.rlocs", "missing: Map-Requests need an ITR-RLOC")
	}
	if len(l.Database) > 0 || len(l.MapResolvers) > 0 || l.Decent != nil {
		k.hostPort("lisp.control_listen", t.ControlListen)
		if ms := l.MapServer; ms != nil && sameSocket(ms.Listen, t.ControlListen) {
			k.add("lisp.control_listen", "%q is the Map-Server's socket too (lisp.map_server.listen = %q): give the xTR another address or port", t.ControlListen, ms.Listen)
		}
	}
}

// replayPolicy parses a replay policy name (lisp.map_server.replay,
// lisp.site[].replay); "" is def.
func replayPolicy(k *checker, key, name string, def mapserver.ReplayPolicy) mapserver.ReplayPolicy {
	if name == "" {
		return def
	}
	p, ok := mapserver.ParseReplayPolicy(name)
	if !ok {
		k.add(key, "%q is not one of recent, monotonic, window, off", name)
		return def
	}
	return p
}
