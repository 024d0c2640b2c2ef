package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Baseline case names (as bench/harness names them).
const (
	CaseKernel = "kernel-forward"
	CaseBare   = "afxdp-bare"
)

// IsBaseline tells a baseline case from a psavd one.
func IsBaseline(c string) bool { return c == CaseKernel || c == CaseBare }

// caseColors keeps a case's colour the same in every chart.
var caseColors = map[string]string{
	CaseKernel:       "#0072B2",
	CaseBare:         "#D55E00",
	"psavd-tag":      "#009E73",
	"psavd-validate": "#CC79A7",
}

// ChartFile is a chart and the file it goes to.
type ChartFile struct {
	File    string
	Caption string
	Chart   Chart
}

// cases returns the cases of r in the order they first appear.
func (r *Run) cases() []string {
	var out []string
	for _, m := range r.Measurements {
		if !slices.Contains(out, m.Case) {
			out = append(out, m.Case)
		}
	}
	return out
}

// atBase reports whether m sits on the base point except in the dimensions
// named by free ("size", "prefixes", "cores").
func (r *Run) atBase(m Measurement, free ...string) bool {
	b, p := r.Base, m.Point
	ok := func(dim string, eq bool) bool { return eq || slices.Contains(free, dim) }
	if IsBaseline(m.Case) {
		return ok("size", p.Size == b.Size) && ok("cores", p.Cores == b.Cores) && p.IPv6 == b.IPv6
	}
	return ok("size", p.Size == b.Size) && ok("cores", p.Cores == b.Cores) &&
		ok("prefixes", p.Prefixes == b.Prefixes) && p.Mix == b.Mix
}

