// Package config reads engine.toml — the only package that knows TOML — and
// checks it strictly: an unknown key, a value of the wrong type or a value
// that makes no sense is refused before anything starts, with one Problem
// per mistake naming the file, the key (as `port[1].role`) and the reason.
//
// The keys of DESIGN §4.1 are fixed by the contract; the rest is documented
// in docs/config.md.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/psavd/psavd/control/membership"
)

// Config is engine.toml.
type Config struct {
	File string `toml:"-"`

	PSAV    PSAV     `toml:"psav"`
	Engine  Engine   `toml:"engine"`
	Ports   []Port   `toml:"port"`
	Routes  []Route  `toml:"route"`
	ACS     *ACS     `toml:"acs"`
	ABR     *ABR     `toml:"abr"`
	Metrics *Metrics `toml:"metrics"`
	Capture *Capture `toml:"capture"`
	RPKI    *RPKI    `toml:"rpki"`
	Log     Log      `toml:"log"`
	LISP    *LISP    `toml:"lisp"`
	ADoT    *ADoT    `toml:"adot"` // DNS over TLS client and server (adot.go)
}

// PSAV is [psav].
type PSAV struct {
	ASN          uint32       `toml:"asn"`
	EpochSeconds int64        `toml:"epoch_seconds"`
	T0           int64        `toml:"t0"`
	Members      []Member     `toml:"member"`
	StaticPeers  []StaticPeer `toml:"static_peer"`
}

// Member is [[psav.member]]: one AS-Prefix table entry. The member whose ASN
// is psav.asn holds this AS's own prefixes.
type Member struct {
	ASN      uint32   `toml:"asn"`
	Prefixes []string `toml:"prefixes"`
}

// StaticPeer is [[psav.static_peer]]: a peer whose state machine starts from
// a configured state instead of one negotiated by an ACS.
type StaticPeer struct {
	ASN        uint32 `toml:"asn"`
	StartEpoch int64  `toml:"start_epoch"`
	S0         string `toml:"s0"`
}

// Engine is [engine].
type Engine struct {
	Forwarding    string `toml:"forwarding"`     // "cross-connect" (default) | "routed"
	CPUs          []int  `toml:"cpus"`           // poll loops pinned round robin; default: all
	Batch         int    `toml:"batch"`          // frames per batch, default 64
	SpoofedInside string `toml:"spoofed_inside"` // "drop" (default) | "forward"
	NoRoom        string `toml:"no_room"`        // "forward" (default) | "drop"
	Frames        int    `toml:"frames"`         // UMEM frames per socket, default 4096
	RingSize      int    `toml:"ring_size"`      // AF_XDP ring size, default 2048
}

// Port is [[port]].
type Port struct {
	Name      string `toml:"name"`
	Interface string `toml:"interface"`
	Role      string `toml:"role"`
	Peer      string `toml:"peer"`
	Queues    []int  `toml:"queues"`   // default: every RX queue the interface uses
	XDPMode   string `toml:"xdp_mode"` // "auto" (default) | "native" | "generic"
	// LISP (docs/config.md): "lisp" encapsulates what leaves by the port
	// (routed forwarding, [lisp] rlocs), and decapsulates what arrives for
	// the rlocs; mtu bounds the outer packet.
	Encap            string `toml:"encap"`              // "none" (default) | "lisp"
	MTU              int    `toml:"mtu"`                // IP MTU of the link, default 1500
	UDP6ZeroChecksum bool   `toml:"udp6_zero_checksum"` // outer IPv6 UDP checksum 0 (RFC 6935/6936)
}

// Route is [[route]] (routed forwarding).
type Route struct {
	Prefix     string `toml:"prefix"`
	Port       string `toml:"port"`
	NextHop    string `toml:"next_hop"`
	NextHopMAC string `toml:"next_hop_mac"`
}

