package node

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/config"
)

// dotServer is [adot.server]: an authoritative DNS-over-TLS server for the
// configured zone, on its own address (no clear-text listener).
type dotServer struct {
	srv    *adot.Server
	listen string
	log    *zap.Logger
}

func newDoTServer(c *config.Config, log *zap.Logger) (*dotServer, error) {
	sc := *c.ADoT.Server
	srv, err := adot.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("%s: [adot.server]: %w", c.File, err)
	}
	return &dotServer{srv: srv, listen: sc.Addr, log: log}, nil
}

// role serves the listener; if accepting fails the listener is opened again
// with back-off (the server keeps its zone, tickets and limits).
func (d *dotServer) role() Role {
	return Role{Name: "dot-server", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		ln, err := net.Listen("tcp", d.listen)
		if err != nil {
			return fmt.Errorf("adot.server.listen: %w", err)
		}
		stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
		defer stop()
		z := d.srv.Zone()
		d.log.Info("DNS over TLS", zap.String("listen", ln.Addr().String()), zap.String("zone", z.Origin()), zap.Int("records", z.Len()))
		ready()
		err = d.srv.Serve(ln)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}}
}

func (d *dotServer) collectors() []prometheus.Collector {
	return []prometheus.Collector{adot.NewCollector(d.srv.Metrics(), adot.RoleServer)}
}

func (d *dotServer) close() { _ = d.srv.Close() }
