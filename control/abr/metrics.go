package abr

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a Client's state and counters to Prometheus; register it
// next to control/metrics' collector.
type Collector struct {
	c                                                                                  *Client
	state, version, lastUpdate, lastHeartbeat                                          *prometheus.Desc
	received, refused, published, heartbeats, attempts, failures, reconnects, silences *prometheus.Desc
	membershipVersion, feedMessages, feedBytes                                         *prometheus.Desc
}

// NewCollector returns a collector for c.
func NewCollector(c *Client) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("psavd_abr_"+name, help, labels, nil)
	}
	return &Collector{
		c:                 c,
		state:             d("feed_state", "ACS feed state: 1 for the current one (never-connected, connected, fail-static).", "state"),
		version:           d("tables_version", "Version of the last snapshot published from the ACS (0: none)."),
		lastUpdate:        d("last_update_seconds", "Unix time of the last snapshot published (0: never)."),
		lastHeartbeat:     d("last_heartbeat_seconds", "Unix time of the last ACS heartbeat (0: never)."),
		received:          d("snapshots_received_total", "Feed updates received from the ACS: whole membership versions and keys messages."),
		refused:           d("snapshots_refused_total", "Feed updates refused as invalid (what was in force stayed)."),
		published:         d("snapshots_published_total", "Table snapshots published into the engine."),
		heartbeats:        d("heartbeats_total", "Heartbeats received from the ACS."),
		attempts:          d("feed_attempts_total", "Feed connection attempts."),
		failures:          d("feed_failures_total", "Feed attempts that failed or streams that broke."),
		reconnects:        d("feed_reconnects_total", "Feed streams established after the first."),
		silences:          d("feed_silences_total", "Feed streams dropped because the ACS missed heartbeats."),
		membershipVersion: d("membership_version", "Membership version of the last snapshot published (0: none)."),
		feedMessages:      d("feed_messages_total", "Feed messages received, by part (membership chunks, keys).", "part"),
		feedBytes:         d("feed_bytes_total", "Encoded size of the feed messages received, by part (membership chunks, keys).", "part"),
	}
}

// Describe implements prometheus.Collector.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.state, m.version, m.lastUpdate, m.lastHeartbeat, m.received, m.refused, m.published, m.heartbeats, m.attempts, m.failures, m.reconnects, m.silences, m.membershipVersion, m.feedMessages, m.feedBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	cur := c.State()
	for s := NeverConnected; s <= FailStatic; s++ {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(m.version, prometheus.GaugeValue, float64(c.Version()))
	ch <- prometheus.MustNewConstMetric(m.membershipVersion, prometheus.GaugeValue, float64(c.MembershipVersion()))
	seconds := func(n int64) float64 { return float64(n) / 1e9 }
	ch <- prometheus.MustNewConstMetric(m.lastUpdate, prometheus.GaugeValue, seconds(c.lastUpdate.Load()))
	ch <- prometheus.MustNewConstMetric(m.lastHeartbeat, prometheus.GaugeValue, seconds(c.lastHeartbeat.Load()))
	k := &c.Counters
	for _, e := range []struct {
		d *prometheus.Desc
		v uint64
	}{{m.received, k.Received.Load()}, {m.refused, k.Refused.Load()}, {m.published, k.Published.Load()}, {m.heartbeats, k.Heartbeats.Load()},
		{m.attempts, k.Attempts.Load()}, {m.failures, k.Failures.Load()}, {m.reconnects, k.Reconnects.Load()}, {m.silences, k.Silences.Load()}} {
		ch <- prometheus.MustNewConstMetric(e.d, prometheus.CounterValue, float64(e.v))
	}
	for _, p := range []struct {
		part           string
		messages, size uint64
	}{{"membership", k.MembershipChunks.Load(), k.MembershipBytes.Load()}, {"keys", k.KeysMessages.Load(), k.KeysBytes.Load()}} {
		ch <- prometheus.MustNewConstMetric(m.feedMessages, prometheus.CounterValue, float64(p.messages), p.part)
		ch <- prometheus.MustNewConstMetric(m.feedBytes, prometheus.CounterValue, float64(p.size), p.part)
	}
}