// ACS is [acs] (DESIGN §4.1).
type ACS struct {
	Listen    string    `toml:"listen"`
	Cert      string    `toml:"cert"`
	Key       string    `toml:"key"`
	CA        string    `toml:"ca"`
	Heartbeat string    `toml:"heartbeat"`
	DeadAfter int       `toml:"dead_after"`
	Peers     []ACSPeer `toml:"peer"`

	// Not fixed by DESIGN §4.1 (documented in docs/config.md):
	MembershipDir string         `toml:"membership_dir"` // where membership records are kept (required)
	Record        string         `toml:"record"`         // this AS's own signed, endorsed record, published at start
	Communities   []ACSCommunity `toml:"community"`      // trust anchors: the keys that endorse records
}

// ACSCommunity is [[acs.community]]: a community's endorsement keys.
type ACSCommunity struct {
	ASCN uint32   `toml:"ascn"` // 0: the top-level (flat) alliance
	Keys []string `toml:"keys"` // "ed25519:<base64>" or "ecdsa-p256:<base64>"

	// The community tree (DESIGN §2.6), for ascn ≠ 0: the parent community
	// and the key between the two: border (an AS of this community) and
	// parent_peer (an AS of the parent). Every ACS must be given the same
	// tree.
	Parent     uint32 `toml:"parent"`
	Border     uint32 `toml:"border"`
	ParentPeer uint32 `toml:"parent_peer"`
}

// ACSPeer is [[acs.peer]].
type ACSPeer struct {
	ASN     uint32 `toml:"asn"`
	Address string `toml:"address"`
}

// ABR is [abr] (DESIGN §4.1).
type ABR struct {
	ACS  string `toml:"acs"`
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	CA   string `toml:"ca"`
}

// Metrics is [metrics].
type Metrics struct {
	Listen string `toml:"listen"`
}

// Capture is [capture]: sampled dropped frames to pcap files (DESIGN §2.2).
type Capture struct {
	Dir       string   `toml:"dir"`        // where the files go (required)
	Every     uint32   `toml:"every"`      // 1 in N drops per reason (default 100)
	PerSecond uint32   `toml:"per_second"` // per poll loop (default 10; 0 = no limit)
	Snap      int      `toml:"snap"`       // octets per frame (default 256)
	MaxBytes  int64    `toml:"max_bytes"`  // rotate a file past this size (default 10 MiB)
	Keep      int      `toml:"keep"`       // rotated files kept per (port, reason) (default 5)
	Reasons   []string `toml:"reasons"`    // default: every reason
}

// RPKI is [rpki]: an RTR server (RFC 8210) whose validated ROA payloads
// vet membership records (DESIGN §3.2); used by an ACS.
type RPKI struct {
	Server string `toml:"server"` // host:port of the RTR cache, plain TCP
}

// Log is [log].
type Log struct {
	Level  string `toml:"level"`  // debug | info (default) | warn | error
	Format string `toml:"format"` // console (default) | json
}

// LISP is [lisp] (DESIGN §4.1, plus the keys docs/config.md adds).
type LISP struct {
	InstanceID   uint32           `toml:"instance_id"`
	RLOCs        []string         `toml:"rlocs"`
	MapServer    *LISPMapServer   `toml:"map_server"`
	Sites        []LISPSite       `toml:"site"`
	Database     []LISPDatabase   `toml:"database"`
	RegisterTo   []LISPRegisterTo `toml:"register_to"`
	MapResolvers []LISPResolver   `toml:"map_resolver"`
	Decent       *LISPDecent      `toml:"decent"` // LISP-Decent instead of register_to / map_resolver (decent.go)

	ControlListen string `toml:"control_listen"` // the xTR's UDP socket, default ":4342"
	OnMiss        string `toml:"on_miss"`        // "drop" (default) | "native"
	TooBig        string `toml:"too_big"`        // "icmp" (default) | "drop"
	ICMPRate      int    `toml:"icmp_rate"`      // Packet Too Big per poll loop per second, default 100
}

