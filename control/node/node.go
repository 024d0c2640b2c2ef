package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/engine"
)

// Options are what a node takes besides its configuration.
type Options struct {
	// Log is the node's logger; Level its level, which a reload changes
	// ([log] level). A zero Level is made at info.
	Log   *zap.Logger
	Level zap.AtomicLevel
	// Counters, if set, receives the data plane's counters when the poll
	// loops stop (psavd prints them on stdout).
	Counters func(*engine.Engine, metrics.Totals)
	// Ready, if set, is called once every role is up (sd_notify, the lab).
	Ready func()
}

// Node is one running psavd: the roles its configuration names, under one
// supervisor.
type Node struct {
	opts Options
	log  *zap.Logger
	sup  *Supervisor

	mu      sync.Mutex // serialises Reload; guards cfg
	cfg     *config.Config
	started time.Time

	dp     *dataPlane   // nil: no [[port]]
	psav   *psavRoles   // ACS, ABR feed or static keys
	lisp   *lispRoles   // Map-Server, xTR, LISP-Decent
	dot    *dotServer   // [adot.server]
	reload *reloadStats // psavd_config_reload_*

	collectors []prometheus.Collector
}

// New checks that cfg can be run and builds the node; nothing is opened
// before Run.
func New(cfg *config.Config, opts Options) (*Node, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Level == (zap.AtomicLevel{}) {
		opts.Level = zap.NewAtomicLevel()
	}
	n := &Node{opts: opts, log: opts.Log, cfg: cfg, sup: NewSupervisor(opts.Log), reload: newReloadStats(), started: time.Now()}
	return n, nil
}

// Config returns the configuration in force.
func (n *Node) Config() *config.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Ready reports whether every role is up; down names those that are not.
func (n *Node) Ready() (ok bool, down []string) { return n.sup.Ready() }

// Roles is the supervisor's view of every role.
func (n *Node) Roles() []RoleStatus { return n.sup.Roles() }

// Run opens what the configuration names (interfaces and AF_XDP sockets,
// listeners), starts every role under the supervisor and blocks until ctx
// is done — then it stops every role, detaches the XDP programs and returns
// nil — or until a Fatal role fails, which it returns as a *RoleError. A
// start-up failure (an interface that cannot be attached, an address in
// use) is returned before anything is left behind.
func (n *Node) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := n.cfg
	var roles []Role
	defer func() {
		cancel()
		n.sup.Wait()
		n.closeAll()
	}()

	if c.ADoT != nil && c.ADoT.Server != nil {
		if n.dot, err = newDoTServer(c, n.log); err != nil {
			return err
		}
		roles = append(roles, n.dot.roles(c.ADoT.Server)...)
		n.collectors = append(n.collectors, n.dot.collectors()...)
	}
	if n.psav, err = newPSAVRoles(c, n.log); err != nil {
		return err
	}
	if len(c.Ports) > 0 {
		if n.dp, err = openDataPlane(c, n.log); err != nil {
			return err
		}
	}
	if n.lisp, err = newLISPRoles(c, n.dp.engineOrNil(), n.log); err != nil {
		return err
	}
	if n.dot != nil {
		if err := n.dot.followPush(n.lisp.dn); err != nil {
			return fmt.Errorf("%s: %w", c.File, err)
		}
	}
	roles = append(roles, n.lisp.roles()...)
	n.collectors = append(n.collectors, n.lisp.collectors()...)
	psavRoles, err := n.psav.roles(c, n.dp.engineOrNil())
	if err != nil {
		return err
	}
	roles = append(roles, psavRoles...)
	n.collectors = append(n.collectors, n.psav.collectors()...)
	if n.dp != nil {
		roles = append(roles, n.dp.role(c, n.opts.Counters))
		roles = append(roles, n.dp.prefilterRole()...)
		n.collectors = append(n.collectors, n.dp.collectors()...)
	}
	n.collectors = append(n.collectors, n.sup, n.reload)
	roles = append(roles, n.controlRole(c.Control.Socket, c.Control.Configured))
	if c.Metrics != nil {
		roles = append(roles, metricsRole(c.Metrics.Listen, n.sup.Ready, n.dp.collectorOrNil(), n.collectors, n.log))
	}
	n.sup.Start(ctx, roles...)
	go n.announceReady(ctx)

	select {
	case <-ctx.Done():
		n.log.Info("stopping")
		return nil
	case err := <-n.sup.Failed():
		return err
	}
}

// announceReady logs (and tells opts.Ready) once every role is up.
func (n *Node) announceReady(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, _ := n.sup.Ready(); ok {
			fields := []zap.Field{zap.Strings("roles", roleNames(n.sup.Roles()))}
			if n.cfg.PSAV.ASN != 0 {
				fields = append(fields, zap.Uint32("asn", n.cfg.PSAV.ASN))
			}
			fields = append(fields, n.dp.readyFields()...)
			n.log.Info("ready", fields...)
			if n.opts.Ready != nil {
				n.opts.Ready()
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func roleNames(rs []RoleStatus) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// closeAll releases what Run opened, after every role has returned.
func (n *Node) closeAll() {
	if n.lisp != nil {
		n.lisp.close()
	}
	if n.psav != nil {
		n.psav.close()
	}
	if n.dot != nil {
		n.dot.close()
	}
	if n.dp != nil {
		n.dp.close(n.log)
	}
}

func fileErr(c *config.Config, key string, err error) error {
	return fmt.Errorf("%s: %s: %w", c.File, key, err)
}
