// Package report holds the results of a benchmark harness run
// (bench/harness, cmd/psavbench) and writes them: one JSON file with every
// data point, and a self-contained Markdown report with SVG charts drawn by
// this package's own small SVG writer (throughput against packet size and
// against the number of prefixes, latency CDF).
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Run is one harness run: what ran, where, and every measurement.
type Run struct {
	Scenario     string    `json:"scenario"`
	ScenarioFile string    `json:"scenario_file"`
	ScenarioText string    `json:"scenario_text"` // the file as read
	Description  string    `json:"description,omitempty"`
	Date         time.Time `json:"date"`
	Elapsed      float64   `json:"elapsed_seconds"`
	Machine      Machine   `json:"machine"`
	Settings     Settings  `json:"settings"`
	// Base is the point every sweep varies one dimension of.
	Base         Point         `json:"base"`
	Measurements []Measurement `json:"measurements"`
}

// Machine describes where the run took place.
type Machine struct {
	Hostname     string `json:"hostname"`
	Kernel       string `json:"kernel"`
	CPUs         int    `json:"cpus"`
	CPUModel     string `json:"cpu_model"`
	GoVersion    string `json:"go_version"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

// Settings are the scenario's timing.
type Settings struct {
	Warmup    float64 `json:"warmup_seconds"`
	Duration  float64 `json:"duration_seconds"`
	Runs      int     `json:"runs"`
	ProbeRate int     `json:"probe_rate"`
}

// Point is the place of a measurement in the sweep. A baseline does not
// depend on the table or on the share of each class (it forwards every
// frame alike): its Mix is "" and Prefixes 0, and it serves every point of
// its size, IPv6 share and cores.
type Point struct {
	Size     int     `json:"size"` // Ethernet frame without FCS, before any tag
	Mix      string  `json:"mix"`
	IPv6     float64 `json:"ipv6_share"`
	Untagged float64 `json:"untagged_share"`
	Spoofed  float64 `json:"spoofed_share"`
	Prefixes int     `json:"prefixes"`
	Cores    int     `json:"cores"`
}

// Measurement is one case at one point (the median of its runs).
type Measurement struct {
	Case  string `json:"case"`
	Point Point  `json:"point"`
	// Window is the measurement window of the kept run.
	Window float64 `json:"window_seconds"`
	// Generated frames in the window; Delivered at the sink (probes
	// excluded); by kind as the sink classified them.
	Generated       uint64            `json:"generated"`
	Delivered       uint64            `json:"delivered"`
	DeliveredByKind map[string]uint64 `json:"delivered_by_kind"`
	Mpps            float64           `json:"mpps"`
	OfferedMpps     float64           `json:"offered_mpps"`
	// Gbps is Mpps times the mean frame length as generated (FCS,
	// preamble and gap not counted).
	Gbps float64 `json:"gbps"`
	Loss float64 `json:"loss_ratio"`
	// RunsMpps is the delivered rate of every run (the kept one is the
	// median).
	RunsMpps []float64 `json:"runs_mpps"`
	// Latency of the probes sent in the window.
	Latency Latency `json:"latency"`
	// IdleLatency is the probes' latency with no load (base point only,
	// if the scenario asks for it).
	IdleLatency *Latency `json:"idle_latency,omitempty"`
	// CPU per delivered packet: of the DUT process (utime+stime; 0
	// without a process, e.g. kernel forwarding), and of the DUT's CPUs
	// as a whole (everything non-idle on them, softirqs included).
	ProcNSPerPacket  float64 `json:"proc_cpu_ns_per_packet"`
	CoresNSPerPacket float64 `json:"cores_cpu_ns_per_packet"`
	// Ratios against the same run's baselines at the same size, IPv6
	// share and cores (0: not measured).
	RatioBare   float64 `json:"ratio_to_afxdp_bare,omitempty"`
	RatioKernel float64 `json:"ratio_to_kernel_forward,omitempty"`
	// CPURatioBare is ProcNSPerPacket ÷ the bare forwarder's: what psavd
	// costs per packet in CPU against the same loop without processing.
	CPURatioBare float64 `json:"cpu_ratio_to_afxdp_bare,omitempty"`
	// Failures are the runs that failed and were tried again (why).
	Failures []string `json:"failures,omitempty"`
	// Counters psavd printed when it stopped ("port counter" → packets).
	PsavdCounters map[string]uint64 `json:"psavd_counters,omitempty"`
}

// Latency summarises one-way probe delays, in microseconds.
type Latency struct {
	Sent     int       `json:"probes_sent"`
	Received int       `json:"probes_received"`
	P50      float64   `json:"p50_us"`
	P90      float64   `json:"p90_us"`
	P99      float64   `json:"p99_us"`
	P999     float64   `json:"p999_us"`
	Max      float64   `json:"max_us"`
	Samples  []float64 `json:"samples_us"` // sorted
}

// NewLatency summarises samples (any order; microseconds).
func NewLatency(sent int, samples []float64) Latency {
	s := slices.Clone(samples)
	slices.Sort(s)
	l := Latency{Sent: sent, Received: len(s), Samples: s}
	if len(s) == 0 {
		l.Samples = []float64{}
		return l
	}
	l.P50, l.P90, l.P99, l.P999 = Percentile(s, 50), Percentile(s, 90), Percentile(s, 99), Percentile(s, 99.9)
	l.Max = s[len(s)-1]
	return l
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample with at least p % of the samples
// at or below it. NaN for no samples.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	// p/100·n computed so that e.g. 99.9 % of 1000 is exactly 999.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	return sorted[max(rank, 1)-1]
}

// WriteJSON writes r to path (indented).
func WriteJSON(path string, r *Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a run written by WriteJSON.
func ReadJSON(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}

// Files written by Write into a directory.
const (
	JSONFile       = "results.json"
	MarkdownFile   = "report.md"
	SizeChart      = "throughput-size.svg"
	PrefixesChart  = "throughput-prefixes.svg"
	LatencyChart   = "latency-cdf.svg"
	IdleChart      = "latency-idle-cdf.svg"
	CPUChart       = "cpu-size.svg"
	CoresChart     = "throughput-cores.svg"
	chartsFileMode = 0o644
)

// Write writes the JSON, the Markdown report and its charts into dir
// (created if missing) and returns the paths written.
func Write(dir string, r *Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, JSONFile)
	if err := WriteJSON(p, r); err != nil {
		return nil, err
	}
	paths, err := WriteReport(dir, r)
	return append([]string{p}, paths...), err
}

// WriteReport writes the Markdown report and its charts (not the JSON)
// into dir, e.g. docs/bench, and returns the paths written.
func WriteReport(dir string, r *Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	charts := Charts(r)
	for _, c := range charts {
		p := filepath.Join(dir, c.File)
		if err := os.WriteFile(p, []byte(c.Chart.SVG()), chartsFileMode); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	p := filepath.Join(dir, MarkdownFile)
	if err := os.WriteFile(p, []byte(Markdown(r, charts)), 0o644); err != nil {
		return nil, err
	}
	return append(paths, p), nil
}
