// Package schema is the engine.toml file as written; only control/config
// decodes it; the lab may encode it.
//
// The field names and their toml keys are a fixed contract (docs/wire.md
// §4.1 and docs/config.md): deployments and outside tools rely on them, so
// no key is renamed, added or removed here without changing the contract.
// Nothing in this package checks or defaults a value: control/config reads
// a File into its typed Config. Every key is omitempty/omitzero, so that a
// File encoded by a writer (the lab) leaves out what it does not set, and
// config's "set or absent" rule sees exactly what the writer meant.
package schema

// File is engine.toml as written: every section and key, nothing defaulted.
type File struct {
	PSAV    PSAV     `toml:"psav,omitempty,omitzero"`
	Engine  Engine   `toml:"engine,omitempty,omitzero"`
	Ports   []Port   `toml:"port,omitempty,omitzero"`
	Routes  []Route  `toml:"route,omitempty,omitzero"`
	ACS     *ACS     `toml:"acs,omitempty,omitzero"`
	ABR     *ABR     `toml:"abr,omitempty,omitzero"`
	Metrics *Metrics `toml:"metrics,omitempty,omitzero"`
	Capture *Capture `toml:"capture,omitempty,omitzero"`
	RPKI    *RPKI    `toml:"rpki,omitempty,omitzero"`
	Log     Log      `toml:"log,omitempty,omitzero"`
	LISP    *LISP    `toml:"lisp,omitempty,omitzero"`
	ADoT    *ADoT    `toml:"adot,omitempty,omitzero"` // DNS over TLS client and server
	Control *Control `toml:"control,omitempty,omitzero"`
}

// Control is [control]: the node's local management socket.
type Control struct {
	Socket string `toml:"socket,omitempty,omitzero"` // default /run/psavd/psavd.sock
}

// PSAV is [psav].
type PSAV struct {
	ASN          uint32       `toml:"asn,omitempty,omitzero"`
	EpochSeconds int64        `toml:"epoch_seconds,omitempty,omitzero"`
	T0           int64        `toml:"t0,omitempty,omitzero"`
	Members      []Member     `toml:"member,omitempty,omitzero"`
	StaticPeers  []StaticPeer `toml:"static_peer,omitempty,omitzero"`
}

// Member is [[psav.member]]: one AS-Prefix table entry. The member whose ASN
// is psav.asn holds this AS's own prefixes.
type Member struct {
	ASN      uint32   `toml:"asn,omitempty,omitzero"`
	Prefixes []string `toml:"prefixes,omitempty,omitzero"`
}

// StaticPeer is [[psav.static_peer]]: a peer whose state machine starts from
// a configured state instead of one negotiated by an ACS.
type StaticPeer struct {
	ASN        uint32 `toml:"asn,omitempty,omitzero"`
	StartEpoch int64  `toml:"start_epoch,omitempty,omitzero"`
	S0         string `toml:"s0,omitempty,omitzero"`
}

// Engine is [engine].
type Engine struct {
	Forwarding    string `toml:"forwarding,omitempty,omitzero"`     // "cross-connect" (default) | "routed"
	CPUs          []int  `toml:"cpus,omitempty,omitzero"`           // poll loops pinned round robin; default: all
	Batch         int    `toml:"batch,omitempty,omitzero"`          // frames per batch, default 64
	SpoofedInside string `toml:"spoofed_inside,omitempty,omitzero"` // "drop" (default) | "forward"
	NoRoom        string `toml:"no_room,omitempty,omitzero"`        // "forward" (default) | "drop"
	// NoKey is what happens to a packet from a member whose keys are gone
	// (no key for e−1 … e+1): "forward" (default: treated as not a member,
	// counted unverifiable) or "drop" (fail closed, reason no-key).
	NoKey    string `toml:"no_key,omitempty,omitzero"`
	Frames   int    `toml:"frames,omitempty,omitzero"`    // UMEM frames per socket, default 4096
	RingSize int    `toml:"ring_size,omitempty,omitzero"` // AF_XDP ring size, default 2048
	// BusyPoll ("50us", up to 1s) has the poll loops busy-poll the NICs'
	// receive (SO_PREFER_BUSY_POLL, SO_BUSY_POLL); default off.
	BusyPoll       string `toml:"busy_poll,omitempty,omitzero"`
	BusyPollBudget int    `toml:"busy_poll_budget,omitempty,omitzero"` // packets per busy poll, default batch
}

