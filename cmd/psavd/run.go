package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/control/lisp/xtr"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/capture"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/static"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/afxdp"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// runCmd is `psavd -config F`: a node. It refuses a bad configuration
// before touching any interface.
func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "engine.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c, err := config.Load(*path)
	if err != nil {
		printProblems(err)
		return 1
	}
	log, err := newLogger(c.Log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "psavd: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runNode(ctx, c, log); err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	return 0
}

func newLogger(l config.Log) (*zap.Logger, error) {
	var zc zap.Config
	if l.JSON {
		zc = zap.NewProductionConfig()
	} else {
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		zc.DisableStacktrace = true
		zc.Development = false
	}
	zc.Level = zap.NewAtomicLevelAt(l.Level)
	return zc.Build()
}

func runNode(ctx context.Context, c *config.Config, log *zap.Logger) error {
	var dotCols []prometheus.Collector // the control-plane roles' metrics: [adot.server], [lisp.decent], Map-Server, xTR
	if c.ADoT != nil && c.ADoT.Server != nil {
		srv, err := startDoTServer(c, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		dotCols = append(dotCols, adot.NewCollector(srv.Metrics(), adot.RoleServer))
	}
	var node *acs.Node
	if c.ACS != nil {
		var err error
		if node, err = startACS(ctx, c, log); err != nil {
			return err
		}
		defer node.Close()
	}
	dn, err := startDecent(ctx, c, log)
	if err != nil {
		return err
	}
	dotCols = append(dotCols, dn.collectors()...)
	if c.LISP != nil && c.LISP.MapServer != nil {
		ms, err := startMapServer(ctx, c, dn, log)
		if err != nil {
			return err
		}
		dotCols = append(dotCols, mapserver.NewCollector(ms))
	}
	if len(c.Ports) == 0 { // an ACS-only or DoT-server-only node: no data plane
		if c.Metrics != nil {
			cols := dotCols
			if node != nil {
				cols = append(cols, acs.NewCollector(node))
			}
			if err := metrics.Serve(ctx, c.Metrics.Listen, nil, cols...); err != nil {
				return fmt.Errorf("%s: metrics.listen: %w", c.File, err)
			}
		}
		var roles []string
		if node != nil {
			roles = append(roles, "acs")
		}
		if c.LISP != nil && c.LISP.MapServer != nil {
			roles = append(roles, "map-server")
		}
		if c.ADoT != nil && c.ADoT.Server != nil {
			roles = append(roles, "dot-server")
		}
		role := strings.Join(roles, "+")
		log.Info("ready", zap.Uint32("asn", c.PSAV.ASN), zap.String("role", role))
		<-ctx.Done()
		log.Info("stopped")
		return nil
	}
	spec := c.EngineSpec()
	eng, err := engine.New(spec)
	if err != nil {
		return err
	}
	sched, err := static.New(c.PSAV)
	if err != nil {
		return err
	}

	// Interfaces: one XDP program each, one AF_XDP socket per (port, queue).
	ifaces := map[string]*afxdp.Interface{}
	defer func() {
		for name, i := range ifaces {
			if err := i.Close(); err != nil {
				log.Warn("closing interface", zap.String("interface", name), zap.Error(err))
			}
		}
	}()
	queues := make([][]ports.Port, len(c.Ports)) // by engine port, by queue
	var rings []metrics.RingSource
	for pi, p := range c.Ports {
		ifc, ok := ifaces[p.Interface]
		if !ok {
			ifc, err = afxdp.OpenInterface(p.Interface, afxdp.Options{
				Mode: p.XDPMode, Frames: c.Engine.Frames, RingSize: c.Engine.RingSize,
				CrossConnect: spec.Forwarding == engine.CrossConnect,
			})
			if err != nil {
				return fmt.Errorf("%s: port[%d].interface %q: %w", c.File, pi, p.Interface, err)
			}
			ifaces[p.Interface] = ifc
			log.Info("interface attached", zap.String("interface", p.Interface), zap.String("xdp", ifc.Mode()))
		}
		qs := p.Queues
		if len(qs) == 0 {
			// Every RX queue the NIC spreads traffic over needs a socket:
			// the XDP program drops IP data on a queue without one.
			for q := 0; q < ifc.Queues(); q++ {
				qs = append(qs, q)
			}
		} else if len(qs) < ifc.Queues() {
			log.Warn("not every RX queue has a socket: IP data arriving on the others is dropped",
				zap.String("port", p.Name), zap.Ints("queues", qs), zap.Int("rx_queues", ifc.Queues()))
		}
		for _, q := range qs {
			port, err := ifc.OpenQueue(p.Name, q)
			if err != nil {
				return fmt.Errorf("%s: port[%d] %q queue %d: %w", c.File, pi, p.Name, q, err)
			}
			rings = append(rings, metrics.RingSource{Port: p.Name, Queue: q, Stats: func() (metrics.RingStats, error) {
				st, err := port.Stats()
				return metrics.RingStats{RxDropped: st.RxDropped, RxInvalidDescs: st.RxInvalidDescs, TxInvalidDescs: st.TxInvalidDescs,
					RxRingFull: st.RxRingFull, RxFillRingEmptyDescs: st.RxFillRingEmptyDescs, TxRingEmptyDescs: st.TxRingEmptyDescs,
					RxPackets: st.RxPackets, TxPackets: st.TxPackets, TxCompleted: st.TxCompleted, TxKicks: st.TxKicks}, err
			}})
			queues[pi] = append(queues[pi], port)
		}
	}

	if spec.Forwarding == engine.Routed {
		rt, err := static.Routes(c.Routes, interfaceMAC(c), neighbourMAC(c))
		if err != nil {
			return fmt.Errorf("%s: %w", c.File, err)
		}
		sched.SetRoutes(rt)
	}
	eng.Publish(sched.At(time.Now().Unix()))
	if c.LISP != nil {
		x, err := startXTR(ctx, c, eng, dn, log)
		if err != nil {
			return err
		}
		if x != nil {
			dotCols = append(dotCols, xtr.NewCollector(x))
		}
	}

	// An ABR fed by its ACS: the tables above (this AS's prefixes, no keys)
	// hold until the first snapshot arrives; from then on the feed owns them
	// and keeps the last ones if the ACS goes away (fail-static).
	var feed *abr.Client
	if c.ABR != nil {
		id, err := pair.LoadIdentity(c.PSAV.ASN, c.ABR.Cert, c.ABR.Key, c.ABR.CA)
		if err != nil {
			return fmt.Errorf("%s: [abr]: %w", c.File, err)
		}
		name, _ := os.Hostname()
		var routes *engine.Tables
		if spec.Forwarding == engine.Routed {
			routes = sched.At(time.Now().Unix())
		}
		feed, err = abr.New(abr.Config{Addr: c.ABR.ACS, Identity: id, Name: name, Engine: eng, Log: log, Routes: routes})
		if err != nil {
			return fmt.Errorf("%s: [abr]: %w", c.File, err)
		}
	}

	// Poll loops: loop k receives on one (port, queue) and transmits on the
	// queue with the same index (modulo) of every other port.
	cpus := c.Engine.CPUs
	if len(cpus) == 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			cpus = append(cpus, i)
		}
	}
	var loops []engine.Loop
	for pi := range queues {
		for qi, port := range queues[pi] {
			outs := make([]ports.Port, len(queues))
			for po := range queues {
				if po != pi && len(queues[po]) > 0 {
					outs[po] = queues[po][qi%len(queues[po])]
				}
			}
			outs[pi] = port // back where it came from: ICMP Packet Too Big (LISP)
			loops = append(loops, engine.Loop{In: pi, Port: port, Out: outs, CPU: cpus[len(loops)%len(cpus)]})
		}
	}

	col := metrics.NewCollector(eng)
	var capw *capture.Writer
	var capCfg engine.CaptureConfig
	if cp := c.Capture; cp != nil {
		names := make([]string, len(spec.Ports))
		for i, p := range spec.Ports {
			names[i] = p.Name
		}
		if capw, err = capture.New(cp.Dir, cp.Sampling.Snap, cp.MaxBytes, cp.Keep, names); err != nil {
			return fmt.Errorf("%s: capture.dir: %w", c.File, err)
		}
		capCfg = cp.Sampling
		capCtx, capStop := context.WithCancel(context.Background())
		capDone := make(chan error, 1)
		go func() { capDone <- capw.Run(capCtx, 200*time.Millisecond) }()
		defer func() {
			// After the loops stopped: a last drain, then the files close.
			capStop()
			if err := <-capDone; err != nil {
				log.Warn("drop capture", zap.Error(err))
			}
		}()
		log.Info("drop capture", zap.String("dir", cp.Dir), zap.Uint32("every", capCfg.Every), zap.Uint32("per_second", capCfg.PerSecond))
	}
	if c.Metrics != nil {
		others := []prometheus.Collector{metrics.NewRingCollector(rings)}
		if node != nil {
			others = append(others, acs.NewCollector(node))
		}
		if feed != nil {
			others = append(others, abr.NewCollector(feed))
		}
		others = append(others, dotCols...)
		if err := metrics.Serve(ctx, c.Metrics.Listen, col, others...); err != nil {
			return fmt.Errorf("%s: metrics.listen: %w", c.File, err)
		}
		log.Info("metrics", zap.String("listen", "http://"+c.Metrics.Listen+"/metrics"))
	}
	pub := static.NewPublisher(eng, sched)
	if node != nil {
		// An ACS and an ABR in one process: the data plane takes the local
		// ACS's tables, as a remote ABR would take them over Feed.
		var routes *engine.Tables
		if spec.Forwarding == engine.Routed {
			routes = sched.At(time.Now().Unix())
		}
		go feedLocal(ctx, node, eng, routes, log)
	} else if feed != nil {
		go func() {
			if err := feed.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("ACS feed stopped", zap.Error(err))
			}
		}()
	} else {
		go pub.Run(ctx, time.Now)
	}

	// SIGHUP reloads the tables ([psav], [[route]]) without touching the ports.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		cur := c
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if feed != nil || node != nil {
					log.Warn("reload ignored: the tables come from the ACS; restart psavd to change the configuration")
					continue
				}
				cur = reload(cur, spec, pub, log)
			}
		}
	}()

	started := make(chan struct{}, len(loops))
	done := make(chan error, 1)
	go func() {
		done <- eng.Run(ctx, loops, engine.RunOptions{
			Batch: c.Engine.Batch,
			Stats: func(p *engine.Processor) {
				col.Add(p)
				if capw != nil {
					p.EnableCapture(capCfg)
					capw.Add(p)
				}
			},
			Started: func(*engine.Loop) { started <- struct{}{} },
			OnError: func(err error) { log.Warn("data path", zap.Error(err)) },
		})
	}()
	for range loops {
		select {
		case <-started:
		case err := <-done:
			return err
		}
	}
	t := eng.Tables()
	log.Info("ready", zap.Uint32("asn", c.PSAV.ASN), zap.Int("loops", len(loops)),
		zap.Int64("epoch", engine.Epoch(time.Now().Unix(), t.T0, t.Period)), zap.Int("peers", len(t.Peers)))
	err = <-done
	printCounters(os.Stdout, eng, col.Sum())
	log.Info("stopped")
	return err
}

