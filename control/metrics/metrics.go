// Package metrics exports the engine's counters in the Prometheus text
// format. Counters live per poll loop (no shared cache line on the packet
// path); the collector sums them at scrape time.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/buildinfo"
)

// Collector sums the counters of every registered processor.
type Collector struct {
	eng   *engine.Engine
	mu    sync.Mutex
	procs []*engine.Processor
	xdp   []xdpSource

	rxPackets, rxBytes, txPackets, packets, drops, lisp, epoch, version, keyed, unkeyed, horizon, size *prometheus.Desc
}

// xdpSource is a port's XDP pre-filter: its drops by reason.
type xdpSource struct {
	port  string
	drops func() (map[engine.Reason]uint64, error)
}

// NewCollector returns a collector for eng's ports.
func NewCollector(eng *engine.Engine) *Collector {
	return &Collector{
		eng:       eng,
		rxPackets: prometheus.NewDesc("psavd_rx_packets_total", "Frames received, by port of arrival (those the XDP pre-filter dropped included).", []string{"port"}, nil),
		rxBytes:   prometheus.NewDesc("psavd_rx_bytes_total", "Octets received, by port of arrival.", []string{"port"}, nil),
		txPackets: prometheus.NewDesc("psavd_tx_packets_total", "Frames transmitted, by port they left by.", []string{"port"}, nil),
		packets:   prometheus.NewDesc("psavd_packets_total", "Frames forwarded, by port of arrival and action.", []string{"port", "action"}, nil),
		drops:     prometheus.NewDesc("psavd_drops_total", "Frames dropped, by port of arrival, reason and stage (engine: the userspace engine; xdp: the XDP pre-filter, before AF_XDP).", []string{"port", "reason", "stage"}, nil),
		lisp:      prometheus.NewDesc("psavd_lisp_events_total", "What the LISP data plane did besides the action or drop (encapsulated, decapsulated, map-cache miss, miss not queued, native forward), by port of arrival.", []string{"port", "event"}, nil),
		epoch:     prometheus.NewDesc("psavd_epoch", "Current PSAV epoch (docs/wire.md §2.5).", nil, nil),
		version:   prometheus.NewDesc("psavd_tables_version", "Version of the table snapshot in use.", nil, nil),
		keyed:     prometheus.NewDesc("psavd_peers_keyed", "Peers whose key for the current epoch the data plane holds.", nil, nil),
		horizon:   prometheus.NewDesc("psavd_abr_key_horizon_seconds", "How long the data plane can go on tagging and validating with the keys it holds (the fail-static horizon): seconds until the first peer in use runs out of keys; -1 when no member uses a peer. Alarm well before 0.", nil, nil),
		unkeyed:   prometheus.NewDesc("psavd_members_unkeyed", "Alliance members (not this AS) whose keys are gone: their packets are forwarded unverifiable (or dropped no-key with [engine] no_key = \"drop\"). Alarm on > 0.", nil, nil),
		size:      prometheus.NewDesc("psavd_table_entries", "Entries of the snapshot in use, by table: members, prefixes (AS-Prefix), peers (AS-Tag), replace (community borders), routes, map-cache (LISP).", []string{"table"}, nil),
	}
}

// Add registers a poll loop's processor.
func (c *Collector) Add(p *engine.Processor) {
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
}

// AddXDP registers the XDP pre-filter of port: its drops are exported as
// psavd_drops_total{stage="xdp"}.
func (c *Collector) AddXDP(port string, drops func() (map[engine.Reason]uint64, error)) {
	c.mu.Lock()
	c.xdp = append(c.xdp, xdpSource{port, drops})
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rxPackets, c.rxBytes, c.txPackets, c.packets, c.drops, c.lisp, c.epoch, c.version, c.keyed, c.unkeyed, c.horizon, c.size} {
		ch <- d
	}
}

// Totals is the sum of every loop's counters, by engine port index.
type Totals struct {
	RxPackets, RxBytes, TxPackets []uint64
	Actions                       [][]uint64 // [port][action]
	Drops                         [][]uint64 // [port][reason]
	LISP                          [][]uint64 // [port][engine.LISPEvent]
	// The XDP pre-filter's drops (ports with one: XDP[port]), by reason;
	// XDPReasons are the reasons it drops for. They are in RxPackets too
	// (not in RxBytes: the pre-filter counts frames only).
	XDP        []bool
	XDPDrops   [][]uint64 // [port][reason]
	XDPReasons []engine.Reason
}

