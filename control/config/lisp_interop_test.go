package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/psavd/psavd/control/lisp/mapserver"
)

// interopLISP adds a Map-Server with one site to goodLISP.
const interopLISP = goodLISP + `
[lisp.map_server]
listen = "10.0.0.9:4352"
[[lisp.site]]
name = "oor"
key = "k"
key_id = 1
eid_prefixes = ["10.9.0.0/16"]
`

// TestLISPInteropKeys: auth_length, shared_key_id, as_number_lcaf and the
// replay policies (issue 16), their defaults and their refusals.
func TestLISPInteropKeys(t *testing.T) {
	c, err := Parse("x.toml", []byte(interopLISP))
	if err != nil {
		t.Fatal(err)
	}
	l := c.LISP
	if l.RegisterTo[0].Auth.AuthLen != 32 || l.RegisterTo[0].NoASN || l.MapServer.Replay != mapserver.ReplayRecent ||
		l.Sites[0].AuthLen != 0 || l.Sites[0].Replay != nil {
		t.Fatalf("defaults: %+v %+v %+v", l.RegisterTo[0], l.MapServer, l.Sites[0])
	}
	set := strings.Replace(interopLISP, "ack_notify = true\n", "ack_notify = true\nauth_length = 16\nshared_key_id = 3\nas_number_lcaf = false\n", 1)
	set = strings.Replace(set, "listen = \"10.0.0.9:4352\"\n", "listen = \"10.0.0.9:4352\"\nreplay = \"monotonic\"\n", 1)
	set = strings.Replace(set, "eid_prefixes = [\"10.9.0.0/16\"]\n", "eid_prefixes = [\"10.9.0.0/16\"]\nauth_length = 20\nshared_key_id = 5\nreplay = \"off\"\n", 1)
	if c, err = Parse("x.toml", []byte(set)); err != nil {
		t.Fatal(err)
	}
	l = c.LISP
	if a := l.RegisterTo[0].Auth; a.AuthLen != 16 || a.SharedKeyID != 3 || !l.RegisterTo[0].NoASN || l.MapServer.Replay != mapserver.ReplayMonotonic {
		t.Fatalf("register_to / map_server: %+v %+v", l.RegisterTo[0], l.MapServer)
	}
	if s := l.Sites[0]; s.AuthLen != 20 || s.SharedKeyID != 5 || s.Replay == nil || *s.Replay != mapserver.ReplayOff {
		t.Fatalf("site: %+v", s)
	}
	for _, x := range []struct{ name, from, to, key, reason string }{
		{"register_to auth_length", "ack_notify = true\n", "ack_notify = true\nauth_length = 20\n", "lisp.register_to[0].auth_length", "16 or 32"},
		{"register_to shared_key_id", "ack_notify = true\n", "ack_notify = true\nshared_key_id = 256\n", "lisp.register_to[0].shared_key_id", "0 … 255"},
		{"site auth_length", "eid_prefixes = [\"10.9.0.0/16\"]\n", "eid_prefixes = [\"10.9.0.0/16\"]\nauth_length = 16\n", "lisp.site[0].auth_length", "12 or 20"},
		{"site shared_key_id", "eid_prefixes = [\"10.9.0.0/16\"]\n", "eid_prefixes = [\"10.9.0.0/16\"]\nshared_key_id = -1\n", "lisp.site[0].shared_key_id", "0 … 255"},
		{"site replay", "eid_prefixes = [\"10.9.0.0/16\"]\n", "eid_prefixes = [\"10.9.0.0/16\"]\nreplay = \"never\"\n", "lisp.site[0].replay", "not one of"},
		{"map_server replay", "listen = \"10.0.0.9:4352\"\n", "listen = \"10.0.0.9:4352\"\nreplay = \"nonce\"\n", "lisp.map_server.replay", "not one of"},
	} {
		t.Run(x.name, func(t *testing.T) {
			text := strings.Replace(interopLISP, x.from, x.to, 1)
			if text == interopLISP {
				t.Fatal("edit did not apply")
			}
			_, err := Parse("x.toml", []byte(text))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			for _, p := range ps {
				if p.File == "x.toml" && p.Key == x.key && strings.Contains(p.String(), x.reason) {
					return
				}
			}
			t.Fatalf("no problem with key %q and reason %q in:\n%v", x.key, x.reason, err)
		})
	}
}
