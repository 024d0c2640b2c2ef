package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testpki"
)

// adotFiles writes a server certificate for ns.example.test (from the
// test PKI), its key and a zone file.
func adotFiles(t *testing.T) (cert, key, zone string) {
	t.Helper()
	dir := t.TempDir()
	p, err := testpki.NewServerPKI(dir, "ns.example.test")
	if err != nil {
		t.Fatal(err)
	}
	zone = filepath.Join(dir, "zone.txt")
	if err := os.WriteFile(zone, []byte("@ 30 IN SOA ns.example.test. h.example.test. 1 60 60 600 30\n@ 30 IN NS ns.example.test.\n0 30 IN A 192.0.2.10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p.CertFile, p.KeyFile, zone
}

// adotGood is a client and a server section that pass.
func adotGood(cert, key string) string {
	return `
[adot]
servers = ["127.0.0.1:8853", "ns.example.test"]
server_name = "ns.example.test"
ca = "` + cert + `"
spki_pins = ["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
min_tls = "1.2"
dial_timeout = "2s"
handshake_timeout = "2s"
query_timeout = "1s"
idle_timeout = "15s"
min_ttl = "1s"
max_ttl = "10m"
attempts = 2
max_conns_per_server = 2

[adot.server]
listen = "127.0.0.1:8853"
cert = "` + cert + `"
key = "` + key + `"
zone = "map-server.example.test"
ttl = 60
max_conns = 100
max_conns_per_client = 10
max_queries_per_conn = 1000
max_handshakes_per_second = 50
idle_timeout = "5s"
handshake_timeout = "2s"
ticket_rotation = "30m"

[adot.server.records]
"@" = ["NS ns.example.test."]
"0" = ["A 192.0.2.10", "AAAA 2001:db8::10"]
"1" = ["30 A 192.0.2.11"]
`
}

func TestADoTSection(t *testing.T) {
	cert, key, zone := adotFiles(t)
	c, err := Parse("a.toml", []byte(good+adotGood(cert, key)))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.ADoT.Client
	if !cc.AllowTLS12 || cc.RootCAs == nil || cc.MinTTL != time.Second || cc.MaxTTL != 10*time.Minute || cc.Attempts != 2 {
		t.Fatalf("client config %+v", cc)
	}
	sc := c.ADoT.Server
	if sc.AllowTLS12 || sc.MaxConnsPerIP != 10 || sc.TicketRotation != 30*time.Minute || len(sc.Certificates) != 1 || sc.Zone.Len() != 5 {
		t.Fatalf("server config %+v (zone %d records: SOA, NS, A, AAAA, A)", sc, sc.Zone.Len())
	}

	// A DoT-server-only node needs no ports; a zone file instead of records.
	only := "[psav]\nasn = 65001\n[adot.server]\nlisten = \"127.0.0.1:0\"\ncert = \"" + cert + "\"\nkey = \"" + key +
		"\"\nzone = \"map-server.example.test\"\nzone_file = \"" + zone + "\"\n"
	c, err = Parse("only.toml", []byte(only))
	if err != nil {
		t.Fatal(err)
	}
	if c.ADoT.Client != nil || c.ADoT.Server.AllowTLS12 || c.ADoT.Server.MaxConns != 1024 || c.ADoT.Server.TicketRotation != time.Hour {
		t.Fatalf("defaults %+v", c.ADoT)
	}
	if sc := c.ADoT.Server; sc.Zone.Len() != 3 {
		t.Fatalf("zone file: %d records", sc.Zone.Len())
	}
}

// Each bad [adot] value is refused with the file, the key and the reason.
func TestADoTProblems(t *testing.T) {
	cert, key, zone := adotFiles(t)
	base := adotGood(cert, key)
	for _, c := range []struct{ name, from, to, key, reason string }{
		{"unknown key", `attempts = 2`, "attempts = 2\nretries = 3", "adot.retries", "unknown key"},
		{"unknown server key", `ttl = 60`, "ttl = 60\nport = 853", "adot.server.port", "unknown key"},
		{"min_tls", `min_tls = "1.2"`, `min_tls = "1.1"`, "adot.min_tls", "not one of"},
		{"server min_tls", "ttl = 60", "ttl = 60\nmin_tls = \"1.0\"", "adot.server.min_tls", "not one of"},
		{"fallback", `attempts = 2`, "attempts = 2\nfallback = \"udp\"", "adot.fallback", "not one of"},
		{"fallback servers without fallback", `attempts = 2`, "attempts = 2\nfallback_servers = [\"127.0.0.1:53\"]", "adot.fallback_servers", "never be used"},
		{"bad duration", `query_timeout = "1s"`, `query_timeout = "soon"`, "adot.query_timeout", "not a positive duration"},
		{"negative duration", `dial_timeout = "2s"`, `dial_timeout = "-2s"`, "adot.dial_timeout", "not a positive duration"},
		{"ceiling below floor", `max_ttl = "10m"`, `max_ttl = "500ms"`, "adot.max_ttl", "below the floor"},
		{"ceiling below default floor", "min_ttl = \"1s\"\nmax_ttl = \"10m\"", `max_ttl = "2s"`, "adot.max_ttl", "below the floor"},
		{"bad pin", `"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="`, `"abcd"`, "adot.spki_pins[0]", "SHA-256"},
		{"ca missing", `ca = "` + cert + `"`, `ca = "/nonexistent/ca.pem"`, "adot.ca", "no such file"},
		{"ca not PEM", `ca = "` + cert + `"`, `ca = "` + zone + `"`, "adot.ca", "no PEM certificate"},
		{"IP server without name", `server_name = "ns.example.test"`, ``, "adot.servers[0]", "server_name"},
		{"bad server", `"127.0.0.1:8853", "ns`, `"127.0.0.1:8853:1", "ns`, "adot.servers[0]", "not host:port"},
		{"negative attempts", `attempts = 2`, `attempts = -1`, "adot.attempts", "negative"},
		{"no servers, client keys", `servers = ["127.0.0.1:8853", "ns.example.test"]`, ``, "adot.server_name", "client is off"},
		{"listen", `listen = "127.0.0.1:8853"`, `listen = "8853"`, "adot.server.listen", "not host:port"},
		{"cert missing", `cert = "` + cert + `"` + "\nkey", `cert = "/nonexistent/dot.pem"` + "\nkey", "adot.server.cert", "no such file"},
		{"key missing", `key = "` + key + `"`, ``, "adot.server.key", "missing"},
		{"key not matching", `key = "` + key + `"`, `key = "` + cert + `"`, "adot.server.cert", "key"},
		{"zone missing", `zone = "map-server.example.test"`, ``, "adot.server.zone", "missing"},
		{"zone bad origin", `zone = "map-server.example.test"`, `zone = "a..b"`, "adot.server.records", "origin"},
		{"bad record", `"A 192.0.2.10", "AAAA`, `"A 192.0.2.999", "AAAA`, `adot.server.records."0"`, "192.0.2.999"},
		{"record type not served", `"1" = ["30 A 192.0.2.11"]`, `"1" = ["HINFO a b"]`, `adot.server.records."1"`, "HINFO"},
		{"CNAME and other data", `"1" = ["30 A 192.0.2.11"]`, `"1" = ["A 192.0.2.11", "CNAME 0"]`, `adot.server.records."1"`, "CNAME"},
		{"zone file and records", `ttl = 60`, "ttl = 60\nzone_file = \"" + zone + "\"", "adot.server.zone_file", "not both"},
		{"no records", "[adot.server.records]", "[adot.server.nothing]", "adot.server.records", "missing"},
		{"negative limit", `max_conns_per_client = 10`, `max_conns_per_client = -1`, "adot.server.max_conns_per_client", "negative"},
		{"handshake rate", `max_handshakes_per_second = 50`, `max_handshakes_per_second = -5`, "adot.server.max_handshakes_per_second", "negative"},
		{"handshake rate zero", `max_handshakes_per_second = 50`, `max_handshakes_per_second = 0`, "adot.server.max_handshakes_per_second", ""},
		{"per client above total", `max_conns_per_client = 10`, `max_conns_per_client = 200`, "adot.server.max_conns_per_client", "more than max_conns"},
		{"ticket rotation too short", `ticket_rotation = "30m"`, `ticket_rotation = "1s"`, "adot.server.ticket_rotation", "below 1m"},
		{"idle", `idle_timeout = "5s"`, `idle_timeout = "0s"`, "adot.server.idle_timeout", "not a positive duration"},
		{"ttl type", `ttl = 60`, `ttl = "60s"`, "", "incompatible"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("edit %q does not apply", c.from)
			}
			text := good + strings.Replace(base, c.from, c.to, 1)
			_, err := Parse("broken.toml", []byte(text))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			for _, p := range ps {
				if p.File == "broken.toml" && strings.Contains(p.Key, c.key) && strings.Contains(p.String(), c.reason) {
					return
				}
			}
			t.Fatalf("no problem with key %q and reason %q in:\n%v", c.key, c.reason, err)
		})
	}
}

// [adot] with neither servers nor a server role, and a node with neither
// ports nor a role that needs none, are refused.
func TestADoTNothingToDo(t *testing.T) {
	_, err := Parse("n.toml", []byte(good+"\n[adot]\nmin_tls = \"1.3\"\n"))
	if err == nil || !strings.Contains(err.Error(), "n.toml: adot.servers: missing") {
		t.Fatalf("got %v", err)
	}
	_, err = Parse("n.toml", []byte("[psav]\nasn = 65001\n[adot]\nservers = [\"ns.example.test\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "n.toml: port: no ports") {
		t.Fatalf("a client-only node without ports: got %v", err)
	}
}
