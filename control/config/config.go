// Package config reads engine.toml — the only package that decodes it — and
// turns it, in one pass, into a typed Config: every value is parsed into the
// type its user takes (prefixes, addresses, durations, engine roles, keys,
// compiled LISP, LISP-Decent and ADoT configurations) while it is checked.
// An unknown key, a value of the wrong type or a value that makes no sense
// is refused before anything starts, with one Problem per mistake naming
// the file, the key (as `port[1].role`) and the reason. Nothing downstream
// parses a configuration string again.
//
// The file as written is control/config/schema. A default is applied only
// where a key is absent from the file (toml.MetaData.IsDefined, or the
// decoded document for the elements of arrays of tables): a key written
// with a value outside its bounds is refused, never replaced.
//
// The keys of docs/wire.md §4.1 are fixed by the contract; the rest is
// documented in docs/config.md.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
)

// Config is engine.toml, checked and typed. A nil section pointer is a
// section the file does not have.
type Config struct {
	File   string       // the file's name, as given to Load or Parse
	Source *schema.File // the file as decoded, nothing defaulted: what a reload compares

	PSAV    PSAV     // [psav]
	Engine  Engine   // [engine] (and [lisp]'s data-plane policy)
	Ports   []Port   // [[port]]
	Routes  []Route  // [[route]]
	ACS     *ACS     // [acs]
	ABR     *ABR     // [abr]
	Metrics *Metrics // [metrics]
	Capture *Capture // [capture]
	RPKI    *RPKI    // [rpki]
	Log     Log      // [log]
	LISP    *LISP    // [lisp]
	ADoT    *ADoT    // [adot]
	Control Control  // [control]
}

// EngineSpec is the engine's static configuration: [engine], the
// [[port]]s and, for encap = "lisp" ports, the [lisp] locators and
// instance. Each call returns a fresh Spec the caller may change.
func (c *Config) EngineSpec() engine.Spec {
	s := engine.Spec{Forwarding: c.Engine.Forwarding, Policy: c.Engine.Policy}
	for _, p := range c.Ports {
		ps := engine.PortSpec{Name: p.Name, Role: p.Role, Peer: p.Peer, Encap: p.Encap, MTU: p.MTU, ZeroUDP6Checksum: p.UDP6ZeroChecksum}
		if p.Encap == engine.EncapLISP && c.LISP != nil {
			ps.InstanceID = c.LISP.InstanceID
			ps.RLOCs = append([]netip.Addr(nil), c.LISP.RLOCs...)
		}
		s.Ports = append(s.Ports, ps)
	}
	return s
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	File   string
	Key    string
	Reason string
}

func (p Problem) String() string {
	if p.Key == "" {
		return fmt.Sprintf("%s: %s", p.File, p.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, p.Key, p.Reason)
}

// Problems is every problem found; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Reason: err.Error()}}
	}
	return Parse(path, data)
}

// Parse reads and checks configuration text; name is used in problems.
func Parse(name string, data []byte) (*Config, error) {
	f := &schema.File{}
	md, err := toml.Decode(string(data), f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Problems{{File: name, Key: fmt.Sprintf("line %d", pe.Position.Line), Reason: pe.Message}}
		}
		return nil, Problems{{File: name, Reason: decodeReason(err)}}
	}
	// The same text as plain data: array indexes of unknown keys, and which
	// keys an element of an array of tables writes (MetaData knows a key of
	// [[port]] only for all the ports at once).
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, Problems{{File: name, Reason: decodeReason(err)}}
	}
	k := &checker{file: name, md: md, doc: doc}
	for _, key := range unknownKeys(doc, md) {
		k.add(key, "unknown key")
	}
	c := &Config{File: name, Source: f}
	c.check(k, f)
	if len(k.ps) > 0 {
		return nil, k.ps
	}
	return c, nil
}

// check checks every section of f and fills c's typed sections, in an
// order where a section's checks can use the sections they depend on.
func (c *Config) check(k *checker, f *schema.File) {
	c.checkPSAV(k, f)
	c.checkEngine(k, f)
	c.checkPorts(k, f)
	c.checkRoutes(k, f)
	c.checkACS(k, f)
	c.checkABR(k, f)
	c.checkMetrics(k, f)
	c.checkCapture(k, f)
	c.checkRPKI(k, f)
	c.checkLog(k, f)
	c.checkLISP(k, f)
	c.checkADoT(k, f)
	c.checkControl(k, f)
}

func decodeReason(err error) string {
	// BurntSushi/toml type errors read like "toml: line 3 (last key "psav.asn"): incompatible types: …"
	return strings.TrimPrefix(err.Error(), "toml: ")
}

