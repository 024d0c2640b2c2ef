package harness

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/report"
	"github.com/psavd/psavd/ports/afxdp"
)

// serveBareEnv makes the test binary the bare forwarder's own process
// (what psavbench -serve-bare is), for TestRunTiny.
const serveBareEnv = "PSAVBENCH_TEST_SERVE_BARE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(serveBareEnv); spec != "" {
		os.Exit(ServeBare(spec, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunTiny runs a tiny scenario end to end — the bare forwarder in its
// own process, psavd tagging and validating (a mix with spoofed and
// untagged frames, and a 1,000-prefix table), one baseline ratio each —
// and writes the report. Rates are logged, not judged.
func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds psavd and runs namespaces")
	}
	if why := bench.Supported(); why != "" {
		t.Skip(why)
	}
	if why := afxdp.Supported(); why != "" {
		t.Skip(why)
	}
	dir := t.TempDir()
	bin, err := bench.BuildPsavd(dir)
	if err != nil {
		t.Fatal(err)
	}
	text := `name = "tiny"
cases = ["afxdp-bare", "psavd-tag", "psavd-validate"]
warmup = "300ms"
duration = "700ms"
probe_rate = 500
idle_latency = true
[base]
mix = "m"
prefixes = 1000
[[mix]]
name = "m"
ipv6 = 0.5
untagged = 0.25
spoofed = 0.25
`
	s, err := Parse("tiny.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	o := Options{Psavd: bin, Dir: dir, Progress: &progress,
		BareArgv: func(env bench.Env, queues int) ([]string, error) {
			return []string{"env", serveBareEnv + "=" + ServeBareSpec(env, queues), self}, nil
		}}
	r, err := Run(context.Background(), s, o, text)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())
	if len(r.Measurements) != 3 {
		t.Fatalf("%d measurements", len(r.Measurements))
	}
	for _, m := range r.Measurements {
		if m.Mpps <= 0 || m.Generated == 0 {
			t.Errorf("%s delivered nothing: %+v", m.Case, m)
		}
		if m.Latency.Received == 0 {
			t.Errorf("%s: no probe came back (%d sent)", m.Case, m.Latency.Sent)
		}
		if m.ProcNSPerPacket <= 0 {
			t.Errorf("%s: no CPU time measured", m.Case)
		}
		if m.IdleLatency == nil || m.IdleLatency.Received == 0 {
			t.Errorf("%s: no probe came back without load: %+v", m.Case, m.IdleLatency)
		}
		if m.Case != CaseBare && m.RatioBare <= 0 {
			t.Errorf("%s: no ratio to the bare forwarder", m.Case)
		}
	}
	tag, val := r.Measurements[1], r.Measurements[2]
	// Spoofed frames were dropped by psavd and counted so; after tagging
	// both tagged and untagged frames arrive; after validating none is
	// tagged.
	// (On EGRESS the XDP pre-filter drops what lacks a tag: xdp-drop.)
	if tag.PsavdCounters["inside drop spoofed-inside"] == 0 || val.PsavdCounters["outside drop no-tag"]+val.PsavdCounters["outside xdp-drop no-tag"] == 0 {
		t.Errorf("spoofed frames not dropped: %v / %v", tag.PsavdCounters, val.PsavdCounters)
	}
	if tag.DeliveredByKind["ipv4_options"] == 0 || tag.DeliveredByKind["ipv6"] == 0 {
		t.Errorf("tagging delivered %v", tag.DeliveredByKind)
	}
	if val.DeliveredByKind["ipv4_options"]+val.DeliveredByKind["ipv6_destopt"] != 0 {
		t.Errorf("validating delivered tagged frames: %v", val.DeliveredByKind)
	}
	out := filepath.Join(dir, "report")
	if _, err := report.Write(out, r); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, report.MarkdownFile))
	if err != nil || !strings.Contains(string(md), "psavd-validate") {
		t.Errorf("report: %v\n%s", err, md)
	}
}
