package main

import (
	"context"
	"fmt"
	"net"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"
	"github.com/psavd/psavd/engine"
	"go.uber.org/zap"
)

// listenUDP opens the UDP socket of a LISP role.
func listenUDP(c *config.Config, key, addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.File, key, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.File, key, err)
	}
	return conn, nil
}

// startMapServer runs [lisp.map_server] with the [[lisp.site]]s until ctx
// is done; in LISP-Decent pull mode with lisp.decent.owned, behind the
// ownership check (dn's Guard).
func startMapServer(ctx context.Context, c *config.Config, dn *decentNode, log *zap.Logger) (*mapserver.Server, error) {
	l := c.LISP
	sites := l.Sites
	ms, err := mapserver.New(mapserver.Config{Sites: sites})
	if err != nil {
		return nil, fmt.Errorf("%s: [lisp.map_server]: %w", c.File, err)
	}
	conn, err := listenUDP(c, "lisp.map_server.listen", l.MapServer.Listen)
	if err != nil {
		return nil, err
	}
	serve := ms.Serve
	if d := l.Decent; dn != nil && dn.pull != nil && d != nil && len(d.Owned) > 0 {
		dn.guard = &pull.Guard{Node: dn.pull, Server: ms, Owned: d.Owned, Drop: d.DropMismatched, OnMismatch: func(e *pull.MismatchError) {
			log.Warn("LISP-Decent registration for an index this Map-Server does not own", zap.Error(e))
		}}
		serve = dn.guard.Serve
	}
	go func() {
		defer conn.Close()
		if err := serve(ctx, conn); err != nil && ctx.Err() == nil {
			log.Error("Map-Server stopped", zap.Error(err))
		}
	}()
	log.Info("LISP Map-Server and Map-Resolver", zap.String("listen", conn.LocalAddr().String()), zap.Int("sites", len(sites)))
	return ms, nil
}

// startXTR runs the ETR (when [[lisp.database]]) and the ITR (when
// [[lisp.map_resolver]] or [lisp.decent]) on lisp.control_listen; the ITR
// takes eng's misses and publishes its map-cache into eng's snapshots. eng
// may be nil (no data plane: the ETR alone). With LISP-Decent (dn), dn's
// directory says where to register and where to ask.
func startXTR(ctx context.Context, c *config.Config, eng *engine.Engine, dn *decentNode, log *zap.Logger) (*xtr.XTR, error) {
	l := c.LISP
	if !l.XTR() {
		return nil, nil
	}
	cfg := xtr.Config{InstanceID: l.InstanceID, ASN: c.PSAV.ASN, RLOCs: l.RLOCs, Database: l.Database,
		MapServers: l.RegisterTo, MapResolvers: l.MapResolvers}
	if dn != nil {
		cfg.Directory = dn.dir
	}
	if eng != nil {
		cfg.Misses, cfg.Publish = eng.Misses, eng.PublishMapCache
	}
	x, err := xtr.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: [lisp]: %w", c.File, err)
	}
	conn, err := listenUDP(c, "lisp.control_listen", l.ControlListen)
	if err != nil {
		return nil, err
	}
	go func() {
		defer conn.Close()
		if err := x.Serve(ctx, conn); err != nil && ctx.Err() == nil {
			log.Error("LISP xTR stopped", zap.Error(err))
		}
	}()
	log.Info("LISP xTR", zap.String("listen", conn.LocalAddr().String()),
		zap.Int("database", len(cfg.Database)), zap.Int("map_servers", len(cfg.MapServers)), zap.Int("map_resolvers", len(cfg.MapResolvers)),
		zap.Bool("decent", dn != nil))
	return x, nil
}
