package adot

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DefaultPort is the DNS-over-TLS port (RFC 7858).
const DefaultPort = "853"

// Defaults of the answer cache's TTL floor and ceiling (Config.MinTTL,
// Config.MaxTTL).
const (
	DefaultMinTTL = 5 * time.Second
	DefaultMaxTTL = time.Hour
)

// Default idle timeouts that fit together: the client keeps a connection
// longer than pull mode's 30 s refresh and closes it before the server.
const (
	DefaultClientIdle = 35 * time.Second
	DefaultServerIdle = 40 * time.Second
)

// FallbackPlaintext is the only accepted non-empty value of Config.Fallback.
const FallbackPlaintext = "plaintext"

// Config configures a Client. Zero durations and sizes take the defaults
// documented on each field.
type Config struct {
	// Servers are "host:port" or "host" (port 853) addresses, tried in order.
	Servers []string
	// ServerName is the name verified in the server certificate and the key
	// of the TLS session cache. Empty: the host part of each server address
	// (which then must not be an IP literal).
	ServerName string
	// RootCAs verifies the server chain; nil means the system pool.
	RootCAs *x509.CertPool
	// SPKIPins, if non-empty, additionally require the leaf certificate's
	// SHA-256(SubjectPublicKeyInfo), base64 (std encoding), to be one of them.
	SPKIPins []string
	// AllowTLS12 lowers the minimum version to TLS 1.2. Default: TLS 1.3 only.
	AllowTLS12 bool

	DialTimeout      time.Duration // TCP connect; default 3 s
	HandshakeTimeout time.Duration // TLS handshake; default 3 s
	QueryTimeout     time.Duration // one query on one connection; default 3 s
	// IdleTimeout: the client closes its own connections unused this long
	// instead of reusing them; default 35 s (above pull mode's 30 s
	// refresh, below the server default 40 s). A server's shorter
	// edns-tcp-keepalive timeout is followed; a server that closes sooner
	// without saying so is handled by one transparent retry.
	IdleTimeout time.Duration
	// MaxConnsPerServer bounds the pool per server; default 1. Each
	// connection carries one query at a time.
	MaxConnsPerServer int
	// Attempts is the number of passes over Servers; default 1.
	Attempts int

	// Answer cache: TTLs are clamped to [MinTTL, MaxTTL]; defaults 5 s and
	// 1 h. MaxCacheEntries default 4096; negative disables caching.
	MinTTL, MaxTTL  time.Duration
	MaxCacheEntries int

	// RecursionDesired sets RD on queries built by Lookup (default false:
	// ADoT talks to authoritative servers).
	RecursionDesired bool

	// Fallback: "" (never send clear text) or "plaintext": when every TLS
	// attempt was refused, unreachable or timed out, a query for a (name,
	// type) that this client has had answered over TLS before is sent over
	// UDP (TCP if truncated) to FallbackServers. Never after a TLS failure
	// (certificate, name, pin, handshake) on any server since that server's
	// last good handshake: that is the downgrade an attacker would provoke.
	Fallback string
	// FallbackServers default to the host of each server with port 53.
	FallbackServers []string

	// LocalAddr, if set, is the source IP for connections ("127.0.0.2").
	LocalAddr string
	// SessionCache stores TLS 1.3 tickets keyed by server name; default an
	// LRU of 64 entries.
	SessionCache tls.ClientSessionCache
	// Metrics receives counters; default a fresh Metrics (see Client.Metrics).
	Metrics *Metrics
}

// Info describes how one query was answered.
type Info struct {
	Server     string        // address that answered
	NewConn    bool          // a connection was dialled for this query
	Resumed    bool          // that connection's TLS session was resumed
	TLSVersion uint16        // negotiated version (0 for cache/plaintext)
	RTT        time.Duration // query written → answer read (0 for cache)
	Cached     bool          // answered from the client cache
	Plaintext  bool          // answered over the clear-text fallback
	StaleRetry bool          // a reused connection had been closed idle; retried
}

// Session is "new" or "resumed" for the TLS session that carried the query,
// "cached" or "plaintext" otherwise.
func (i Info) Session() string {
	switch {
	case i.Cached:
		return "cached"
	case i.Plaintext:
		return "plaintext"
	case i.Resumed:
		return "resumed"
	}
	return "new"
}

