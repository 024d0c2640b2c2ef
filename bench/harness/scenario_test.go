package harness

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/config"
)

const goodScenario = `
name = "t"
description = "a test"
cases = ["afxdp-bare", "psavd-tag"]
warmup = "500ms"
duration = "1s"
runs = 3
probe_rate = 500

[base]
size = 128
mix = "m"
prefixes = 10
cores = 1

[sweep]
size = [64, 1500]
prefixes = [4, 1000000]
mix = ["m", "all6"]
cores = [1, 2]

[[mix]]
name = "m"
ipv6 = 0.5
untagged = 0.25
spoofed = 0.1

[[mix]]
name = "all6"
ipv6 = 1
`

func TestParseGood(t *testing.T) {
	s, err := Parse("good.toml", []byte(goodScenario))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "t" || s.Warmup != 500*time.Millisecond || s.Duration != time.Second || s.Runs != 3 || s.ProbeRate != 500 {
		t.Errorf("settings: %+v", s)
	}
	if s.Base != (Point{Size: 128, Mix: "m", Prefixes: 10, Cores: 1}) {
		t.Errorf("base %+v", s.Base)
	}
	m, ok := s.Mix("m")
	if !ok || m.Untagged != 0.25 || m.Spoofed != 0.1 || m.Tagged() < 0.649 || m.Tagged() > 0.651 {
		t.Errorf("mix m: %+v", m)
	}
	// Base, 2 sizes, 2 prefixes, 1 new mix (m is the base's), 1 new core count.
	pts := s.Points()
	if len(pts) != 7 {
		t.Fatalf("points %v", pts)
	}
	if pts[0] != s.Base {
		t.Errorf("first point %v, want the base", pts[0])
	}
	// Baselines once per size, IPv6 share and cores: base (128, 0.5, 1),
	// 64, 1500, all6 (IPv6 1), cores 2 → 5 of each; psavd-tag at every point.
	if n := s.Count(); n != 5+7 {
		t.Errorf("%d measurements, want 12", n)
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse("d.toml", []byte(`name = "d"
cases = ["psavd-tag"]`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Warmup != time.Second || s.Duration != 2*time.Second || s.Runs != 1 || s.ProbeRate != 1000 {
		t.Errorf("defaults %+v", s)
	}
	if s.Base != (Point{Size: 64, Mix: "v4v6", Prefixes: 4, Cores: 1}) || len(s.Points()) != 1 {
		t.Errorf("base %+v, points %v", s.Base, s.Points())
	}
}

// TestParseRefuses checks that every kind of bad scenario is refused with
// the file, the key and a reason.
func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, text, key, reason string
	}{
		{"unknown top key", `name = "x"
cases = ["psavd-tag"]
speed = 3`, "speed", "unknown key"},
		{"unknown nested key", `name = "x"
cases = ["psavd-tag"]
[base]
colour = 1`, "base.colour", "unknown key"},
		{"unknown mix key", `name = "x"
cases = ["psavd-tag"]
[[mix]]
name = "a"
ipv4 = 0.5`, "mix.ipv4", "unknown key"},
		{"no name", `cases = ["psavd-tag"]`, "name", "missing"},
		{"no cases", `name = "x"`, "cases", "missing"},
		{"unknown case", `name = "x"
cases = ["psavd-tag", "dpdk"]`, "cases[1]", "unknown case"},
		{"case twice", `name = "x"
cases = ["psavd-tag", "psavd-tag"]`, "cases[1]", "twice"},
		{"bad duration", `name = "x"
cases = ["psavd-tag"]
duration = "2 seconds"`, "duration", "not a duration"},
		{"negative warmup", `name = "x"
cases = ["psavd-tag"]
warmup = "-1s"`, "warmup", "positive"},
		{"runs 0", `name = "x"
cases = ["psavd-tag"]
runs = 0`, "runs", "outside"},
		{"size too small", `name = "x"
cases = ["psavd-tag"]
[sweep]
size = [64, 63]`, "sweep.size[1]", "outside 64 … 1500"},
		{"size too big", `name = "x"
cases = ["psavd-tag"]
[base]
size = 9000`, "base.size", "outside"},
		{"too many prefixes", `name = "x"
cases = ["psavd-tag"]
[sweep]
prefixes = [2000000]`, "sweep.prefixes[0]", "outside"},
		{"too few prefixes", `name = "x"
cases = ["psavd-tag"]
[base]
prefixes = 1`, "base.prefixes", "outside 4"},
		{"zero cores", `name = "x"
cases = ["psavd-tag"]
[sweep]
cores = [0]`, "sweep.cores[0]", "outside"},
		{"duplicate sweep value", `name = "x"
cases = ["psavd-tag"]
[sweep]
size = [64, 64]`, "sweep.size", "twice"},
		{"share out of range", `name = "x"
cases = ["psavd-tag"]
[[mix]]
name = "a"
ipv6 = 1.5`, "mix[0].ipv6", "outside 0 … 1"},
		{"share not a multiple", `name = "x"
cases = ["psavd-tag"]
[[mix]]
name = "a"
spoofed = 0.33`, "mix[0].spoofed", "multiple of 1/20"},
		{"shares over 1", `name = "x"
cases = ["psavd-tag"]
[[mix]]
name = "a"
untagged = 0.6
spoofed = 0.6`, "mix[0]", "more than 1"},
		{"mix without name", `name = "x"
cases = ["psavd-tag"]
[[mix]]
ipv6 = 0.5`, "mix[0].name", "missing"},
		{"mix twice", `name = "x"
cases = ["psavd-tag"]
[[mix]]
name = "a"
[[mix]]
name = "a"`, "mix[1].name", "twice"},
		{"unknown base mix", `name = "x"
cases = ["psavd-tag"]
[base]
mix = "nope"`, "base.mix", "no mix named"},
		{"unknown sweep mix", `name = "x"
cases = ["psavd-tag"]
[sweep]
mix = ["nope"]`, "sweep.mix[0]", "no mix named"},
		{"wrong type", `name = "x"
cases = ["psavd-tag"]
runs = "three"`, "", "runs"},
		{"idle latency without probes", `name = "x"
cases = ["psavd-tag"]
probe_rate = 0
idle_latency = true`, "idle_latency", "needs probes"},
		{"idle latency not a bool", `name = "x"
cases = ["psavd-tag"]
idle_latency = "yes"`, "", "idle_latency"},
		{"syntax", `name = "x`, "line 1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.text))
			var ps config.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			for _, p := range ps {
				if p.File == "bad.toml" && p.Key == tc.key && strings.Contains(p.String(), tc.reason) {
					return
				}
			}
			t.Errorf("no problem with key %q and reason %q in:\n%v", tc.key, tc.reason, err)
		})
	}
}

// TestShippedScenarios checks that every scenario in bench/scenarios parses.
func TestShippedScenarios(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		t.Logf("%s: %d points, %d measurements", f, len(s.Points()), s.Count())
	}
}