func interfaceMAC(c *config.Config) func(int) (net.HardwareAddr, error) {
	return func(port int) (net.HardwareAddr, error) {
		l, err := netlink.LinkByName(c.Ports[port].Interface)
		if err != nil {
			return nil, err
		}
		return l.Attrs().HardwareAddr, nil
	}
}

func neighbourMAC(c *config.Config) func(int, netip.Addr) (net.HardwareAddr, error) {
	return func(port int, ip netip.Addr) (net.HardwareAddr, error) {
		p := c.Ports[port]
		l, err := netlink.LinkByName(p.Interface)
		if err != nil {
			return nil, err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, family)
		if err != nil {
			return nil, err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) == 6 {
				return n.HardwareAddr, nil
			}
		}
		return nil, fmt.Errorf("no neighbour entry for %s on %s (give next_hop_mac, or make sure the next hop is reachable)", ip, p.Interface)
	}
}

// reload re-reads the configuration file on SIGHUP. A file with problems
// changes nothing (each problem is logged); a change that needs the ports
// or the process rebuilt is refused with what changed; otherwise the new
// tables are published at once and traffic flows on (the ports, sockets and
// poll loops are untouched). It returns the configuration now in force.
func reload(cur *config.Config, spec engine.Spec, pub *static.Publisher, log *zap.Logger) *config.Config {
	next, err := config.Load(cur.File)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				log.Error("reload refused: configuration has a problem; the running configuration stays", zap.String("problem", p.String()))
			}
		} else {
			log.Error("reload refused; the running configuration stays", zap.Error(err))
		}
		return cur
	}
	if what := restartNeeded(cur, next); len(what) > 0 {
		log.Error("reload refused: these sections need a restart; the running configuration stays", zap.Strings("changed", what))
		return cur
	}
	sched, err := static.New(next.PSAV)
	if err != nil {
		log.Error("reload refused", zap.Error(err))
		return cur
	}
	if spec.Forwarding == engine.Routed {
		rt, err := static.Routes(next.Routes, interfaceMAC(next), neighbourMAC(next))
		if err != nil {
			log.Error("reload refused", zap.Error(err))
			return cur
		}
		sched.SetRoutes(rt)
	}
	pub.Swap(sched)
	log.Info("reloaded", zap.String("config", next.File), zap.Int("members", len(next.PSAV.Members)), zap.Int("static_peers", len(next.PSAV.StaticPeers)))
	return next
}

