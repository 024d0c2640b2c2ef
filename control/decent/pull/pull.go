package pull

// Pull-based LISP-Decent (docs/wire.md §3.4, draft-farinacci-lisp-decent §5):
// an EID hashes to an index, the index names "<index>.<suffix>", and that
// name's A and AAAA records are the map-servers of the EID. See README.md.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/lisp"
)

// Defaults of Config.
const (
	DefaultControlPort = 4342
	DefaultRefresh     = 30 * time.Second // docs/wire.md §3.4: re-resolve at least every 30 s
	// resolveRetry bounds how often a failing name is re-queried while a
	// previous (stale) answer is still being used.
	resolveRetry = 5 * time.Second
	// DefaultParallel is the default of Config.Parallel.
	DefaultParallel = 8
)

// Resolver resolves A and AAAA records; *adot.Client satisfies it.
type Resolver interface {
	LookupInfo(ctx context.Context, name string, qtype uint16) ([]netip.Addr, adot.Info, error)
}

// TTLResolver is an optional extension of Resolver that also reports the
// TTL of the answer (*adot.Client does: the remaining lifetime of its
// cached answer). When the Resolver implements it, a name is re-resolved
// when its TTL runs out and at least every Refresh (docs/wire.md §3.4);
// otherwise every Refresh.
type TTLResolver interface {
	LookupTTL(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error)
}

var (
	_ Resolver    = (*adot.Client)(nil)
	_ TTLResolver = (*adot.Client)(nil)
)

// Config is the pull-mode configuration. Mode, Mask, Modulus, Suffix
// must be the same on every member of the mapping system.
type Config struct {
	Mode       HashMode
	Mask       int    // hash mask in octets (ModeDraft only); 0 = whole string
	Modulus    uint64 // number of indexes; > 0
	Suffix     string // DNS suffix, e.g. "map-server.example.test" (trailing dot optional)
	InstanceID uint32 // IID used by the netip.Prefix-only calls (MapServers, NextMapServer, Owns)
	Resolver   Resolver
	// ControlPort is the UDP port of every map-server (default 4342).
	ControlPort uint16
	// Refresh is the longest time a resolved name is used before it is
	// resolved again (default and maximum 30 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Parallel bounds the names ResolveIndexes resolves at once (default
	// DefaultParallel): a pass over many indexes with a dead DoT server
	// then takes about one timeout, not one per name.
	Parallel int
}

// Node maps EIDs to map-servers. Safe for concurrent use.
type Node struct {
	cfg Config

	mu    sync.Mutex
	names map[string]*nameEntry
	stats Stats
}

type nameEntry struct {
	servers []netip.AddrPort
	expires time.Time // re-resolve at or after this time
	rr      uint64
	valid   bool // servers holds an answer (possibly stale)
}

// Stats are counters of a Node.
type Stats struct {
	Resolutions   uint64 // names resolved (A+AAAA pairs queried)
	ResolveErrors uint64 // resolutions that failed
	StaleAnswers  uint64 // failed resolutions answered from the previous (stale) answer
	Registers     uint64 // Map-Registers sent (one per map-server)
	SendErrors    uint64 // Map-Register writes that failed
}

// ErrNoMapServers: the name of an index resolved to no address.
var ErrNoMapServers = errors.New("decent: no map-servers for index")

// New checks cfg and fills its defaults.
func New(cfg Config) (*Node, error) {
	if cfg.Modulus == 0 {
		return nil, errors.New("decent: modulus must be positive")
	}
	if cfg.Mask < 0 {
		return nil, errors.New("decent: hash mask must not be negative")
	}
	if cfg.Mode != ModeDraft && cfg.Mode != ModeLispersNet {
		return nil, fmt.Errorf("decent: unknown hash mode %d", cfg.Mode)
	}
	cfg.Suffix = strings.ToLower(strings.TrimSuffix(cfg.Suffix, "."))
	if cfg.Suffix == "" {
		return nil, errors.New("decent: empty DNS suffix")
	}
	if _, ok := dns.IsDomainName(cfg.Suffix); !ok {
		return nil, fmt.Errorf("decent: invalid DNS suffix %q", cfg.Suffix)
	}
	if cfg.Resolver == nil {
		return nil, errors.New("decent: no resolver")
	}
	if cfg.ControlPort == 0 {
		cfg.ControlPort = DefaultControlPort
	}
	if cfg.Refresh <= 0 || cfg.Refresh > DefaultRefresh {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	return &Node{cfg: cfg, names: make(map[string]*nameEntry)}, nil
}

// Config returns the effective configuration (defaults filled).
func (p *Node) Config() Config { return p.cfg }

// Stats returns a snapshot of the counters.
func (p *Node) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// index hashes an EID string with the shared configuration.
func (p *Node) index(input string) uint64 {
	i, err := Index(p.cfg.Mode, input, p.cfg.Mask, p.cfg.Modulus)
	if err != nil { // New validated mode, mask and modulus
		panic(err)
	}
	return i
}

// IndexOf returns the index owning [iid]eid.
func (p *Node) IndexOf(iid uint32, eid netip.Prefix) uint64 {
	return p.index(EIDString(iid, eid))
}

// NameOf returns "<index>.<suffix>" for [InstanceID]eid.
func (p *Node) NameOf(eid netip.Prefix) string {
	return Name(p.IndexOf(p.cfg.InstanceID, eid), p.cfg.Suffix)
}

// IndexOfName parses "<index>.<suffix>" (case-insensitive, trailing dot
// optional); the index must be below the modulus.
func (p *Node) IndexOfName(name string) (uint64, error) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	label, ok := strings.CutSuffix(n, "."+p.cfg.Suffix)
	if !ok || label == "" || strings.Contains(label, ".") {
		return 0, fmt.Errorf("decent: %q is not <index>.%s", name, p.cfg.Suffix)
	}
	i, err := strconv.ParseUint(label, 10, 64)
	if err != nil || i >= p.cfg.Modulus {
		return 0, fmt.Errorf("decent: %q: index not in [0, %d)", name, p.cfg.Modulus)
	}
	return i, nil
}