// LISPMapServer is [lisp.map_server].
type LISPMapServer struct {
	Listen string `toml:"listen"`
}

// LISPSite is [[lisp.site]].
type LISPSite struct {
	Name                string   `toml:"name"`
	Key                 string   `toml:"key"`
	KeyID               int      `toml:"key_id"`
	EIDPrefixes         []string `toml:"eid_prefixes"`
	AcceptMoreSpecifics bool     `toml:"accept_more_specifics"`
}

// LISPDatabase is [[lisp.database]].
type LISPDatabase struct {
	EID   string     `toml:"eid"`
	RLOCs []LISPRLOC `toml:"rlocs"`
}

// LISPRLOC is one locator of a database mapping.
type LISPRLOC struct {
	Address  string `toml:"address"`
	Priority int    `toml:"priority"`
	Weight   int    `toml:"weight"`
}

// LISPRegisterTo is [[lisp.register_to]].
type LISPRegisterTo struct {
	Address    string `toml:"address"`
	Key        string `toml:"key"`
	KeyID      int    `toml:"key_id"`
	WantNotify bool   `toml:"want_notify"`
	AckNotify  bool   `toml:"ack_notify"` // answer Map-Notify with Map-Notify-Ack
}

// LISPResolver is [[lisp.map_resolver]].
type LISPResolver struct {
	Address string `toml:"address"`
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	File   string
	Key    string
	Reason string
}

func (p Problem) String() string {
	if p.Key == "" {
		return fmt.Sprintf("%s: %s", p.File, p.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, p.Key, p.Reason)
}

// Problems is every problem found; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Reason: err.Error()}}
	}
	return Parse(path, data)
}

// Parse reads and checks configuration text; name is used in problems.
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{File: name}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Problems{{File: name, Key: fmt.Sprintf("line %d", pe.Position.Line), Reason: pe.Message}}
		}
		return nil, Problems{{File: name, Reason: decodeReason(err)}}
	}
	var ps Problems
	for _, k := range unknownKeys(data, md) {
		ps = append(ps, Problem{File: name, Key: k, Reason: "unknown key"})
	}
	c.defaults()
	ps = append(ps, c.check()...)
	if len(ps) > 0 {
		return nil, ps
	}
	return c, nil
}

func decodeReason(err error) string {
	// BurntSushi/toml type errors read like "toml: line 3 (last key "psav.asn"): incompatible types: …"
	return strings.TrimPrefix(err.Error(), "toml: ")
}

