package node

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"
	"github.com/psavd/psavd/engine"
)

// lispRoles are a node's LISP roles: the Map-Server/Map-Resolver of
// [lisp.map_server], the xTR (ETR for [[lisp.database]], ITR for
// [[lisp.map_resolver]] or [lisp.decent]) and the LISP-Decent node.
type lispRoles struct {
	log *zap.Logger
	ms  *mapserver.Server
	x   *xtr.XTR
	dn  *decentNode

	msListen, xtrListen string
}

func newLISPRoles(c *config.Config, eng *engine.Engine, log *zap.Logger) (*lispRoles, error) {
	r := &lispRoles{log: log}
	l := c.LISP
	if l == nil {
		return r, nil
	}
	var err error
	if r.dn, err = newDecent(c, log); err != nil {
		return nil, err
	}
	if l.MapServer != nil {
		if r.ms, err = mapserver.New(mapserver.Config{Sites: l.Sites, Replay: l.MapServer.Replay}); err != nil {
			return nil, fmt.Errorf("%s: [lisp.map_server]: %w", c.File, err)
		}
		r.msListen = l.MapServer.Listen
		if d := l.Decent; r.dn != nil && r.dn.pull != nil && len(d.Owned) > 0 {
			r.dn.guard = &pull.Guard{Node: r.dn.pull, Server: r.ms, Owned: d.Owned, Drop: d.DropMismatched, OnMismatch: func(e *pull.MismatchError) {
				log.Warn("LISP-Decent registration for an index this Map-Server does not own", zap.Error(e))
			}}
		}
	}
	if l.XTR() {
		cfg := xtr.Config{InstanceID: l.InstanceID, ASN: c.PSAV.ASN, RLOCs: l.RLOCs, Database: l.Database,
			MapServers: l.RegisterTo, MapResolvers: l.MapResolvers,
			ProbeInterval: l.ProbeInterval, ProbeTimeout: l.ProbeTimeout, ProbeRetries: l.ProbeRetries}
		if l.ProbeRetries == 0 {
			cfg.ProbeRetries = -1 // xtr.Config's 0 is its default
		}
		if r.dn != nil {
			cfg.Directory = r.dn.dir
		}
		if eng != nil {
			cfg.Misses, cfg.Publish = eng.Misses, eng.PublishMapCache
		}
		if r.x, err = xtr.New(cfg); err != nil {
			return nil, fmt.Errorf("%s: [lisp]: %w", c.File, err)
		}
		r.xtrListen = l.ControlListen
	}
	return r, nil
}

// roles: each socket is a role of its own, restarted with back-off if
// reading fails (the Map-Server keeps its registrations and the xTR its
// map-cache: only the socket is opened again).
func (r *lispRoles) roles() []Role {
	var roles []Role
	if r.dn != nil {
		roles = append(roles, r.dn.roles()...)
	}
	if r.ms != nil {
		serve := r.ms.Serve
		if r.dn != nil && r.dn.guard != nil {
			serve = r.dn.guard.Serve
		}
		roles = append(roles, udpRole("map-server", r.msListen, "lisp.map_server.listen", serve, r.log))
	}
	if r.x != nil {
		roles = append(roles, udpRole("xtr", r.xtrListen, "lisp.control_listen", r.x.Serve, r.log))
	}
	return roles
}

// udpRole serves a UDP socket bound to listen with serve.
func udpRole(name, listen, key string, serve func(context.Context, *net.UDPConn) error, log *zap.Logger) Role {
	return Role{Name: name, Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		ua, err := net.ResolveUDPAddr("udp", listen)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		conn, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		defer conn.Close()
		log.Info("listening", zap.String("role", name), zap.String("listen", conn.LocalAddr().String()))
		ready()
		return serve(ctx, conn)
	}}
}

func (r *lispRoles) collectors() []prometheus.Collector {
	var cols []prometheus.Collector
	if r.ms != nil {
		cols = append(cols, mapserver.NewCollector(r.ms))
	}
	if r.x != nil {
		cols = append(cols, xtr.NewCollector(r.x))
	}
	cols = append(cols, r.dn.collectors()...)
	return cols
}

func (r *lispRoles) close() {
	if r.dn != nil {
		r.dn.close()
	}
}
