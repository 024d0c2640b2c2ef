// Package harness runs psavd's benchmark scenarios (bench/scenarios/*.toml,
// cmd/psavbench, `make bench`): for every point of a scenario's sweep —
// packet size, traffic mix, AS-Prefix table size, cores — it measures psavd
// (tagging and validating) and, in the same run, the baselines (the bare
// AF_XDP forwarder of bench/barefwd in a process of its own, and Linux
// forwarding) on the bench package's namespaces and live-frame generator,
// with latency probes and the DUT's CPU time alongside, and returns a
// report.Run.
package harness

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/bench/report"
)

// Options say how to run the DUTs.
type Options struct {
	// Psavd is the psavd binary.
	Psavd string
	// BareArgv is the command line of the bare forwarder's own process
	// (it must print "ready" once it forwards and stop on SIGTERM), e.g.
	// psavbench -serve-bare ServeBareSpec(env, queues).
	BareArgv func(env bench.Env, queues int) ([]string, error)
	// Dir holds psavd's generated configurations.
	Dir string
	// Progress receives one line per measurement (nil: none).
	Progress io.Writer
	// PsavdOutput receives psavd's output (nil: none).
	PsavdOutput io.Writer
}

// maxRetries is how often a failed run is tried again.
const maxRetries = 2

// measurement is one planned measurement: a case at a point.
type measurement struct {
	cs    string
	point Point
	mix   Mix
}

// baselineKey is what a baseline's result depends on.
type baselineKey struct {
	cs    string
	size  int
	ipv6  float64
	cores int
}

// Plan lists the measurements of s in order: for each point, its
// baselines (unless an earlier point of the same size, IPv6 share and
// cores had them) and then psavd's cases.
func (s *Scenario) plan() []measurement {
	var out []measurement
	seen := map[baselineKey]bool{}
	for _, p := range s.Points() {
		m, _ := s.Mix(p.Mix)
		for _, cs := range s.Cases {
			if cs == CaseKernel || cs == CaseBare {
				k := baselineKey{cs, p.Size, m.IPv6, p.Cores}
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			out = append(out, measurement{cs, p, m})
		}
	}
	return out
}

// Count is the number of measurements Run makes.
func (s *Scenario) Count() int { return len(s.plan()) }

// Run measures every point of s and returns the report. A measurement that
// fails stops the run.
func Run(ctx context.Context, s *Scenario, o Options, scenarioText string) (*report.Run, error) {
	start := time.Now()
	r := &report.Run{
		Scenario: s.Name, ScenarioFile: s.File, ScenarioText: scenarioText, Description: s.Description,
		Date: start.UTC(), Machine: machine(),
		Settings: report.Settings{Warmup: s.Warmup.Seconds(), Duration: s.Duration.Seconds(), Runs: s.Runs, ProbeRate: s.ProbeRate},
	}
	bm, _ := s.Mix(s.Base.Mix)
	r.Base = reportPoint(s.Base, bm)
	keys, err := bench.NewKeys(start)
	if err != nil {
		return nil, err
	}
	// Rounds: every measurement once per round, so that the runs of each
	// (and the median kept) spread over the whole run alike — a spell of
	// load from a neighbour then hits every case, not one, and ratios
	// compare like with like.
	plan := s.plan()
	runs := make([][]run, len(plan))
	failures := make([][]string, len(plan))
	total, done := len(plan)*s.Runs, 0
	for round := range s.Runs {
		for i, pm := range plan {
			done++
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "[%d/%d] %s %s …\n", done, total, pm.cs, pm.point)
			}
			rn, err := s.runOnce(ctx, o, keys, pm)
			// A run can fail for the machine's sake (the generator's thread
			// starved for a whole window on a busy VM): try again, and say
			// so in the report; a failure that repeats stops the run.
			for try := 1; err != nil && try <= maxRetries && ctx.Err() == nil; try++ {
				failures[i] = append(failures[i], fmt.Sprintf("round %d: %v", round+1, err))
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "[%d/%d] %s %s failed (%v), again\n", done, total, pm.cs, pm.point, err)
				}
				rn, err = s.runOnce(ctx, o, keys, pm)
			}
			if err != nil {
				return r, fmt.Errorf("%s at %s (round %d): %w", pm.cs, pm.point, round+1, err)
			}
			runs[i] = append(runs[i], rn)
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "[%d/%d] %s %s: %.3f Mpps, loss %.0f%%, latency p50 %s\n", done, total, pm.cs, pm.point,
					mpps(rn), 100*lossRatio(rn), p50(rn))
			}
		}
	}
	for i, pm := range plan {
		m := summarize(pm, runs[i])
		m.Failures = failures[i]
		r.Measurements = append(r.Measurements, m)
	}
	if s.IdleLatency {
		if err := s.idleLatency(ctx, o, keys, plan, r); err != nil {
			return r, err
		}
	}
	ratios(r)
	r.Machine.LoadAvgEnd = loadavg()
	r.Elapsed = time.Since(start).Seconds()
	return r, nil
}

