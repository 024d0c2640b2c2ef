package config

import (
	"strings"
	"testing"

	"github.com/psavd/psavd/control/config/schema"
)

// FuzzADoTServerZone: the zone of [adot.server] as the configuration gives
// it (origin, ttl and an owner → records table, after TOML decoding) must
// never panic the checks; it either yields a zone or problems at keys of
// adot.server, never both and never neither.
func FuzzADoTServerZone(f *testing.F) {
	f.Add("map-server.example.test", uint32(30), "0", "A 192.0.2.10", "@", "NS ns.example.test.")
	f.Add("map-server.example.test.", uint32(0), "x.example.org.", "60 AAAA 2001:db8::1", "x", "CNAME y")
	f.Add("example.test", uint32(1<<31), "@", "SOA ns h 1 2 3 4 5", "@", "SOA ns h 2 2 3 4 5")
	f.Add("a..b", uint32(5), "$INCLUDE", "/etc/passwd", "0", "A 192.0.2.999")
	f.Add(".", uint32(60), "sub", "NS ns.sub", "ns.sub", "A 192.0.2.1")
	f.Add("example.test", uint32(60), "a", "TXT \"x\ny\"", "b", "MX 10 a")
	f.Fuzz(func(t *testing.T, origin string, ttl uint32, o1, v1, o2, v2 string) {
		if len(origin)+len(o1)+len(v1)+len(o2)+len(v2) > 2048 {
			return
		}
		s := &schema.ADoTServer{Zone: origin, TTL: ttl, Records: map[string][]string{o1: {v1}}}
		s.Records[o2] = append(s.Records[o2], v2)
		k := &checker{file: "fuzz.toml"}
		z := zone(k, s, s.TTL)
		if (z == nil) == (len(k.ps) == 0) {
			t.Fatalf("zone %v with problems %v", z != nil, k.ps)
		}
		for _, p := range k.ps {
			if p.File != "fuzz.toml" || !strings.HasPrefix(p.Key, "adot.server.") || p.Reason == "" {
				t.Fatalf("problem %+v", p)
			}
		}
		if z != nil && (z.Len() < 1 || z.Origin() == "") {
			t.Fatalf("a zone without its SOA: %d records, origin %q", z.Len(), z.Origin())
		}
	})
}
