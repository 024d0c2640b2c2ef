// Package lab is `psavd lab` (the psavlab binary, cmd/psavlab): it builds a small network of ASes out of Linux
// network namespaces and veth pairs on one machine (described by a TOML
// topology, DefaultTopology by default), starts real psavd ABR nodes in it,
// sends legitimate and spoofed traffic, and prints what was delivered and
// what was dropped, by which ABR and for which reason.
//
// The pieces (Build, Env.StartABRs, Sniff, OpenRaw, the packet builders,
// Scrape) are exported for the integration tests, which build the same
// topology and look at the packets byte by byte.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// DefaultPackets is the number of packets per flow when neither the options
// nor the topology say.
const DefaultPackets = 20

// Options configure a lab run.
type Options struct {
	// Topology is the TOML topology; nil means DefaultTopology.
	Topology []byte
	// Psavd is the psavd binary started in every ABR namespace (psavlab's
	// -psavd; `psavd lab` passes its own executable); a bare name is looked
	// up in PATH, a relative path is taken from the working directory.
	Psavd string
	// Packets per flow; 0 means the topology's lab.packets, else 20.
	PacketsPerFlow int
	// Verbose shows every step, psavd's own log lines and the progress of
	// each flow.
	Verbose bool

	// standIn, set by tests, replaces psavd in the ABR namespaces.
	standIn func(ctx context.Context, e *Env) error
}

// Result is what a run found.
type Result struct {
	Run   string // the run's random tag
	Epoch int64  // PSAV epoch when the run started
	Flows []FlowResult
	OK    bool // every flow behaved as expected
}

