package lab

import (
	_ "embed"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/psavd/psavd/control/config/schema"

	"github.com/BurntSushi/toml"

	"github.com/psavd/psavd/control/membership"
)

// DefaultTopology is deploy/lab/default.toml, what `make run` runs: h1 (AS
// 65001) – abr1 – tr – abr2 – h2 (AS 65002), an attacker behind tr, the
// flows of the lab, and no key configured: each ABR runs its AS's ACS.
//
//go:embed default.toml
var DefaultTopology []byte

// StaticTopology is deploy/lab/static.toml: the same network with static
// keys (configured start states) and no ACS.
//
//go:embed static.toml
var StaticTopology []byte

// HierarchyTopology is deploy/lab/hierarchy.toml: four ASes in a two-level
// community tree, tags replaced at the community borders.
//
//go:embed hierarchy.toml
var HierarchyTopology []byte

// FiveTopology is deploy/lab/five.toml: five ASes of a flat alliance around
// a transit router, ten negotiated pairs, every host to every other.
//
//go:embed five.toml
var FiveTopology []byte

// LISPTopology is deploy/lab/lisp.toml: the ABRs as LISP xTRs, a
// Map-Server/Map-Resolver node, tagged packets encapsulated across tr.
//
//go:embed lisp.toml
var LISPTopology []byte

// DecentPushTopology and DecentPullTopology are deploy/lab/decent-push.toml
// and decent-pull.toml: the LISP lab with its mappings from LISP-Decent
// only (a push registration group; DNS-over-TLS names of map-servers).
//
//go:embed decent-push.toml
var DecentPushTopology []byte

//go:embed decent-pull.toml
var DecentPullTopology []byte

// Topology is a parsed topology file (see README.md for the format).
type Topology struct {
	Lab         LabSection  `toml:"lab"`
	PSAV        PSAV        `toml:"psav"`
	Communities []Community `toml:"community"`
	Nodes       []Node      `toml:"node"`
	Links       []Link      `toml:"link"`
	Flows       []Flow      `toml:"flow"`
}

// Community is one community below the root of the community tree (docs/wire.md
// §2.6), for ABR nodes that run an ACS: it becomes an [[acs.community]]
// of every ACS, with a per-run endorsement key.
type Community struct {
	ASCN       uint32 `toml:"ascn"`
	Parent     uint32 `toml:"parent"`
	Border     uint32 `toml:"border"`
	ParentPeer uint32 `toml:"parent_peer"`
}

// LabSection holds settings of the lab run itself.
type LabSection struct {
	Packets int `toml:"packets"` // per flow; 0 means 20
	// Warmup lists "from>to" host pairs pinged (IPv4 and IPv6, until one
	// answer or 10 s) before the flows, so that state the first packets
	// would otherwise pay for — an ITR's map-cache, neighbour tables — is
	// in place when the counted traffic starts.
	Warmup []string `toml:"warmup"`
	// Settle is how long to wait after the nodes are ready (and keyed)
	// before the warm-up and the flows, e.g. for a mapping system to
	// converge ("5s"; default none).
	Settle string `toml:"settle"`
	// DoTName, if set, makes the run a CA and a DNS-over-TLS server
	// certificate for this name; `extra` refers to the files as
	// {{dot_ca}}, {{dot_cert}} and {{dot_key}}.
	DoTName string `toml:"dot_name"`
}

// PSAV is the part of every ABR's engine.toml [psav] section that all ABRs
// share; asn and the static peers are filled in per node.
type PSAV struct {
	EpochSeconds int64    `toml:"epoch_seconds"`
	T0           int64    `toml:"t0"`
	Members      []Member `toml:"member"`
}

// Member is one AS of the alliance and its prefixes (the AS-Prefix table):
// a [[psav.member]] of engine.toml.
type Member = schema.Member

// Node is one network namespace.
type Node struct {
	Name       string   `toml:"name"`
	Routes     []string `toml:"routes"`     // arguments of `ip route add`
	Forwarding bool     `toml:"forwarding"` // a router: forwarding on, rp_filter off
	ABR        *ABR     `toml:"abr"`        // set: this node runs psavd
}

// ABR makes a node run psavd with an engine.toml generated from the topology.
type ABR struct {
	ASN     uint32        `toml:"asn"`
	Metrics string        `toml:"metrics"` // [metrics] listen, inside the node's namespace
	Engine  schema.Engine `toml:"engine"`  // the node's [engine]
	Ports   []Port        `toml:"ports"`
	// ACS, if set, is the listen address (host:port, an address of this
	// node) of an ACS run in the same psavd: no static keys, negotiated ones.
	ACS string `toml:"acs"`
	// ASCN is the community of this AS (its membership record's), for
	// ACS nodes; 0, the root, by default.
	ASCN uint32 `toml:"ascn"`
	// Extra is TOML appended verbatim to the generated engine.toml: the
	// sections the lab does not model ([[route]], [lisp] …).
	Extra string `toml:"extra"`
}

