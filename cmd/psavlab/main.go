// Command psavlab is the psavd lab (make run): it builds a topology of ASes
// in network namespaces, runs the psavd binary on its ABR nodes, sends
// legitimate and spoofed traffic and prints what was delivered and what was
// dropped, by which ABR and for which reason (deploy/lab, whose README
// describes the topologies and the table). Ctrl-C tears everything down.
//
//	psavlab [-psavd PATH] [-topology F] [-n N] [-v]
//
// It is a binary of its own so that psavd does not link the lab and its
// helpers; `psavd lab [args]` execs it, passing -psavd with its own path.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/psavd/psavd/deploy/lab"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultPsavd is the psavd next to this executable ("psavd", looked up in
// PATH, if that cannot be known).
func defaultPsavd() string {
	self, err := os.Executable()
	if err != nil {
		return "psavd"
	}
	return filepath.Join(filepath.Dir(self), "psavd")
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("psavlab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	psavd := fs.String("psavd", defaultPsavd(), "the psavd binary the ABR nodes run")
	topo := fs.String("topology", "", "topology TOML (default: the built-in deploy/lab/default.toml)")
	n := fs.Int("n", 20, "packets per flow")
	verbose := fs.Bool("v", false, "show node logs and each step")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "psavlab: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	opts := lab.Options{Topology: lab.DefaultTopology, Psavd: *psavd, PacketsPerFlow: *n, Verbose: *verbose}
	if *topo != "" {
		b, err := os.ReadFile(*topo)
		if err != nil {
			fmt.Fprintf(stderr, "psavlab: %v\n", err)
			return 1
		}
		opts.Topology = b
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A closed output (`psavd lab | head`) must not kill the lab before it
	// has stopped its nodes and deleted its namespaces: with SIGPIPE
	// ignored, writes just fail and the run goes on to its teardown.
	signal.Ignore(syscall.SIGPIPE)
	if _, err := lab.Run(ctx, opts, stdout); err != nil {
		fmt.Fprintf(stderr, "psavlab: %v\n", err)
		return 1
	}
	return 0
}
