package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/control/node"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/sdnotify"
)

// runCmd is `psavd -config F`: a node. It refuses a bad configuration
// before touching any interface; SIGHUP reloads the file (every kind of
// node), SIGINT/SIGTERM stop it. It exits non-zero naming the role and the
// cause when a role the node cannot do without fails.
func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "engine.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	c, err := config.Load(*path)
	if err != nil {
		printProblems(err)
		return 1
	}
	level := zap.NewAtomicLevelAt(c.Log.Level)
	log, err := newLogger(c.Log, level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "psavd: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	// The process holds private keys and pair states: no core dump, and
	// no ptrace or /proc/PID/mem by other processes of the same user.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Warn("could not make the process non-dumpable", zap.Error(err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(c, node.Options{Log: log, Level: level,
		Counters: func(eng *engine.Engine, t metrics.Totals) { printCounters(os.Stdout, eng, t) },
		// Type=notify: systemd counts the service started once every role is up.
		Ready: func() { _ = sdnotify.NotifyReady() }})
	if err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	// SIGHUP is handled on every kind of node (an ACS-, Map-Server- or
	// DoT-only node too): without a handler the signal would kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// Closed once STOPPING=1 is sent: the process must not exit before.
	stopping := make(chan struct{})
	go func() {
		defer close(stopping)
		for {
			select {
			case <-ctx.Done():
				_ = sdnotify.NotifyStopping()
				return
			case <-hup:
				// systemctl reload waits for READY=1 after RELOADING=1.
				_ = sdnotify.NotifyReloading()
				reload(n)
				_ = sdnotify.NotifyReady()
			}
		}
	}()
	err = n.Run(ctx)
	stop() // also when Run returned on its own: STOPPING=1 either way
	<-stopping
	if err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// reload re-reads the file: one with problems changes nothing (each problem
// is logged, and counted as a refused reload); otherwise the node applies
// what it can live, or refuses naming what needs a restart.
func reload(n *node.Node) {
	_, _, _ = n.ReloadFile() // the node logs and exports the outcome
}

func newLogger(l config.Log, level zap.AtomicLevel) (*zap.Logger, error) {
	var zc zap.Config
	if l.JSON {
		zc = zap.NewProductionConfig()
	} else {
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		zc.DisableStacktrace = true
		zc.Development = false
	}
	zc.Level = level
	return zc.Build()
}
