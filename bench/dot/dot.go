// Package dot benchmarks DNS query round-trip time against a local BIND 9
// (started by internal/bindserver) in four modes, in one run:
//
//   - udp:        clear UDP with miekg/dns (dns.Client{Net: "udp"}, a new
//     socket per query, as dns.Client.Exchange does);
//   - persistent: our adot.Client on one persistent DoT connection;
//   - resumed:    a new adot.Client (new TCP+TLS connection) per query,
//     resuming the TLS 1.3 session from a shared tls.ClientSessionCache;
//   - full:       a new adot.Client per query with an empty session cache
//     (full TLS 1.3 handshake every time).
//
// Every query is timed from just before the call to just after the answer
// (for resumed/full that includes TCP connect and the handshake), N
// sequential queries per mode after a few unmeasured warm-up queries.
package dot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/internal/bindserver"
)

// Mode is one way of sending the queries.
type Mode string

// The modes, in the order of the issue: (a) … (d).
const (
	ModeUDP        Mode = "udp"
	ModePersistent Mode = "persistent"
	ModeResumed    Mode = "resumed"
	ModeFull       Mode = "full"
)

// AllModes is the default set, in report order.
var AllModes = []Mode{ModeUDP, ModePersistent, ModeResumed, ModeFull}

// Target is the goal for p50(persistent) / p50(udp).
const Target = 1.5

// Options configures Run. Zero values take the defaults noted.
type Options struct {
	Queries int           // measured queries per mode; default 1000
	Warmup  int           // unmeasured queries per mode first; default 10
	Name    string        // default "0.map-server.example.test."
	QType   uint16        // default dns.TypeA
	Modes   []Mode        // default AllModes
	Named   string        // named binary; default bindserver.FindNamed
	Timeout time.Duration // per query; default 3 s
}

// ModeResult is the outcome of one mode.
type ModeResult struct {
	Mode     Mode
	Queries  int           // measured queries
	P50, P99 time.Duration // of the per-query round-trip times
	Mean     time.Duration
	QPS      float64 // Queries / wall time of the sequential loop
	NewConns int     // measured queries that dialled a connection (DoT modes)
	Resumed  int     // measured queries whose connection resumed a session
}

// Results is the outcome of Run.
type Results struct {
	BIND  string // named -v
	Modes []ModeResult
	// Ratio is p50(persistent)/p50(udp); 0 if either mode was not run.
	Ratio float64
}

// Get returns the result of mode m.
func (r Results) Get(m Mode) (ModeResult, bool) {
	for _, x := range r.Modes {
		if x.Mode == m {
			return x, true
		}
	}
	return ModeResult{}, false
}

var modeLabel = map[Mode]string{
	ModeUDP:        "(a) clear UDP (miekg/dns)",
	ModePersistent: "(b) adot, persistent DoT connection",
	ModeResumed:    "(c) new connection per query, TLS resumed",
	ModeFull:       "(d) new connection per query, full handshake",
}