// restartNeeded names the sections that differ between a and b and cannot
// change while running: everything but [psav] and [[route]]. The files are
// compared as written (Config.Source): writing out a default that was
// absent counts as a change.
func restartNeeded(cur, next *config.Config) []string {
	a, b := cur.Source, next.Source
	var what []string
	for _, d := range []struct {
		name string
		a, b any
	}{
		{"[[port]]", a.Ports, b.Ports}, {"[engine]", a.Engine, b.Engine}, {"[metrics]", a.Metrics, b.Metrics},
		{"[capture]", a.Capture, b.Capture}, {"[log]", a.Log, b.Log}, {"[acs]", a.ACS, b.ACS},
		{"[abr]", a.ABR, b.ABR}, {"[lisp]", a.LISP, b.LISP}, {"psav.asn", a.PSAV.ASN, b.PSAV.ASN},
		{"[adot]", a.ADoT, b.ADoT},
	} {
		if !reflect.DeepEqual(d.a, d.b) {
			what = append(what, d.name)
		}
	}
	return what
}

// startDoTServer starts the [adot.server] role: an authoritative DNS-over-TLS
// server for the configured zone, on its own address (no clear-text
// listener). The [adot] client is LISP-Decent pull mode's (decent.go).
func startDoTServer(c *config.Config, log *zap.Logger) (*adot.Server, error) {
	sc := c.ADoT.Server
	srv, err := adot.NewServer(*sc)
	if err != nil {
		return nil, fmt.Errorf("%s: [adot.server]: %w", c.File, err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("%s: adot.server.listen: %w", c.File, err)
	}
	log.Info("DNS over TLS", zap.String("listen", srv.Addr().String()), zap.String("zone", sc.Zone.Origin()), zap.Int("records", sc.Zone.Len()))
	return srv, nil
}