// Client is an ADoT stub client with persistent connections, session
// resumption and an answer cache. It is safe for concurrent use.
type Client struct {
	cfg     Config
	metrics *Metrics
	pools   []*pool
	fbAddrs []string
	pins    map[[sha256.Size]byte]bool

	cacheMu sync.Mutex
	cache   map[cacheKey]cacheEntry

	// answered holds the (name, type) pairs answered over TLS: the only
	// ones clear-text fallback may ever ask.
	answeredMu sync.Mutex
	answered   map[cacheKey]struct{}

	closed atomic.Bool

	// Test hooks reproducing the stalls described in README.md.
	noKeepalive bool // send no edns-tcp-keepalive (the server then advertises nothing)
	noQuickAck  bool // do not arm TCP_QUICKACK around the first query
	splitWrites bool // write length and message as two TLS records, Nagle on
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

type pool struct {
	addr string
	tls  *tls.Config
	sem  chan struct{}
	mu   sync.Mutex
	idle []*dconn

	// Dead-server memory, under mu: after a transport failure the server
	// is skipped until deadUntil (back-off doubling from backoffBase to
	// backoffMax per consecutive failure); authFailed is set by a TLS
	// failure and cleared by the next good handshake.
	failures   int
	deadUntil  time.Time
	authFailed bool
}

// Back-off of a server after consecutive transport failures: backoffBase,
// doubled per further failure, at most backoffMax.
const (
	backoffBase = 5 * time.Second
	backoffMax  = 2 * time.Minute
)

type dconn struct {
	c        *tls.Conn
	raw      net.Conn
	used     int // queries completed on this connection
	resumed  bool
	version  uint16
	lastUsed time.Time
	// idleLimit is how long the connection may sit idle: IdleTimeout, or
	// less when the server advertised a shorter edns-tcp-keepalive.
	idleLimit time.Duration
	idleTimer *time.Timer // closes it when idleLimit passes in the pool
}

// NewClient validates cfg and returns a Client. It does not connect.
func NewClient(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("adot: no servers configured")
	}
	if cfg.Fallback != "" && cfg.Fallback != FallbackPlaintext {
		return nil, fmt.Errorf("adot: fallback %q: only \"plaintext\" or empty", cfg.Fallback)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 3*time.Second)
	def(&cfg.HandshakeTimeout, 3*time.Second)
	def(&cfg.QueryTimeout, 3*time.Second)
	def(&cfg.IdleTimeout, DefaultClientIdle)
	def(&cfg.MinTTL, DefaultMinTTL)
	def(&cfg.MaxTTL, DefaultMaxTTL)
	if cfg.MaxTTL < cfg.MinTTL {
		return nil, errors.New("adot: MaxTTL < MinTTL")
	}
	if cfg.MaxConnsPerServer <= 0 {
		cfg.MaxConnsPerServer = 1
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 1
	}
	if cfg.MaxCacheEntries == 0 {
		cfg.MaxCacheEntries = 4096
	}
	if cfg.SessionCache == nil {
		cfg.SessionCache = tls.NewLRUClientSessionCache(64)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = new(Metrics)
	}
	if cfg.LocalAddr != "" {
		if _, err := netip.ParseAddr(cfg.LocalAddr); err != nil {
			return nil, fmt.Errorf("adot: LocalAddr: %w", err)
		}
	}
	c := &Client{cfg: cfg, metrics: cfg.Metrics, cache: map[cacheKey]cacheEntry{}, answered: map[cacheKey]struct{}{}}
	if len(cfg.SPKIPins) > 0 {
		c.pins = map[[sha256.Size]byte]bool{}
		for _, p := range cfg.SPKIPins {
			b, err := base64.StdEncoding.DecodeString(p)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("adot: SPKI pin %q: want base64 of 32 octets", p)
			}
			c.pins[[sha256.Size]byte(b)] = true
		}
	}
	for _, s := range cfg.Servers {
		addr := withPort(s, DefaultPort)
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("adot: server %q: %w", s, err)
		}
		name := cfg.ServerName
		if name == "" {
			if _, err := netip.ParseAddr(host); err == nil {
				return nil, fmt.Errorf("adot: server %q is an IP address: ServerName is required", s)
			}
			name = host
		}
		minV := uint16(tls.VersionTLS13)
		if cfg.AllowTLS12 {
			minV = tls.VersionTLS12
		}
		tc := &tls.Config{
			ServerName:         name,
			RootCAs:            cfg.RootCAs,
			MinVersion:         minV,
			MaxVersion:         tls.VersionTLS13,
			ClientSessionCache: cfg.SessionCache,
			NextProtos:         []string{"dot"},
		}
		if c.pins != nil {
			tc.VerifyConnection = c.verifyPins
		}
		c.pools = append(c.pools, &pool{addr: addr, tls: tc, sem: make(chan struct{}, cfg.MaxConnsPerServer)})
		if len(cfg.FallbackServers) == 0 {
			c.fbAddrs = append(c.fbAddrs, net.JoinHostPort(host, "53"))
		}
	}
	for _, s := range cfg.FallbackServers {
		c.fbAddrs = append(c.fbAddrs, withPort(s, "53"))
	}
	return c, nil
}

func withPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), port)
}

// SPKIHash returns the base64 SHA-256 of cert's SubjectPublicKeyInfo, the
// form expected in Config.SPKIPins.
func SPKIHash(cert *x509.Certificate) string {
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:])
}

func (c *Client) verifyPins(cs tls.ConnectionState) error {
	// Runs after the chain and name have been verified (also on resumption).
	if len(cs.PeerCertificates) == 0 {
		return errPin
	}
	if !c.pins[sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)] {
		return errPin
	}
	return nil
}

// Metrics returns the client's counters.
func (c *Client) Metrics() *Metrics { return c.metrics }

// Close closes idle connections; in-flight queries finish on their own.
func (c *Client) Close() error {
	c.closed.Store(true)
	for _, p := range c.pools {
		p.mu.Lock()
		idle := p.idle
		p.idle = nil
		p.mu.Unlock()
		for _, d := range idle {
			c.closeConn(d)
		}
	}
	return nil
}

func (c *Client) closeConn(d *dconn) {
	_ = d.c.Close()
	c.metrics.OpenConns.Add(-1)
}

// Lookup resolves name to its A (qtype dns.TypeA) or AAAA (dns.TypeAAAA)
// addresses. An empty answer (NODATA) returns no addresses and no error.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	a, _, err := c.LookupInfo(ctx, name, qtype)
	return a, err
}

// LookupInfo is Lookup that also reports how the answer was obtained.
func (c *Client) LookupInfo(ctx context.Context, name string, qtype uint16) ([]netip.Addr, Info, error) {
	a, _, info, err := c.lookup(ctx, name, qtype)
	return a, info, err
}

// LookupTTL is Lookup that also returns how long the answer stays valid:
// the remaining lifetime of the cached answer, i.e. the answer's TTL (the
// RRset's minimum, or the SOA's negative TTL for NODATA) clamped to
// [MinTTL, MaxTTL] and counted down since it was received. Callers that keep
// the addresses should ask again after it. With the cache disabled it is
// the clamped TTL of the fresh answer.
func (c *Client) LookupTTL(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	a, ttl, _, err := c.lookup(ctx, name, qtype)
	return a, ttl, err
}

func (c *Client) lookup(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, Info, error) {
	if qtype != dns.TypeA && qtype != dns.TypeAAAA {
		return nil, 0, Info{}, fmt.Errorf("adot: Lookup supports A and AAAA, not %s", dns.TypeToString[qtype])
	}
	name = dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, 0, Info{}, fmt.Errorf("adot: invalid name %q", name)
	}
	key := cacheKey{name, qtype}
	if addrs, left, ok := c.cacheGet(key); ok {
		c.metrics.CacheHits.Add(1)
		return addrs, left, Info{Cached: true}, nil
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = c.cfg.RecursionDesired
	resp, info, err := c.Exchange(ctx, m)
	if err != nil {
		return nil, 0, info, err
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, 0, info, &Error{Cause: CauseNXDomain, Server: info.Server, Name: name}
	default:
		return nil, 0, info, &Error{Cause: CauseProtocol, Server: info.Server, Name: name,
			Err: fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])}
	}
	var addrs []netip.Addr
	var ttl uint32 = 1<<32 - 1
	for _, rr := range resp.Answer {
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				a, _ = netip.AddrFromSlice(v.A.To4())
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				a, _ = netip.AddrFromSlice(v.AAAA.To16())
			}
		}
		if a.IsValid() {
			addrs = append(addrs, a)
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	if len(addrs) == 0 { // NODATA: negative TTL from the SOA (RFC 2308)
		ttl = 0
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
	}
	life := c.clampTTL(time.Duration(ttl) * time.Second)
	c.cachePut(key, addrs, life)
	return addrs, life, info, nil
}

