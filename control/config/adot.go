package config

import (
	"cmp"
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
)

// ADoT is [adot]: the DNS-over-TLS client of the pull-based mapping system
// (DESIGN §3.5) and, in [adot.server], the optional authoritative DoT
// server role. Durations are Go durations ("3s"); empty keys take the
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

func (a *ADoT) defaults() {
	if a.MinTLS == "" {
		a.MinTLS = "1.3"
	}
	if s := a.Server; s != nil {
		if s.MinTLS == "" {
			s.MinTLS = "1.3"
		}
		if s.TTL == 0 {
			s.TTL = 30
		}
	}
}

// duration parses an optional positive duration.
func (k *checker) duration(key, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		k.add(key, "%q is not a positive duration (like 3s)", s)
		return 0
	}
	return d
}

func (k *checker) notNegative(key string, v int) {
	if v < 0 {
		k.add(key, "must not be negative, is %d", v)
	}
}

func (c *Config) checkADoT(k *checker, a *ADoT) {
	if len(a.Servers) > 0 {
		if _, err := a.ClientConfig(c.File); err != nil {
			k.ps = append(k.ps, err.(Problems)...)
		}
	} else {
		if a.Server == nil {
			k.add("adot.servers", "missing: [adot] needs the DoT servers of the mapping zone, [adot.server], or both")
		}
		// Client keys without servers would silently do nothing.
		for key, set := range map[string]bool{"server_name": a.ServerName != "", "ca": a.CA != "", "spki_pins": len(a.SPKIPins) > 0,
			"fallback": a.Fallback != "", "fallback_servers": len(a.FallbackServers) > 0, "dial_timeout": a.DialTimeout != "",
			"handshake_timeout": a.HandshakeTimeout != "", "query_timeout": a.QueryTimeout != "", "idle_timeout": a.IdleTimeout != "",
			"min_ttl": a.MinTTL != "", "max_ttl": a.MaxTTL != "", "max_conns_per_server": a.MaxConnsPerServer != 0, "attempts": a.Attempts != 0} {
			if set {
				k.add("adot."+key, "a client setting, but adot.servers is empty (the client is off)")
			}
		}
	}
	if s := a.Server; s != nil {
		if _, err := s.ServerConfig(c.File); err != nil {
			k.ps = append(k.ps, err.(Problems)...)
		}
	}
}

// ClientConfig returns the adot client configuration of [adot], loading the
// CA file; file is the configuration file's name, for problems. The error
// is Problems.
func (a *ADoT) ClientConfig(file string) (adot.Config, error) {
	k := &checker{file: file}
	cfg := adot.Config{Servers: a.Servers, ServerName: a.ServerName, SPKIPins: a.SPKIPins,
		FallbackServers: a.FallbackServers, MaxConnsPerServer: a.MaxConnsPerServer, Attempts: a.Attempts}
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
	k.oneOf("adot.min_tls", a.MinTLS, "1.3", "1.2")
	cfg.AllowTLS12 = a.MinTLS == "1.2"
	if a.Fallback != "" {
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
	if a.CA != "" {
		cfg.RootCAs = k.caPool("adot.ca", a.CA)
	}
	cfg.DialTimeout = k.duration("adot.dial_timeout", a.DialTimeout)
	cfg.HandshakeTimeout = k.duration("adot.handshake_timeout", a.HandshakeTimeout)
	cfg.QueryTimeout = k.duration("adot.query_timeout", a.QueryTimeout)
	cfg.IdleTimeout = k.duration("adot.idle_timeout", a.IdleTimeout)
	cfg.MinTTL = k.duration("adot.min_ttl", a.MinTTL)
	cfg.MaxTTL = k.duration("adot.max_ttl", a.MaxTTL)
	if lo, hi := cmp.Or(cfg.MinTTL, adot.DefaultMinTTL), cmp.Or(cfg.MaxTTL, adot.DefaultMaxTTL); lo > hi {
		k.add("adot.max_ttl", "the ceiling %v is below the floor min_ttl %v", hi, lo)
	}
	k.notNegative("adot.max_conns_per_server", a.MaxConnsPerServer)
	k.notNegative("adot.attempts", a.Attempts)
	if len(k.ps) > 0 {
		return cfg, k.ps
	}
	if _, err := adot.NewClient(cfg); err != nil { // anything the checks above missed
		k.add("adot", "%v", err)
		return cfg, k.ps
	}
	return cfg, nil
}

// ServerConfig returns the adot server configuration of [adot.server],
// loading the certificate and building the zone; file is the configuration
// file's name, relative zone_file paths are taken as given. The error is
// Problems.
func (s *ADoTServer) ServerConfig(file string) (adot.ServerConfig, error) {
	k := &checker{file: file}
	cfg := adot.ServerConfig{Addr: s.Listen, MaxConns: s.MaxConns, MaxConnsPerIP: s.MaxConnsPerClient,
		MaxQueriesPerConn: s.MaxQueriesPerConn}
	k.hostPort("adot.server.listen", s.Listen)
	k.oneOf("adot.server.min_tls", s.MinTLS, "1.3", "1.2")
	cfg.AllowTLS12 = s.MinTLS == "1.2"
	switch {
	case s.Cert == "":
		k.add("adot.server.cert", "missing")
	case s.Key == "":
		k.add("adot.server.key", "missing")
	default:
		cert, err := tls.LoadX509KeyPair(s.Cert, s.Key)
		if err != nil {
			k.add("adot.server.cert", "%v", err)
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	k.notNegative("adot.server.max_conns", s.MaxConns)
	k.notNegative("adot.server.max_conns_per_client", s.MaxConnsPerClient)
	k.notNegative("adot.server.max_queries_per_conn", s.MaxQueriesPerConn)
	if s.MaxConns > 0 && s.MaxConnsPerClient > s.MaxConns {
		k.add("adot.server.max_conns_per_client", "%d is more than max_conns (%d)", s.MaxConnsPerClient, s.MaxConns)
	}
	cfg.IdleTimeout = k.duration("adot.server.idle_timeout", s.IdleTimeout)
	cfg.HandshakeTimeout = k.duration("adot.server.handshake_timeout", s.HandshakeTimeout)
	cfg.TicketRotation = k.duration("adot.server.ticket_rotation", s.TicketRotation)
	if cfg.TicketRotation > 0 && cfg.TicketRotation < time.Minute {
		k.add("adot.server.ticket_rotation", "%v is below 1m: clients would rarely resume", cfg.TicketRotation)
	}
	cfg.Zone = s.zone(k)
	return cfg, k.problems()
}

// zone builds the zone from zone_file or records; each bad record is
// reported at its owner's key.
func (s *ADoTServer) zone(k *checker) *adot.Zone {
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
		owners := make([]string, 0, len(s.Records))
		for o := range s.Records {
			owners = append(owners, o)
		}
		sort.Strings(owners)
		bad := false
		for _, o := range owners {
			// One owner at a time first, so that the problem names it.
			if _, err := adot.ZoneFromMap(s.Zone, s.TTL, map[string][]string{o: s.Records[o]}); err != nil {
				k.add(fmt.Sprintf("adot.server.records.%q", o), "%v", err)
				bad = true
			}
		}
		if bad {
			return nil
		}
		z, err := adot.ZoneFromMap(s.Zone, s.TTL, s.Records)
		if err != nil {
			k.add("adot.server.records", "%v", err)
		}
		return z
	}
	return nil
}

func (k *checker) problems() error {
	if len(k.ps) == 0 {
		return nil
	}
	return k.ps
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
