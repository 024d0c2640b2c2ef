package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLISPProbeKeys: rloc_probe_interval / _timeout / _retries (issue
// 16): defaults 30 s / 5 s / 2, "off", and each refusal names the file,
// the key and the reason.
func TestLISPProbeKeys(t *testing.T) {
	parse := func(keys string) (*Config, error) {
		return Parse("x.toml", []byte(strings.Replace(goodLISP, "[lisp]\n", "[lisp]\n"+keys, 1)))
	}
	c, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.LISP; l.ProbeInterval != 30*time.Second || l.ProbeTimeout != 5*time.Second || l.ProbeRetries != 2 {
		t.Fatalf("defaults %v %v %d", l.ProbeInterval, l.ProbeTimeout, l.ProbeRetries)
	}
	if c, err = parse("rloc_probe_interval = \"2s\"\nrloc_probe_timeout = \"500ms\"\nrloc_probe_retries = 0\n"); err != nil {
		t.Fatal(err)
	}
	if l := c.LISP; l.ProbeInterval != 2*time.Second || l.ProbeTimeout != 500*time.Millisecond || l.ProbeRetries != 0 {
		t.Fatalf("set %v %v %d", l.ProbeInterval, l.ProbeTimeout, l.ProbeRetries)
	}
	if c, err = parse("rloc_probe_interval = \"off\"\n"); err != nil || c.LISP.ProbeInterval != 0 {
		t.Fatalf("off: %v", err)
	}
	for _, x := range []struct{ keys, key, reason string }{
		{"rloc_probe_interval = \"never\"\n", "lisp.rloc_probe_interval", "not a positive duration"},
		{"rloc_probe_interval = \"2h\"\n", "lisp.rloc_probe_interval", "1s … 1h"},
		{"rloc_probe_timeout = \"2m\"\n", "lisp.rloc_probe_timeout", "100ms … 1m"},
		{"rloc_probe_retries = 11\n", "lisp.rloc_probe_retries", "0 … 10"},
		{"rloc_probe_interval = \"10s\"\nrloc_probe_timeout = \"5s\"\n", "lisp.rloc_probe_timeout", "does not fit"},
	} {
		_, err := parse(x.keys)
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%q: want Problems, got %v", x.keys, err)
		}
		found := false
		for _, p := range ps {
			found = found || (p.File == "x.toml" && p.Key == x.key && strings.Contains(p.String(), x.reason))
		}
		if !found {
			t.Fatalf("%q: no problem with key %q and reason %q in:\n%v", x.keys, x.key, x.reason, err)
		}
	}
}