// Port is one [[port]] of the generated engine.toml.
type Port = schema.Port

// Link is a veth pair between two nodes.
type Link struct {
	A   End `toml:"a"`
	B   End `toml:"b"`
	MTU int `toml:"mtu"` // 0: the kernel's default (1500)
}

// End is one end of a link.
type End struct {
	Node      string   `toml:"node"`
	Interface string   `toml:"interface"`
	MAC       string   `toml:"mac"`
	Addresses []string `toml:"addresses"` // CIDR; IPv6 ones are added with nodad
}

// Flow is one kind of traffic the lab sends and the outcome it expects.
type Flow struct {
	Name    string   `toml:"name"`
	From    string   `toml:"from"`
	To      string   `toml:"to"`
	Proto   string   `toml:"proto"`  // icmp | udp | tcp
	Family  int      `toml:"family"` // 4 | 6
	Src     string   `toml:"src"`    // forged source: crafted raw frames
	Dst     string   `toml:"dst"`    // default: To's first address of Family
	Tag     string   `toml:"tag"`    // with Src: "" | random | stale
	Expect  string   `toml:"expect"` // deliver | drop
	Reason  string   `toml:"reason"` // drop reason expected
	At      string   `toml:"at"`     // ABR expected to drop
	Counted []string `toml:"counted"`

	src, dst netip.Addr // parsed and resolved by Parse
}

// Spoofed reports whether the flow forges its source address.
func (f *Flow) Spoofed() bool { return f.Src != "" }

// Label is the flow's name as shown in the table.
func (f *Flow) Label() string {
	v := fmt.Sprintf("IPv%d", f.Family)
	if f.Name != "" {
		return fmt.Sprintf("%s → %s %s %s: %s", f.From, f.To, strings.ToUpper(f.Proto), v, f.Name)
	}
	return fmt.Sprintf("%s → %s %s %s", f.From, f.To, strings.ToUpper(f.Proto), v)
}

// Parse decodes and checks a topology file. Unknown keys are refused, so a
// typo does not silently change the lab.
func Parse(data []byte) (*Topology, error) {
	var t Topology
	md, err := toml.Decode(string(data), &t)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var keys []string
		for _, k := range und {
			// [node.abr.engine] is free-form: it is copied into engine.toml.
			if len(k) >= 3 && k[0] == "node" && k[1] == "abr" && k[2] == "engine" {
				continue
			}
			keys = append(keys, k.String())
		}
		if len(keys) > 0 {
			return nil, fmt.Errorf("topology: unknown keys: %s", strings.Join(keys, ", "))
		}
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return &t, nil
}

// Node returns the node named name, or nil.
func (t *Topology) Node(name string) *Node {
	for i := range t.Nodes {
		if t.Nodes[i].Name == name {
			return &t.Nodes[i]
		}
	}
	return nil
}

// Ends returns the link ends that sit in node, in file order.
func (t *Topology) Ends(node string) []End {
	var ends []End
	for _, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			if e.Node == node {
				ends = append(ends, e)
			}
		}
	}
	return ends
}

// ABRs returns the nodes that run psavd, in file order.
func (t *Topology) ABRs() []*Node {
	var n []*Node
	for i := range t.Nodes {
		if t.Nodes[i].ABR != nil {
			n = append(n, &t.Nodes[i])
		}
	}
	return n
}

// Addr returns node's first address of the family (4 or 6) and the
// interface holding it.
func (t *Topology) Addr(node string, family int) (netip.Addr, string, bool) {
	for _, e := range t.Ends(node) {
		for _, a := range e.Addresses {
			p, err := netip.ParsePrefix(a)
			if err == nil && familyOf(p.Addr()) == family {
				return p.Addr(), e.Interface, true
			}
		}
	}
	return netip.Addr{}, "", false
}

// Owner returns the link end that holds address a.
func (t *Topology) Owner(a netip.Addr) (End, bool) {
	for _, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			for _, s := range e.Addresses {
				if p, err := netip.ParsePrefix(s); err == nil && p.Addr() == a {
					return e, true
				}
			}
		}
	}
	return End{}, false
}