// idleLatency runs every case of the base point once more with the probes
// alone and records their latency in that case's base measurement.
func (s *Scenario) idleLatency(ctx context.Context, o Options, keys bench.Keys, plan []measurement, r *report.Run) error {
	for i, pm := range plan {
		if pm.point != s.Base {
			continue
		}
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "[idle] %s %s: probes only …\n", pm.cs, pm.point)
		}
		var rn run
		var err error
		for try := 0; try <= maxRetries; try++ {
			if rn, err = s.runOnceIdle(ctx, o, keys, pm, true); err == nil || ctx.Err() != nil {
				break
			}
			r.Measurements[i].Failures = append(r.Measurements[i].Failures, fmt.Sprintf("idle latency: %v", err))
		}
		if err != nil {
			return fmt.Errorf("%s at %s without load: %w", pm.cs, pm.point, err)
		}
		l := report.NewLatency(rn.obs.ProbesSent, micros(rn.obs.Latency))
		r.Measurements[i].IdleLatency = &l
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "[idle] %s %s: %d/%d probes, latency p50 %s\n", pm.cs, pm.point, l.Received, l.Sent, p50(rn))
		}
	}
	return nil
}

func micros(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Nanoseconds()) / 1e3
	}
	return out
}

// ratios fills in every psavd measurement's ratios against the baselines
// of the same size, IPv6 share and cores.
func ratios(r *report.Run) {
	for i, m := range r.Measurements {
		if report.IsBaseline(m.Case) {
			continue
		}
		for _, b := range r.Measurements {
			if b.Point.Size != m.Point.Size || b.Point.IPv6 != m.Point.IPv6 || b.Point.Cores != m.Point.Cores || b.Mpps == 0 {
				continue
			}
			switch b.Case {
			case report.CaseBare:
				r.Measurements[i].RatioBare = m.Mpps / b.Mpps
				if b.ProcNSPerPacket > 0 {
					r.Measurements[i].CPURatioBare = m.ProcNSPerPacket / b.ProcNSPerPacket
				}
			case report.CaseKernel:
				r.Measurements[i].RatioKernel = m.Mpps / b.Mpps
			}
		}
	}
}

func reportPoint(p Point, m Mix) report.Point {
	return report.Point{Size: p.Size, Mix: p.Mix, IPv6: m.IPv6, Untagged: m.Untagged, Spoofed: m.Spoofed,
		Prefixes: p.Prefixes, Cores: p.Cores}
}

// cpus returns the generator's and the DUT's CPUs for a number of DUT
// cores: the DUT takes the last cores CPUs, the generator one thread on
// each of the first cores CPUs (one per veth queue). With as many cores as
// CPUs they share every CPU.
func cpus(cores int) (genCPUs, dutCPUs []int) {
	n := runtime.NumCPU()
	cores = min(cores, n)
	for c := range cores {
		genCPUs = append(genCPUs, c)
		dutCPUs = append(dutCPUs, n-cores+c)
	}
	return genCPUs, dutCPUs
}

// run is one run's outcome.
type run struct {
	res      bench.Result
	obs      observation
	counters map[string]uint64
	meanLen  float64
}