// unknownKeys names every key the schema does not have, with array indexes
// (`port[1].rol`) found by walking the document again as plain data.
func unknownKeys(data []byte, md toml.MetaData) []string {
	und := md.Undecoded()
	if len(und) == 0 {
		return nil
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil
	}
	want := map[string]bool{}
	for _, k := range und {
		want[k.String()] = true
	}
	var out []string
	var walk func(v any, plain, indexed string)
	walk = func(v any, plain, indexed string) {
		if want[plain] {
			out = append(out, indexed)
			return
		}
		switch t := v.(type) {
		case map[string]any:
			for k, sub := range t {
				walk(sub, join(plain, k), join(indexed, k))
			}
		case []map[string]any:
			for i, sub := range t {
				walk(sub, plain, fmt.Sprintf("%s[%d]", indexed, i))
			}
		}
	}
	walk(doc, "", "")
	sort.Strings(out)
	return out
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func (c *Config) defaults() {
	if c.PSAV.EpochSeconds == 0 {
		c.PSAV.EpochSeconds = 60
	}
	if c.Engine.Forwarding == "" {
		c.Engine.Forwarding = "cross-connect"
	}
	if c.Engine.Batch == 0 {
		c.Engine.Batch = 64
	}
	if c.Engine.SpoofedInside == "" {
		c.Engine.SpoofedInside = "drop"
	}
	if c.Engine.NoRoom == "" {
		c.Engine.NoRoom = "forward"
	}
	if c.Engine.Frames == 0 {
		c.Engine.Frames = 4096
	}
	if c.Engine.RingSize == 0 {
		c.Engine.RingSize = 2048
	}
	for i := range c.Ports {
		if c.Ports[i].XDPMode == "" {
			c.Ports[i].XDPMode = "auto"
		}
		if c.Ports[i].Encap == "" {
			c.Ports[i].Encap = "none"
		}
	}
	if l := c.LISP; l != nil {
		if l.ControlListen == "" {
			l.ControlListen = ":4342"
		}
		if l.OnMiss == "" {
			l.OnMiss = "drop"
		}
		if l.TooBig == "" {
			l.TooBig = "icmp"
		}
		if l.ICMPRate == 0 {
			l.ICMPRate = 100
		}
	}
	if c.ACS != nil {
		if c.ACS.Heartbeat == "" {
			c.ACS.Heartbeat = "1s"
		}
		if c.ACS.DeadAfter == 0 {
			c.ACS.DeadAfter = 3
		}
	}
	if c.Capture != nil {
		if c.Capture.Every == 0 {
			c.Capture.Every = 100
		}
		if c.Capture.PerSecond == 0 {
			c.Capture.PerSecond = 10
		}
		if c.Capture.Snap == 0 {
			c.Capture.Snap = 256
		}
		if c.Capture.MaxBytes == 0 {
			c.Capture.MaxBytes = 10 << 20
		}
		if c.Capture.Keep == 0 {
			c.Capture.Keep = 5
		}
	}
	if c.ADoT != nil {
		c.ADoT.defaults()
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "console"
	}
}

// checker collects problems for one file.
type checker struct {
	file string
	ps   Problems
}

func (k *checker) add(key, format string, args ...any) {
	k.ps = append(k.ps, Problem{File: k.file, Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (k *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	k.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (k *checker) prefix(key, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		k.add(key, "%q is not a prefix (like 192.0.2.0/24 or 2001:db8::/32)", s)
		return p, false
	}
	if p.Masked() != p {
		k.add(key, "%q has host bits set (did you mean %s?)", s, p.Masked())
		return p, false
	}
	return p, true
}

func (k *checker) hostPort(key, s string) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		k.add(key, "%q is not host:port", s)
	}
}

func (k *checker) existingFile(key, path string) {
	if path == "" {
		k.add(key, "missing")
		return
	}
	if _, err := os.Stat(path); err != nil {
		k.add(key, "%v", err)
	}
}

func (c *Config) check() Problems {
	k := &checker{file: c.File}

	// [psav]
	if c.PSAV.ASN == 0 {
		k.add("psav.asn", "missing (this AS's number)")
	}
	if c.PSAV.EpochSeconds < 1 {
		k.add("psav.epoch_seconds", "must be at least 1, is %d", c.PSAV.EpochSeconds)
	}
	if c.PSAV.T0 < 0 {
		k.add("psav.t0", "must not be negative")
	}
	asns := map[uint32]int{}
	seenPfx := map[netip.Prefix]string{}
	for i, m := range c.PSAV.Members {
		key := fmt.Sprintf("psav.member[%d]", i)
		if m.ASN == 0 {
			k.add(key+".asn", "missing")
		} else if j, dup := asns[m.ASN]; dup {
			k.add(key+".asn", "AS%d is already psav.member[%d]", m.ASN, j)
		} else {
			asns[m.ASN] = i
		}
		for j, s := range m.Prefixes {
			pk := fmt.Sprintf("%s.prefixes[%d]", key, j)
			if p, ok := k.prefix(pk, s); ok {
				if other, dup := seenPfx[p]; dup {
					k.add(pk, "%s is already given at %s", p, other)
				}
				seenPfx[p] = pk
			}
		}
	}
	if c.PSAV.ASN != 0 {
		if _, ok := asns[c.PSAV.ASN]; !ok && len(c.PSAV.Members) > 0 {
			k.add("psav.member", "no entry for this AS (asn = %d): its prefixes are needed to tell local sources", c.PSAV.ASN)
		}
	}
	peers := map[uint32]bool{}
	for i, sp := range c.PSAV.StaticPeers {
		key := fmt.Sprintf("psav.static_peer[%d]", i)
		if sp.ASN == 0 {
			k.add(key+".asn", "missing")
		} else if sp.ASN == c.PSAV.ASN {
			k.add(key+".asn", "is this AS itself")
		} else if peers[sp.ASN] {
			k.add(key+".asn", "AS%d has two static peers", sp.ASN)
		}
		peers[sp.ASN] = true
		if sp.StartEpoch < 0 {
			k.add(key+".start_epoch", "must not be negative")
		}
		if b, err := hex.DecodeString(sp.S0); err != nil || len(b) != 32 {
			k.add(key+".s0", "must be 64 hex digits (32 octets)")
		}
	}

	// [engine]
	k.oneOf("engine.forwarding", c.Engine.Forwarding, "cross-connect", "routed")
	k.oneOf("engine.spoofed_inside", c.Engine.SpoofedInside, "drop", "forward")
	k.oneOf("engine.no_room", c.Engine.NoRoom, "forward", "drop")
	if c.Engine.Batch < 1 || c.Engine.Batch > 1024 {
		k.add("engine.batch", "must be 1 … 1024, is %d", c.Engine.Batch)
	}
	if c.Engine.RingSize < 64 || c.Engine.RingSize&(c.Engine.RingSize-1) != 0 {
		k.add("engine.ring_size", "must be a power of two ≥ 64, is %d", c.Engine.RingSize)
	}
	if c.Engine.Frames < 2*c.Engine.Batch || c.Engine.Frames&(c.Engine.Frames-1) != 0 {
		k.add("engine.frames", "must be a power of two ≥ 2 × batch, is %d", c.Engine.Frames)
	}
	for i, cpu := range c.Engine.CPUs {
		if cpu < 0 {
			k.add(fmt.Sprintf("engine.cpus[%d]", i), "must not be negative")
		}
	}

	// [[port]]
	names := map[string]int{}
	ifq := map[string]string{}
	for i, p := range c.Ports {
		key := fmt.Sprintf("port[%d]", i)
		if p.Name == "" {
			k.add(key+".name", "missing")
		} else if j, dup := names[p.Name]; dup {
			k.add(key+".name", "%q is already port[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
		if p.Interface == "" {
			k.add(key+".interface", "missing")
		}
		if p.Role == "" {
			k.add(key+".role", "missing (ingress, egress or trust)")
		} else {
			k.oneOf(key+".role", p.Role, "ingress", "egress", "trust")
		}
		k.oneOf(key+".xdp_mode", p.XDPMode, "auto", "native", "generic")
		k.oneOf(key+".encap", p.Encap, "none", "lisp")
		if p.Encap == "lisp" {
			if c.Engine.Forwarding != "routed" {
				k.add(key+".encap", "lisp needs engine.forwarding = \"routed\" (the outer header needs a next hop)")
			}
			if c.LISP == nil || len(c.LISP.RLOCs) == 0 {
				k.add(key+".encap", "lisp needs [lisp] rlocs (the outer source addresses)")
			}
		}
		// 1906 = ports.MaxFrame − the Ethernet header: what a frame buffer holds.
		if p.MTU != 0 && (p.MTU < 1280 || p.MTU > 1906) {
			k.add(key+".mtu", "must be 1280 … 1906, is %d", p.MTU)
		}
		for j, q := range p.Queues {
			if q < 0 {
				k.add(fmt.Sprintf("%s.queues[%d]", key, j), "must not be negative")
				continue
			}
			id := fmt.Sprintf("%s/%d", p.Interface, q)
			if other, dup := ifq[id]; dup {
				k.add(fmt.Sprintf("%s.queues[%d]", key, j), "interface %s queue %d is already used by %s", p.Interface, q, other)
			}
			ifq[id] = key
		}
	}
	if len(c.Ports) == 0 && c.ACS == nil && (c.ADoT == nil || c.ADoT.Server == nil) && (c.LISP == nil || c.LISP.MapServer == nil) {
		k.add("port", "no ports: at least two are needed to forward (only an ACS-only, DoT-server-only or Map-Server-only node has none)")
	}
	for i, p := range c.Ports {
		key := fmt.Sprintf("port[%d].peer", i)
		if c.Engine.Forwarding == "cross-connect" {
			switch j, ok := names[p.Peer]; {
			case p.Peer == "":
				k.add(key, "missing (cross-connect forwarding needs a peer port)")
			case !ok:
				k.add(key, "no port is named %q", p.Peer)
			case p.Peer == p.Name:
				k.add(key, "a port cannot be its own peer")
			case c.Ports[j].Peer != p.Name:
				k.add(key, "%q's peer is %q, not %q: cross-connect peers must name each other", p.Peer, c.Ports[j].Peer, p.Name)
			}
		}
	}

	// [[route]]
	for i, r := range c.Routes {
		key := fmt.Sprintf("route[%d]", i)
		k.prefix(key+".prefix", r.Prefix)
		if _, ok := names[r.Port]; !ok {
			k.add(key+".port", "no port is named %q", r.Port)
		}
		if r.NextHop != "" {
			if _, err := netip.ParseAddr(r.NextHop); err != nil {
				k.add(key+".next_hop", "%q is not an address", r.NextHop)
			}
		}
		if r.NextHopMAC != "" {
			if _, err := net.ParseMAC(r.NextHopMAC); err != nil {
				k.add(key+".next_hop_mac", "%q is not a MAC address", r.NextHopMAC)
			}
		} else if r.NextHop == "" {
			k.add(key, "needs next_hop or next_hop_mac")
		}
	}
	if c.Engine.Forwarding == "routed" && len(c.Routes) == 0 && len(c.Ports) > 0 {
		k.add("route", "routed forwarding needs at least one [[route]]")
	}

	// [acs], [abr], [metrics], [log]
	if a := c.ACS; a != nil {
		k.hostPort("acs.listen", a.Listen)
		k.existingFile("acs.cert", a.Cert)
		k.existingFile("acs.key", a.Key)
		k.existingFile("acs.ca", a.CA)
		if d, err := time.ParseDuration(a.Heartbeat); err != nil || d <= 0 {
			k.add("acs.heartbeat", "%q is not a positive duration (like 1s)", a.Heartbeat)
		}
		if a.DeadAfter < 1 {
			k.add("acs.dead_after", "must be at least 1")
		}
		for i, p := range a.Peers {
			if p.ASN == 0 {
				k.add(fmt.Sprintf("acs.peer[%d].asn", i), "missing")
			} else if p.ASN == c.PSAV.ASN {
				k.add(fmt.Sprintf("acs.peer[%d].asn", i), "is this AS itself")
			}
			k.hostPort(fmt.Sprintf("acs.peer[%d].address", i), p.Address)
		}
		if a.MembershipDir == "" {
			k.add("acs.membership_dir", "missing (a directory where membership records are kept across restarts)")
		}
		if a.Record != "" {
			k.existingFile("acs.record", a.Record)
		}
		if len(a.Communities) == 0 {
			k.add("acs.community", "missing: at least one [[acs.community]] with the keys that endorse membership records")
		}
		seen := map[uint32]bool{}
		for _, cm := range a.Communities {
			seen[cm.ASCN] = true
		}
		var tree []membership.Community
		treeOK := true
		for i, cm := range a.Communities {
			if len(cm.Keys) == 0 {
				k.add(fmt.Sprintf("acs.community[%d].keys", i), "missing")
			}
			for j := 0; j < i; j++ {
				if a.Communities[j].ASCN == cm.ASCN {
					k.add(fmt.Sprintf("acs.community[%d].ascn", i), "community %d is given twice (also acs.community[%d])", cm.ASCN, j)
					treeOK = false
				}
			}
			f := func(key string) string { return fmt.Sprintf("acs.community[%d].%s", i, key) }
			if cm.ASCN == 0 {
				if cm.Parent != 0 || cm.Border != 0 || cm.ParentPeer != 0 {
					k.add(f("ascn"), "community 0 is the root of the tree: it takes no parent, border or parent_peer")
					treeOK = false
				}
			} else {
				if !seen[cm.Parent] {
					k.add(f("parent"), "community %d is not configured: add its [[acs.community]] with the keys that endorse its members", cm.Parent)
					treeOK = false
				}
				if cm.Border == 0 {
					k.add(f("border"), "missing: the AS of community %d that holds the key to its parent community", cm.ASCN)
					treeOK = false
				}
				if cm.ParentPeer == 0 {
					k.add(f("parent_peer"), "missing: the AS of community %d that holds the key with the border", cm.Parent)
					treeOK = false
				}
				tree = append(tree, membership.Community{ASCN: cm.ASCN, Parent: cm.Parent, Border: cm.Border, ParentPeer: cm.ParentPeer})
			}
			for j, key := range cm.Keys {
				if _, err := membership.ParsePublicKey(key); err != nil {
					k.add(fmt.Sprintf("acs.community[%d].keys[%d]", i, j), "%v", err)
				}
			}
		}
		if treeOK {
			if _, err := membership.NewTree(tree); err != nil {
				k.add("acs.community", "%v", err)
			}
		}
		if len(c.PSAV.StaticPeers) > 0 {
			k.add("psav.static_peer", "an ACS negotiates its keys: remove the static peers")
		}
	}
	if b := c.ABR; b != nil {
		if c.ACS != nil {
			k.add("abr", "an ACS in the same process feeds its own data plane: give [acs] or [abr], not both")
		}
		if len(c.PSAV.StaticPeers) > 0 {
			k.add("psav.static_peer", "an ABR fed by an ACS ([abr]) takes its keys from the ACS: remove the static peers")
		}
		k.hostPort("abr.acs", b.ACS)
		k.existingFile("abr.cert", b.Cert)
		k.existingFile("abr.key", b.Key)
		k.existingFile("abr.ca", b.CA)
	}
	if c.Metrics != nil {
		k.hostPort("metrics.listen", c.Metrics.Listen)
	}
	if cp := c.Capture; cp != nil {
		if cp.Dir == "" {
			k.add("capture.dir", "missing (a directory for the pcap files)")
		}
		if cp.Snap < 64 || cp.Snap > 65535 {
			k.add("capture.snap", "must be 64 … 65535, is %d", cp.Snap)
		}
		if cp.MaxBytes < 4096 {
			k.add("capture.max_bytes", "must be at least 4096, is %d", cp.MaxBytes)
		}
		if cp.Keep < 0 {
			k.add("capture.keep", "must not be negative")
		}
		for i, r := range cp.Reasons {
			k.oneOf(fmt.Sprintf("capture.reasons[%d]", i), r, DropReasonNames...)
		}
	}
	if r := c.RPKI; r != nil {
		k.hostPort("rpki.server", r.Server)
		if c.ACS == nil {
			k.add("rpki", "only an ACS uses RPKI data: add [acs] or remove [rpki]")
		}
	}
	k.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", c.Log.Format, "console", "json")
	if l := c.LISP; l != nil {
		c.checkLISP(k, l)
	}
	if a := c.ADoT; a != nil {
		c.checkADoT(k, a)
	}
	return k.ps
}

func (c *Config) checkLISP(k *checker, l *LISP) {
	addr := func(key, s string) {
		if _, err := netip.ParseAddr(s); err != nil {
			k.add(key, "%q is not an address", s)
		}
	}
	keyID := func(key string, id int) {
		if id != 1 && id != 2 {
			k.add(key, "must be 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128), is %d", id)
		}
	}
	for i, r := range l.RLOCs {
		addr(fmt.Sprintf("lisp.rlocs[%d]", i), r)
	}
	if l.MapServer != nil {
		k.hostPort("lisp.map_server.listen", l.MapServer.Listen)
	}
	for i, s := range l.Sites {
		key := fmt.Sprintf("lisp.site[%d]", i)
		if s.Name == "" {
			k.add(key+".name", "missing")
		}
		if s.Key == "" {
			k.add(key+".key", "missing")
		}
		keyID(key+".key_id", s.KeyID)
		for j, p := range s.EIDPrefixes {
			k.prefix(fmt.Sprintf("%s.eid_prefixes[%d]", key, j), p)
		}
	}
	for i, d := range l.Database {
		key := fmt.Sprintf("lisp.database[%d]", i)
		k.prefix(key+".eid", d.EID)
		for j, r := range d.RLOCs {
			addr(fmt.Sprintf("%s.rlocs[%d].address", key, j), r.Address)
			if r.Priority < 0 || r.Priority > 255 {
				k.add(fmt.Sprintf("%s.rlocs[%d].priority", key, j), "must be 0 … 255")
			}
			if r.Weight < 0 || r.Weight > 255 {
				k.add(fmt.Sprintf("%s.rlocs[%d].weight", key, j), "must be 0 … 255")
			}
		}
	}
	for i, r := range l.RegisterTo {
		key := fmt.Sprintf("lisp.register_to[%d]", i)
		addr(key+".address", r.Address)
		if r.Key == "" {
			k.add(key+".key", "missing")
		}
		keyID(key+".key_id", r.KeyID)
	}
	for i, r := range l.MapResolvers {
		addr(fmt.Sprintf("lisp.map_resolver[%d].address", i), r.Address)
	}
	k.oneOf("lisp.on_miss", l.OnMiss, "drop", "native")
	k.oneOf("lisp.too_big", l.TooBig, "icmp", "drop")
	if l.ICMPRate < 0 {
		k.add("lisp.icmp_rate", "must not be negative")
	}
	if l.InstanceID >= 1<<24 {
		k.add("lisp.instance_id", "must fit 24 bits (0 … 16777215)")
	}
	if l.Decent != nil {
		c.checkDecent(k, l)
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
	xtr := len(l.Database) > 0 || len(l.MapResolvers) > 0 || l.Decent != nil
	if xtr {
		k.hostPort("lisp.control_listen", l.ControlListen)
		if ms := l.MapServer; ms != nil && sameSocket(ms.Listen, l.ControlListen) {
			k.add("lisp.control_listen", "%q is the Map-Server's socket too (lisp.map_server.listen = %q): give the xTR another address or port", l.ControlListen, ms.Listen)
		}
	}
	var v4, v6 int
	for _, r := range l.RLOCs {
		if a, err := netip.ParseAddr(r); err == nil {
			if a.Unmap().Is4() {
				v4++
			} else {
				v6++
			}
		}
	}
	if v4 > 1 || v6 > 1 {
		k.add("lisp.rlocs", "at most one IPv4 and one IPv6 locator (the outer source addresses of encap ports)")
	}
}

// sameSocket reports whether two host:port listen addresses would bind the
// same UDP port on a shared address (an empty or unspecified host binds all).
func sameSocket(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// DropReasonNames are the engine's drop reasons as configured in
// capture.reasons (kept here, not imported, so that the configuration does
// not depend on the engine; a test checks they agree).
var DropReasonNames = []string{"spoofed-local", "spoofed-inside", "no-tag", "bad-tag", "stale-epoch", "no-key", "no-room", "malformed", "no-route", "not-ip", "tx-full", "ttl-expired",
	"lisp-miss", "lisp-negative", "lisp-no-rloc", "lisp-decap", "lisp-encap", "too-big"}
