package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/promtext"
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
	defer conn.Close() // in case the transport never took it
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := promtext.Scrape(ctx, &http.Client{Transport: tr}, "http://"+addr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", ns, err)
	}
	return counters(s), nil
}

// ParseMetrics reads psavd_drops_total, psavd_packets_total,
// psavd_lisp_events_total and psavd_peers_keyed from the Prometheus text
// format.
func ParseMetrics(r io.Reader) (Counters, error) {
	s, err := promtext.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return counters(s), nil
}

func counters(s promtext.Samples) Counters {
	c := Counters{}
	for _, x := range s {
		switch x.Name {
		case "psavd_drops_total":
			c[CounterKey{"drops", x.Labels["port"], x.Labels["reason"]}] += x.Value
		case "psavd_packets_total":
			c[CounterKey{"packets", x.Labels["port"], x.Labels["action"]}] += x.Value
		case "psavd_lisp_events_total":
			// LISP events count as actions named lisp-<event>, so that a
			// flow can require "abr1:lisp-encapsulated".
			c[CounterKey{"packets", x.Labels["port"], "lisp-" + x.Labels["event"]}] += x.Value
		case "psavd_peers_keyed":
			// A gauge without labels: keys of the current epoch in the data plane.
			c[CounterKey{Metric: "peers_keyed"}] = x.Value
		}
	}
	return c
}