// cacheGet returns a cached answer and its remaining lifetime.
func (c *Client) cacheGet(k cacheKey) ([]netip.Addr, time.Duration, bool) {
	if c.cfg.MaxCacheEntries < 0 {
		return nil, 0, false
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	e, ok := c.cache[k]
	if !ok {
		return nil, 0, false
	}
	left := time.Until(e.expires)
	if left <= 0 {
		delete(c.cache, k)
		return nil, 0, false
	}
	return append([]netip.Addr(nil), e.addrs...), left, true
}

// clampTTL bounds an answer's TTL to [MinTTL, MaxTTL].
func (c *Client) clampTTL(ttl time.Duration) time.Duration {
	return max(c.cfg.MinTTL, min(c.cfg.MaxTTL, ttl))
}

// cachePut stores an answer for ttl (already clamped).
func (c *Client) cachePut(k cacheKey, addrs []netip.Addr, ttl time.Duration) {
	if c.cfg.MaxCacheEntries < 0 {
		return
	}
	now := time.Now()
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if len(c.cache) >= c.cfg.MaxCacheEntries {
		for key, e := range c.cache {
			if now.After(e.expires) {
				delete(c.cache, key)
			}
		}
		for key := range c.cache { // still full: evict arbitrary entries
			if len(c.cache) < c.cfg.MaxCacheEntries {
				break
			}
			delete(c.cache, key)
		}
	}
	c.cache[k] = cacheEntry{addrs: addrs, expires: now.Add(ttl)}
}

// FlushCache drops all cached answers.
func (c *Client) FlushCache() {
	c.cacheMu.Lock()
	clear(c.cache)
	c.cacheMu.Unlock()
}

// markAnswered records that (name, type) was answered over TLS.
func (c *Client) markAnswered(k cacheKey) {
	c.answeredMu.Lock()
	defer c.answeredMu.Unlock()
	if len(c.answered) >= 65536 { // bounded; forgetting errs on the safe side
		clear(c.answered)
	}
	c.answered[k] = struct{}{}
}

func (c *Client) wasAnswered(k cacheKey) bool {
	c.answeredMu.Lock()
	defer c.answeredMu.Unlock()
	_, ok := c.answered[k]
	return ok
}

// authFailedAnywhere reports whether some server failed TLS (certificate,
// pin, handshake) and has not completed a good handshake since.
func (c *Client) authFailedAnywhere() bool {
	for _, p := range c.pools {
		p.mu.Lock()
		f := p.authFailed
		p.mu.Unlock()
		if f {
			return true
		}
	}
	return false
}

// inBackoff reports whether p is remembered dead (and not yet due for a
// new attempt).
func (p *pool) inBackoff(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.Before(p.deadUntil)
}

// failed records a failure of cause on p: transport and TLS failures put
// the server in back-off.
func (p *pool) failed(cause Cause, now time.Time) {
	switch cause {
	case CauseTimeout, CauseRefused, CauseNetwork, CauseTLS:
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	d := backoffBase << min(p.failures-1, 10)
	p.deadUntil = now.Add(min(d, backoffMax))
	if cause == CauseTLS {
		p.authFailed = true
	}
}

// succeeded clears p's back-off (and, after a good handshake, its TLS
// failure).
func (p *pool) succeeded(handshake bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures, p.deadUntil = 0, time.Time{}
	if handshake {
		p.authFailed = false
	}
}

// fallbackOK reports whether a failure of cause leaves clear text allowed:
// only a refused connection, an unreachable network or a timeout.
func fallbackOK(cause Cause) bool {
	return cause == CauseTimeout || cause == CauseRefused || cause == CauseNetwork
}

// Exchange sends m (exactly one question) over TLS to the configured
// servers in order (skipping those in back-off after failures while
// another is not), Attempts passes, and returns the first answer that is
// neither SERVFAIL nor REFUSED. If every server failed, the error is an
// *Error with the cause of the last failure; if the last failure was an
// answer (SERVFAIL/REFUSED), that answer is returned along with the error.
// m is not modified.
func (c *Client) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, Info, error) {
	if c.closed.Load() {
		return nil, Info{}, errors.New("adot: client closed")
	}
	if len(m.Question) != 1 {
		return nil, Info{}, errors.New("adot: query must have exactly one question")
	}
	name := m.Question[0].Name
	key := cacheKey{dns.CanonicalName(name), m.Question[0].Qtype}
	q := m.Copy()
	if q.Id == 0 {
		q.Id = dns.Id()
	}
	// EDNS(0) with edns-tcp-keepalive (RFC 7828: the server tells us its
	// idle timeout) and padding to 128 octets (RFC 8467; it also asks the
	// server to pad its answer).
	opt := q.IsEdns0()
	if opt == nil {
		q.SetEdns0(ednsUDPSize, false)
		opt = q.IsEdns0()
	}
	if _, ok := keepalive(q); !ok && !c.noKeepalive {
		opt.Option = append(opt.Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
	}
	wire, err := packPadded(q, QueryPadBlock)
	if err != nil {
		return nil, Info{}, &Error{Cause: CauseProtocol, Name: name, Err: err}
	}
	var (
		lastErr      error
		lastResp     *dns.Msg
		lastInfo     Info
		transportErr bool
		mayFallback  = true // every failure so far was refused/unreachable/timeout
	)
	for pass := 0; pass < c.cfg.Attempts; pass++ {
		// Servers in back-off are skipped unless all are (then each is
		// tried: an answer late beats none).
		now := time.Now()
		skipDead := false
		for _, p := range c.pools {
			if !p.inBackoff(now) {
				skipDead = true
				break
			}
		}
		for _, p := range c.pools {
			if ctx.Err() != nil {
				break
			}
			if skipDead && p.inBackoff(now) {
				c.metrics.BackoffSkips.Add(1)
				continue
			}
			resp, info, err := c.exchangeOne(ctx, p, q, wire, skipDead)
			if errors.Is(err, errBackoff) { // became dead while we waited for it
				c.metrics.BackoffSkips.Add(1)
				continue
			}
			if err != nil {
				cause := classify(err)
				c.metrics.fail(cause)
				mayFallback = mayFallback && fallbackOK(cause)
				lastErr = &Error{Cause: cause, Server: p.addr, Name: name, Err: err}
				lastResp, transportErr = nil, true
				continue
			}
			p.succeeded(info.NewConn)
			c.metrics.answer(resp.Rcode)
			switch resp.Rcode {
			case dns.RcodeServerFailure, dns.RcodeRefused:
				cause := CauseServfail
				if resp.Rcode == dns.RcodeRefused {
					cause = CauseRefused
				}
				c.metrics.fail(cause)
				lastErr = &Error{Cause: cause, Server: p.addr, Name: name}
				lastResp, lastInfo, transportErr = resp, info, false
				continue
			}
			c.markAnswered(key)
			return resp, info, nil
		}
	}
	if lastErr == nil { // cancelled, or every server skipped in back-off
		err := ctx.Err()
		if err == nil {
			err = errBackoff
		}
		lastErr = &Error{Cause: CauseTimeout, Name: name, Err: err}
		transportErr = true
	}
	if transportErr && c.cfg.Fallback == FallbackPlaintext && ctx.Err() == nil {
		switch {
		case !mayFallback || c.authFailedAnywhere():
			c.metrics.FallbackRefusedTLS.Add(1)
		case !c.wasAnswered(key):
			c.metrics.FallbackRefusedUnanswered.Add(1)
		default:
			if resp, info, err := c.exchangePlain(ctx, q); err == nil {
				return resp, info, nil
			}
		}
	}
	return lastResp, lastInfo, lastErr
}

// exchangeOne runs one query on one server: on a pooled connection if there
// is one, retried once on a fresh connection if the pooled one turns out to
// have been closed by the server while idle.
//
// With skipDead, a server that went into back-off while this query waited
// for its connection is not dialled (errBackoff): queries queued behind
// one that timed out move on instead of timing out one after another.
func (c *Client) exchangeOne(ctx context.Context, p *pool, q *dns.Msg, wire []byte, skipDead bool) (_ *dns.Msg, _ Info, err error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, Info{}, ctx.Err()
	}
	defer func() { <-p.sem }()
	// Runs before the connection slot is released, so a query waiting for
	// it sees the back-off.
	defer func() {
		if err != nil && !errors.Is(err, errBackoff) && ctx.Err() == nil {
			p.failed(classify(err), time.Now())
		}
	}()

	d := c.popIdle(p)
	reused := d != nil
	info := Info{Server: p.addr}
	if d == nil && skipDead && p.inBackoff(time.Now()) {
		return nil, info, errBackoff
	}
	if d == nil {
		var err error
		if d, err = c.dial(ctx, p); err != nil {
			return nil, info, err
		}
	}
	resp, rtt, err := c.roundTrip(ctx, d, q, wire)
	if err != nil && reused && isStaleConnErr(err) && ctx.Err() == nil {
		c.closeConn(d)
		c.metrics.StaleRetries.Add(1)
		info.StaleRetry = true
		reused = false
		if d, err = c.dial(ctx, p); err != nil {
			return nil, info, err
		}
		resp, rtt, err = c.roundTrip(ctx, d, q, wire)
	}
	if err != nil {
		c.closeConn(d)
		return nil, info, err
	}
	info.NewConn, info.Resumed, info.TLSVersion, info.RTT = !reused, d.resumed, d.version, rtt
	c.metrics.Queries.Add(1)
	c.metrics.RTT.Observe(rtt)
	d.lastUsed = time.Now()
	if c.closed.Load() || d.idleLimit <= 0 {
		c.closeConn(d)
	} else {
		p.mu.Lock()
		p.idle = append(p.idle, d)
		d.idleTimer = time.AfterFunc(d.idleLimit, func() { c.expireIdle(p, d) })
		p.mu.Unlock()
	}
	return resp, info, nil
}

func (c *Client) popIdle(p *pool) *dconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		d := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		d.idleTimer.Stop() // out of p.idle: expireIdle leaves it alone
		if time.Since(d.lastUsed) < d.idleLimit {
			return d
		}
		c.closeConn(d)
	}
	return nil
}