// summarize makes the measurement of pm from its runs: the run with the
// median delivered rate, and every run's rate.
func summarize(pm measurement, runs []run) report.Measurement {
	all := make([]float64, len(runs))
	for i, rn := range runs {
		all[i] = mpps(rn)
	}
	sorted := slices.Clone(runs)
	sort.SliceStable(sorted, func(i, j int) bool { return mpps(sorted[i]) < mpps(sorted[j]) })
	rn := sorted[len(sorted)/2]

	p := reportPoint(pm.point, pm.mix)
	if pm.cs == CaseKernel || pm.cs == CaseBare {
		p.Mix, p.Prefixes, p.Untagged, p.Spoofed = "", 0, 0, 0
	}
	delivered := deliveredFrames(rn)
	win := rn.res.Window.Seconds()
	m := report.Measurement{
		Case: pm.cs, Point: p, Window: win,
		Generated: rn.res.Generated, Delivered: delivered,
		DeliveredByKind: map[string]uint64{
			"ipv4": rn.res.Delivered.IPv4, "ipv4_options": rn.res.Delivered.IPv4Options,
			"ipv6": rn.res.Delivered.IPv6, "ipv6_destopt": rn.res.Delivered.IPv6DestOpt, "other": rn.res.Delivered.Other},
		Mpps:          mpps(rn),
		OfferedMpps:   rn.res.OfferedMpps(),
		Gbps:          mpps(rn) * rn.meanLen * 8 / 1e3,
		RunsMpps:      all,
		PsavdCounters: rn.counters,
	}
	m.Loss = lossRatio(rn)
	m.Latency = report.NewLatency(rn.obs.ProbesSent, micros(rn.obs.Latency))
	if delivered > 0 {
		if rn.obs.ProcCPU > 0 {
			m.ProcNSPerPacket = float64(rn.obs.ProcCPU.Nanoseconds()) / float64(delivered)
		}
		m.CoresNSPerPacket = float64(rn.obs.CoresBusy.Nanoseconds()) / float64(delivered)
	}
	return m
}

func lossRatio(rn run) float64 {
	if rn.res.Generated == 0 {
		return 0
	}
	return 1 - float64(deliveredFrames(rn))/float64(rn.res.Generated)
}

// p50 is the median probe latency of one run, for the progress line.
func p50(rn run) string {
	if len(rn.obs.Latency) == 0 {
		return "–"
	}
	l := slices.Clone(rn.obs.Latency)
	slices.Sort(l)
	return l[(len(l)-1)/2].Round(time.Microsecond).String()
}

// deliveredFrames is what the sink counted in the window minus the probes
// it passed (those sent in the window and received; the edges of the
// window make it off by a few).
func deliveredFrames(rn run) uint64 {
	d := rn.res.Delivered.Total()
	return d - min(d, uint64(rn.obs.ProbesReceived))
}

func mpps(rn run) float64 {
	if rn.res.Window <= 0 {
		return 0
	}
	return float64(deliveredFrames(rn)) / rn.res.Window.Seconds() / 1e6
}

// runOnce makes one run of a measurement.
func (s *Scenario) runOnce(ctx context.Context, o Options, keys bench.Keys, pm measurement) (run, error) {
	return s.runOnceIdle(ctx, o, keys, pm, false)
}