// Port is [[port]].
type Port struct {
	Name      string `toml:"name,omitempty,omitzero"`
	Interface string `toml:"interface,omitempty,omitzero"`
	Role      string `toml:"role,omitempty,omitzero"`
	Peer      string `toml:"peer,omitempty,omitzero"`
	Queues    []int  `toml:"queues,omitempty,omitzero"`   // default: every RX queue the interface uses
	XDPMode   string `toml:"xdp_mode,omitempty,omitzero"` // "auto" (default) | "native" | "generic"
	// LISP (docs/config.md): "lisp" encapsulates what leaves by the port
	// (routed forwarding, [lisp] rlocs), and decapsulates what arrives for
	// the rlocs; mtu bounds the outer packet.
	Encap            string `toml:"encap,omitempty,omitzero"`              // "none" (default) | "lisp"
	MTU              int    `toml:"mtu,omitempty,omitzero"`                // IP MTU of the link, default 1500
	UDP6ZeroChecksum bool   `toml:"udp6_zero_checksum,omitempty,omitzero"` // outer IPv6 UDP checksum 0 (RFC 6935/6936)
	XDPPrefilter     *bool  `toml:"xdp_prefilter,omitempty"`               // default true: drop certain spoofs in XDP (egress ports)
}

// Route is [[route]] (routed forwarding).
type Route struct {
	Prefix     string `toml:"prefix,omitempty,omitzero"`
	Port       string `toml:"port,omitempty,omitzero"`
	NextHop    string `toml:"next_hop,omitempty,omitzero"`
	NextHopMAC string `toml:"next_hop_mac,omitempty,omitzero"`
}

// ACS is [acs] (docs/wire.md §4.1).
type ACS struct {
	Listen    string `toml:"listen,omitempty,omitzero"`
	Cert      string `toml:"cert,omitempty,omitzero"`
	Key       string `toml:"key,omitempty,omitzero"`
	CA        string `toml:"ca,omitempty,omitzero"`
	Heartbeat string `toml:"heartbeat,omitempty,omitzero"`
	DeadAfter int    `toml:"dead_after,omitempty,omitzero"`
	// KeyLead is how many epochs ahead the ACS hands its ABRs keys: an ABR
	// cut from its ACS goes on that long (the fail-static horizon).
	KeyLead int       `toml:"key_lead,omitempty,omitzero"`
	Peers   []ACSPeer `toml:"peer,omitempty,omitzero"`

	// Not fixed by docs/wire.md §4.1 (documented in docs/config.md):
	MembershipDir string         `toml:"membership_dir,omitempty,omitzero"` // where membership records are kept (required)
	Record        string         `toml:"record,omitempty,omitzero"`         // this AS's own signed, endorsed record, published at start
	Communities   []ACSCommunity `toml:"community,omitempty,omitzero"`      // trust anchors: the keys that endorse records

	// CRL: the trust anchors' revocation lists (PEM or DER), read again on
	// every reload.
	CRL []string `toml:"crl,omitempty,omitzero"`

	// Limits of the listener (control/acs.Limits).
	MaxConnections          int    `toml:"max_connections,omitempty,omitzero"`            // open connections in total
	MaxConnectionsPerSource int    `toml:"max_connections_per_source,omitempty,omitzero"` // per IPv4 address or IPv6 /64
	HandshakeTimeout        string `toml:"handshake_timeout,omitempty,omitzero"`          // TLS handshake of a new connection
	HelloTimeout            string `toml:"hello_timeout,omitempty,omitzero"`              // a peer's Hello after it calls Peer
}

