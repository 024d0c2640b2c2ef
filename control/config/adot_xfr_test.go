package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// adotXfr is a DoT server whose zone follows configured owners and is
// transferred to secondaries.
func adotXfr(cert, key string) string {
	return `
[adot.server]
listen = "127.0.0.1:8853"
cert = "` + cert + `"
key = "` + key + `"
zone = "map-server.example.test"
secondaries = ["127.0.0.1", "192.0.2.0/24"]
index_modulus = 4
index_replicas = 2
index_owners = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]

[adot.server.records]
"@" = ["NS ns.example.test."]
`
}

func TestADoTTransfersAndIndex(t *testing.T) {
	cert, key, _ := adotFiles(t)
	c, err := Parse("x.toml", []byte(good+adotXfr(cert, key)))
	if err != nil {
		t.Fatal(err)
	}
	sc, ix := c.ADoT.Server, c.ADoT.Index
	if len(sc.TransferFrom) != 2 || sc.TransferFrom[0] != netip.MustParsePrefix("127.0.0.1/32") || sc.TransferFrom[1] != netip.MustParsePrefix("192.0.2.0/24") {
		t.Fatalf("transfer_from %v", sc.TransferFrom)
	}
	// notify defaults to the single-address secondaries, port 53.
	if len(sc.Notify) != 1 || sc.Notify[0] != netip.MustParseAddrPort("127.0.0.1:53") {
		t.Fatalf("notify %v", sc.Notify)
	}
	if ix == nil || ix.Modulus != 4 || ix.Replicas != 2 || len(ix.Owners) != 3 || ix.TTL != 30 {
		t.Fatalf("index %+v", ix)
	}
	// SOA, NS, and 4 indexes × 2 owners.
	if sc.Zone.Len() != 10 {
		t.Fatalf("zone of the configured owners: %d records", sc.Zone.Len())
	}

	text := strings.Replace(adotXfr(cert, key), `secondaries = ["127.0.0.1", "192.0.2.0/24"]`,
		"secondaries = [\"::1\"]\nnotify = [\"127.0.0.1:5353\", \"::1\"]\ntransfer_ca = \""+cert+"\"", 1)
	c, err = Parse("x.toml", []byte(good+text))
	if err != nil {
		t.Fatal(err)
	}
	if sc := c.ADoT.Server; len(sc.Notify) != 2 || sc.Notify[0].String() != "127.0.0.1:5353" || sc.Notify[1].String() != "[::1]:53" || sc.TransferCAs == nil {
		t.Fatalf("notify %v, transfer CAs %v", sc.Notify, sc.TransferCAs)
	}

	// A push member may leave index_owners out: its group owns the indexes.
	push := strings.Replace(adotXfr(cert, key), `index_owners = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]`, "", 1)
	_, err = Parse("x.toml", []byte(good+push))
	if !hasProblem(err, "adot.server.index_owners", "push") {
		t.Fatalf("no owners, not a push member: %v", err)
	}
}

func hasProblem(err error, key, reason string) bool {
	var ps Problems
	if !errors.As(err, &ps) {
		return false
	}
	for _, p := range ps {
		if strings.Contains(p.Key, key) && strings.Contains(p.String(), reason) {
			return true
		}
	}
	return false
}

// Each bad transfer or index value is refused with its key and a reason.
func TestADoTTransfersAndIndexProblems(t *testing.T) {
	cert, key, zone := adotFiles(t)
	base := adotXfr(cert, key)
	for _, c := range []struct{ name, from, to, key, reason string }{
		{"bad secondary", `"192.0.2.0/24"`, `"192.0.2.1/24"`, "adot.server.secondaries[1]", "host bits"},
		{"secondary not an address", `"127.0.0.1", `, `"ns.example.test", `, "adot.server.secondaries[0]", "not a prefix"},
		{"bad notify", `index_modulus = 4`, "index_modulus = 4\nnotify = [\"127.0.0.1:0\"]", "adot.server.notify[0]", "not an IP address"},
		{"notify a name", `index_modulus = 4`, "index_modulus = 4\nnotify = [\"ns.example.test:53\"]", "adot.server.notify[0]", "not an IP address"},
		{"notify without secondaries", `secondaries = ["127.0.0.1", "192.0.2.0/24"]`, `notify = ["127.0.0.1"]`, "adot.server.notify", "secondaries is empty"},
		{"transfer_ca without secondaries", `secondaries = ["127.0.0.1", "192.0.2.0/24"]`, `transfer_ca = "` + cert + `"`, "adot.server.transfer_ca", "secondaries is empty"},
		{"transfer_ca not PEM", `index_modulus = 4`, "index_modulus = 4\ntransfer_ca = \"" + zone + "\"", "adot.server.transfer_ca", "no PEM"},
		{"modulus zero", `index_modulus = 4`, `index_modulus = 0`, "adot.server.index_modulus", "1 … 65536"},
		{"modulus too big", `index_modulus = 4`, `index_modulus = 70000`, "adot.server.index_modulus", "1 … 65536"},
		{"replicas", `index_replicas = 2`, `index_replicas = 0`, "adot.server.index_replicas", "1 … 64"},
		{"bad owner", `"10.0.0.12"`, `"10.0.0.300"`, "adot.server.index_owners[1]", "not an address"},
		{"owners without modulus", `index_modulus = 4`, ``, "adot.server.index_owners", "needs adot.server.index_modulus"},
		{"zone file with index", `index_modulus = 4`, "index_modulus = 4\nzone_file = \"" + zone + "\"", "adot.server.zone_file", "not with index_modulus"},
		{"static index name", `"@" = ["NS ns.example.test."]`, "\"@\" = [\"NS ns.example.test.\"]\n\"2\" = [\"A 192.0.2.1\"]", "adot.server.records", "also a static record"},
		{"bad static record", `"@" = ["NS ns.example.test."]`, `"@" = ["NS ns.example.test.", "A 192.0.2.999"]`, `adot.server.records."@"`, "192.0.2.999"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("edit %q does not apply", c.from)
			}
			_, err := Parse("broken.toml", []byte(good+strings.Replace(base, c.from, c.to, 1)))
			if !hasProblem(err, c.key, c.reason) {
				t.Fatalf("no problem with key %q and reason %q in:\n%v", c.key, c.reason, err)
			}
		})
	}
}