// runOnceIdle makes one run of a measurement, without the generator's load
// if idle (probes only).
func (s *Scenario) runOnceIdle(ctx context.Context, o Options, keys bench.Keys, pm measurement, idle bool) (run, error) {
	now := time.Now()
	validating := pm.cs == CaseValidate
	mix := pm.mix
	if pm.cs == CaseKernel || pm.cs == CaseBare {
		// Baselines forward every frame alike: all of the tagged class
		// (which kernel forwarding has routes for), same IPv6 share.
		mix = Mix{Name: mix.Name, IPv6: mix.IPv6}
	}
	frames, err := Frames(mix, pm.point.Size, validating, keys, now)
	if err != nil {
		return run{}, err
	}
	probe, err := ProbeFrame(pm.point.Size, validating, keys, now)
	if err != nil {
		return run{}, err
	}
	genCPUs, dutCPUs := cpus(pm.point.Cores)
	sc := bench.Scenario{
		Name: pm.point.String(), Frames: frames, Warmup: s.Warmup, Duration: s.Duration,
		GenCPUs: genCPUs, DUTCPUs: dutCPUs, Queues: pm.point.Cores, Idle: idle,
	}
	var dut bench.DUT
	var cmd *bench.Command
	switch pm.cs {
	case CaseKernel:
		dut = &bench.KernelForward{}
		sc.Check = bench.NoneTagged
	case CaseBare:
		if o.BareArgv == nil {
			return run{}, fmt.Errorf("harness: no command for the bare forwarder")
		}
		q := pm.point.Cores
		cmd = &bench.Command{Label: CaseBare, Ready: "ready",
			Argv: func(env bench.Env) ([]string, error) { return o.BareArgv(env, q) }}
		sc.Check = bench.NoneTagged
	case CaseTag, CaseValidate:
		if o.Psavd == "" {
			return run{}, fmt.Errorf("harness: no psavd binary")
		}
		cmd = psavdDUT(o.Psavd, o.Dir, keys, validating, pm.point.Prefixes, o.PsavdOutput)
		sc.Check = checkFor(pm.cs, pm.mix)
	default:
		return run{}, fmt.Errorf("harness: unknown case %q", pm.cs)
	}
	var pid func() int
	if cmd != nil {
		dut, pid = cmd, cmd.Pid
	}
	obs := newObserver(s.ProbeRate, probe, pid, dutCPUs)
	sc.Observer = obs
	res, err := bench.Run(ctx, sc, dut)
	if err != nil {
		return run{}, err
	}
	rn := run{res: res, obs: obs.result()}
	for _, f := range frames {
		rn.meanLen += float64(len(f))
	}
	rn.meanLen /= float64(len(frames))
	if pm.cs == CaseTag || pm.cs == CaseValidate {
		rn.counters = bench.PsavdCounters(cmd.Log())
		if err := checkCounters(pm.cs, pm.mix, rn.counters); err != nil {
			return run{}, err
		}
	}
	return rn, nil
}

// checkFor returns the sink check of a psavd case with mix m: after
// tagging, tagged frames arrive if the mix has any, and nothing else unless
// it has untagged or spoofed frames (the sink cannot tell a spoofed frame
// psavd let through from an untagged one: the counters tell, see
// checkCounters); after validating, no frame carries a tag.
func checkFor(cs string, m Mix) func(gen.Counts) error {
	if cs == CaseValidate {
		return bench.NoneTagged
	}
	return func(c gen.Counts) error {
		tagged := c.IPv4Options + c.IPv6DestOpt
		if m.Tagged() > 0 && tagged == 0 {
			return fmt.Errorf("no tagged frame delivered: %v", c)
		}
		if m.Untagged == 0 && m.Spoofed == 0 {
			return bench.AllTagged(c)
		}
		return nil
	}
}

// checkCounters judges psavd's final counters: a tag it could not verify
// (bad-tag, stale-epoch, no-key) means the benchmark's tags and psavd
// disagree; no-tag and spoofed drops are expected only for spoofed frames.
func checkCounters(cs string, m Mix, c map[string]uint64) error {
	if len(c) == 0 {
		return fmt.Errorf("psavd printed no counters")
	}
	for k, v := range c {
		if v == 0 {
			continue
		}
		for _, r := range []string{"drop bad-tag", "drop stale-epoch", "drop no-key", "drop malformed"} {
			if strings.HasSuffix(k, r) {
				return fmt.Errorf("psavd dropped %d frames as %q: %v", v, k, c)
			}
		}
		if m.Spoofed == 0 {
			for _, r := range []string{"drop no-tag", "drop spoofed-inside", "drop spoofed-local"} {
				if strings.HasSuffix(k, r) {
					return fmt.Errorf("psavd dropped %d frames as %q though the mix has no spoofed frame: %v", v, k, c)
				}
			}
		}
	}
	return nil
}

func machine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgStart: loadavg()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
