package adot

import (
	"crypto/tls"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports one Metrics (a Client's or a Server's) to Prometheus,
// read at scrape time from the lock-free counters. Every series carries a
// constant label role ("client" or "server"), so a node running both
// registers two collectors under the same names.
type Collector struct {
	m    *Metrics
	role string

	handshakes, resumptions, handshakeErr, queries, cacheHits, staleRetries,
	plaintext, fallbackRefused, dials, backoffSkips, openConns, rejected, failures, rtt,
	answers, tlsHandshakes, padded, idleCloses, rateLimited,
	transfers, transfersRefused, notifies, serial *prometheus.Desc
}

// Roles of a Collector.
const (
	RoleClient = "client"
	RoleServer = "server"
)

// NewCollector returns a collector for m; role is RoleClient or RoleServer.
func NewCollector(m *Metrics, role string) *Collector {
	l := prometheus.Labels{"role": role}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("psavd_adot_"+name, help, labels, l)
	}
	return &Collector{m: m, role: role,
		handshakes:   d("handshakes_total", "Completed DoT TLS handshakes (full or resumed)."),
		resumptions:  d("resumptions_total", "DoT TLS handshakes that resumed a session."),
		handshakeErr: d("handshake_failures_total", "Failed DoT TLS handshakes."),
		queries:      d("queries_total", "DNS queries answered over a connection (client: sent and answered; server: answered)."),
		cacheHits:    d("cache_hits_total", "Client look-ups answered from the TTL cache."),
		staleRetries: d("stale_retries_total", "Client queries retried on a fresh connection after the server closed an idle one."),
		plaintext:    d("plaintext_queries_total", "Client queries sent in clear text (only with fallback = \"plaintext\")."),
		fallbackRefused: d("fallback_refused_total", "Client clear-text fallbacks refused: after a TLS failure (reason tls: certificate, pin, handshake) "+
			"or for a (name, type) never answered over TLS (reason unanswered).", "reason"),
		dials:        d("dials_total", "Client TCP connections attempted to DoT servers."),
		backoffSkips: d("backoff_skips_total", "Client queries that skipped a server remembered dead (in back-off after failures)."),
		openConns:    d("open_connections", "DoT connections currently open."),
		rejected:     d("rejected_connections_total", "Server connections refused by a limit (total or per client)."),
		failures:     d("failures_total", "Failures by cause (refused, tls, timeout, servfail, network, protocol); NXDOMAIN is an answer (answers_total), not a failure.", "cause"),
		answers:      d("answers_total", "DNS answers by RCODE (client: received, TLS or fallback; server: sent).", "rcode"),
		tlsHandshakes: d("tls_handshakes_total", "Completed TLS handshakes by server (client: its address; server: the listen address) and negotiated version, cipher suite and key-exchange group.",
			"server", "version", "cipher", "group"),
		padded:           d("padded_answers_total", "Answers with EDNS(0) padding (client: received; server: sent, RFC 8467 block 468)."),
		idleCloses:       d("idle_closes_total", "Client connections closed idle by the client, before the server's advertised (edns-tcp-keepalive) or its own idle timeout."),
		rateLimited:      d("rate_limited_connections_total", "Server connections reset at accept: new handshakes above max_handshakes_per_second."),
		transfers:        d("zone_transfers_total", "Server zone transfers over TLS (RFC 9103) by kind: axfr, or ixfr (answered with the whole zone, or the SOA alone when current).", "kind"),
		transfersRefused: d("zone_transfers_refused_total", "Server AXFR/IXFR queries refused: not an allowed secondary (address, client certificate), not ALPN dot, or not the zone."),
		notifies: d("notifies_total", "Server NOTIFY (RFC 1996) to secondaries: datagrams sent, targets that answered (acked), retries, targets given up after every attempt (failed).",
			"result"),
		serial: d("zone_serial", "SOA serial of the zone the server serves."),
		rtt:    d("query_rtt_seconds", "Query round-trip time (client: query written to answer read; server: query read to answer written)."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.handshakes, c.resumptions, c.handshakeErr, c.queries, c.cacheHits,
		c.staleRetries, c.plaintext, c.fallbackRefused, c.dials, c.backoffSkips, c.openConns, c.rejected, c.failures, c.rtt,
		c.answers, c.tlsHandshakes, c.padded, c.idleCloses, c.rateLimited, c.transfers, c.transfersRefused, c.notifies, c.serial} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.handshakes, m.Handshakes.Load())
	counter(c.resumptions, m.Resumptions.Load())
	counter(c.handshakeErr, m.HandshakeErr.Load())
	counter(c.queries, m.Queries.Load())
	if c.role != RoleServer {
		counter(c.cacheHits, m.CacheHits.Load())
		counter(c.staleRetries, m.StaleRetries.Load())
		counter(c.plaintext, m.Plaintext.Load())
		counter(c.fallbackRefused, m.FallbackRefusedTLS.Load(), "tls")
		counter(c.fallbackRefused, m.FallbackRefusedUnanswered.Load(), "unanswered")
		counter(c.dials, m.Dials.Load())
		counter(c.backoffSkips, m.BackoffSkips.Load())
		counter(c.idleCloses, m.IdleCloses.Load())
	} else {
		counter(c.rejected, m.Rejected.Load())
		counter(c.rateLimited, m.RateLimited.Load())
		counter(c.transfers, m.Transfers[xfrAXFR].Load(), "axfr")
		counter(c.transfers, m.Transfers[xfrIXFR].Load(), "ixfr")
		counter(c.transfersRefused, m.TransfersRefused.Load())
		counter(c.notifies, m.NotifySent.Load(), "sent")
		counter(c.notifies, m.NotifyAcked.Load(), "acked")
		counter(c.notifies, m.NotifyRetries.Load(), "retried")
		counter(c.notifies, m.NotifyFailed.Load(), "failed")
		ch <- prometheus.MustNewConstMetric(c.serial, prometheus.GaugeValue, float64(m.Serial.Load()))
	}
	counter(c.padded, m.Padded.Load())
	for rc := range m.Answers {
		if n := m.Answers[rc].Load(); n > 0 || rc == dns.RcodeSuccess || rc == dns.RcodeNameError {
			counter(c.answers, n, dns.RcodeToString[rc])
		}
	}
	for k, n := range m.TLSHandshakes() {
		counter(c.tlsHandshakes, n, k.Server, tls.VersionName(k.Version), tls.CipherSuiteName(k.Cipher), k.Group.String())
	}
	ch <- prometheus.MustNewConstMetric(c.openConns, prometheus.GaugeValue, float64(m.OpenConns.Load()))
	for cause := CauseNone + 1; cause < numCauses; cause++ {
		if cause == CauseNXDomain {
			continue // an answer, not a failure
		}
		counter(c.failures, m.Failures[cause].Load(), cause.String())
	}
	ch <- c.histogram()
}

// histogram turns the fixed, non-cumulative buckets into a Prometheus
// histogram (cumulative counts by upper bound in seconds). The buckets are
// read one by one while queries go on, so count is taken as the sum of
// the buckets read, keeping the +Inf bucket equal to it.
func (c *Collector) histogram() prometheus.Metric {
	h := &c.m.RTT
	sum := float64(h.SumNS.Load()) / 1e9
	buckets := make(map[float64]uint64, len(RTTBuckets))
	var cum uint64
	for i, ub := range RTTBuckets {
		cum += h.Buckets[i].Load()
		buckets[ub.Seconds()] = cum
	}
	cum += h.Buckets[len(RTTBuckets)].Load()
	return prometheus.MustNewConstHistogram(c.rtt, cum, sum, buckets)
}
