package xtr

import "github.com/prometheus/client_golang/prometheus"

// Collector exports an xTR's registrations, look-ups and map-cache in the
// Prometheus format (psavd_lisp_xtr_*), read at scrape time.
type Collector struct {
	x                                  *XTR
	etr, itr, cache, pending, locators *prometheus.Desc
}

// NewCollector returns a collector for x.
func NewCollector(x *XTR) *Collector {
	return &Collector{
		x:        x,
		etr:      prometheus.NewDesc("psavd_lisp_xtr_etr_total", "ETR: Map-Registers sent (and early re-sends), Map-Notifies accepted and refused, Map-Requests answered; database changes, SMRs sent, re-sent, acknowledged by an SMR-invoked Map-Request.", []string{"event"}, nil),
		itr:      prometheus.NewDesc("psavd_lisp_xtr_itr_total", "ITR: Map-Requests, retries, replies, negative replies, nonce mismatches, look-ups given up, rate-limited, expired entries; RLOC-probes sent, re-sent, answered, answers with an unknown nonce, locators going down and up; SMRs received, ignored, SMR-invoked Map-Requests sent.", []string{"event"}, nil),
		cache:    prometheus.NewDesc("psavd_lisp_xtr_map_cache_entries", "Map-cache entries (negative ones included) published to the data plane.", nil, nil),
		pending:  prometheus.NewDesc("psavd_lisp_xtr_pending_requests", "Look-ups waiting for a Map-Reply.", nil, nil),
		locators: prometheus.NewDesc("psavd_lisp_xtr_probed_locators", "Map-cache locators under RLOC-probing, by the state the last probes found.", []string{"state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.etr
	ch <- c.itr
	ch <- c.cache
	ch <- c.pending
	ch <- c.locators
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.x.Stats()
	for name, v := range map[string]uint64{
		"register": st.Registers, "register-retry": st.RegisterRetries, "notify": st.Notifies, "notify-refused": st.NotifiesRefused,
		"notify-ack": st.NotifyAcks, "request-answered": st.RequestsAnswered, "request-not-ours": st.RequestsNotOurs, "no-map-server": st.NoMapServer,
		"smr": st.SMRsSent, "smr-resent": st.SMRsResent, "smr-acked": st.SMRsAcked, "database-change": st.DatabaseChanges,
	} {
		ch <- prometheus.MustNewConstMetric(c.etr, prometheus.CounterValue, float64(v), name)
	}
	for name, v := range map[string]uint64{
		"request": st.Requests, "retry": st.Retries, "reply": st.Replies, "negative": st.Negative, "bad-nonce": st.BadNonce, "overclaim": st.Overclaims,
		"gave-up": st.GaveUp, "rate-limited": st.RateLimited, "expired": st.Expired, "miss-dropped": st.MissesDropped, "no-resolver": st.NoResolver,
		"probe": st.Probes, "probe-retry": st.ProbeRetries, "probe-reply": st.ProbeReplies, "probe-bad-nonce": st.ProbeBadNonce,
		"locator-down": st.LocatorsDown, "locator-up": st.LocatorsUp,
		"smr-received": st.SMRsReceived, "smr-ignored": st.SMRsIgnored, "smr-invoked-request": st.SMRInvokedSent,
	} {
		ch <- prometheus.MustNewConstMetric(c.itr, prometheus.CounterValue, float64(v), name)
	}
	ch <- prometheus.MustNewConstMetric(c.cache, prometheus.GaugeValue, float64(st.CacheEntries))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.locators, prometheus.GaugeValue, float64(st.LocatorsUpNow), "up")
	ch <- prometheus.MustNewConstMetric(c.locators, prometheus.GaugeValue, float64(st.LocatorsDownNow), "down")
}