// Charts returns the report's charts (those the run has data for).
func Charts(r *Run) []ChartFile {
	var out []ChartFile
	series := func(free string, x func(Measurement) float64, y func(Measurement) float64, skip func(string) bool) ([]Series, int) {
		var ss []Series
		xs := map[float64]bool{}
		for _, c := range r.cases() {
			if skip != nil && skip(c) {
				continue
			}
			s := Series{Name: c, Color: caseColors[c]}
			for _, m := range r.Measurements {
				if m.Case == c && r.atBase(m, free) && !math.IsNaN(y(m)) {
					s.Points = append(s.Points, XY{x(m), y(m)})
					xs[x(m)] = true
				}
			}
			slices.SortFunc(s.Points, func(a, b XY) int { return cmpFloat(a.X, b.X) })
			if len(s.Points) > 0 {
				ss = append(ss, s)
			}
		}
		return ss, len(xs)
	}
	mpps := func(m Measurement) float64 { return m.Mpps }
	if ss, n := series("size", func(m Measurement) float64 { return float64(m.Point.Size) }, mpps, nil); n > 1 {
		out = append(out, ChartFile{SizeChart, "Throughput against packet size", Chart{
			Title: "Throughput vs packet size", XLabel: "frame size (octets, before the tag)", YLabel: "delivered Mpps",
			YFrom0: true, Series: ss}})
	}
	if ss, n := series("prefixes", func(m Measurement) float64 { return float64(m.Point.Prefixes) }, mpps, IsBaseline); n > 1 {
		// The bare forwarder has no table: a flat reference line across.
		if b, ok := r.find(CaseBare, r.Base); ok {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, s := range ss {
				for _, p := range s.Points {
					lo, hi = math.Min(lo, p.X), math.Max(hi, p.X)
				}
			}
			ss = append(ss, Series{Name: CaseBare + " (no table)", Color: caseColors[CaseBare],
				Points: []XY{{lo, b.Mpps}, {hi, b.Mpps}}})
		}
		out = append(out, ChartFile{PrefixesChart, "Throughput against the number of prefixes in the AS-Prefix table", Chart{
			Title: "Throughput vs AS-Prefix table size", XLabel: "prefixes in the table", YLabel: "delivered Mpps",
			XLog: true, YFrom0: true, Series: ss}})
	}
	if ss, n := series("cores", func(m Measurement) float64 { return float64(m.Point.Cores) }, mpps, nil); n > 1 {
		out = append(out, ChartFile{CoresChart, "Throughput against the DUT's cores", Chart{
			Title: "Throughput vs cores", XLabel: "DUT cores (= veth queues)", YLabel: "delivered Mpps",
			YFrom0: true, Series: ss}})
	}
	cpu := func(m Measurement) float64 {
		if m.ProcNSPerPacket <= 0 {
			return math.NaN() // not measured (no process)
		}
		return m.ProcNSPerPacket
	}
	if ss, n := series("size", func(m Measurement) float64 { return float64(m.Point.Size) }, cpu, nil); n > 1 {
		out = append(out, ChartFile{CPUChart, "DUT process CPU per packet against packet size", Chart{
			Title: "CPU per packet vs packet size", XLabel: "frame size (octets, before the tag)",
			YLabel: "DUT process CPU ns / packet", YFrom0: true, Series: ss}})
	}
	var cdf []Series
	for _, c := range r.cases() {
		for _, m := range r.Measurements {
			if m.Case == c && r.atBase(m) && len(m.Latency.Samples) > 0 {
				cdf = append(cdf, Series{Name: fmt.Sprintf("%s (p50 %s, p99 %s µs)", c, us(m.Latency.P50), us(m.Latency.P99)),
					Color: caseColors[c], Points: cdfPoints(m.Latency.Samples, 400)})
				break
			}
		}
	}
	if len(cdf) > 0 {
		out = append(out, ChartFile{LatencyChart, "One-way latency of the probes at the base point, under load", Chart{
			Title: fmt.Sprintf("Latency CDF under load (%d-octet frames)", r.Base.Size), XLabel: "one-way latency (µs)",
			YLabel: "fraction of probes", XLog: true, YFrom0: true, Step: true, Series: cdf}})
	}
	var idle []Series
	for _, m := range r.Measurements {
		if l := m.IdleLatency; l != nil && len(l.Samples) > 0 && r.atBase(m) {
			idle = append(idle, Series{Name: fmt.Sprintf("%s (p50 %s, p99 %s µs)", m.Case, us(l.P50), us(l.P99)),
				Color: caseColors[m.Case], Points: cdfPoints(l.Samples, 400)})
		}
	}
	if len(idle) > 0 {
		out = append(out, ChartFile{IdleChart, "One-way latency of the probes at the base point, without load", Chart{
			Title: "Latency CDF without load (probes only)", XLabel: "one-way latency (µs)",
			YLabel: "fraction of probes", XLog: true, YFrom0: true, Step: true, Series: idle}})
	}
	return out
}