// ACSCommunity is [[acs.community]]: a community's endorsement keys.
type ACSCommunity struct {
	ASCN uint32   `toml:"ascn,omitempty,omitzero"` // 0: the top-level (flat) alliance
	Keys []string `toml:"keys,omitempty,omitzero"` // "ed25519:<base64>" or "ecdsa-p256:<base64>"

	// The community tree (docs/wire.md §2.6), for ascn ≠ 0: the parent community
	// and the key between the two: border (an AS of this community) and
	// parent_peer (an AS of the parent). Every ACS must be given the same
	// tree.
	Parent     uint32 `toml:"parent,omitempty,omitzero"`
	Border     uint32 `toml:"border,omitempty,omitzero"`
	ParentPeer uint32 `toml:"parent_peer,omitempty,omitzero"`

	// Quotas of the community (membership.Quota): live members, and
	// prefixes over all of them. Absent: membership.DefaultQuota.
	MaxMembers  int `toml:"max_members,omitempty,omitzero"`
	MaxPrefixes int `toml:"max_prefixes,omitempty,omitzero"`
	// Members pins ASes to this community (membership.Policy.SetMembers):
	// their records must name it, on every ACS. Optional.
	Members []uint32 `toml:"members,omitempty,omitzero"`
}

// ACSPeer is [[acs.peer]].
type ACSPeer struct {
	ASN     uint32 `toml:"asn,omitempty,omitzero"`
	Address string `toml:"address,omitempty,omitzero"`
}

// ABR is [abr] (docs/wire.md §4.1).
type ABR struct {
	ACS  string `toml:"acs,omitempty,omitzero"`
	Cert string `toml:"cert,omitempty,omitzero"`
	Key  string `toml:"key,omitempty,omitzero"`
	CA   string `toml:"ca,omitempty,omitzero"`
	// CRL: the trust anchors' revocation lists (PEM or DER), read again on
	// every reload.
	CRL []string `toml:"crl,omitempty,omitzero"`
}

// Metrics is [metrics].
type Metrics struct {
	Listen string `toml:"listen,omitempty,omitzero"`
}

// Capture is [capture]: sampled dropped frames to pcap files (docs/wire.md §2.2).
type Capture struct {
	Dir       string   `toml:"dir,omitempty,omitzero"`        // where the files go (required)
	Every     uint32   `toml:"every,omitempty,omitzero"`      // 1 in N drops per reason (default 100)
	PerSecond uint32   `toml:"per_second,omitempty,omitzero"` // per poll loop (default 10; 0 = no limit)
	Snap      int      `toml:"snap,omitempty,omitzero"`       // octets per frame (default 256)
	MaxBytes  int64    `toml:"max_bytes,omitempty,omitzero"`  // rotate a file past this size (default 10 MiB)
	Keep      int      `toml:"keep,omitempty,omitzero"`       // rotated files kept per (port, reason) (default 5)
	Reasons   []string `toml:"reasons,omitempty,omitzero"`    // default: every reason
}

// RPKI is [rpki]: an RTR server (RFC 8210) whose validated ROA payloads
// vet membership records (docs/wire.md §3.2); used by an ACS.
type RPKI struct {
	Server        string `toml:"server,omitempty,omitzero"`          // host:port of the RTR cache
	Policy        string `toml:"policy,omitempty,omitzero"`          // fail_closed (default) | fail_open
	Transport     string `toml:"transport,omitempty,omitzero"`       // tcp (default) | tls | ssh
	TLSServerName string `toml:"tls_server_name,omitempty,omitzero"` // name in the cache's certificate (default: server's host)
	TLSCA         string `toml:"tls_ca,omitempty,omitzero"`          // PEM trust anchors for the cache's certificate
	TLSCert       string `toml:"tls_cert,omitempty,omitzero"`        // client certificate (optional, with tls_key)
	TLSKey        string `toml:"tls_key,omitempty,omitzero"`
	SSHUser       string `toml:"ssh_user,omitempty,omitzero"`     // default "rpki"
	SSHKey        string `toml:"ssh_key,omitempty,omitzero"`      // client private key (PEM or OpenSSH)
	SSHHostKey    string `toml:"ssh_host_key,omitempty,omitzero"` // the cache's public host key (authorized_keys format)
}