// DestInterface returns the interface of f.To where the flow's packets
// arrive: the one holding the destination address, else To's first.
func (t *Topology) DestInterface(f *Flow) string {
	if owner, ok := t.Owner(f.dst); ok && owner.Node == f.To {
		return owner.Interface
	}
	if ends := t.Ends(f.To); len(ends) > 0 {
		return ends[0].Interface
	}
	return ""
}

// MemberOf returns the ASN whose prefixes hold a by longest match, or 0.
func (t *Topology) MemberOf(a netip.Addr) (asn uint32, bits int) {
	bits = -1
	for _, m := range t.PSAV.Members {
		for _, s := range m.Prefixes {
			p, err := netip.ParsePrefix(s)
			if err == nil && p.Contains(a) && p.Bits() > bits {
				asn, bits = m.ASN, p.Bits()
			}
		}
	}
	return asn, bits
}

func familyOf(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 4
	}
	return 6
}

func (t *Topology) check() error {
	if t.Lab.Packets < 0 {
		return fmt.Errorf("lab.packets: must not be negative")
	}
	if t.PSAV.EpochSeconds <= 0 {
		return fmt.Errorf("psav.epoch_seconds: must be positive")
	}
	asns := map[uint32]bool{}
	for i, m := range t.PSAV.Members {
		if m.ASN == 0 || asns[m.ASN] {
			return fmt.Errorf("psav.member[%d].asn: missing or repeated", i)
		}
		asns[m.ASN] = true
		for _, p := range m.Prefixes {
			if _, err := netip.ParsePrefix(p); err != nil {
				return fmt.Errorf("psav.member[%d].prefixes: %v", i, err)
			}
		}
	}
	names := map[string]bool{}
	for i, n := range t.Nodes {
		if n.Name == "" || names[n.Name] || strings.ContainsAny(n.Name, "/ ") {
			return fmt.Errorf("node[%d].name: missing, repeated or invalid %q", i, n.Name)
		}
		// The namespace is psv<6 hex>-<name>; keep names short enough to read.
		if len(n.Name) > 20 {
			return fmt.Errorf("node[%d].name: %q is longer than 20 characters", i, n.Name)
		}
		names[n.Name] = true
		if n.ABR != nil {
			if !asns[n.ABR.ASN] {
				return fmt.Errorf("node[%d].abr.asn: %d is not a psav.member", i, n.ABR.ASN)
			}
			if n.ABR.Metrics == "" {
				return fmt.Errorf("node[%d].abr.metrics: needed to read the counters", i)
			}
			if len(n.ABR.Ports) == 0 && n.ABR.ACS == "" && n.ABR.Extra == "" {
				return fmt.Errorf("node[%d].abr.ports: none (a node without ports needs a role: acs or extra)", i)
			}
		}
	}
	if _, err := t.Tree(); err != nil {
		return fmt.Errorf("community: %v", err)
	}
	for i, n := range t.Nodes {
		if n.ABR == nil || n.ABR.ASCN == 0 {
			continue
		}
		found := false
		for _, c := range t.Communities {
			found = found || c.ASCN == n.ABR.ASCN
		}
		if !found || n.ABR.ACS == "" {
			return fmt.Errorf("node[%d].abr.ascn: community %d needs a [[community]] and an ACS on the node (abr.acs)", i, n.ABR.ASCN)
		}
	}
	ifs := map[string]bool{}
	for i, l := range t.Links {
		for j, e := range []End{l.A, l.B} {
			key := fmt.Sprintf("link[%d].%c", i, "ab"[j])
			if !names[e.Node] {
				return fmt.Errorf("%s.node: unknown node %q", key, e.Node)
			}
			if e.Interface == "" || len(e.Interface) > 15 || ifs[e.Node+"/"+e.Interface] {
				return fmt.Errorf("%s.interface: missing, longer than 15 or repeated %q", key, e.Interface)
			}
			ifs[e.Node+"/"+e.Interface] = true
			if e.MAC != "" {
				if _, err := net.ParseMAC(e.MAC); err != nil {
					return fmt.Errorf("%s.mac: %v", key, err)
				}
			}
			for _, a := range e.Addresses {
				if _, err := netip.ParsePrefix(a); err != nil {
					return fmt.Errorf("%s.addresses: %v", key, err)
				}
			}
		}
	}
	for i, n := range t.Nodes {
		if n.ABR == nil {
			continue
		}
		ports := map[string]bool{}
		for _, p := range n.ABR.Ports {
			ports[p.Name] = true
		}
		for j, p := range n.ABR.Ports {
			if !ifs[n.Name+"/"+p.Interface] {
				return fmt.Errorf("node[%d].abr.ports[%d].interface: %q is no link end of %s", i, j, p.Interface, n.Name)
			}
			if p.Peer != "" && !ports[p.Peer] {
				return fmt.Errorf("node[%d].abr.ports[%d].peer: no port %q", i, j, p.Peer)
			}
		}
	}
	if t.Lab.Settle != "" {
		if d, err := time.ParseDuration(t.Lab.Settle); err != nil || d < 0 || d > 5*time.Minute {
			return fmt.Errorf("lab.settle: %q is not a duration up to 5m", t.Lab.Settle)
		}
	}
	for i, w := range t.Lab.Warmup {
		from, to, ok := strings.Cut(w, ">")
		if !ok || t.Node(from) == nil || t.Node(to) == nil || t.Node(from).ABR != nil {
			return fmt.Errorf("lab.warmup[%d]: %q is not \"<host>><node>\"", i, w)
		}
	}
	if len(t.Flows) >= warmupFlow {
		return fmt.Errorf("flow: at most %d flows", warmupFlow-1)
	}
	for i := range t.Flows {
		if err := t.checkFlow(&t.Flows[i]); err != nil {
			return fmt.Errorf("flow[%d].%v", i, err)
		}
	}
	return nil
}

