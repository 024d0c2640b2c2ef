package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/control/decent/pull"
)

// ADoT is [adot]: the DNS-over-TLS client of the pull-based mapping system
// (docs/wire.md §3.5) and the authoritative DoT server of [adot.server],
// as control/adot takes them (the CA pool loaded, the certificate loaded,
// the zone built). Every default of docs/config.md is filled in.
type ADoT struct {
	Client *adot.Config       // nil without adot.servers
	Server *adot.ServerConfig // nil without [adot.server]
	// Index is set with adot.server.index_modulus: the zone's <index>
	// names follow live membership (Server.Zone is then the zone of the
	// configured owners, or of no owners yet).
	Index *ADoTIndex
}

// ADoTIndex is how the node builds the mapping zone from live membership
// (pull.IndexZone, kept current by pull.ZoneFeed).
type ADoTIndex struct {
	Modulus  uint64
	Replicas int
	TTL      uint32
	// Owners are the configured map-servers (index_owners); nil: the
	// members of this node's push registration group.
	Owners []netip.Addr
	// Static are the records besides the index names (adot.server.records).
	Static map[string][]string
}

// Defaults and bounds of [adot] and [adot.server] (docs/config.md).
const (
	adotTimeout = 3 * time.Second  // dial, handshake and query timeouts
	adotIdle    = 35 * time.Second // the client's idle_timeout: above the 30 s pull refresh, below the server's

	maxADoTTimeout    = time.Minute // of one attempt's dial, handshake or query
	maxADoTIdle       = time.Hour   // idle_timeout, client and server
	maxADoTTTL        = 7 * 24 * time.Hour
	maxADoTAttempts   = 10
	maxADoTConns      = 64 // per server, client
	adotServerTTL     = 30
	maxADoTServerTTL  = 1<<31 - 1 // RFC 2181 §8
	adotMaxConns      = 1024
	adotMaxPerClient  = 32
	adotMaxQueries    = 10000
	adotServerIdle    = 40 * time.Second // above the client's, so the client closes first
	adotHandshake     = 5 * time.Second
	adotRotation      = time.Hour
	maxADoTServerConn = 1_000_000
	maxADoTRotation   = 7 * 24 * time.Hour // TLS 1.3 tickets live at most a week (RFC 8446 §4.6.1)
	adotReplicas      = 2                  // map-servers per index in a generated zone
	maxADoTReplicas   = 64
	maxADoTSecondary  = 64 // secondaries and notify targets
)

// adotClientKeys are the client keys that are refused without servers.
var adotClientKeys = []string{"attempts", "ca", "dial_timeout", "fallback", "fallback_servers", "handshake_timeout", "idle_timeout",
	"max_conns_per_server", "max_ttl", "min_ttl", "query_timeout", "server_name", "spki_pins"}

func (c *Config) checkADoT(k *checker, f *schema.File) {
	a := f.ADoT
	if a == nil {
		return
	}
	c.ADoT = &ADoT{}
	if len(a.Servers) > 0 || k.set("adot.servers") {
		c.ADoT.Client = clientConfig(k, a)
	} else {
		if a.Server == nil {
			k.add("adot.servers", "missing: [adot] needs the DoT servers of the mapping zone, [adot.server], or both")
		}
		// Client keys without servers would silently do nothing.
		for _, key := range adotClientKeys {
			if k.set("adot." + key) {
				k.add("adot."+key, "a client setting, but adot.servers is empty (the client is off)")
			}
		}
	}
	if s := a.Server; s != nil {
		push := f.LISP != nil && f.LISP.Decent != nil && f.LISP.Decent.Mode == "push"
		c.ADoT.Server, c.ADoT.Index = serverConfig(k, s, push)
	}
}

// count checks a number of things: a negative one is reported as such,
// others outside [lo, hi] as between does.
func count(k *checker, key string, v, lo, hi int) bool {
	if v < 0 {
		k.add(key, "must not be negative, is %d", v)
		return false
	}
	return between(k, key, v, lo, hi)
}