// RecordIndex returns the index owning a mapping record's EID as it is on
// the wire: the IID of an Instance-ID LCAF (0 without one), an AS-Number
// LCAF skipped, a unicast prefix or a Multicast Info LCAF (S, G), whose
// string depends on the hash mode (MulticastEIDString).
func (p *Node) RecordIndex(r *lisp.MappingRecord) (uint64, string, error) {
	s, err := recordEIDString(p.cfg.Mode, r.EID, r.EIDMaskLen)
	if err != nil {
		return 0, "", err
	}
	return p.index(s), s, nil
}

func recordEIDString(mode HashMode, a lisp.Address, mask uint8) (string, error) {
	var iid uint32
	for depth := 0; depth <= lisp.MaxAddressDepth; depth++ {
		if a.LCAF == nil {
			if !a.IP.IsValid() {
				return "", errors.New("decent: record EID has no address")
			}
			pfx, err := a.IP.Prefix(int(mask))
			if err != nil {
				return "", fmt.Errorf("decent: record EID: %w", err)
			}
			return EIDString(iid, pfx), nil
		}
		l := a.LCAF
		switch l.Type {
		case lisp.LCAFInstanceID:
			iid = l.InstanceID
			a = l.Inner
		case lisp.LCAFASNumber:
			a = l.Inner
		case lisp.LCAFMulticastInfo:
			if !l.Source.IP.IsValid() || !l.Group.IP.IsValid() {
				return "", errors.New("decent: multicast EID without IP source/group")
			}
			src, err1 := l.Source.IP.Prefix(int(l.SourceMaskLen))
			grp, err2 := l.Group.IP.Prefix(int(l.GroupMaskLen))
			if err := errors.Join(err1, err2); err != nil {
				return "", fmt.Errorf("decent: multicast EID: %w", err)
			}
			return MulticastEIDString(mode, l.InstanceID, grp, src), nil
		default:
			return "", fmt.Errorf("decent: record EID LCAF type %d not hashable", l.Type)
		}
	}
	return "", errors.New("decent: record EID nested too deep")
}

// MapServers returns the map-servers of [InstanceID]eid: the A and AAAA
// records of its name, with ControlPort, resolved at most Refresh ago.
func (p *Node) MapServers(ctx context.Context, eid netip.Prefix) ([]netip.AddrPort, error) {
	return p.MapServersOfIndex(ctx, p.IndexOf(p.cfg.InstanceID, eid))
}

// MapServersOfIndex is MapServers for an index.
func (p *Node) MapServersOfIndex(ctx context.Context, index uint64) ([]netip.AddrPort, error) {
	s, _, err := p.servers(ctx, Name(index, p.cfg.Suffix))
	return s, err
}

// IndexResult is the outcome of one index in ResolveIndexes.
type IndexResult struct {
	Index   uint64
	Servers []netip.AddrPort // as MapServersOfIndex
	Err     error
}

// ResolveIndexes is MapServersOfIndex for each of indexes, at most
// Config.Parallel names at once; results are in the order of indexes.
// timeout bounds each name (0: only ctx).
func (p *Node) ResolveIndexes(ctx context.Context, indexes []uint64, timeout time.Duration) []IndexResult {
	out := make([]IndexResult, len(indexes))
	sem := make(chan struct{}, p.cfg.Parallel)
	var wg sync.WaitGroup
	for k, i := range indexes {
		out[k].Index = i
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			qctx, cancel := ctx, context.CancelFunc(func() {})
			if timeout > 0 {
				qctx, cancel = context.WithTimeout(ctx, timeout)
			}
			out[k].Servers, out[k].Err = p.MapServersOfIndex(qctx, i)
			cancel()
		})
	}
	wg.Wait()
	return out
}

// NextMapServer returns the map-server of [InstanceID]eid to send the next
// Map-Request to: round robin over the name's current addresses.
func (p *Node) NextMapServer(ctx context.Context, eid netip.Prefix) (netip.AddrPort, error) {
	name := p.NameOf(eid)
	s, e, err := p.servers(ctx, name)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p.mu.Lock()
	i := e.rr
	e.rr++
	p.mu.Unlock()
	return s[i%uint64(len(s))], nil
}