// expireIdle closes d if it is still idle in p: the client closes its
// connections before the server's advertised idle timeout, instead of
// finding them closed on the next query.
func (c *Client) expireIdle(p *pool, d *dconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == d {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			c.metrics.IdleCloses.Add(1)
			c.closeConn(d)
			return
		}
	}
}

func (c *Client) dial(ctx context.Context, p *pool) (*dconn, error) {
	c.metrics.Dials.Add(1)
	dl := net.Dialer{Timeout: c.cfg.DialTimeout}
	if c.cfg.LocalAddr != "" {
		dl.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.cfg.LocalAddr)}
	}
	raw, err := dl.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	setNoDelay(raw)
	tc := tls.Client(raw, p.tls)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		c.metrics.HandshakeErr.Add(1)
		if cause := classify(err); cause == CauseNetwork || cause == CauseRefused {
			// An EOF/reset during the handshake is the server rejecting us
			// (e.g. no common TLS version) more often than the network.
			err = fmt.Errorf("%w (%w; no common TLS version or parameters?)", errHandshake, err)
		}
		return nil, err
	}
	cs := tc.ConnectionState()
	c.metrics.Handshakes.Add(1)
	c.metrics.handshake(p.addr, cs)
	if cs.DidResume {
		c.metrics.Resumptions.Add(1)
	}
	c.metrics.OpenConns.Add(1)
	if c.splitWrites {
		if t, ok := raw.(*net.TCPConn); ok {
			_ = t.SetNoDelay(false)
		}
	}
	return &dconn{c: tc, raw: raw, resumed: cs.DidResume, version: cs.Version, lastUsed: time.Now(), idleLimit: c.cfg.IdleTimeout}, nil
}