// clientConfig checks the client keys of [adot] and compiles them, the CA
// file loaded.
func clientConfig(k *checker, a *schema.ADoT) *adot.Config {
	before := len(k.ps)
	cfg := &adot.Config{Servers: append([]string(nil), a.Servers...), ServerName: a.ServerName, SPKIPins: append([]string(nil), a.SPKIPins...),
		FallbackServers: append([]string(nil), a.FallbackServers...)}
	if len(a.Servers) == 0 {
		k.add("adot.servers", "missing")
	}
	for i, s := range a.Servers {
		key := fmt.Sprintf("adot.servers[%d]", i)
		hostport := s
		if _, _, err := net.SplitHostPort(s); err != nil {
			hostport = net.JoinHostPort(strings.Trim(s, "[]"), adot.DefaultPort)
		}
		host, port, err := net.SplitHostPort(hostport)
		ip, ipErr := netip.ParseAddr(host)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 ||
			(ipErr != nil && strings.ContainsAny(host, ":[] ")) {
			k.add(key, "%q is not host:port or host", s)
			continue
		}
		if ip.IsValid() && a.ServerName == "" {
			k.add(key, "%q is an IP address: give adot.server_name, the name its certificate must carry", s)
		}
	}
	for i, p := range a.SPKIPins {
		if b, err := base64.StdEncoding.DecodeString(p); err != nil || len(b) != 32 {
			k.add(fmt.Sprintf("adot.spki_pins[%d]", i), "%q is not the base64 of a SHA-256 (32 octets)", p)
		}
	}
	if v := orDefault(k.set("adot.min_tls"), a.MinTLS, "1.3"); k.oneOf("adot.min_tls", v, "1.3", "1.2") {
		cfg.AllowTLS12 = v == "1.2"
	}
	if k.set("adot.fallback") {
		k.oneOf("adot.fallback", a.Fallback, adot.FallbackPlaintext)
		cfg.Fallback = a.Fallback
	} else if len(a.FallbackServers) > 0 {
		k.add("adot.fallback_servers", "given, but fallback is not \"plaintext\": they would never be used")
	}
	for i, s := range a.FallbackServers {
		if s == "" {
			k.add(fmt.Sprintf("adot.fallback_servers[%d]", i), "empty")
		}
	}
	if k.set("adot.ca") {
		cfg.RootCAs = k.caPool("adot.ca", a.CA)
	}
	cfg.DialTimeout = k.duration("adot.dial_timeout", a.DialTimeout, adotTimeout, time.Millisecond, maxADoTTimeout)
	cfg.HandshakeTimeout = k.duration("adot.handshake_timeout", a.HandshakeTimeout, adotTimeout, time.Millisecond, maxADoTTimeout)
	cfg.QueryTimeout = k.duration("adot.query_timeout", a.QueryTimeout, adotTimeout, time.Millisecond, maxADoTTimeout)
	cfg.IdleTimeout = k.duration("adot.idle_timeout", a.IdleTimeout, adotIdle, time.Second, maxADoTIdle)
	cfg.MinTTL = k.duration("adot.min_ttl", a.MinTTL, adot.DefaultMinTTL, time.Millisecond, maxADoTTTL)
	cfg.MaxTTL = k.duration("adot.max_ttl", a.MaxTTL, adot.DefaultMaxTTL, time.Millisecond, maxADoTTTL)
	if cfg.MinTTL > cfg.MaxTTL {
		k.add("adot.max_ttl", "the ceiling %v is below the floor min_ttl %v", cfg.MaxTTL, cfg.MinTTL)
	}
	cfg.MaxConnsPerServer = orDefault(k.set("adot.max_conns_per_server"), a.MaxConnsPerServer, 1)
	count(k, "adot.max_conns_per_server", cfg.MaxConnsPerServer, 1, maxADoTConns)
	cfg.Attempts = orDefault(k.set("adot.attempts"), a.Attempts, 1)
	count(k, "adot.attempts", cfg.Attempts, 1, maxADoTAttempts)
	if len(k.ps) > before {
		return cfg
	}
	cl, err := adot.NewClient(*cfg) // anything the checks above missed
	if err != nil {
		k.add("adot", "%v", err)
		return cfg
	}
	cl.Close()
	return cfg
}

