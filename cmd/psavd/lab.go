package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/psavd/psavd/deploy/lab"
)

// labCmd is `psavd lab` (make run): builds the topology in network
// namespaces, runs psavd on the ABRs, sends legitimate and spoofed traffic
// and prints what was delivered and dropped. Ctrl-C tears everything down.
func labCmd(args []string) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	topo := fs.String("topology", "", "topology TOML (default: the built-in deploy/lab/default.toml)")
	n := fs.Int("n", 20, "packets per flow")
	verbose := fs.Bool("v", false, "show node logs and each step")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := lab.Options{Topology: lab.DefaultTopology, PacketsPerFlow: *n, Verbose: *verbose}
	if *topo != "" {
		b, err := os.ReadFile(*topo)
		if err != nil {
			fmt.Fprintf(os.Stderr, "psavd lab: %v\n", err)
			return 1
		}
		opts.Topology = b
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "psavd lab: %v\n", err)
		return 1
	}
	opts.Psavd = self
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A closed output (`psavd lab | head`) must not kill the lab before it
	// has stopped its nodes and deleted its namespaces: with SIGPIPE
	// ignored, writes just fail and the run goes on to its teardown.
	signal.Ignore(syscall.SIGPIPE)
	if _, err := lab.Run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "psavd lab: %v\n", err)
		return 1
	}
	return 0
}