// unknownKeys names every key the schema does not have, with array indexes
// (`port[1].rol`) found by walking the document as plain data.
func unknownKeys(doc map[string]any, md toml.MetaData) []string {
	und := md.Undecoded()
	if len(und) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, k := range und {
		want[k.String()] = true
	}
	var out []string
	var walk func(v any, plain, indexed string)
	walk = func(v any, plain, indexed string) {
		if want[plain] {
			out = append(out, indexed)
			return
		}
		switch t := v.(type) {
		case map[string]any:
			for k, sub := range t {
				walk(sub, join(plain, k), join(indexed, k))
			}
		case []map[string]any:
			for i, sub := range t {
				walk(sub, plain, fmt.Sprintf("%s[%d]", indexed, i))
			}
		}
	}
	walk(doc, "", "")
	sort.Strings(out)
	return out
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// checker collects problems for one file and knows which keys it writes.
type checker struct {
	file string
	ps   Problems
	md   toml.MetaData  // zero in tests that check one piece: nothing is set
	doc  map[string]any // the file as plain data
}

func (k *checker) add(key, format string, args ...any) {
	k.ps = append(k.ps, Problem{File: k.file, Key: key, Reason: fmt.Sprintf(format, args...)})
}

// set reports whether the file writes the key of a plain table, given as
// a dotted path ("psav.epoch_seconds", "lisp.decent.data_port").
func (k *checker) set(path string) bool {
	return k.md.IsDefined(strings.Split(path, ".")...)
}

// setAt reports whether element i of the top-level array of tables arr
// ("port") writes key. MetaData cannot tell (it records port.mtu once for
// every port), so the plain document is asked.
func (k *checker) setAt(arr string, i int, key string) bool {
	ts, _ := k.doc[arr].([]map[string]any)
	if i < 0 || i >= len(ts) {
		return false
	}
	_, ok := ts[i][key]
	return ok
}

func (k *checker) oneOf(key, v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	k.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return false
}

// between reports (as "must be lo … hi, is v") a number outside [lo, hi].
func between[T int | int64 | uint32 | uint64](k *checker, key string, v, lo, hi T) bool {
	if v < lo || v > hi {
		k.add(key, "must be %d … %d, is %d", lo, hi, v)
		return false
	}
	return true
}

// orDefault is v when the key is set, else def.
func orDefault[T any](set bool, v, def T) T {
	if set {
		return v
	}
	return def
}

// duration reads a duration key: def when the key is absent; a written
// value must be a positive Go duration within [lo, hi].
func (k *checker) duration(key, s string, def, lo, hi time.Duration) time.Duration {
	if !k.set(key) {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		k.add(key, "%q is not a positive duration (like 1s)", s)
		return def
	}
	if d < lo || d > hi {
		k.add(key, "must be %s … %s, is %s", shortDuration(lo), shortDuration(hi), shortDuration(d))
		return def
	}
	return d
}

// shortDuration writes 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (k *checker) prefix(key, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		k.add(key, "%q is not a prefix (like 192.0.2.0/24 or 2001:db8::/32)", s)
		return p, false
	}
	if p.Masked() != p {
		k.add(key, "%q has host bits set (did you mean %s?)", s, p.Masked())
		return p, false
	}
	return p, true
}

func (k *checker) addr(key, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		k.add(key, "%q is not an address", s)
		return a, false
	}
	return a, true
}

func (k *checker) hostPort(key, s string) bool {
	if _, _, err := net.SplitHostPort(s); err != nil {
		k.add(key, "%q is not host:port", s)
		return false
	}
	return true
}

func (k *checker) existingFile(key, path string) {
	if path == "" {
		k.add(key, "missing")
		return
	}
	if _, err := os.Stat(path); err != nil {
		k.add(key, "%v", err)
	}
}

// privateKey checks a private key file as ssh does its identity files:
// it must exist and be readable by its owner only. A key that group or
// others can read is refused — it may already be in other hands — and
// reports false.
func (k *checker) privateKey(key, path string) bool {
	if path == "" {
		k.add(key, "missing")
		return false
	}
	fi, err := os.Stat(path)
	if err != nil {
		k.add(key, "%v", err)
		return false
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		k.add(key, "%s is accessible by group or others (mode %04o): a private key must be 0600 or stricter (chmod 600 %s)", path, m, path)
		return false
	}
	return true
}

// sameSocket reports whether two host:port listen addresses would bind the
// same UDP port on a shared address (an empty or unspecified host binds all).
func sameSocket(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}
