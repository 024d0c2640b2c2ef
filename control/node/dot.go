package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/decent/pull"
)

// dotServer is [adot.server]: an authoritative DNS-over-TLS server for the
// configured zone, on its own address (no clear-text listener). With
// adot.server.index_modulus its <index> names follow live membership — the
// configured index_owners, or the members of this node's push group —
// through a pull.ZoneFeed; every change raises the SOA serial and NOTIFYs
// the secondaries, which transfer the zone over TLS (RFC 9103).
type dotServer struct {
	srv    *adot.Server
	listen string
	log    *zap.Logger

	feed   *pull.ZoneFeed               // nil: the zone is records or zone_file
	owners atomic.Pointer[[]netip.Addr] // index_owners; nil pointer: the push group's members
}

func newDoTServer(c *config.Config, log *zap.Logger) (*dotServer, error) {
	sc := *c.ADoT.Server
	srv, err := adot.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("%s: [adot.server]: %w", c.File, err)
	}
	d := &dotServer{srv: srv, listen: sc.Addr, log: log}
	if ix := c.ADoT.Index; ix != nil {
		d.feed = &pull.ZoneFeed{Server: srv, Origin: sc.Zone.Origin(), TTL: ix.TTL, Modulus: ix.Modulus, Replicas: ix.Replicas,
			Static: ix.Static, OnChange: d.zoneChanged}
		if ix.Owners != nil {
			owners := ix.Owners
			d.owners.Store(&owners)
			d.feed.Members = func(time.Time) []netip.Addr { return *d.owners.Load() }
		}
	}
	return d, nil
}

// followPush makes the push node's group membership own the indexes (when
// index_owners is not configured); dn is nil on a node without Decent push.
func (d *dotServer) followPush(dn *decentNode) error {
	if d.feed == nil || d.feed.Members != nil {
		return nil
	}
	if dn == nil || dn.push == nil {
		return fmt.Errorf("[adot.server] index_modulus without index_owners needs [lisp.decent] mode = \"push\"")
	}
	p, g := dn.push, dn.group
	d.feed.Members = func(now time.Time) []netip.Addr { return p.Members(g, now) }
	return nil
}

func (d *dotServer) zoneChanged(members []netip.Addr, err error) {
	if err != nil {
		d.log.Error("DoT zone from membership", zap.Error(err))
		return
	}
	ms := make([]string, len(members))
	for i, m := range members {
		ms[i] = m.String()
	}
	d.log.Info("DoT zone follows membership", zap.Strings("owners", ms), zap.Uint32("serial", d.srv.Zone().Serial()))
}

// setOwners replaces the configured index owners (a reload); the feed
// picks them up at its next poll.
func (d *dotServer) setOwners(owners []netip.Addr) { d.owners.Store(&owners) }

// roles: the listener; with index_modulus the zone feed; with NOTIFY
// targets the notifier.
func (d *dotServer) roles(sc *adot.ServerConfig) []Role {
	rs := []Role{d.role()}
	if d.feed != nil {
		rs = append(rs, Role{Name: "dot-zone-feed", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			return ignoreCancel(ctx, d.feed.Run(ctx))
		}})
	}
	if len(sc.Notify) > 0 {
		rs = append(rs, Role{Name: "dot-notify", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			return ignoreCancel(ctx, d.srv.RunNotify(ctx))
		}})
	}
	return rs
}

// ignoreCancel is err unless ctx ended (a role stopped, not failed).
func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
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
		d.log.Info("DNS over TLS", zap.String("listen", ln.Addr().String()), zap.String("zone", z.Origin()), zap.Int("records", z.Len()),
			zap.Uint32("serial", z.Serial()))
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
