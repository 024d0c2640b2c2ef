// Command msbench is the Map-Server benchmark (issue 16, docs/perf.md):
// the same load generator (bench/lispload) drives psavd's Map-Server and
// OOR's, each in a namespace of its own, alternately in the same run —
// Map-Registers with the M bit, HMAC-SHA-1 (20 octets), 64 in flight, new
// /32 EIDs until the table holds -table registrations, then refreshes —
// and prints Map-Notifies per second per round, the ratio psavd/OOR, how
// the rate holds as the table grows, and each server's idle CPU with the
// full table. Needs root (namespaces) and OOR's sources (-peers, found as
// internal/oorpeer finds them when run from the repository's root).
//
//	sudo go run ./bench/cmd/msbench                   # 1 M registrations
//	sudo go run ./bench/cmd/msbench -table 200000 -servers psavd
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/lispload"
	"github.com/psavd/psavd/internal/oorpeer"
)

func main() {
	var (
		servers   = flag.String("servers", "psavd,oor", "servers to measure, comma separated (psavd, oor)")
		psavdBin  = flag.String("psavd", "", "psavd binary (default: go build ./cmd/psavd)")
		peers     = flag.String("peers", oorpeer.PeersDir("."), "directory with OOR's source tarball and build-oor.sh (default: the interop peers next to the repository, run from its root)")
		table     = flag.Int("table", 1_000_000, "registrations the table grows to")
		step      = flag.Int("step", 0, "new EIDs per growth round (default table/10)")
		refreshes = flag.Int("refreshes", 0, "Map-Registers per refresh round (default step)")
		rounds    = flag.Int("refresh-rounds", 3, "refresh rounds with the full table")
		idle      = flag.Duration("idle", 10*time.Second, "idle CPU measured over this with the full table")
		window    = flag.Int("window", 64, "Map-Registers in flight")
		sources   = flag.Int("sources", 1, "ETR addresses the Map-Registers come from in turn (1: one, whose answers psavd can send with GSO)")
	)
	flag.Parse()
	names := strings.Split(*servers, ",")
	tmp, err := os.MkdirTemp("", "msbench")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)
	o := lispload.Options{Servers: names, Psavd: *psavdBin, WorkDir: tmp, Table: *table, Step: *step,
		Refreshes: *refreshes, Refresh: *rounds, Idle: *idle, Window: *window, Sources: *sources, Log: os.Stderr}
	if o.Refresh == 0 {
		o.Refresh = -1
	}
	if slices.Contains(names, lispload.Psavd) && o.Psavd == "" {
		bin := filepath.Join(tmp, "bin") // not WorkDir/psavd: the server's directory
		if err := os.Mkdir(bin, 0o755); err != nil {
			fatalf("%v", err)
		}
		if o.Psavd, err = bench.BuildPsavd(bin); err != nil {
			fatalf("%v", err)
		}
	}
	if slices.Contains(names, lispload.OOR) {
		if _, err := os.Stat(filepath.Join(*peers, oorpeer.Tarball)); err != nil {
			fatalf("OOR sources: %v (-peers)", err)
		}
		if o.OORBin, o.OORDir, err = oorpeer.Build(*peers); err != nil {
			fatalf("%v", err)
		}
	}
	start := time.Now()
	rep, err := lispload.Bench(o)
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("msbench: %s/%s, %d CPUs, window %d, %d source(s), table %d, run took %.0f s\n\n", runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), *window, *sources, *table, time.Since(start).Seconds())
	rep.WriteMarkdown(os.Stdout)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "msbench: "+format+"\n", args...)
	os.Exit(1)
}
