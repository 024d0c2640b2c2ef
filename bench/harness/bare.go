package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/barefwd"
)

// ServeBareSpec is the argument of ServeBare for env with queues queues:
// "namespace,in,out,cpu:cpu…,queues".
func ServeBareSpec(env bench.Env, queues int) string {
	cpus := make([]string, len(env.CPUs))
	for i, c := range env.CPUs {
		cpus[i] = strconv.Itoa(c)
	}
	return strings.Join([]string{env.NS, env.In, env.Out, strings.Join(cpus, ":"), strconv.Itoa(queues)}, ",")
}

// ServeBare is the body of the bare forwarder's own process (psavbench
// -serve-bare SPEC): it forwards with barefwd until SIGTERM, printing
// "ready" to stdout once it forwards. It returns the exit status.
//
// It runs in a process of its own, like psavd, so that neither side of the
// comparison inherits what the other left in the process (see
// docs/perf.md: an in-process forwarder leaks its sockets until exit).
func ServeBare(spec string, stdout, stderr io.Writer) int {
	f := strings.Split(spec, ",")
	if len(f) != 5 {
		fmt.Fprintln(stderr, "serve-bare: want namespace,in,out,cpus,queues")
		return 2
	}
	env := bench.Env{NS: f[0], In: f[1], Out: f[2]}
	for _, c := range strings.Split(f[3], ":") {
		if c == "" {
			continue
		}
		n, err := strconv.Atoi(c)
		if err != nil {
			fmt.Fprintf(stderr, "serve-bare: cpus: %v\n", err)
			return 2
		}
		env.CPUs = append(env.CPUs, n)
	}
	q, err := strconv.Atoi(f[4])
	if err != nil || q < 1 {
		fmt.Fprintf(stderr, "serve-bare: queues %q\n", f[4])
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	d := &barefwd.DUT{Queues: q}
	if err := d.Start(ctx, env); err != nil {
		fmt.Fprintf(stderr, "serve-bare: %v\n", err)
		d.Stop()
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	if err := d.Stop(); err != nil {
		fmt.Fprintf(stderr, "serve-bare: %v\n", err)
		return 1
	}
	return 0
}