// servers returns the cached or freshly resolved addresses of name. The
// returned slice is never modified afterwards.
func (p *Node) servers(ctx context.Context, name string) ([]netip.AddrPort, *nameEntry, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	e := p.names[name]
	if e == nil {
		e = &nameEntry{}
		p.names[name] = e
	}
	if e.valid && now.Before(e.expires) {
		s := e.servers
		p.mu.Unlock()
		if len(s) == 0 {
			return nil, e, fmt.Errorf("%w: %s", ErrNoMapServers, name)
		}
		return s, e, nil
	}
	p.mu.Unlock()

	// Resolve outside the lock; concurrent callers may resolve the same
	// name twice, which is harmless.
	addrs, ttl, err := p.resolve(ctx, name)
	now = p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Resolutions++
	if err != nil {
		p.stats.ResolveErrors++
		if e.valid && len(e.servers) > 0 {
			// Keep using the previous answer; retry soon.
			p.stats.StaleAnswers++
			e.expires = now.Add(min(p.cfg.Refresh, resolveRetry))
			return e.servers, e, nil
		}
		return nil, e, fmt.Errorf("decent: resolving %s: %w", name, err)
	}
	life := p.cfg.Refresh
	if ttl > 0 && ttl < life {
		life = ttl
	}
	s := make([]netip.AddrPort, 0, len(addrs))
	seen := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			s = append(s, netip.AddrPortFrom(a, p.cfg.ControlPort))
		}
	}
	e.servers, e.expires, e.valid = s, now.Add(life), true
	if len(s) == 0 {
		return nil, e, fmt.Errorf("%w: %s", ErrNoMapServers, name)
	}
	return s, e, nil
}

// resolve queries A and AAAA. One failing family is tolerated when the
// other answers; NXDOMAIN counts as an empty answer, not a failure (so a
// removed name is not served from a stale answer); ttl is 0 when unknown.
func (p *Node) resolve(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	var (
		addrs []netip.Addr
		ttl   time.Duration
		errs  []error
		ok    int
	)
	tr, hasTTL := p.cfg.Resolver.(TTLResolver)
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		var (
			a   []netip.Addr
			t   time.Duration
			err error
		)
		if hasTTL {
			a, t, err = tr.LookupTTL(ctx, name, qt)
		} else {
			a, _, err = p.cfg.Resolver.LookupInfo(ctx, name, qt)
		}
		if err != nil && adot.CauseOf(err) != adot.CauseNXDomain {
			errs = append(errs, fmt.Errorf("%s: %w", dns.TypeToString[qt], err))
			continue
		}
		// NXDOMAIN is an answer: the name (its map-servers) was removed.
		ok++
		addrs = append(addrs, a...)
		if len(a) > 0 && t > 0 && (ttl == 0 || t < ttl) {
			ttl = t
		}
	}
	if ok == 0 {
		return nil, 0, errors.Join(errs...)
	}
	return addrs, ttl, nil
}

// Flush forgets every resolved name (the next use re-resolves).
func (p *Node) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.names)
}

// ErrMixedIndexes: the records of one Map-Register hash to different
// indexes; split them into one Map-Register per index.
var ErrMixedIndexes = errors.New("decent: Map-Register records hash to different indexes")

// Register signs m with auth and sends it to every map-server of the index
// its records hash to (all records must hash to the same index). It
// returns the map-servers it was sent to; a failed write to one of them
// does not stop the others and is reported in the joined error.
func (p *Node) Register(ctx context.Context, conn *net.UDPConn, m *lisp.MapRegister, auth lisp.AuthConfig) ([]netip.AddrPort, error) {
	if len(m.Records) == 0 {
		return nil, errors.New("decent: Map-Register without records")
	}
	var index uint64
	for i := range m.Records {
		x, s, err := p.RecordIndex(&m.Records[i])
		if err != nil {
			return nil, err
		}
		if i > 0 && x != index {
			return nil, fmt.Errorf("%w: %s is %d, not %d", ErrMixedIndexes, s, x, index)
		}
		index = x
	}
	servers, err := p.MapServersOfIndex(ctx, index)
	if err != nil {
		return nil, err
	}
	b, err := auth.Marshal(m)
	if err != nil {
		return nil, err
	}
	var errs []error
	sent := make([]netip.AddrPort, 0, len(servers))
	for _, s := range servers {
		if _, err := conn.WriteToUDPAddrPort(b, s); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", s, err))
			continue
		}
		sent = append(sent, s)
	}
	p.mu.Lock()
	p.stats.Registers += uint64(len(sent))
	p.stats.SendErrors += uint64(len(errs))
	p.mu.Unlock()
	return sent, errors.Join(errs...)
}

// Owns reports whether the map-server named myName ("<index>.<suffix>")
// owns [InstanceID]eid under this configuration.
func (p *Node) Owns(eid netip.Prefix, myName string) bool {
	i, err := p.IndexOfName(myName)
	return err == nil && i == p.IndexOf(p.cfg.InstanceID, eid)
}