// serverConfig checks [adot.server] and compiles it: the certificate
// loaded and the zone built (relative zone_file paths are taken as given);
// with index_modulus also how the zone follows membership (push: this
// node is a push group member, whose members can own the indexes).
func serverConfig(k *checker, s *schema.ADoTServer, push bool) (*adot.ServerConfig, *ADoTIndex) {
	cfg := &adot.ServerConfig{Addr: s.Listen}
	k.hostPort("adot.server.listen", s.Listen)
	if v := orDefault(k.set("adot.server.min_tls"), s.MinTLS, "1.3"); k.oneOf("adot.server.min_tls", v, "1.3", "1.2") {
		cfg.AllowTLS12 = v == "1.2"
	}
	switch {
	case s.Cert == "":
		k.add("adot.server.cert", "missing")
	case !k.privateKey("adot.server.key", s.Key):
	default:
		cert, err := tls.LoadX509KeyPair(s.Cert, s.Key)
		if err != nil {
			k.add("adot.server.cert", "%v", err)
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	cfg.MaxConns = orDefault(k.set("adot.server.max_conns"), s.MaxConns, adotMaxConns)
	cfg.MaxConnsPerIP = orDefault(k.set("adot.server.max_conns_per_client"), s.MaxConnsPerClient, adotMaxPerClient)
	cfg.MaxQueriesPerConn = orDefault(k.set("adot.server.max_queries_per_conn"), s.MaxQueriesPerConn, adotMaxQueries)
	count(k, "adot.server.max_conns", cfg.MaxConns, 1, maxADoTServerConn)
	if count(k, "adot.server.max_conns_per_client", cfg.MaxConnsPerIP, 1, maxADoTServerConn) && cfg.MaxConnsPerIP > cfg.MaxConns {
		k.add("adot.server.max_conns_per_client", "%d is more than max_conns (%d)", cfg.MaxConnsPerIP, cfg.MaxConns)
	}
	count(k, "adot.server.max_queries_per_conn", cfg.MaxQueriesPerConn, 1, 1<<30)
	cfg.MaxHandshakesPerSecond = orDefault(k.set("adot.server.max_handshakes_per_second"), s.MaxHandshakesPerSecond, adot.DefaultMaxHandshakes)
	count(k, "adot.server.max_handshakes_per_second", cfg.MaxHandshakesPerSecond, 1, maxADoTServerConn)
	cfg.IdleTimeout = k.duration("adot.server.idle_timeout", s.IdleTimeout, adotServerIdle, 100*time.Millisecond, maxADoTIdle)
	cfg.HandshakeTimeout = k.duration("adot.server.handshake_timeout", s.HandshakeTimeout, adotHandshake, 100*time.Millisecond, maxADoTTimeout)
	cfg.TicketRotation = k.duration("adot.server.ticket_rotation", s.TicketRotation, adotRotation, time.Nanosecond, maxADoTRotation)
	if cfg.TicketRotation < time.Minute {
		k.add("adot.server.ticket_rotation", "%v is below 1m: clients would rarely resume", cfg.TicketRotation)
	}
	transfers(k, s, cfg)
	ttl := orDefault(k.set("adot.server.ttl"), s.TTL, adotServerTTL)
	ix := index(k, s, ttl, push)
	if between(k, "adot.server.ttl", ttl, 1, maxADoTServerTTL) {
		if ix != nil {
			cfg.Zone = indexZone(k, s, ix)
		} else {
			cfg.Zone = zone(k, s, ttl)
		}
	}
	return cfg, ix
}

// transfers checks the zone-transfer keys: secondaries (addresses or
// prefixes allowed XoT), notify (targets; by default each secondary that
// is one address, port 53) and transfer_ca (mutual TLS).
func transfers(k *checker, s *schema.ADoTServer, cfg *adot.ServerConfig) {
	if len(s.Secondaries) > maxADoTSecondary {
		k.add("adot.server.secondaries", "%d entries, at most %d", len(s.Secondaries), maxADoTSecondary)
	}
	var hosts []netip.Addr
	for i, v := range s.Secondaries {
		key := fmt.Sprintf("adot.server.secondaries[%d]", i)
		if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
			a = a.Unmap()
			cfg.TransferFrom = append(cfg.TransferFrom, netip.PrefixFrom(a, a.BitLen()))
			hosts = append(hosts, a)
		} else if p, ok := k.prefix(key, v); ok {
			cfg.TransferFrom = append(cfg.TransferFrom, p)
		}
	}
	if k.set("adot.server.notify") {
		if len(s.Secondaries) == 0 && len(s.Notify) > 0 {
			k.add("adot.server.notify", "given, but adot.server.secondaries is empty: the targets could not transfer the zone")
		}
		if len(s.Notify) > maxADoTSecondary {
			k.add("adot.server.notify", "%d entries, at most %d", len(s.Notify), maxADoTSecondary)
		}
		for i, v := range s.Notify {
			key := fmt.Sprintf("adot.server.notify[%d]", i)
			ap, err := netip.ParseAddrPort(v)
			if a, aerr := netip.ParseAddr(v); aerr == nil && a.Zone() == "" {
				ap, err = netip.AddrPortFrom(a, 53), nil
			}
			if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
				k.add(key, "%q is not an IP address or address:port (NOTIFY goes over UDP, port 53 by default)", v)
				continue
			}
			cfg.Notify = append(cfg.Notify, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	} else {
		for _, a := range hosts {
			cfg.Notify = append(cfg.Notify, netip.AddrPortFrom(a, 53))
		}
	}
	if k.set("adot.server.transfer_ca") {
		if len(s.Secondaries) == 0 {
			k.add("adot.server.transfer_ca", "given, but adot.server.secondaries is empty (no transfers at all)")
		}
		cfg.TransferCAs = k.caPool("adot.server.transfer_ca", s.TransferCA)
	}
}

// index checks the index_* keys: nil without index_modulus (the zone is
// then records or zone_file alone).
func index(k *checker, s *schema.ADoTServer, ttl uint32, push bool) *ADoTIndex {
	if !k.set("adot.server.index_modulus") {
		for _, key := range []string{"index_replicas", "index_owners"} {
			if k.set("adot.server." + key) {
				k.add("adot.server."+key, "needs adot.server.index_modulus (the number of <index> names)")
			}
		}
		return nil
	}
	ix := &ADoTIndex{Modulus: s.IndexModulus, TTL: ttl, Static: s.Records}
	between(k, "adot.server.index_modulus", s.IndexModulus, 1, pull.MaxZoneIndexes)
	ix.Replicas = orDefault(k.set("adot.server.index_replicas"), s.IndexReplicas, adotReplicas)
	count(k, "adot.server.index_replicas", ix.Replicas, 1, maxADoTReplicas)
	if s.ZoneFile != "" {
		k.add("adot.server.zone_file", "not with index_modulus: the zone is made from membership (give the other records as adot.server.records)")
	}
	if k.set("adot.server.index_owners") {
		ix.Owners = []netip.Addr{}
		if len(s.IndexOwners) > pull.MaxZoneIndexes {
			k.add("adot.server.index_owners", "%d entries, at most %d", len(s.IndexOwners), pull.MaxZoneIndexes)
		}
		for i, v := range s.IndexOwners {
			if a, ok := k.addr(fmt.Sprintf("adot.server.index_owners[%d]", i), v); ok {
				ix.Owners = append(ix.Owners, a.Unmap())
			}
		}
	} else if !push {
		k.add("adot.server.index_owners", "missing: with index_modulus the indexes are owned by index_owners, or by the push group's members ([lisp.decent] mode = \"push\")")
	}
	return ix
}

// indexZone builds the zone of the configured owners (or of no members
// yet, for a push node: its group is not known before it runs).
func indexZone(k *checker, s *schema.ADoTServer, ix *ADoTIndex) *adot.Zone {
	if s.Zone == "" {
		k.add("adot.server.zone", "missing (the zone's origin, e.g. \"map-server.example.test\")")
		return nil
	}
	if ix.Modulus < 1 || ix.Modulus > pull.MaxZoneIndexes || ix.Replicas < 1 || !recordsOK(k, s, ix.TTL) {
		return nil
	}
	z, err := pull.IndexZone(s.Zone, ix.TTL, ix.Modulus, ix.Replicas, ix.Owners, ix.Static)
	if err != nil {
		k.add("adot.server.records", "%v", err)
	}
	return z
}

// zone builds the zone from zone_file or records, their TTL ttl; each bad
// record is reported at its owner's key.
func zone(k *checker, s *schema.ADoTServer, ttl uint32) *adot.Zone {
	if s.Zone == "" {
		k.add("adot.server.zone", "missing (the zone's origin, e.g. \"map-server.example.test\")")
		return nil
	}
	switch {
	case s.ZoneFile != "" && len(s.Records) > 0:
		k.add("adot.server.zone_file", "give zone_file or adot.server.records, not both")
	case s.ZoneFile != "":
		text, err := os.ReadFile(s.ZoneFile)
		if err != nil {
			k.add("adot.server.zone_file", "%v", err)
			return nil
		}
		z, err := adot.ParseZone(s.Zone, string(text))
		if err != nil {
			k.add("adot.server.zone_file", "%v", err)
		}
		return z
	case len(s.Records) == 0:
		k.add("adot.server.records", "missing: the zone's records (or a zone_file)")
	default:
		if !recordsOK(k, s, ttl) {
			return nil
		}
		z, err := adot.ZoneFromMap(s.Zone, ttl, s.Records)
		if err != nil {
			k.add("adot.server.records", "%v", err)
		}
		return z
	}
	return nil
}

// recordsOK checks adot.server.records one owner at a time, so that a
// problem names its owner.
func recordsOK(k *checker, s *schema.ADoTServer, ttl uint32) bool {
	owners := make([]string, 0, len(s.Records))
	for o := range s.Records {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	ok := true
	for _, o := range owners {
		if _, err := adot.ZoneFromMap(s.Zone, ttl, map[string][]string{o: s.Records[o]}); err != nil {
			k.add(fmt.Sprintf("adot.server.records.%q", o), "%v", err)
			ok = false
		}
	}
	return ok
}

// caPool reads PEM trust anchors.
func (k *checker) caPool(key, path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		k.add(key, "%v", err)
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		k.add(key, "%s holds no PEM certificate", path)
		return nil
	}
	return pool
}
