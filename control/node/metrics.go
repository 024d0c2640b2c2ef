package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/metrics"
)

// metricsRole serves /metrics ([metrics] listen) with the data plane's
// collector (nil: no ports) and every role's, and /healthz and /readyz
// (ready while every role is).
func metricsRole(listen string, nodeReady func() (bool, []string), dp *metrics.Collector, cols []prometheus.Collector, log *zap.Logger) Role {
	return Role{Name: "metrics", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		if err := metrics.ServeReady(ctx, listen, nodeReady, dp, cols...); err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		log.Info("metrics", zap.String("listen", "http://"+listen+"/metrics"))
		ready()
		<-ctx.Done()
		return nil
	}}
}

// reloadStats are psavd_config_reload_success (1 if the last reload was
// applied, 0 if it was refused) and
// psavd_config_last_reload_timestamp_seconds (when it was tried), as
// Prometheus and the usual alerts on them expect.
type reloadStats struct {
	mu      sync.Mutex
	ok      bool
	at      time.Time
	success *prometheus.Desc
	last    *prometheus.Desc
}

func newReloadStats() *reloadStats {
	return &reloadStats{ok: true, at: time.Now(),
		success: prometheus.NewDesc("psavd_config_reload_success", "1 if the last configuration reload was applied, 0 if it was refused.", nil, nil),
		last:    prometheus.NewDesc("psavd_config_last_reload_timestamp_seconds", "When the configuration was last loaded or a reload tried (unix seconds).", nil, nil)}
}

func (r *reloadStats) record(ok bool) {
	r.mu.Lock()
	r.ok, r.at = ok, time.Now()
	r.mu.Unlock()
}

func (r *reloadStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- r.success
	ch <- r.last
}

func (r *reloadStats) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	ok, at := r.ok, r.at
	r.mu.Unlock()
	v := 0.0
	if ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(r.success, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(r.last, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
}
