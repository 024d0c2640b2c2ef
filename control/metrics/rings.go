package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// RingStats are one AF_XDP socket's counters, as ports/afxdp reports them
// (kept as a plain struct here so that this package does not depend on the
// socket implementation).
type RingStats struct {
	RxDropped, RxInvalidDescs, TxInvalidDescs, RxRingFull, RxFillRingEmptyDescs, TxRingEmptyDescs uint64
	RxPackets, TxPackets, TxCompleted, TxKicks                                                    uint64
}

// RingSource is one (port, queue) whose socket counters are read at scrape.
type RingSource struct {
	Port  string
	Queue int
	Stats func() (RingStats, error)
}

// RingCollector exports the kernel's XDP statistics of every socket: the
// first place to look when packets vanish before the engine sees them
// (fill ring empty: the loop is too slow to give frames back; RX ring full:
// the loop is too slow to take them; invalid descriptors: a bug).
type RingCollector struct {
	sources []RingSource
	desc    *prometheus.Desc
}

// NewRingCollector returns a collector over sources.
func NewRingCollector(sources []RingSource) *RingCollector {
	return &RingCollector{sources: sources, desc: prometheus.NewDesc("psavd_xdp_socket_total",
		"AF_XDP socket counters by port, queue and counter (kernel XDP_STATISTICS and the ring's own).",
		[]string{"port", "queue", "counter"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *RingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *RingCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sources {
		st, err := s.Stats()
		if err != nil {
			continue
		}
		q := strconv.Itoa(s.Queue)
		for _, v := range []struct {
			name string
			n    uint64
		}{
			{"rx_dropped", st.RxDropped}, {"rx_invalid_descs", st.RxInvalidDescs}, {"tx_invalid_descs", st.TxInvalidDescs},
			{"rx_ring_full", st.RxRingFull}, {"rx_fill_ring_empty_descs", st.RxFillRingEmptyDescs}, {"tx_ring_empty_descs", st.TxRingEmptyDescs},
			{"rx_packets", st.RxPackets}, {"tx_packets", st.TxPackets}, {"tx_completed", st.TxCompleted}, {"tx_kicks", st.TxKicks},
		} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v.n), s.Port, q, v.name)
		}
	}
}
