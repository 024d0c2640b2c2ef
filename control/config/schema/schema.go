// Package schema is the engine.toml file as written; only control/config
// decodes it; the lab may encode it.
//
// The field names and their toml keys are a fixed contract (docs/wire.md
// §4.1 and docs/config.md): deployments and outside tools rely on them, so
// no key is renamed, added or removed here without changing the contract.
// Nothing in this package checks or defaults a value: control/config reads
// a File into its typed Config.
package schema

// File is engine.toml as written: every section and key, nothing defaulted.
type File struct {
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
	ADoT    *ADoT    `toml:"adot"` // DNS over TLS client and server
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

// ACS is [acs] (docs/wire.md §4.1).
type ACS struct {
	Listen    string    `toml:"listen"`
	Cert      string    `toml:"cert"`
	Key       string    `toml:"key"`
	CA        string    `toml:"ca"`
	Heartbeat string    `toml:"heartbeat"`
	DeadAfter int       `toml:"dead_after"`
	Peers     []ACSPeer `toml:"peer"`

	// Not fixed by docs/wire.md §4.1 (documented in docs/config.md):
	MembershipDir string         `toml:"membership_dir"` // where membership records are kept (required)
	Record        string         `toml:"record"`         // this AS's own signed, endorsed record, published at start
	Communities   []ACSCommunity `toml:"community"`      // trust anchors: the keys that endorse records
}

// ACSCommunity is [[acs.community]]: a community's endorsement keys.
type ACSCommunity struct {
	ASCN uint32   `toml:"ascn"` // 0: the top-level (flat) alliance
	Keys []string `toml:"keys"` // "ed25519:<base64>" or "ecdsa-p256:<base64>"

	// The community tree (docs/wire.md §2.6), for ascn ≠ 0: the parent community
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

// ABR is [abr] (docs/wire.md §4.1).
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

// Capture is [capture]: sampled dropped frames to pcap files (docs/wire.md §2.2).
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
// vet membership records (docs/wire.md §3.2); used by an ACS.
type RPKI struct {
	Server string `toml:"server"` // host:port of the RTR cache, plain TCP
}

// Log is [log].
type Log struct {
	Level  string `toml:"level"`  // debug | info (default) | warn | error
	Format string `toml:"format"` // console (default) | json
}

// LISP is [lisp] (docs/wire.md §4.1, plus the keys docs/config.md adds).
type LISP struct {
	InstanceID   uint32           `toml:"instance_id"`
	RLOCs        []string         `toml:"rlocs"`
	MapServer    *LISPMapServer   `toml:"map_server"`
	Sites        []LISPSite       `toml:"site"`
	Database     []LISPDatabase   `toml:"database"`
	RegisterTo   []LISPRegisterTo `toml:"register_to"`
	MapResolvers []LISPResolver   `toml:"map_resolver"`
	Decent       *LISPDecent      `toml:"decent"` // LISP-Decent instead of register_to / map_resolver

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

// ADoT is [adot]: the DNS-over-TLS client of the pull-based mapping system
// (docs/wire.md §3.5) and, in [adot.server], the optional authoritative DoT
// server role. Durations are Go durations ("3s"); absent keys take the
// defaults of control/adot (docs/config.md lists them).
type ADoT struct {
	Servers           []string `toml:"servers"`     // DoT servers of the mapping zone, "host:port" or "host" (port 853)
	ServerName        string   `toml:"server_name"` // name verified in their certificate; default: the host of each server
	CA                string   `toml:"ca"`          // PEM trust anchors; default: the system pool
	SPKIPins          []string `toml:"spki_pins"`   // base64 SHA-256 of the leaf's SubjectPublicKeyInfo
	MinTLS            string   `toml:"min_tls"`     // "1.3" (default) | "1.2"
	Fallback          string   `toml:"fallback"`    // "" (never clear text) | "plaintext"
	FallbackServers   []string `toml:"fallback_servers"`
	DialTimeout       string   `toml:"dial_timeout"`
	HandshakeTimeout  string   `toml:"handshake_timeout"`
	QueryTimeout      string   `toml:"query_timeout"`
	IdleTimeout       string   `toml:"idle_timeout"`
	MinTTL            string   `toml:"min_ttl"` // cache floor
	MaxTTL            string   `toml:"max_ttl"` // cache ceiling
	MaxConnsPerServer int      `toml:"max_conns_per_server"`
	Attempts          int      `toml:"attempts"`

	Server *ADoTServer `toml:"server"`
}

// ADoTServer is [adot.server]: an authoritative DoT server for one zone.
type ADoTServer struct {
	Listen            string              `toml:"listen"`    // TLS address, e.g. "192.0.2.53:853"
	Cert              string              `toml:"cert"`      // PEM certificate chain
	Key               string              `toml:"key"`       // PEM private key
	Zone              string              `toml:"zone"`      // origin, e.g. "map-server.example.test"
	ZoneFile          string              `toml:"zone_file"` // RFC 1035 master file (or records)
	TTL               uint32              `toml:"ttl"`       // TTL of records (default 30 s)
	Records           map[string][]string `toml:"records"`   // owner → ["A 192.0.2.10", …]
	MinTLS            string              `toml:"min_tls"`
	MaxConns          int                 `toml:"max_conns"`
	MaxConnsPerClient int                 `toml:"max_conns_per_client"`
	MaxQueriesPerConn int                 `toml:"max_queries_per_conn"`
	IdleTimeout       string              `toml:"idle_timeout"`
	HandshakeTimeout  string              `toml:"handshake_timeout"`
	TicketRotation    string              `toml:"ticket_rotation"`
}

// LISPDecent is [lisp.decent]: this node finds its Map-Servers and
// Map-Resolvers through LISP-Decent (docs/wire.md §3.4) instead of
// [[lisp.register_to]] and [[lisp.map_resolver]]. docs/config.md lists the
// keys; control/config turns them into the push and pull configurations.
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
