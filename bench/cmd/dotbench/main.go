// Command dotbench measures DNS query round-trip time and queries/s against
// a local BIND 9 (127.0.0.1) for clear UDP, adot on a persistent DoT
// connection, a new resumed TLS connection per query and a new full TLS
// handshake per query, and prints a Markdown table. See bench/dot and
// docs/dot-bench.md.
//
//	go run ./bench/cmd/dotbench -n 2000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/bench/dot"
)

func main() {
	n := flag.Int("n", 2000, "measured queries per mode")
	warmup := flag.Int("warmup", 10, "unmeasured warm-up queries per mode")
	name := flag.String("name", "0.map-server.example.test.", "query name (in map-server.example.test)")
	qtype := flag.String("type", "A", "query type")
	modes := flag.String("modes", "udp,persistent,resumed,full", "comma-separated modes")
	named := flag.String("named", "", "named binary (default: $PATH, then /usr/sbin/named)")
	flag.Parse()

	qt, ok := dns.StringToType[strings.ToUpper(*qtype)]
	if !ok {
		fmt.Fprintf(os.Stderr, "dotbench: unknown query type %q\n", *qtype)
		os.Exit(2)
	}
	var ms []dot.Mode
	for _, m := range strings.Split(*modes, ",") {
		ms = append(ms, dot.Mode(strings.TrimSpace(m)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	r, err := dot.Run(ctx, dot.Options{Queries: *n, Warmup: *warmup, Name: *name, QType: qt, Modes: ms, Named: *named})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dotbench:", err)
		os.Exit(1)
	}
	fmt.Printf("%s; %s/%s, GOMAXPROCS=%d, %d CPUs; %d queries per mode (%s %s), run took %.1f s\n\n",
		r.BIND, runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), *n, *name,
		dns.TypeToString[qt], time.Since(start).Seconds())
	r.WriteTable(os.Stdout)
}