// Log is [log].
type Log struct {
	Level  string `toml:"level,omitempty,omitzero"`  // debug | info (default) | warn | error
	Format string `toml:"format,omitempty,omitzero"` // console (default) | json
}

// LISP is [lisp] (docs/wire.md §4.1, plus the keys docs/config.md adds).
type LISP struct {
	InstanceID   uint32           `toml:"instance_id,omitempty,omitzero"`
	RLOCs        []string         `toml:"rlocs,omitempty,omitzero"`
	MapServer    *LISPMapServer   `toml:"map_server,omitempty,omitzero"`
	Sites        []LISPSite       `toml:"site,omitempty,omitzero"`
	Database     []LISPDatabase   `toml:"database,omitempty,omitzero"`
	RegisterTo   []LISPRegisterTo `toml:"register_to,omitempty,omitzero"`
	MapResolvers []LISPResolver   `toml:"map_resolver,omitempty,omitzero"`
	Decent       *LISPDecent      `toml:"decent,omitempty,omitzero"` // LISP-Decent instead of register_to / map_resolver

	ControlListen string `toml:"control_listen,omitempty,omitzero"` // the xTR's UDP socket, default ":4342"
	OnMiss        string `toml:"on_miss,omitempty,omitzero"`        // "drop" (default) | "native"
	TooBig        string `toml:"too_big,omitempty,omitzero"`        // "icmp" (default) | "drop"
	ICMPRate      int    `toml:"icmp_rate,omitempty,omitzero"`      // Packet Too Big per poll loop per second, default 100

	RLOCProbeInterval string `toml:"rloc_probe_interval,omitempty,omitzero"` // ITR RLOC-probing, default "30s"; "off"
	RLOCProbeTimeout  string `toml:"rloc_probe_timeout,omitempty,omitzero"`  // before a probe is re-sent, default "5s"
	RLOCProbeRetries  int    `toml:"rloc_probe_retries,omitempty,omitzero"`  // re-sends before a locator is down, default 2
}

// LISPMapServer is [lisp.map_server].
type LISPMapServer struct {
	Listen string `toml:"listen,omitempty,omitzero"`
	Replay string `toml:"replay,omitempty,omitzero"` // recent (default) | monotonic | window | off
}

// LISPSite is [[lisp.site]].
type LISPSite struct {
	Name                string   `toml:"name,omitempty,omitzero"`
	Key                 string   `toml:"key,omitempty,omitzero"`
	KeyID               int      `toml:"key_id,omitempty,omitzero"`
	EIDPrefixes         []string `toml:"eid_prefixes,omitempty,omitzero"`
	AcceptMoreSpecifics bool     `toml:"accept_more_specifics,omitempty,omitzero"`
	AuthLength          int      `toml:"auth_length,omitempty,omitzero"`   // only this length accepted; default either
	SharedKeyID         int      `toml:"shared_key_id,omitempty,omitzero"` // RFC 9301 Key ID, 0 … 255
	Replay              string   `toml:"replay,omitempty,omitzero"`        // recent | monotonic | window | off; default lisp.map_server.replay
}

// LISPDatabase is [[lisp.database]].
type LISPDatabase struct {
	EID   string     `toml:"eid,omitempty,omitzero"`
	RLOCs []LISPRLOC `toml:"rlocs,omitempty,omitzero"`
}

// LISPRLOC is one locator of a database mapping.
type LISPRLOC struct {
	Address  string `toml:"address,omitempty,omitzero"`
	Priority int    `toml:"priority,omitempty,omitzero"`
	Weight   int    `toml:"weight,omitempty,omitzero"`
}

