package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// counterRow is one counter of a node at one moment: what it counts, where.
type counterRow struct {
	where, what string
	value       uint64
}

// rows flattens a node's counters in display order: per port received,
// actions, drops, transmitted; then the AF_XDP sockets' counters.
func (n *NodeCounters) rows() []counterRow {
	var rs []counterRow
	for _, p := range n.Ports {
		rs = append(rs, counterRow{p.Port, "received", p.RxPackets}, counterRow{p.Port, "received octets", p.RxBytes})
		for _, a := range sortedKeys(p.Actions) {
			rs = append(rs, counterRow{p.Port, a, p.Actions[a]})
		}
		for _, r := range sortedKeys(p.Drops) {
			rs = append(rs, counterRow{p.Port, "drop " + r, p.Drops[r]})
		}
		rs = append(rs, counterRow{p.Port, "transmitted", p.TxPackets})
	}
	for _, r := range n.Rings {
		for _, c := range sortedKeys(r.Counters) {
			rs = append(rs, counterRow{r.Port + "/" + r.Queue, "socket " + c, r.Counters[c]})
		}
	}
	return rs
}

// topCommand is `psavctl top -metrics HOST:PORT [-interval 1s] [-n N]`: a
// node's counters as per-second rates, one block per interval, until
// interrupted (or N blocks). Counters that did not move are left out; a
// counter that went down (psavd restarted) starts over from its new value.
func (a *app) topCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "top -metrics HOST:PORT [-interval D] [-n N]",
		Short: "a node's counters as per-second rates, until interrupted",
		Long: `Samples a node's /metrics every -interval and prints what moved as
per-second rates, one block per interval, until interrupted (or -n blocks).
A counter that went down (psavd restarted) starts over from its new value.`,
	}
	var addr string
	var interval time.Duration
	var count int
	c.Flags().StringVar(&addr, "metrics", "", "psavd's [metrics] listen address, `HOST:PORT` (required)")
	c.Flags().DurationVar(&interval, "interval", time.Second, "time between two samples")
	c.Flags().IntVar(&count, "n", 0, "stop after `N` blocks (0: until interrupted)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int {
		return top(addr, interval, count, a.stdout, a.stderr)
	})
}

func top(addr string, interval time.Duration, count int, stdout, stderr io.Writer) int {
	if addr == "" || interval <= 0 || count < 0 {
		fmt.Fprint(stderr, "psavctl top: need -metrics HOST:PORT, a positive -interval and -n ≥ 0\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sample := func() (*NodeCounters, time.Time, error) {
		sctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		defer cancel()
		n, err := scrapeCounters(sctx, addr)
		return n, time.Now(), err
	}
	prev, prevAt, err := sample()
	if err != nil {
		fmt.Fprintf(stderr, "psavctl top: %v\n", err)
		return 1
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
		cur, at, err := sample()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			fmt.Fprintf(stderr, "psavctl top: %v\n", err)
			return 1
		}
		printRates(stdout, prev, cur, at.Sub(prevAt), at)
		prev, prevAt = cur, at
	}
	return 0
}

// printRates prints what moved between two samples taken dt apart.
func printRates(w io.Writer, prev, cur *NodeCounters, dt time.Duration, at time.Time) {
	old := map[[2]string]uint64{}
	for _, r := range prev.rows() {
		old[[2]string{r.where, r.what}] = r.value
	}
	fmt.Fprintf(w, "%s  over %v", at.UTC().Format("15:04:05"), dt.Round(time.Millisecond))
	if cur.Epoch != nil {
		fmt.Fprintf(w, "  epoch %d", *cur.Epoch)
	}
	if cur.PeersKeyed != nil {
		fmt.Fprintf(w, "  %d peers keyed", *cur.PeersKeyed)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tCOUNTER\tDELTA\tPER SECOND")
	moved := 0
	for _, r := range cur.rows() {
		before, seen := old[[2]string{r.where, r.what}]
		if r.value < before { // restarted: count from zero
			before = 0
		}
		d := r.value - before
		if !seen || d == 0 {
			continue
		}
		moved++
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\n", r.where, r.what, d, float64(d)/dt.Seconds())
	}
	if moved == 0 {
		fmt.Fprintln(tw, "-\tnothing moved\t0\t0")
	}
	tw.Flush()
	fmt.Fprintln(w)
}