func (c *Client) roundTrip(ctx context.Context, d *dconn, q *dns.Msg, wire []byte) (*dns.Msg, time.Duration, error) {
	deadline := time.Now().Add(c.cfg.QueryTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = d.c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = d.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	first := d.used == 0
	if first && !c.noQuickAck {
		// The server's NewSessionTicket records arrive right after the
		// handshake; a server with Nagle on (BIND 9.18) holds our answer
		// until they are ACKed, and our kernel would delay that ACK.
		setQuickAck(d.raw)
	}
	start := time.Now()
	var err error
	if c.splitWrites {
		_, err = (&net.Buffers{[]byte{byte(len(wire) >> 8), byte(len(wire))}, wire}).WriteTo(d.c)
	} else {
		err = writeFramed(d.c, wire)
	}
	if err != nil {
		return nil, 0, err
	}
	if first && !c.noQuickAck {
		setQuickAck(d.raw)
	}
	b, err := readFramed(d.c)
	rtt := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, 0, err
	}
	_ = d.c.SetDeadline(time.Time{})
	d.used++
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		return nil, 0, &Error{Cause: CauseProtocol, Err: err}
	}
	if err := checkReply(q, resp); err != nil {
		return nil, 0, err
	}
	if k, ok := keepalive(resp); ok && k.Timeout > 0 {
		d.idleLimit = followKeepalive(time.Duration(k.Timeout)*100*time.Millisecond, c.cfg.IdleTimeout)
	}
	if hasPadding(resp) {
		c.metrics.Padded.Add(1)
	}
	return resp, rtt, nil
}