// LISPRegisterTo is [[lisp.register_to]].
type LISPRegisterTo struct {
	Address    string `toml:"address,omitempty,omitzero"`
	Key        string `toml:"key,omitempty,omitzero"`
	KeyID      int    `toml:"key_id,omitempty,omitzero"`
	WantNotify bool   `toml:"want_notify,omitempty,omitzero"`
	AckNotify  bool   `toml:"ack_notify,omitempty,omitzero"` // answer Map-Notify with Map-Notify-Ack
	// Interop with other implementations (docs/config.md).
	AuthLength   int   `toml:"auth_length,omitempty,omitzero"`   // 12/20 (key_id 1), 16/32 (key_id 2); default 20/32
	SharedKeyID  int   `toml:"shared_key_id,omitempty,omitzero"` // RFC 9301 Key ID, 0 … 255
	ASNumberLCAF *bool `toml:"as_number_lcaf,omitempty"`         // default true
}

// LISPResolver is [[lisp.map_resolver]].
type LISPResolver struct {
	Address string `toml:"address,omitempty,omitzero"`
}

// ADoT is [adot]: the DNS-over-TLS client of the pull-based mapping system
// (docs/wire.md §3.5) and, in [adot.server], the optional authoritative DoT
// server role. Durations are Go durations ("3s"); absent keys take the
// defaults of control/adot (docs/config.md lists them).
type ADoT struct {
	Servers           []string `toml:"servers,omitempty,omitzero"`     // DoT servers of the mapping zone, "host:port" or "host" (port 853)
	ServerName        string   `toml:"server_name,omitempty,omitzero"` // name verified in their certificate; default: the host of each server
	CA                string   `toml:"ca,omitempty,omitzero"`          // PEM trust anchors; default: the system pool
	SPKIPins          []string `toml:"spki_pins,omitempty,omitzero"`   // base64 SHA-256 of the leaf's SubjectPublicKeyInfo
	MinTLS            string   `toml:"min_tls,omitempty,omitzero"`     // "1.3" (default) | "1.2"
	Fallback          string   `toml:"fallback,omitempty,omitzero"`    // "" (never clear text) | "plaintext"
	FallbackServers   []string `toml:"fallback_servers,omitempty,omitzero"`
	DialTimeout       string   `toml:"dial_timeout,omitempty,omitzero"`
	HandshakeTimeout  string   `toml:"handshake_timeout,omitempty,omitzero"`
	QueryTimeout      string   `toml:"query_timeout,omitempty,omitzero"`
	IdleTimeout       string   `toml:"idle_timeout,omitempty,omitzero"`
	MinTTL            string   `toml:"min_ttl,omitempty,omitzero"` // cache floor
	MaxTTL            string   `toml:"max_ttl,omitempty,omitzero"` // cache ceiling
	MaxConnsPerServer int      `toml:"max_conns_per_server,omitempty,omitzero"`
	Attempts          int      `toml:"attempts,omitempty,omitzero"`

	Server *ADoTServer `toml:"server,omitempty,omitzero"`
}