func (t *Topology) checkFlow(f *Flow) error {
	for _, n := range []string{f.From, f.To} {
		if t.Node(n) == nil || t.Node(n).ABR != nil {
			return fmt.Errorf("from/to: %q is not a host or router node", n)
		}
	}
	if f.Family != 4 && f.Family != 6 {
		return fmt.Errorf("family: must be 4 or 6")
	}
	switch f.Proto {
	case "icmp", "udp", "tcp":
	default:
		return fmt.Errorf("proto: must be icmp, udp or tcp")
	}
	if f.Dst != "" {
		a, err := netip.ParseAddr(f.Dst)
		if err != nil || familyOf(a) != f.Family {
			return fmt.Errorf("dst: %q is no IPv%d address", f.Dst, f.Family)
		}
		f.dst = a
	} else {
		a, _, ok := t.Addr(f.To, f.Family)
		if !ok {
			return fmt.Errorf("to: %s has no IPv%d address", f.To, f.Family)
		}
		f.dst = a
	}
	if f.Src != "" {
		a, err := netip.ParseAddr(f.Src)
		if err != nil || familyOf(a) != f.Family {
			return fmt.Errorf("src: %q is no IPv%d address", f.Src, f.Family)
		}
		f.src = a
		if f.Proto != "udp" {
			return fmt.Errorf("proto: forged flows are crafted as UDP")
		}
	} else {
		a, _, ok := t.Addr(f.From, f.Family)
		if !ok {
			return fmt.Errorf("from: %s has no IPv%d address", f.From, f.Family)
		}
		f.src = a
	}
	switch f.Tag {
	case "":
	case "random", "stale":
		if f.Src == "" {
			return fmt.Errorf("tag: only forged flows (src) carry made-up tags")
		}
	default:
		return fmt.Errorf("tag: must be random or stale")
	}
	switch f.Expect {
	case "deliver":
		if f.Reason != "" || f.At != "" {
			return fmt.Errorf("reason: only for expect = \"drop\"")
		}
	case "drop":
		if f.Reason == "" || t.Node(f.At) == nil || t.Node(f.At).ABR == nil {
			return fmt.Errorf("reason/at: a drop needs a reason and the ABR node that drops")
		}
	default:
		return fmt.Errorf("expect: must be deliver or drop")
	}
	for _, c := range f.Counted {
		n, _, ok := strings.Cut(c, ":")
		if !ok || t.Node(n) == nil || t.Node(n).ABR == nil {
			return fmt.Errorf("counted: %q is not <abr>:<action>", c)
		}
	}
	return nil
}

// Tree is the community tree of the topology (only the root when there are
// no [[community]] sections: the flat alliance).
func (t *Topology) Tree() (*membership.Tree, error) {
	cs := make([]membership.Community, len(t.Communities))
	for i, c := range t.Communities {
		cs[i] = membership.Community{ASCN: c.ASCN, Parent: c.Parent, Border: c.Border, ParentPeer: c.ParentPeer}
	}
	return membership.NewTree(cs)
}

// ascnOf tells the community of each ACS node's AS (membership.ASCNOf).
func (t *Topology) ascnOf(asn uint32) (uint32, bool) {
	for _, n := range t.ABRs() {
		if n.ABR.ASN == asn && n.ABR.ACS != "" {
			return n.ABR.ASCN, true
		}
	}
	return 0, false
}
