package harness

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/psavd/psavd/control/config"
)

// Cases the harness knows, in the order a point runs them: the baselines
// first, then psavd.
var Cases = []string{CaseKernel, CaseBare, CaseTag, CaseValidate}

// Case names.
const (
	CaseKernel   = "kernel-forward" // Linux IP forwarding (baseline)
	CaseBare     = "afxdp-bare"     // the bare AF_XDP forwarder, bench/barefwd (baseline (a))
	CaseTag      = "psavd-tag"      // psavd tagging inside → outside
	CaseValidate = "psavd-validate" // psavd validating and stripping outside → inside
)

// Limits of the sweep dimensions.
const (
	MinSize, MaxSize         = 64, 1500     // Ethernet frame, FCS excluded, before any tag
	MinPrefixes, MaxPrefixes = 4, 1_000_000 // AS-Prefix table entries (4: the traffic's own)
	MixSlots                 = 20           // a mix is 20 templates: shares are multiples of 1/20
	maxProbeRate             = 100_000      // probes per second
	maxWindow                = 5 * time.Minute
)

// Mix is a traffic mix: the share of IPv6 frames, and the shares of frames
// that psavd forwards untagged (no member on the far side) and that it must
// drop (spoofed); the rest is tagged (tag case) or carries a valid tag
// (validate case). See Frames for the addresses of each class.
type Mix struct {
	Name     string  `toml:"name"`
	IPv6     float64 `toml:"ipv6"`
	Untagged float64 `toml:"untagged"`
	Spoofed  float64 `toml:"spoofed"`
}

// Tagged is the share of frames that are neither untagged nor spoofed.
func (m Mix) Tagged() float64 { return 1 - m.Untagged - m.Spoofed }

// Point is one combination of the swept dimensions.
type Point struct {
	Size     int    `json:"size"`     // octets, Ethernet frame without FCS, before any tag
	Mix      string `json:"mix"`      // Mix.Name
	Prefixes int    `json:"prefixes"` // AS-Prefix table entries given to psavd
	Cores    int    `json:"cores"`    // CPUs of the DUT (and veth queues)
}

func (p Point) String() string {
	return fmt.Sprintf("%dB %s %s prefixes %d core(s)", p.Size, p.Mix, humanCount(p.Prefixes), p.Cores)
}

// Sweep lists the values each dimension takes; every other dimension then
// stays at the base point. Empty: that dimension is not swept.
type Sweep struct {
	Size     []int    `toml:"size"`
	Mix      []string `toml:"mix"`
	Prefixes []int    `toml:"prefixes"`
	Cores    []int    `toml:"cores"`
}

// Scenario is a benchmark run as written in bench/scenarios/NAME.toml.
type Scenario struct {
	Name        string
	Description string
	// Cases run at every point (a subset of Cases).
	Cases []string
	// Warmup and Duration of every measurement.
	Warmup, Duration time.Duration
	// Runs of every measurement; the median (by delivered rate) is kept.
	Runs int
	// ProbeRate is the latency probes per second sent through the DUT
	// while the load runs.
	ProbeRate int
	// IdleLatency adds, for every case at the base point, a run with the
	// probes alone (no load): the DUT's latency when its rings are empty.
	IdleLatency bool
	// Base is the point every sweep starts from.
	Base Point
	// Sweep varies one dimension at a time around Base.
	Sweep Sweep
	// Mixes by name.
	Mixes []Mix
	// File is where the scenario was read from.
	File string
}

// Mix returns the mix called name.
func (s *Scenario) Mix(name string) (Mix, bool) {
	for _, m := range s.Mixes {
		if m.Name == name {
			return m, true
		}
	}
	return Mix{}, false
}

// file is the TOML layout of a scenario.
type file struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description"`
	Cases       []string `toml:"cases"`
	Warmup      string   `toml:"warmup"`
	Duration    string   `toml:"duration"`
	Runs        *int     `toml:"runs"`
	ProbeRate   *int     `toml:"probe_rate"`
	IdleLatency bool     `toml:"idle_latency"`
	Base        struct {
		Size     *int   `toml:"size"`
		Mix      string `toml:"mix"`
		Prefixes *int   `toml:"prefixes"`
		Cores    *int   `toml:"cores"`
	} `toml:"base"`
	Sweep Sweep `toml:"sweep"`
	Mix   []Mix `toml:"mix"`
}

// Load reads and checks a scenario file. Every problem found is reported,
// each with the file, the key and the reason (a config.Problems).
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, config.Problems{{File: path, Reason: err.Error()}}
	}
	return Parse(path, b)
}