// ADoTServer is [adot.server]: an authoritative DoT server for one zone.
type ADoTServer struct {
	Listen                 string              `toml:"listen,omitempty,omitzero"`    // TLS address, e.g. "192.0.2.53:853"
	Cert                   string              `toml:"cert,omitempty,omitzero"`      // PEM certificate chain
	Key                    string              `toml:"key,omitempty,omitzero"`       // PEM private key
	Zone                   string              `toml:"zone,omitempty,omitzero"`      // origin, e.g. "map-server.example.test"
	ZoneFile               string              `toml:"zone_file,omitempty,omitzero"` // RFC 1035 master file (or records)
	TTL                    uint32              `toml:"ttl,omitempty,omitzero"`       // TTL of records (default 30 s)
	Records                map[string][]string `toml:"records,omitempty,omitzero"`   // owner → ["A 192.0.2.10", …]
	MinTLS                 string              `toml:"min_tls,omitempty,omitzero"`
	MaxConns               int                 `toml:"max_conns,omitempty,omitzero"`
	MaxConnsPerClient      int                 `toml:"max_conns_per_client,omitempty,omitzero"`
	MaxHandshakesPerSecond int                 `toml:"max_handshakes_per_second,omitempty,omitzero"`
	MaxQueriesPerConn      int                 `toml:"max_queries_per_conn,omitempty,omitzero"`
	IdleTimeout            string              `toml:"idle_timeout,omitempty,omitzero"`
	HandshakeTimeout       string              `toml:"handshake_timeout,omitempty,omitzero"`
	TicketRotation         string              `toml:"ticket_rotation,omitempty,omitzero"`
	// Zone transfers over TLS (RFC 9103) and NOTIFY (RFC 1996).
	Secondaries []string `toml:"secondaries,omitempty,omitzero"` // addresses or prefixes allowed to transfer the zone
	Notify      []string `toml:"notify,omitempty,omitzero"`      // NOTIFY targets, "addr" (port 53) or "addr:port"
	TransferCA  string   `toml:"transfer_ca,omitempty,omitzero"` // PEM CAs a secondary's client certificate must chain to
	// The <index> names from live membership (pull.ZoneFeed).
	IndexModulus  uint64   `toml:"index_modulus,omitempty,omitzero"`
	IndexReplicas int      `toml:"index_replicas,omitempty,omitzero"`
	IndexOwners   []string `toml:"index_owners,omitempty,omitzero"` // configured owners; default: the push group's members
}

// LISPDecent is [lisp.decent]: this node finds its Map-Servers and
// Map-Resolvers through LISP-Decent (docs/wire.md §3.4) instead of
// [[lisp.register_to]] and [[lisp.map_resolver]]. docs/config.md lists the
// keys; control/config turns them into the push and pull configurations.
type LISPDecent struct {
	Mode string `toml:"mode,omitempty,omitzero"` // "push" | "pull"
	// Site names the [[lisp.site]] whose key signs this node's ETR
	// registrations (needed with [[lisp.database]]).
	Site string `toml:"site,omitempty,omitzero"`

	// push: a registration group whose members all hold every registration.
	Group           string   `toml:"group,omitempty,omitzero"`     // G, IPv4 or IPv6 multicast
	Transport       string   `toml:"transport,omitempty,omitzero"` // "multicast" (default) | "unicast"
	Interface       string   `toml:"interface,omitempty,omitzero"` // where G is joined (multicast)
	Members         []string `toml:"members,omitempty,omitzero"`   // member RLOCs known by configuration
	CoreGroup       string   `toml:"core_group,omitempty,omitzero"`
	CoreMembers     []string `toml:"core_members,omitempty,omitzero"`
	MembershipKey   string   `toml:"membership_key,omitempty,omitzero"`    // signs the (0/0, G) membership registrations
	MembershipKeyID int      `toml:"membership_key_id,omitempty,omitzero"` // 1 | 2
	RefreshInterval string   `toml:"refresh_interval,omitempty,omitzero"`  // default 60s
	RegistrationTTL string   `toml:"registration_ttl,omitempty,omitzero"`  // default 3m
	LookupInterval  string   `toml:"lookup_interval,omitempty,omitzero"`   // default refresh_interval
	MulticastTTL    int      `toml:"multicast_ttl,omitempty,omitzero"`     // default 16
	ControlPort     int      `toml:"control_port,omitempty,omitzero"`      // default 4342
	DataPort        int      `toml:"data_port,omitempty,omitzero"`         // default 4341

	// pull: the EID's hash names <index>.<suffix>, resolved through [adot].
	Suffix         string   `toml:"suffix,omitempty,omitzero"`
	Modulus        uint64   `toml:"modulus,omitempty,omitzero"`
	HashMode       string   `toml:"hash_mode,omitempty,omitzero"` // "draft" (default) | "lispers.net"
	HashMask       int      `toml:"hash_mask,omitempty,omitzero"` // octets (draft only)
	Owned          []uint64 `toml:"owned,omitempty,omitzero"`     // indexes whose names list this node's [lisp.map_server]
	DropMismatched bool     `toml:"drop_mismatched,omitempty,omitzero"`
}