// Run builds the topology, starts the ABRs, sends every flow, prints the
// table to out and tears everything down — also on error and when ctx is
// cancelled. The error is non-nil when the lab could not run or any flow did
// not behave as expected.
func Run(ctx context.Context, opts Options, out io.Writer) (res Result, err error) {
	data := opts.Topology
	if data == nil {
		data = DefaultTopology
	}
	topo, err := Parse(data)
	if err != nil {
		return res, err
	}
	n := opts.PacketsPerFlow
	if n == 0 {
		n = topo.Lab.Packets
	}
	if n == 0 {
		n = DefaultPackets
	}
	if n > 99999 {
		return res, fmt.Errorf("lab: at most 99999 packets per flow")
	}
	psavd := opts.Psavd
	if opts.standIn == nil {
		if psavd, err = resolveBinary(psavd); err != nil {
			return res, err
		}
	}
	log := io.Discard
	if opts.Verbose {
		log = out
	}

	started := time.Now()
	fmt.Fprintf(out, "psavd lab: building %d namespaces and %d links...\n", len(topo.Nodes), len(topo.Links))
	env, err := Build(ctx, topo, log)
	if err != nil {
		return res, err
	}
	res.Run, res.Epoch = env.Run, env.StartEpoch+1
	defer func() {
		if ctx.Err() != nil && err != nil && errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("lab interrupted: %w", err)
		}
		// Teardown whatever happened; an error here is reported but does not
		// hide the run's own error.
		cerr := env.Close()
		if left := env.Leftovers(); len(left) > 0 {
			cerr = errors.Join(cerr, fmt.Errorf("namespaces left behind: %s", strings.Join(left, " ")))
		}
		if cerr != nil {
			fmt.Fprintf(out, "teardown: %v\n", cerr)
			if err == nil && opts.standIn == nil {
				err = fmt.Errorf("teardown: %w", cerr)
			}
		} else {
			fmt.Fprintf(out, "torn down: nodes stopped, namespaces psv%s-* deleted (%.1fs in all)\n", env.Run, time.Since(started).Seconds())
		}
	}()

	fmt.Fprintf(out, "run %s, epoch %d; starting %d ABR nodes (configs in %s)...\n", env.Run, res.Epoch, len(topo.ABRs()), env.Dir)
	if opts.standIn != nil {
		err = opts.standIn(ctx, env)
	} else {
		err = env.StartABRs(ctx, psavd)
	}
	if err != nil {
		return res, err
	}
	if err := waitForKeys(ctx, env, out); err != nil {
		return res, err
	}
	if d, _ := time.ParseDuration(topo.Lab.Settle); d > 0 {
		fmt.Fprintf(out, "settling for %v...\n", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	warmup(ctx, env, out)

	// One marker watch per destination interface, for the whole run.
	watches := map[string]*Watch{}
	defer func() {
		for _, w := range watches {
			w.Close()
		}
	}()
	for i := range topo.Flows {
		f := &topo.Flows[i]
		key := f.To + "/" + topo.DestInterface(f)
		if watches[key] == nil {
			w, err := env.Watch(f.To, topo.DestInterface(f))
			if err != nil {
				return res, err
			}
			watches[key] = w
		}
	}

	fmt.Fprintf(out, "sending %d flows of %d packets each...\n", len(topo.Flows), n)
	for i := range topo.Flows {
		f := &topo.Flows[i]
		if err := ctx.Err(); err != nil {
			return res, err
		}
		r, err := env.RunFlow(ctx, i, f, n, watches[f.To+"/"+topo.DestInterface(f)])
		if err != nil {
			return res, err
		}
		res.Flows = append(res.Flows, r)
		if opts.Verbose {
			status := "OK"
			if !r.OK {
				status = "FAIL: " + r.Problem
			}
			fmt.Fprintf(out, "flow %d %s: sent %d, delivered %d, dropped %s: %s\n", i, f.Label(), r.Sent, r.Delivered, dropText(&r), status)
		}
	}
	res.OK = true
	for _, r := range res.Flows {
		res.OK = res.OK && r.OK
	}
	fmt.Fprintln(out)
	PrintTable(out, res.Flows)
	fmt.Fprintln(out)
	PrintSummary(out, res)
	if !res.OK {
		var bad []string
		for _, r := range res.Flows {
			if !r.OK {
				bad = append(bad, fmt.Sprintf("%s: %s", r.Flow.Label(), r.Problem))
			}
		}
		return res, fmt.Errorf("lab: %d flows did not behave as expected:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return res, nil
}

// resolveBinary turns the psavd path into an absolute one: os.Args[0] may
// be a bare name found in PATH or a path relative to the working directory.
func resolveBinary(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("lab: no psavd binary given")
	}
	if !strings.ContainsRune(p, os.PathSeparator) {
		lp, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("lab: psavd binary: %w", err)
		}
		p = lp
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("lab: psavd binary: %w", err)
	}
	return abs, nil
}

// PrintTable writes one line per flow.
func PrintTable(out io.Writer, flows []FlowResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FLOW\tSENT\tDELIVERED\tDROPPED (reason@ABR)\tEXPECTED\tPSAV COUNTERS\tRESULT")
	for i := range flows {
		r := &flows[i]
		var expected string
		if r.Flow.Expect == "deliver" {
			expected = "delivered"
		} else {
			expected = fmt.Sprintf("dropped: %s@%s", r.Flow.Reason, r.Flow.At)
		}
		result := "OK"
		if !r.OK {
			result = "FAIL"
		}
		delivered := fmt.Sprint(r.Delivered)
		if r.Flow.Proto == "icmp" && !r.Flow.Spoofed() {
			delivered += fmt.Sprintf(" (%d replies)", r.Replies)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Flow.Label(), r.Sent, delivered, dropText(r), expected, countedText(r), result)
	}
	tw.Flush()
	for i := range flows {
		if r := &flows[i]; !r.OK {
			fmt.Fprintf(out, "FAIL %s: %s\n", r.Flow.Label(), r.Problem)
		}
	}
}

// PrintSummary writes the headline: what PSAV did to each kind of traffic.
func PrintSummary(out io.Writer, res Result) {
	var legitSent, legitGot, outSent, outGot, spoofSent, spoofGot int
	dropped := map[string]float64{}
	var taggers, validators, replacers []string
	seen := map[string]bool{}
	for i := range res.Flows {
		r := &res.Flows[i]
		switch {
		case r.Flow.Expect == "drop":
			spoofSent += r.Sent
			spoofGot += r.Delivered
			for node, c := range r.Delta {
				for k, v := range c {
					if k.Metric == "drops" {
						dropped[k.What+"@"+node] += v
					}
				}
			}
		case hasAction(&r.Flow, "tagged"):
			legitSent += r.Sent
			legitGot += r.Delivered
			for _, c := range r.Flow.Counted {
				node, action, _ := strings.Cut(c, ":")
				if seen[c] {
					continue
				}
				seen[c] = true
				switch action {
				case "tagged":
					taggers = append(taggers, node)
				case "validated":
					validators = append(validators, node)
				case "replaced":
					if !slices.Contains(replacers, node) {
						replacers = append(replacers, node)
					}
				}
			}
		default:
			outSent += r.Sent
			outGot += r.Delivered
		}
	}
	borders := ""
	if len(replacers) > 0 {
		borders = fmt.Sprintf(", validated and re-tagged at the community borders (%s)", strings.Join(replacers, ", "))
	}
	fmt.Fprintf(out, "legitimate traffic between member ASes: %d/%d packets delivered — tagged by the sender's ABR (%s)%s, and validated and stripped by the receiver's (%s)\n",
		legitGot, legitSent, strings.Join(taggers, ", "), borders, strings.Join(validators, ", "))
	if outSent > 0 {
		fmt.Fprintf(out, "traffic from outside the alliance with its real address: %d/%d delivered — PSAV cannot vouch for it and counts it unverifiable\n", outGot, outSent)
	}
	var parts []string
	total := 0.0
	for _, k := range sortedKeys(dropped) {
		parts = append(parts, fmt.Sprintf("%v %s", dropped[k], k))
		total += dropped[k]
	}
	fmt.Fprintf(out, "spoofed traffic: %d/%d delivered, %v dropped (%s)\n", spoofGot, spoofSent, total, strings.Join(parts, ", "))
	if res.OK {
		fmt.Fprintf(out, "PASS: every flow behaved as expected\n")
	} else {
		n := 0
		for _, r := range res.Flows {
			if !r.OK {
				n++
			}
		}
		fmt.Fprintf(out, "FAIL: %d of %d flows did not behave as expected\n", n, len(res.Flows))
	}
}

func hasAction(f *Flow, action string) bool {
	for _, c := range f.Counted {
		if strings.HasSuffix(c, ":"+action) {
			return true
		}
	}
	return false
}

// waitForKeys holds the traffic until every ACS-mode ABR holds a key of the
// current epoch for each ACS-mode AS it shares a key with: the ACS must first peer,
// measure one heartbeat round trip, negotiate a start epoch (two epochs
// ahead) and reach it.
func waitForKeys(ctx context.Context, env *Env, out io.Writer) error {
	nodes := env.Topo.ACSNodes()
	if len(nodes) == 0 {
		return nil
	}
	// A node holds keys for the ACS it shares a key with: in a flat
	// alliance all the others, in a community tree its neighbours.
	tree, err := env.Topo.Tree()
	if err != nil {
		return err
	}
	want := map[string]float64{}
	for _, n := range nodes {
		for _, o := range nodes {
			if o.ABR.ASN != n.ABR.ASN && tree.Adjacent(n.ABR.ASN, o.ABR.ASN, env.Topo.ascnOf) {
				want[n.Name]++
			}
		}
	}
	fmt.Fprintf(out, "ACS: %d ACS peer over mutual TLS 1.3 and negotiate their keys (no key is configured)...\n", len(nodes))
	start := time.Now()
	limit := 30*time.Second + 4*time.Duration(env.Topo.PSAV.EpochSeconds)*time.Second
	for {
		ready := 0
		for _, n := range nodes {
			c, err := Scrape(ctx, env.NS(n.Name), n.ABR.Metrics)
			if err == nil && c[CounterKey{Metric: "peers_keyed"}] >= want[n.Name] {
				ready++
			}
		}
		if ready == len(nodes) {
			fmt.Fprintf(out, "ACS: keys in place after %.1fs\n", time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > limit {
			return fmt.Errorf("ACS: no negotiated keys after %v (see the nodes' logs with -v)", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// warmup pings, for each "from>to" of [lab] warmup, every address of to
// from from (the lab's own raw-socket echo, as an ICMP flow sends it) until
// one reply comes back (or 10 s per address): what the first packets of a
// flow would otherwise pay for (an ITR's map-cache miss) is then paid.
// Failures are only reported: the flows themselves judge the outcome.
func warmup(ctx context.Context, env *Env, out io.Writer) {
	if len(env.Topo.Lab.Warmup) == 0 {
		return
	}
	start := time.Now()
	for _, w := range env.Topo.Lab.Warmup {
		from, to, _ := strings.Cut(w, ">")
		for _, fam := range []int{4, 6} {
			f := &Flow{From: from, To: to, Proto: "icmp", Family: fam, Expect: "deliver"}
			if env.Topo.checkFlow(f) != nil {
				continue // no address of this family
			}
			ok := false
			for deadline := time.Now().Add(10 * time.Second); !ok && ctx.Err() == nil && time.Now().Before(deadline); {
				_, replies, finish, err := env.sendICMP(warmupFlow, f, 1)
				if err == nil {
					select {
					case <-time.After(300 * time.Millisecond):
					case <-ctx.Done():
					}
					ok = replies() > 0
				}
				if finish != nil {
					finish()
				}
			}
			if !ok {
				fmt.Fprintf(out, "warm-up: %s cannot reach %s over IPv%d; the flows will tell\n", from, to, fam)
			}
		}
	}
	fmt.Fprintf(out, "warm-up: %s in %.1fs\n", strings.Join(env.Topo.Lab.Warmup, ", "), time.Since(start).Seconds())
}

// warmupFlow is the flow number in the markers of warm-up echoes: no real
// flow has it (markers carry three digits).
const warmupFlow = 999