// Sum adds up the counters of every loop.
func (c *Collector) Sum() Totals {
	n := len(c.eng.Spec().Ports)
	t := Totals{RxPackets: make([]uint64, n), RxBytes: make([]uint64, n), TxPackets: make([]uint64, n),
		Actions: make([][]uint64, n), Drops: make([][]uint64, n), LISP: make([][]uint64, n),
		XDP: make([]bool, n), XDPDrops: make([][]uint64, n)}
	for i := 0; i < n; i++ {
		t.XDPDrops[i] = make([]uint64, len(engine.Reasons()))
		t.Actions[i] = make([]uint64, len(engine.Actions()))
		t.Drops[i] = make([]uint64, len(engine.Reasons()))
		t.LISP[i] = make([]uint64, len(engine.LISPEvents()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.xdp {
		d, err := x.drops()
		if err != nil {
			continue // a closed interface: no series rather than a wrong one
		}
		for i, p := range c.eng.Spec().Ports {
			if p.Name != x.port {
				continue
			}
			t.XDP[i] = true
			for r, v := range d {
				t.XDPDrops[i][r] += v
				// Received by the port, judged (dropped) in XDP: each
				// frame received is judged once, at one stage.
				t.RxPackets[i] += v
				if !slices.Contains(t.XDPReasons, r) {
					t.XDPReasons = append(t.XDPReasons, r)
				}
			}
		}
	}
	slices.Sort(t.XDPReasons)
	for _, p := range c.procs {
		in := p.In()
		k := p.Counters
		t.RxPackets[in] += k.RxPackets.Load()
		t.RxBytes[in] += k.RxBytes.Load()
		for i := range k.Actions {
			t.Actions[in][i] += k.Actions[i].Load()
		}
		for i := range k.Drops {
			t.Drops[in][i] += k.Drops[i].Load()
		}
		for i := range k.LISP {
			t.LISP[in][i] += k.LISP[i].Load()
		}
		for out := range k.TxPackets {
			t.TxPackets[out] += k.TxPackets[out].Load()
		}
	}
	return t
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	t := c.Sum()
	lispNode := false // LISP series only where a port encapsulates
	for _, p := range c.eng.Spec().Ports {
		lispNode = lispNode || p.Encap == engine.EncapLISP
	}
	for i, p := range c.eng.Spec().Ports {
		ch <- prometheus.MustNewConstMetric(c.rxPackets, prometheus.CounterValue, float64(t.RxPackets[i]), p.Name)
		ch <- prometheus.MustNewConstMetric(c.rxBytes, prometheus.CounterValue, float64(t.RxBytes[i]), p.Name)
		ch <- prometheus.MustNewConstMetric(c.txPackets, prometheus.CounterValue, float64(t.TxPackets[i]), p.Name)
		for _, a := range engine.Actions() {
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(t.Actions[i][a]), p.Name, a.String())
		}
		for _, r := range engine.Reasons() {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(t.Drops[i][r]), p.Name, r.String(), "engine")
		}
		if t.XDP[i] {
			for _, r := range t.XDPReasons {
				ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(t.XDPDrops[i][r]), p.Name, r.String(), "xdp")
			}
		}
		if lispNode {
			for _, e := range engine.LISPEvents() {
				ch <- prometheus.MustNewConstMetric(c.lisp, prometheus.CounterValue, float64(t.LISP[i][e]), p.Name, e.String())
			}
		}
	}
	tb := c.eng.Tables()
	e := engine.Epoch(time.Now().Unix(), tb.T0, tb.Period)
	keyed := 0
	for i := range tb.Peers {
		if _, _, ok := tb.Peers[i].Key(e); ok {
			keyed++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.epoch, prometheus.GaugeValue, float64(e))
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(tb.Version))
	ch <- prometheus.MustNewConstMetric(c.keyed, prometheus.GaugeValue, float64(keyed))
	unkeyed := 0
	for _, m := range tb.Members {
		if !m.Local && !tb.Keyed(m.ValidatePeer, e) {
			unkeyed++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.unkeyed, prometheus.GaugeValue, float64(unkeyed))
	ch <- prometheus.MustNewConstMetric(c.horizon, prometheus.GaugeValue, float64(tb.KeyHorizon(time.Now().Unix())))
	sizes := map[string]int{"members": len(tb.Members), "peers": len(tb.Peers), "replace": len(tb.Replace)}
	if tb.Prefixes != nil {
		sizes["prefixes"] = tb.Prefixes.Size()
	}
	if tb.Routes != nil {
		sizes["routes"] = tb.Routes.Size()
	}
	if tb.MapCache != nil {
		sizes["map-cache"] = tb.MapCache.Size()
	}
	for _, name := range []string{"members", "prefixes", "peers", "replace", "routes", "map-cache"} {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(sizes[name]), name)
	}
}

// Serve serves /metrics on addr until ctx is done, with the engine's
// collector and any others (the ABR feed's, …). It returns once the
// listener is bound (or failed), so a caller can report readiness honestly.
func Serve(ctx context.Context, addr string, c *Collector, others ...prometheus.Collector) error {
	return ServeReady(ctx, addr, nil, c, others...)
}

// ServeReady is Serve with the health endpoints a service manager or a
// load balancer asks: /healthz answers 200 while the process serves,
// /readyz 200 when ready says so and 503 naming what is not ready
// otherwise (ready nil: always). /metrics also carries psavd_build_info
// and the standard go_ and process_ series.
func ServeReady(ctx context.Context, addr string, ready func() (bool, []string), c *Collector, others ...prometheus.Collector) error {
	reg := prometheus.NewRegistry()
	cols := append([]prometheus.Collector{buildInfo(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, others...)
	if c != nil { // nil: a node without a data plane (an ACS only)
		cols = append(cols, c)
	}
	for _, col := range cols {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if ok, down := ready(); !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %s\n", strings.Join(down, ", "))
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under us; nothing to report to
		}
	}()
	return nil
}

// buildInfo is psavd_build_info{version,commit,goversion} = 1.
func buildInfo() prometheus.Collector {
	i := buildinfo.Get()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "psavd_build_info",
		Help:        "The running binary's build: version, commit and Go version (value 1).",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	}, func() float64 { return 1 })
}
