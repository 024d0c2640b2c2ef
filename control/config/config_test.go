package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/psavd/psavd/engine"
)

const good = `
[psav]
asn = 65001
[[psav.member]]
asn = 65001
prefixes = ["198.51.100.0/24", "2001:db8:1::/48"]
[[psav.member]]
asn = 65002
prefixes = ["203.0.113.0/24"]
[[psav.static_peer]]
asn = 65002
start_epoch = 1
s0 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
[[port]]
name = "inside"
interface = "in"
role = "ingress"
peer = "outside"
[[port]]
name = "outside"
interface = "out"
role = "egress"
peer = "inside"
`

func TestExampleFileIsSound(t *testing.T) {
	if _, err := Load("../../engine.toml"); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.PSAV.EpochSeconds != 60 || c.Engine.Batch != 64 || c.Engine.Forwarding != engine.CrossConnect {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// Each broken file is refused with a problem naming the file, the key and
// the reason.
func TestProblemsNameFileKeyReason(t *testing.T) {
	for _, c := range []struct{ name, edit, key, reason string }{
		{"unknown key", `role = "ingress"` + "\nrol = 1", "port[0].rol", "unknown key"},
		{"unknown section key", "[psav]\nasn = 65001\nepoch = 3", "psav.epoch", "unknown key"},
		{"bad role", `role = "egress"` + "→" + `role = "egres"`, "port[1].role", "not one of"},
		{"missing role", `role = "egress"` + "→", "port[1].role", "missing"},
		{"bad prefix", `"203.0.113.0/24"` + "→" + `"203.0.113.0/33"`, "psav.member[1].prefixes[0]", "not a prefix"},
		{"host bits", `"203.0.113.0/24"` + "→" + `"203.0.113.1/24"`, "psav.member[1].prefixes[0]", "host bits"},
		{"duplicate asn", "asn = 65002\nprefixes" + "→" + "asn = 65001\nprefixes", "psav.member[1].asn", "already"},
		{"bad s0", `s0 = "00`, "psav.static_peer[0].s0", "64 hex digits"},
		{"peer not mutual", `peer = "inside"` + "→" + `peer = "nowhere"`, "port[1].peer", "no port is named"},
		{"wrong type", "asn = 65001\n[[psav.member]]" + "→" + "asn = \"x\"\n[[psav.member]]", "", "incompatible"},
		{"syntax", "[psav]" + "→" + "[psav", "line", "expected"},
		{"missing certificate", "[[port]]" + "→" + "[acs]\nlisten = \"0.0.0.0:7443\"\ncert = \"/nonexistent/acs.pem\"\nkey = \"k\"\nca = \"c\"\n[[port]]", "acs.cert", "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := good
			if from, to, ok := strings.Cut(c.edit, "→"); ok {
				text = strings.Replace(good, from, to, 1)
			} else if strings.HasPrefix(c.edit, "[psav]") {
				text = strings.Replace(good, "[psav]\nasn = 65001", c.edit, 1)
			} else if strings.HasPrefix(c.edit, "s0") {
				text = strings.Replace(good, `s0 = "00`, `s0 = "zz`, 1)
			} else {
				text = strings.Replace(good, `role = "ingress"`, c.edit, 1)
			}
			if text == good {
				t.Fatal("edit did not apply")
			}
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

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/engine.toml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/engine.toml") {
		t.Fatalf("got %v", err)
	}
}

func TestDropReasonNamesMatchEngine(t *testing.T) {
	var names []string
	for _, r := range engine.Reasons() {
		names = append(names, r.String())
	}
	if strings.Join(names, ",") != strings.Join(DropReasonNames, ",") {
		t.Fatalf("config %v, engine %v", DropReasonNames, names)
	}
}

func TestCaptureSection(t *testing.T) {
	c, err := Parse("c.toml", []byte(good+"\n[capture]\ndir = \"/tmp/x\"\nreasons = [\"no-tag\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Capture.Sampling.Every != 100 || c.Capture.Sampling.Snap != 256 || c.Capture.Keep != 5 || c.Capture.Sampling.PerSecond != 10 ||
		c.Capture.MaxBytes != 10<<20 || !c.Capture.Sampling.Reasons[engine.DropNoTag] {
		t.Fatalf("defaults %+v", c.Capture)
	}
	_, err = Parse("c.toml", []byte(good+"\n[capture]\nreasons = [\"no-tagg\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "capture.reasons[0]") || !strings.Contains(err.Error(), "capture.dir") {
		t.Fatalf("got %v", err)
	}
}

// A node that runs no PSAV role (a Map-Server, a DoT server) needs no
// [psav]; one with ports, an ACS or an ABR does.
func TestPSAVOptionalWithoutPSAVRoles(t *testing.T) {
	ms := `
[lisp.map_server]
listen = "127.0.0.1:4342"
[[lisp.site]]
name = "as65010"
key = "secret"
key_id = 1
eid_prefixes = ["10.10.0.0/16"]
`
	c, err := Parse("ms.toml", []byte(ms))
	if err != nil {
		t.Fatalf("a Map-Server-only node without [psav] refused: %v", err)
	}
	if c.PSAV.ASN != 0 || c.LISP == nil || len(c.LISP.Sites) != 1 {
		t.Fatalf("typed: %+v %+v", c.PSAV, c.LISP)
	}
	ports := `
[[port]]
name = "a"
interface = "a"
role = "ingress"
peer = "b"
[[port]]
name = "b"
interface = "b"
role = "egress"
peer = "a"
`
	_, err = Parse("abr.toml", []byte(ports))
	if err == nil || !strings.Contains(err.Error(), "psav.asn: missing") {
		t.Fatalf("a data plane without psav.asn: %v", err)
	}
}
