package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/control/static"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/pcap"
)

// replayCmd is `psavd replay` (docs/wire.md §4.2): the real pipeline over a
// capture, as if every frame arrived on -port at time -at (default: each
// frame's own capture time). What leaves goes to -out; drops are counted on
// stderr.
func replayCmd(args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	path := fs.String("config", "engine.toml", "configuration file")
	in := fs.String("in", "", "input capture (pcap, Ethernet)")
	out := fs.String("out", "", "output capture")
	at := fs.Int64("at", -1, "clock, unix seconds (default: each frame's capture time)")
	portName := fs.String("port", "", "port the frames arrive on (default: the first [[port]])")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "psavd replay: -in and -out are required")
		return 2
	}
	c, err := config.Load(*path)
	if err != nil {
		printProblems(err)
		return 1
	}
	if err := replay(c, *in, *out, *at, *portName, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "psavd replay: %v\n", err)
		return 1
	}
	return 0
}

func replay(c *config.Config, inPath, outPath string, at int64, portName string, report io.Writer) error {
	spec := c.EngineSpec()
	if spec.Forwarding == engine.Routed {
		return fmt.Errorf("replay of routed forwarding needs next-hop MACs from a live system; use cross-connect")
	}
	in := 0
	if portName != "" {
		in = -1
		for i, p := range spec.Ports {
			if p.Name == portName {
				in = i
			}
		}
		if in < 0 {
			return fmt.Errorf("-port %q: no such [[port]] in %s", portName, c.File)
		}
	}
	eng, err := engine.New(spec)
	if err != nil {
		return err
	}
	sched, err := static.New(c.PSAV)
	if err != nil {
		return err
	}
	const batch = 64
	rd, err := pcap.Open(spec.Ports[in].Name, inPath, batch)
	if err != nil {
		return err
	}
	defer rd.Close()
	wr, err := pcap.Create("out", outPath)
	if err != nil {
		return err
	}
	defer wr.Close()

	clock := func() int64 { return at }
	wr.Stamp = func() time.Time { return time.Unix(at, 0) }
	step := batch
	if at < 0 {
		// Each frame is judged at its own capture time: one frame per step.
		step = 1
		clock = func() int64 {
			t := rd.Last.Unix()
			eng.Publish(sched.At(t))
			return t
		}
		wr.Stamp = func() time.Time { return rd.Last }
	} else {
		eng.Publish(sched.At(at))
	}
	outs := make([]ports.Port, len(spec.Ports))
	for i := range outs {
		if i != in {
			outs[i] = wr
		}
	}
	pr := eng.NewProcessor(in)
	col := metrics.NewCollector(eng)
	col.Add(pr)
	if err := eng.Drain(&engine.Loop{In: in, Port: rd, Out: outs, CPU: -1}, pr, step, clock); err != nil {
		return err
	}
	printCounters(report, eng, col.Sum())
	return nil
}

// printCounters writes the non-zero counters as a table: per port, what
// was received, each action and drop reason of the engine, the XDP
// pre-filter's drops ("xdp-drop <reason>"), what was transmitted.
func printCounters(w io.Writer, eng *engine.Engine, t metrics.Totals) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "port\tcounter\tpackets")
	for i, p := range eng.Spec().Ports {
		if t.RxPackets[i] > 0 {
			fmt.Fprintf(tw, "%s\treceived\t%d\n", p.Name, t.RxPackets[i])
		}
		for _, a := range engine.Actions() {
			if n := t.Actions[i][a]; n > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", p.Name, a, n)
			}
		}
		for _, r := range engine.Reasons() {
			if n := t.Drops[i][r]; n > 0 {
				fmt.Fprintf(tw, "%s\tdrop %s\t%d\n", p.Name, r, n)
			}
		}
		// The XDP pre-filter's drops are received frames too: without
		// them the table would not add up.
		for _, r := range engine.Reasons() {
			if t.XDP[i] && t.XDPDrops[i][r] > 0 {
				fmt.Fprintf(tw, "%s\txdp-drop %s\t%d\n", p.Name, r, t.XDPDrops[i][r])
			}
		}
		if t.TxPackets[i] > 0 {
			fmt.Fprintf(tw, "%s\ttransmitted\t%d\n", p.Name, t.TxPackets[i])
		}
	}
	tw.Flush()
}