// cdfPoints returns the empirical CDF of sorted samples, thinned to about
// max points (always keeping the first and the last).
func cdfPoints(sorted []float64, max int) []XY {
	n := len(sorted)
	step := 1
	if n > max {
		step = (n + max - 1) / max
	}
	var out []XY
	for i := 0; i < n; i += step {
		out = append(out, XY{sorted[i], float64(i+1) / float64(n)})
	}
	if last := (XY{sorted[n-1], 1}); out[len(out)-1] != last {
		out = append(out, last)
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// find returns the measurement of case c that serves point p.
func (r *Run) find(c string, p Point) (Measurement, bool) {
	for _, m := range r.Measurements {
		if m.Case != c {
			continue
		}
		q := m.Point
		if IsBaseline(c) {
			if q.Size == p.Size && q.IPv6 == p.IPv6 && q.Cores == p.Cores {
				return m, true
			}
		} else if q == p {
			return m, true
		}
	}
	return Measurement{}, false
}

func us(v float64) string {
	if math.IsNaN(v) || v == 0 {
		return "–"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", v)
}

func nsPerPkt(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func pointLabel(p Point) string {
	if p.Mix == "" {
		return fmt.Sprintf("%d B, IPv6 %g, %d core(s)", p.Size, p.IPv6, p.Cores)
	}
	return fmt.Sprintf("%d B, mix %s, %s prefixes, %d core(s)", p.Size, p.Mix, count(p.Prefixes), p.Cores)
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// Markdown renders the report; charts are referenced by file name (they sit
// next to it).
func Markdown(r *Run, charts []ChartFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# psavd benchmark — scenario %s\n\n", r.Scenario)
	if r.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(r.Description))
	}
	fmt.Fprintf(&b, "Run %s on %s (%d CPUs, %s, Linux %s, %s); load average %s at the start, %s at the end; the run took %s.\n",
		r.Date.UTC().Format("2006-01-02 15:04 UTC"), r.Machine.Hostname, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel,
		r.Machine.GoVersion, strings.TrimSpace(r.Machine.LoadAvgStart), strings.TrimSpace(r.Machine.LoadAvgEnd),
		(time.Duration(r.Elapsed) * time.Second).String())
	fmt.Fprintf(&b, "Every measurement: %gs warm-up, %gs window, median of %d run(s), %d latency probes per second. Scenario file `%s`.\n\n",
		r.Settings.Warmup, r.Settings.Duration, r.Settings.Runs, r.Settings.ProbeRate, r.ScenarioFile)

	b.WriteString("## psavd against the same-run baselines\n\n")
	b.WriteString("| point | case | Mpps | ÷ afxdp-bare | ÷ kernel-forward | p50 / p99 µs | DUT CPU ns/pkt | CPU ÷ afxdp-bare |\n|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.Measurements {
		if IsBaseline(m.Case) {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %.3f | **%s** | %s | %s / %s | %s | %s |\n", pointLabel(m.Point), m.Case, m.Mpps,
			ratio(m.RatioBare), ratio(m.RatioKernel), us(m.Latency.P50), us(m.Latency.P99), nsPerPkt(m.ProcNSPerPacket),
			ratio(m.CPURatioBare))
	}
	b.WriteString("\n")

	for _, c := range charts {
		fmt.Fprintf(&b, "### %s\n\n![%s](%s)\n\n", c.Caption, c.Caption, c.File)
	}

	var idleRows []string
	for _, m := range r.Measurements {
		if l := m.IdleLatency; l != nil {
			idleRows = append(idleRows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %d/%d |", m.Case, pointLabel(m.Point),
				us(l.P50), us(l.P90), us(l.P99), us(l.Max), l.Received, l.Sent))
		}
	}
	if len(idleRows) > 0 {
		b.WriteString("## Latency without load (probes only)\n\n| case | point | p50 µs | p90 | p99 | max | probes rx/tx |\n|---|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(idleRows, "\n") + "\n\n")
	}

	b.WriteString("## Every measurement\n\n")
	b.WriteString("| case | point | Mpps | Gbps | offered Mpps | loss | p50 | p90 | p99 | p99.9 | max µs | probes rx/tx | proc ns/pkt | cores ns/pkt |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.Measurements {
		l := m.Latency
		fmt.Fprintf(&b, "| %s | %s | %.3f | %.2f | %.3f | %.1f %% | %s | %s | %s | %s | %s | %d/%d | %s | %s |\n",
			m.Case, pointLabel(m.Point), m.Mpps, m.Gbps, m.OfferedMpps, 100*m.Loss, us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max),
			l.Received, l.Sent, nsPerPkt(m.ProcNSPerPacket), nsPerPkt(m.CoresNSPerPacket))
	}
	var failed []string
	for _, m := range r.Measurements {
		for _, f := range m.Failures {
			failed = append(failed, fmt.Sprintf("- %s at %s, %s", m.Case, pointLabel(m.Point), f))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "\nRuns that failed and were made again:\n\n%s\n", strings.Join(failed, "\n"))
	}
	b.WriteString(`
How to read it: Mpps is what the sink counted over the window (probes not
included); Gbps counts the frames as generated (no FCS, preamble or gap).
The generator floods, so loss is what the DUT could not take. Latency is
one way, from the probe's send time (written into its payload) to the
kernel's receive timestamp behind the sink, while the load runs; probes
queue with the load, so under saturation it is mostly ring occupancy.
"proc" CPU is the DUT process's utime+stime over the window per delivered
packet (none for kernel forwarding); "cores" is everything non-idle on the
DUT's CPUs (softirqs included, e.g. the sink's veth receive) per delivered
packet. Ratios divide by the baseline measured in the same run at the same
frame size, IPv6 share and cores.
`)
	return b.String()
}