// Parse checks the scenario text b (name is the file name for problems).
func Parse(name string, b []byte) (*Scenario, error) {
	var f file
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, config.Problems{{File: name, Key: fmt.Sprintf("line %d", pe.Position.Line), Reason: pe.Message}}
		}
		return nil, config.Problems{{File: name, Reason: err.Error()}}
	}
	c := checker{file: name}
	for _, k := range md.Undecoded() {
		c.add(k.String(), "unknown key")
	}
	s := &Scenario{Name: f.Name, Description: f.Description, File: name, Sweep: f.Sweep, Mixes: f.Mix}
	if s.Name == "" {
		c.add("name", "missing")
	}

	s.Cases = f.Cases
	if len(s.Cases) == 0 {
		c.add("cases", "missing: list one or more of %v", Cases)
	}
	for i, cs := range s.Cases {
		if !slices.Contains(Cases, cs) {
			c.add(fmt.Sprintf("cases[%d]", i), "unknown case %q (known: %v)", cs, Cases)
		} else if slices.Index(s.Cases, cs) != i {
			c.add(fmt.Sprintf("cases[%d]", i), "%q listed twice", cs)
		}
	}

	s.Warmup = c.duration("warmup", f.Warmup, time.Second)
	s.Duration = c.duration("duration", f.Duration, 2*time.Second)
	s.Runs = c.intIn("runs", f.Runs, 1, 1, 100)
	s.ProbeRate = c.intIn("probe_rate", f.ProbeRate, 1000, 0, maxProbeRate)
	s.IdleLatency = f.IdleLatency
	if s.IdleLatency && s.ProbeRate == 0 {
		c.add("idle_latency", "needs probes (probe_rate > 0)")
	}

	mixes := map[string]bool{}
	for i, m := range s.Mixes {
		key := fmt.Sprintf("mix[%d]", i)
		if m.Name == "" {
			c.add(key+".name", "missing")
		} else if mixes[m.Name] {
			c.add(key+".name", "mix %q defined twice", m.Name)
		}
		mixes[m.Name] = true
		c.share(key+".ipv6", m.IPv6)
		c.share(key+".untagged", m.Untagged)
		c.share(key+".spoofed", m.Spoofed)
		if m.Untagged+m.Spoofed > 1+1e-9 {
			c.add(key, "untagged + spoofed is %g, more than 1", m.Untagged+m.Spoofed)
		}
	}
	if len(s.Mixes) == 0 {
		s.Mixes = []Mix{{Name: "v4v6", IPv6: 0.5}}
		mixes["v4v6"] = true
	}

	s.Base.Size = c.intIn("base.size", f.Base.Size, MinSize, MinSize, MaxSize)
	s.Base.Prefixes = c.intIn("base.prefixes", f.Base.Prefixes, MinPrefixes, MinPrefixes, MaxPrefixes)
	s.Base.Cores = c.intIn("base.cores", f.Base.Cores, 1, 1, maxCores())
	s.Base.Mix = f.Base.Mix
	if s.Base.Mix == "" {
		s.Base.Mix = s.Mixes[0].Name
	} else if !mixes[s.Base.Mix] {
		c.add("base.mix", "no mix named %q", s.Base.Mix)
	}
	for i, v := range s.Sweep.Size {
		c.inRange(fmt.Sprintf("sweep.size[%d]", i), v, MinSize, MaxSize)
	}
	for i, v := range s.Sweep.Prefixes {
		c.inRange(fmt.Sprintf("sweep.prefixes[%d]", i), v, MinPrefixes, MaxPrefixes)
	}
	for i, v := range s.Sweep.Cores {
		c.inRange(fmt.Sprintf("sweep.cores[%d]", i), v, 1, maxCores())
	}
	for i, v := range s.Sweep.Mix {
		if !mixes[v] {
			c.add(fmt.Sprintf("sweep.mix[%d]", i), "no mix named %q", v)
		}
	}
	c.unique("sweep.size", s.Sweep.Size)
	c.unique("sweep.prefixes", s.Sweep.Prefixes)
	c.unique("sweep.cores", s.Sweep.Cores)
	c.unique("sweep.mix", s.Sweep.Mix)
	if len(c.ps) > 0 {
		return nil, c.ps
	}
	return s, nil
}

// maxCores is the largest cores value accepted: the DUT may have every
// CPU (with 2, the generator shares them).
func maxCores() int { return 64 }

type checker struct {
	file string
	ps   config.Problems
}

func (c *checker) add(key, format string, args ...any) {
	c.ps = append(c.ps, config.Problem{File: c.file, Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (c *checker) duration(key, v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		c.add(key, "not a duration (e.g. \"2s\"): %q", v)
	case d <= 0:
		c.add(key, "must be positive")
	case d > maxWindow:
		c.add(key, "longer than %v", maxWindow)
	}
	return d
}

func (c *checker) intIn(key string, v *int, def, lo, hi int) int {
	if v == nil {
		return def
	}
	c.inRange(key, *v, lo, hi)
	return *v
}

func (c *checker) inRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		c.add(key, "%d is outside %d … %d", v, lo, hi)
	}
}

// share checks a fraction: 0 … 1 in steps of 1/MixSlots (a mix is built
// from MixSlots templates).
func (c *checker) share(key string, v float64) {
	if v < 0 || v > 1 || math.IsNaN(v) {
		c.add(key, "%g is outside 0 … 1", v)
		return
	}
	if n := v * MixSlots; math.Abs(n-math.Round(n)) > 1e-6 {
		c.add(key, "%g is not a multiple of 1/%d (a mix is %d frame templates)", v, MixSlots, MixSlots)
	}
}

func unique[T comparable](vs []T) (T, bool) {
	seen := map[T]bool{}
	for _, v := range vs {
		if seen[v] {
			return v, false
		}
		seen[v] = true
	}
	var zero T
	return zero, true
}

func (c *checker) unique(key string, vs any) {
	var dup any
	ok := true
	switch v := vs.(type) {
	case []int:
		dup, ok = unique(v)
	case []string:
		dup, ok = unique(v)
	}
	if !ok {
		c.add(key, "%v listed twice", dup)
	}
}

// Points returns the points of the scenario: the base point, then for each
// swept dimension (size, prefixes, mix, cores) its values with the others at
// the base, each point once.
func (s *Scenario) Points() []Point {
	var out []Point
	add := func(p Point) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(s.Base)
	for _, v := range s.Sweep.Size {
		p := s.Base
		p.Size = v
		add(p)
	}
	for _, v := range s.Sweep.Prefixes {
		p := s.Base
		p.Prefixes = v
		add(p)
	}
	for _, v := range s.Sweep.Mix {
		p := s.Base
		p.Mix = v
		add(p)
	}
	for _, v := range s.Sweep.Cores {
		p := s.Base
		p.Cores = v
		add(p)
	}
	return out
}

func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