func checkReply(q, r *dns.Msg) error {
	if r.Id != q.Id || !r.Response {
		return &Error{Cause: CauseProtocol, Err: fmt.Errorf("reply ID %d does not match query ID %d", r.Id, q.Id)}
	}
	if len(r.Question) > 0 { // FORMERR/NOTIMP may omit the question
		rq, qq := r.Question[0], q.Question[0]
		if rq.Qtype != qq.Qtype || rq.Qclass != qq.Qclass || !strings.EqualFold(rq.Name, qq.Name) {
			return &Error{Cause: CauseProtocol, Err: fmt.Errorf("reply question %s does not match", rq.String())}
		}
	}
	return nil
}

// exchangePlain is the opt-in clear-text fallback: UDP, then TCP if the
// answer is truncated, to each fallback server in order.
func (c *Client) exchangePlain(ctx context.Context, q *dns.Msg) (*dns.Msg, Info, error) {
	// Padding is for encrypted transports (RFC 7830 §6) and keepalive for
	// our TLS connections: neither goes in clear text.
	q = q.Copy()
	if opt := q.IsEdns0(); opt != nil {
		kept := opt.Option[:0]
		for _, o := range opt.Option {
			if o.Option() != dns.EDNS0PADDING && o.Option() != dns.EDNS0TCPKEEPALIVE {
				kept = append(kept, o)
			}
		}
		opt.Option = kept
	}
	var lastErr error
	for _, addr := range c.fbAddrs {
		for _, proto := range []string{"udp", "tcp"} {
			cl := &dns.Client{Net: proto, Timeout: c.cfg.QueryTimeout}
			if c.cfg.LocalAddr != "" {
				ip := net.ParseIP(c.cfg.LocalAddr)
				cl.Dialer = &net.Dialer{Timeout: c.cfg.DialTimeout, LocalAddr: &net.UDPAddr{IP: ip}}
				if proto == "tcp" {
					cl.Dialer.LocalAddr = &net.TCPAddr{IP: ip}
				}
			}
			c.metrics.Plaintext.Add(1)
			resp, rtt, err := cl.ExchangeContext(ctx, q, addr)
			if err != nil {
				lastErr = err
				c.metrics.fail(classify(err))
				break
			}
			if resp.Truncated && proto == "udp" {
				continue
			}
			c.metrics.Queries.Add(1)
			c.metrics.RTT.Observe(rtt)
			c.metrics.answer(resp.Rcode)
			return resp, Info{Server: addr, Plaintext: true, RTT: rtt}, nil
		}
	}
	return nil, Info{}, lastErr
}
