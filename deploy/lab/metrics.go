package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/psavd/psavd/internal/netlab"
)

// CounterKey names one psavd counter: Metric "drops" (psavd_drops_total,
// What = reason) or "packets" (psavd_packets_total, What = action), per port.
type CounterKey struct {
	Metric, Port, What string
}

// Counters holds the psavd counters of one ABR at one moment.
type Counters map[CounterKey]float64

// Sub returns c − old, keeping only the counters that changed.
func (c Counters) Sub(old Counters) Counters {
	d := Counters{}
	for k, v := range c {
		if v != old[k] {
			d[k] = v - old[k]
		}
	}
	return d
}

// Total sums a counter over all ports.
func (c Counters) Total(metric, what string) float64 {
	var s float64
	for k, v := range c {
		if k.Metric == metric && k.What == what {
			s += v
		}
	}
	return s
}

// Scrape reads the Prometheus text of psavd at addr (host:port) from inside
// namespace ns and returns its drop and packet counters.
func Scrape(ctx context.Context, ns, addr string) (Counters, error) {
	// The TCP socket must be created inside the namespace, where 127.0.0.1
	// is the ABR's own loopback. http.Transport dials on a goroutine of its
	// own (in whatever namespace its thread is in), so the connection is
	// made here, on netlab.Do's thread, and handed to a one-shot transport.
	var conn net.Conn
	err := netlab.Do(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", ns, err)
	}
	used := false
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, fmt.Errorf("connection already used")
			}
			used = true
			return conn, nil
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("metrics of %s: %w", ns, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", ns, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads psavd_drops_total and psavd_packets_total from the
// Prometheus text format.
func ParseMetrics(r io.Reader) (Counters, error) {
	c := Counters{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var metric, what string
		switch {
		case strings.HasPrefix(line, "psavd_drops_total{"):
			metric, what = "drops", "reason"
		case strings.HasPrefix(line, "psavd_packets_total{"):
			metric, what = "packets", "action"
		case strings.HasPrefix(line, "psavd_lisp_events_total{"):
			// LISP events count as actions named lisp-<event>, so that a
			// flow can require "abr1:lisp-encapsulated".
			metric, what = "packets", "event"
		case strings.HasPrefix(line, "psavd_peers_keyed "):
			// A gauge without labels: keys of the current epoch in the data plane.
			if v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "psavd_peers_keyed ")), 64); err == nil {
				c[CounterKey{Metric: "peers_keyed"}] = v
			}
			continue
		default:
			continue
		}
		open, end := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
		if end < open {
			return nil, fmt.Errorf("metrics: bad line %q", line)
		}
		labels := parseLabels(line[open+1 : end])
		fields := strings.Fields(line[end+1:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %v", line, err)
		}
		name := labels[what]
		if what == "event" {
			name = "lisp-" + name
		}
		c[CounterKey{metric, labels["port"], name}] += v
	}
	return c, sc.Err()
}

// parseLabels parses `a="x",b="y"` (label values in the lab have no quotes
// or commas, but escapes are honoured anyway).
func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		name := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			val.WriteByte(s[i])
		}
		m[name] = val.String()
		if i >= len(s) {
			break
		}
		s = strings.TrimLeft(s[i+1:], ", ")
	}
	return m
}
