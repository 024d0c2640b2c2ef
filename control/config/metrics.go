package config

import "github.com/psavd/psavd/control/config/schema"

// Metrics is [metrics].
type Metrics struct {
	Listen string // host:port of the Prometheus endpoint
}

func (c *Config) checkMetrics(k *checker, f *schema.File) {
	if m := f.Metrics; m != nil {
		c.Metrics = &Metrics{Listen: m.Listen}
		k.hostPort("metrics.listen", m.Listen)
	}
}