// WriteTable writes a Markdown table of r and the ratio line.
func (r Results) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "| mode | queries | p50 | p99 | mean | queries/s | resumed |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range r.Modes {
		res := "–"
		if m.Mode == ModeResumed || m.Mode == ModeFull {
			res = fmt.Sprintf("%d/%d", m.Resumed, m.Queries)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %.0f | %s |\n", modeLabel[m.Mode], m.Queries,
			fmtDur(m.P50), fmtDur(m.P99), fmtDur(m.Mean), m.QPS, res)
	}
	if r.Ratio > 0 {
		verdict := "meets"
		if r.Ratio > Target {
			verdict = "misses"
		}
		fmt.Fprintf(w, "\np50(b)/p50(a) = %.2f (target ≤ %.1f: %s)\n", r.Ratio, Target, verdict)
	}
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// Run starts BIND with a TLS 1.3 DoT listener and a clear UDP/TCP listener
// on 127.0.0.1, serving map-server.example.test (A/AAAA for 0…3), runs the
// modes and stops BIND. It returns an error wrapping bindserver.ErrNoNamed if
// named is not installed.
func Run(ctx context.Context, o Options) (Results, error) {
	if o.Queries <= 0 {
		o.Queries = 1000
	}
	if o.Warmup <= 0 {
		o.Warmup = 10
	}
	if o.Name == "" {
		o.Name = "0." + bindserver.DefaultZone
	}
	o.Name = dns.Fqdn(o.Name)
	if o.QType == 0 {
		o.QType = dns.TypeA
	}
	if len(o.Modes) == 0 {
		o.Modes = AllModes
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	b, err := bindserver.Start("", bindserver.Options{Named: o.Named, Clear: true})
	if err != nil {
		return Results{}, err
	}
	defer b.Stop()

	var r Results
	if named, err := bindserver.FindNamed(); o.Named == "" && err == nil {
		o.Named = named
	}
	if out, err := exec.Command(o.Named, "-v").Output(); err == nil {
		r.BIND = strings.TrimSpace(string(out))
	}
	for _, m := range o.Modes {
		mr, err := runMode(ctx, b, o, m)
		if err != nil {
			return r, fmt.Errorf("dot: mode %s: %w", m, err)
		}
		r.Modes = append(r.Modes, mr)
	}
	a, okA := r.Get(ModeUDP)
	p, okP := r.Get(ModePersistent)
	if okA && okP && a.P50 > 0 {
		r.Ratio = float64(p.P50) / float64(a.P50)
	}
	return r, nil
}

// querier sends one query and reports how it was carried.
type querier interface {
	query(ctx context.Context, m *dns.Msg) (*dns.Msg, adot.Info, error)
	done() // after each query, outside the timed section
	close()
}

func runMode(ctx context.Context, b *bindserver.BIND, o Options, m Mode) (ModeResult, error) {
	q, err := newQuerier(b, o, m)
	if err != nil {
		return ModeResult{}, err
	}
	defer q.close()
	mr := ModeResult{Mode: m, Queries: o.Queries}
	rtts := make([]time.Duration, 0, o.Queries)
	msgs := make([]*dns.Msg, o.Warmup+o.Queries)
	for i := range msgs {
		msgs[i] = new(dns.Msg)
		msgs[i].SetQuestion(o.Name, o.QType)
		msgs[i].RecursionDesired = false
	}
	var loopStart time.Time
	for i, msg := range msgs {
		if err := ctx.Err(); err != nil {
			return mr, err
		}
		if i == o.Warmup {
			loopStart = time.Now()
		}
		qctx, cancel := context.WithTimeout(ctx, o.Timeout)
		t0 := time.Now()
		resp, info, err := q.query(qctx, msg)
		rtt := time.Since(t0)
		cancel()
		q.done()
		if err != nil {
			return mr, fmt.Errorf("query %d: %w", i, err)
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			return mr, fmt.Errorf("query %d: rcode %s, %d answers", i, dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
		if i < o.Warmup {
			continue
		}
		rtts = append(rtts, rtt)
		if info.NewConn {
			mr.NewConns++
		}
		if info.Resumed {
			mr.Resumed++
		}
	}
	wall := time.Since(loopStart)
	mr.P50, mr.P99, mr.Mean = stats(rtts)
	if wall > 0 {
		mr.QPS = float64(len(rtts)) / wall.Seconds()
	}
	return mr, nil
}

// stats returns the nearest-rank p50 and p99 and the mean of ds (sorted in place).
func stats(ds []time.Duration) (p50, p99, mean time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Percentile(ds, 50), Percentile(ds, 99), sum / time.Duration(len(ds))
}

// Percentile returns the nearest-rank p-th percentile of sorted ds.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func newQuerier(b *bindserver.BIND, o Options, m Mode) (querier, error) {
	base := adot.Config{Servers: []string{b.TLSAddr}, ServerName: b.ServerName, RootCAs: b.PKI.CAPool,
		DialTimeout: o.Timeout, HandshakeTimeout: o.Timeout, QueryTimeout: o.Timeout, MaxCacheEntries: -1}
	switch m {
	case ModeUDP:
		return &udpQuerier{c: &dns.Client{Net: "udp", Timeout: o.Timeout}, addr: b.ClearAddr}, nil
	case ModePersistent:
		c, err := adot.NewClient(base)
		if err != nil {
			return nil, err
		}
		return &persistentQuerier{c: c}, nil
	case ModeResumed:
		return &perQueryQuerier{cfg: base, cache: tls.NewLRUClientSessionCache(8)}, nil
	case ModeFull:
		return &perQueryQuerier{cfg: base}, nil
	}
	return nil, errors.New("unknown mode")
}

type udpQuerier struct {
	c    *dns.Client
	addr string
}

func (u *udpQuerier) query(ctx context.Context, m *dns.Msg) (*dns.Msg, adot.Info, error) {
	r, rtt, err := u.c.ExchangeContext(ctx, m, u.addr)
	return r, adot.Info{Server: u.addr, RTT: rtt, Plaintext: true}, err
}

func (u *udpQuerier) done()  {}
func (u *udpQuerier) close() {}

type persistentQuerier struct{ c *adot.Client }

func (p *persistentQuerier) query(ctx context.Context, m *dns.Msg) (*dns.Msg, adot.Info, error) {
	return p.c.Exchange(ctx, m)
}

func (p *persistentQuerier) done()  {}
func (p *persistentQuerier) close() { _ = p.c.Close() }

// perQueryQuerier makes a new adot.Client, hence a new connection, for every
// query. With cache set, the clients share it and resume; without, each
// client has its own empty cache and does a full handshake.
type perQueryQuerier struct {
	cfg   adot.Config
	cache tls.ClientSessionCache
	last  *adot.Client // closed by done, untimed
}

func (p *perQueryQuerier) query(ctx context.Context, m *dns.Msg) (*dns.Msg, adot.Info, error) {
	cfg := p.cfg
	cfg.SessionCache = p.cache
	if cfg.SessionCache == nil {
		cfg.SessionCache = tls.NewLRUClientSessionCache(1)
	}
	c, err := adot.NewClient(cfg)
	if err != nil {
		return nil, adot.Info{}, err
	}
	p.last = c
	r, info, err := c.Exchange(ctx, m)
	if err == nil && !info.NewConn {
		err = errors.New("per-query client reused a connection")
	}
	return r, info, err
}

func (p *perQueryQuerier) done() {
	if p.last != nil {
		_ = p.last.Close()
		p.last = nil
	}
}

func (p *perQueryQuerier) close() { p.done() }
