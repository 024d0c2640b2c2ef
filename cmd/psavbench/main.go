// Command psavbench is psavd's benchmark harness (`make bench`): it reads a
// scenario (bench/scenarios/NAME.toml), measures psavd and the same-run
// baselines at every point of its sweep in network namespaces, and writes
// the results — results.json, report.md and SVG charts — under
// bench/results/<date-time>/. A progress line per measurement goes to
// stderr. Root (or CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN) is needed.
//
//	psavbench -scenario bench/scenarios/default.toml -psavd bin/psavd
//	psavbench -scenario … -publish docs/bench    # also copy the report there
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
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/harness"
	"github.com/psavd/psavd/bench/report"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("psavbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		scenario = fs.String("scenario", "bench/scenarios/default.toml", "scenario file")
		psavdBin = fs.String("psavd", "", "psavd binary (default: go build ./cmd/psavd)")
		out      = fs.String("out", "bench/results", "results go to OUT/<date-time>/")
		publish  = fs.String("publish", "", "also write the report and its charts (not the JSON) into this directory (e.g. docs/bench)")
		verbose  = fs.Bool("v", false, "show psavd's output")
		check    = fs.Bool("check", false, "only check the scenario and list its measurements")
		child    = fs.String("serve-bare", "", "internal: be the bare AF_XDP forwarder (namespace,in,out,cpus,queues)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *child != "" {
		return harness.ServeBare(*child, stdout, stderr)
	}
	text, err := os.ReadFile(*scenario)
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: %v\n", err)
		return 2
	}
	sc, err := harness.Parse(*scenario, text)
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: scenario refused:\n%v\n", err)
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "%s: %d points, %d measurements\n", sc.Name, len(sc.Points()), sc.Count())
		for _, p := range sc.Points() {
			fmt.Fprintln(stdout, " ", p)
		}
		return 0
	}
	if why := bench.Supported(); why != "" {
		fmt.Fprintf(stderr, "psavbench: cannot run here: %s\n", why)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	tmp, err := os.MkdirTemp("", "psavbench")
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: %v\n", err)
		return 2
	}
	defer os.RemoveAll(tmp)
	bin := *psavdBin
	if bin == "" {
		if bin, err = bench.BuildPsavd(tmp); err != nil {
			fmt.Fprintf(stderr, "psavbench: %v\n", err)
			return 2
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: %v\n", err)
		return 2
	}
	o := harness.Options{
		Psavd: bin, Dir: tmp, Progress: stderr,
		BareArgv: func(env bench.Env, queues int) ([]string, error) {
			return []string{self, "-serve-bare", harness.ServeBareSpec(env, queues)}, nil
		},
	}
	if *verbose {
		o.PsavdOutput = stderr
	}
	fmt.Fprintf(stderr, "psavbench: scenario %s, %d measurements × %d runs\n", sc.Name, sc.Count(), sc.Runs)
	r, err := harness.Run(ctx, sc, o, string(text))
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: %v\n", err)
		return 1
	}
	dir := filepath.Join(*out, r.Date.Format("20060102-150405"))
	paths, err := report.Write(dir, r)
	if err != nil {
		fmt.Fprintf(stderr, "psavbench: %v\n", err)
		return 1
	}
	if *publish != "" {
		if _, err := report.WriteReport(*publish, r); err != nil {
			fmt.Fprintf(stderr, "psavbench: publish: %v\n", err)
			return 1
		}
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	fmt.Fprintf(stderr, "psavbench: done in %v\n", time.Duration(r.Elapsed*float64(time.Second)).Round(time.Second))
	return 0
}
