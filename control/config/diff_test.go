package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	base := `
[psav]
asn = 65001
[[psav.member]]
asn = 65001
prefixes = ["198.51.100.0/24"]
[engine]
forwarding = "routed"
[[port]]
name = "inside"
interface = "lo"
role = "ingress"
[[port]]
name = "outside"
interface = "lo"
role = "egress"
[[route]]
prefix = "0.0.0.0/0"
port = "outside"
next_hop_mac = "02:00:00:00:00:01"
[log]
level = "info"
`
	next := base + `
[[route]]
prefix = "203.0.113.0/24"
port = "inside"
next_hop_mac = "02:00:00:00:00:02"
`
	next = strings.Replace(next, `level = "info"`, `level = "debug"`, 1)
	next = strings.Replace(next, `prefixes = ["198.51.100.0/24"]`, `prefixes = ["198.51.100.0/24", "192.0.2.0/24"]`, 1)
	a, err := Parse("a.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.toml", []byte(next))
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{"log.level", Changed}, {"psav.member[0].prefixes", Changed}, {"route[1]", Added}}
	if got := Diff(a, b); !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if got := Diff(a, a); len(got) != 0 {
		t.Fatalf("Diff of a file with itself: %v", got)
	}
	if got := Diff(b, a); len(got) != 3 || got[2] != (Change{"route[1]", Removed}) {
		t.Fatalf("reverse Diff = %v", got)
	}
}
