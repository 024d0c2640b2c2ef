package mapserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Map-Server's registrations and counters in the
// Prometheus format (psavd_lisp_map_server_*), read at scrape time.
type Collector struct {
	s                               *Server
	held, events, refused, notifies *prometheus.Desc
}

// NewCollector returns a collector for s.
func NewCollector(s *Server) *Collector {
	return &Collector{
		s:        s,
		held:     prometheus.NewDesc("psavd_lisp_map_server_registrations", "Live (EID prefix, ETR) registrations held.", nil, nil),
		events:   prometheus.NewDesc("psavd_lisp_map_server_events_total", "Registrations, refreshes, deregistrations and expirations; Map-Requests and how they were answered.", []string{"event"}, nil),
		refused:  prometheus.NewDesc("psavd_lisp_map_server_refused_total", "Messages refused, by reason.", []string{"reason"}, nil),
		notifies: prometheus.NewDesc("psavd_lisp_map_server_notifies_total", "Map-Notify first sends, retransmissions, acknowledgements and give-ups.", []string{"event"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.held
	ch <- c.events
	ch <- c.refused
	ch <- c.notifies
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(c.s.Len(time.Now())))
	for name, v := range map[string]uint64{
		"registration": st.Registrations, "refresh": st.Refreshes, "deregistration": st.Deregistrations, "expiration": st.Expirations,
		"map-request": st.MapRequests, "proxy-reply": st.ProxyReplies, "forwarded": st.Forwarded, "negative-reply": st.NegativeReplies,
	} {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(v), name)
	}
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused[r]), string(r))
	}
	for name, v := range map[string]uint64{"sent": st.MapNotifies, "retransmitted": st.NotifyRetransmits, "acked": st.NotifyAcks, "given-up": st.NotifyGiveUps} {
		ch <- prometheus.MustNewConstMetric(c.notifies, prometheus.CounterValue, float64(v), name)
	}
}

// reasons are every refusal reason, exported even while 0.
var reasons = []Reason{ReasonAuthFailed, ReasonBadKeyID, ReasonPrefixNotAllowed, ReasonReplay, ReasonMalformed,
	ReasonUnknownSite, ReasonUnsupported, ReasonUnexpectedAck}
