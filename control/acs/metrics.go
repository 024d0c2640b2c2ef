package acs

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the node's counters and, per peer, its state, RTT,
// clock offset and missed heartbeats, read at scrape time from Status.
type Collector struct {
	n                                              *Node
	events, up, rtt, offset, missed, memb, refused *prometheus.Desc
	recRefused, clockStep, feedBytes, feedMsgs     *prometheus.Desc
}

// NewCollector returns a Prometheus collector for n.
func NewCollector(n *Node) *Collector {
	return &Collector{n: n,
		events: prometheus.NewDesc("psavd_acs_events_total", "ACS events: dials, refusals, collisions, dead peers, forced exits, records, state machines.", []string{"event"}, nil),
		up:     prometheus.NewDesc("psavd_acs_peer_up", "1 if the session with the peer ACS is up (by state: connecting, negotiating, up, dead).", []string{"peer", "state"}, nil),
		rtt:    prometheus.NewDesc("psavd_acs_peer_rtt_seconds", "Heartbeat round-trip time to the peer ACS.", []string{"peer"}, nil),
		offset: prometheus.NewDesc("psavd_acs_peer_clock_offset_seconds", "Measured clock offset of the peer ACS (refused beyond P/4).", []string{"peer"}, nil),
		missed: prometheus.NewDesc("psavd_acs_peer_missed_heartbeats", "Heartbeats missed in a row.", []string{"peer"}, nil),
		memb:   prometheus.NewDesc("psavd_acs_members", "Members in the membership set.", nil, nil),
		refused: prometheus.NewDesc("psavd_acs_refused_total", "Clients of the ACS listener refused, by service (peer, feed, status) and reason (no-identity, role-less, wrong-role, wrong-as, live-session, bad-hello).",
			[]string{"service", "reason"}, nil),
		clockStep:  prometheus.NewDesc("psavd_acs_clock_step_seconds", "Alarm: the wall clock's divergence from the ACS's epoch clock (anchored to the monotonic clock) while it exceeds P/4; 0 when none. Epochs keep the monotonic time until a peer confirms the step.", nil, nil),
		feedBytes:  prometheus.NewDesc("psavd_acs_feed_bytes_total", "Protobuf octets sent to this AS's ABRs, by feed part (membership, keys, heartbeat): per epoch, only keys and heartbeats unless the membership changed.", []string{"part"}, nil),
		feedMsgs:   prometheus.NewDesc("psavd_acs_feed_messages_total", "Messages sent to this AS's ABRs, by feed part (membership chunks, keys, heartbeats).", []string{"part"}, nil),
		recRefused: prometheus.NewDesc("psavd_membership_refused_total", "Membership records refused, from peers or published here, by reason (control/membership Reasons).", []string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.up, c.rtt, c.offset, c.missed, c.memb, c.refused, c.recRefused, c.clockStep, c.feedBytes, c.feedMsgs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	k := c.n.Counters()
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"dial-attempt", k.DialAttempts}, {"dial-failure", k.DialFailures}, {"session-refused", k.SessionsRefused},
		{"collision", k.Collisions}, {"proposal-refused", k.ProposalsRefused}, {"skew-alarm", k.SkewAlarms},
		{"dead-declared", k.DeadDeclared}, {"forced-exit-sent", k.ForcedExitsSent}, {"forced-exit-received", k.ForcedExitsReceived},
		{"record-flooded", k.RecordsFlooded}, {"record-refused", k.RecordsRefused}, {"established", k.Established},
		{"clock-step", k.ClockSteps}, {"clock-reanchor", k.ClockReanchors}, {"rekey-requested", k.RekeysRequested},
		{"anti-entropy-summary", k.AntiEntropySummaries},
	} {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(e.v), e.name)
	}
	ft := c.n.FeedSent()
	for i, name := range feedPartNames {
		ch <- prometheus.MustNewConstMetric(c.feedBytes, prometheus.CounterValue, float64(ft.Bytes[i]), name)
		ch <- prometheus.MustNewConstMetric(c.feedMsgs, prometheus.CounterValue, float64(ft.Messages[i]), name)
	}
	for k, v := range c.n.Refusals() {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(v), k[0], k[1])
	}
	for r, v := range c.n.set.Counters().Refused {
		ch <- prometheus.MustNewConstMetric(c.recRefused, prometheus.CounterValue, float64(v), r.String())
	}
	st := c.n.Status()
	for _, p := range st.Peers {
		peer := strconv.FormatUint(uint64(p.Asn), 10)
		for _, s := range []string{"connecting", "negotiating", "up", "dead"} {
			v := 0.0
			if p.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, peer, s)
		}
		ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, float64(p.RttNanos)/1e9, peer)
		ch <- prometheus.MustNewConstMetric(c.offset, prometheus.GaugeValue, float64(p.OffsetNanos)/1e9, peer)
		ch <- prometheus.MustNewConstMetric(c.missed, prometheus.GaugeValue, float64(p.MissedHeartbeats), peer)
	}
	ch <- prometheus.MustNewConstMetric(c.memb, prometheus.GaugeValue, float64(len(st.Members)))
	ch <- prometheus.MustNewConstMetric(c.clockStep, prometheus.GaugeValue, c.n.ClockStep().Seconds())
}
