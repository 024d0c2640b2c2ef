package report

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := make([]float64, 1000)
	for i := range s {
		s[i] = float64(i + 1) // 1 … 1000
	}
	for _, tc := range []struct{ p, want float64 }{
		{50, 500}, {90, 900}, {99, 990}, {99.9, 999}, {100, 1000}, {0.1, 1}, {0.01, 1},
	} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("p%g = %g, want %g", tc.p, got, tc.want)
		}
	}
	// Nearest rank on a small set: 4 samples, p50 is the 2nd, p51 the 3rd.
	small := []float64{10, 20, 30, 40}
	for _, tc := range []struct{ p, want float64 }{{25, 10}, {50, 20}, {51, 30}, {75, 30}, {99, 40}} {
		if got := Percentile(small, tc.p); got != tc.want {
			t.Errorf("small p%g = %g, want %g", tc.p, got, tc.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) || !math.IsNaN(Percentile(small, 0)) || !math.IsNaN(Percentile(small, 101)) {
		t.Error("no samples or a bad p should give NaN")
	}
	if got := Percentile([]float64{7}, 99.9); got != 7 {
		t.Errorf("one sample: %g", got)
	}
}

func TestNewLatency(t *testing.T) {
	l := NewLatency(5, []float64{5, 1, 4, 2, 3})
	if l.Sent != 5 || l.Received != 5 || l.P50 != 3 || l.Max != 5 || l.P99 != 5 || !reflect.DeepEqual(l.Samples, []float64{1, 2, 3, 4, 5}) {
		t.Errorf("%+v", l)
	}
	if e := NewLatency(3, nil); e.Received != 0 || e.P50 != 0 || e.Samples == nil {
		t.Errorf("empty: %+v", e)
	}
}

// checkSVG parses doc with encoding/xml (well-formed, root svg) and returns
// its text and the count of each element.
func checkSVG(t *testing.T, doc string) (string, map[string]int) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	elems := map[string]int{}
	var text strings.Builder
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = x.Name.Local
				if x.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", x.Name.Space)
				}
			}
			elems[x.Name.Local]++
			for _, a := range x.Attr {
				if strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf") {
					t.Errorf("<%s %s=%q>", x.Name.Local, a.Name.Local, a.Value)
				}
			}
		case xml.CharData:
			text.Write(x)
			text.WriteByte('|')
		}
	}
	if root != "svg" {
		t.Errorf("root element %q", root)
	}
	return text.String(), elems
}

func TestSVGLinear(t *testing.T) {
	c := Chart{Title: "T <&> \"q\"", XLabel: "size", YLabel: "Mpps", YFrom0: true, Series: []Series{
		{Name: "a&b", Points: []XY{{64, 1}, {512, 0.8}, {1500, 0.5}}},
		{Name: "c", Points: []XY{{64, 0.4}, {1500, 0.3}}},
	}}
	text, el := checkSVG(t, c.SVG())
	for _, want := range []string{"T <&> \"q\"", "size", "Mpps", "a&b", "c", "|0|"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	if el["polyline"] != 2 || el["circle"] != 5 {
		t.Errorf("elements %v", el)
	}
}

func TestSVGLogAndStep(t *testing.T) {
	c := Chart{Title: "cdf", XLabel: "µs", YLabel: "fraction", XLog: true, YFrom0: true, Step: true, Series: []Series{
		{Name: "x", Points: cdfPoints([]float64{3, 5, 50, 700, 900}, 400)},
		{Name: "bad", Points: []XY{{0, 1}, {-1, 2}, {math.NaN(), 1}}}, // nothing drawable on a log axis
	}}
	text, el := checkSVG(t, c.SVG())
	for _, want := range []string{"|1|", "|10|", "|100|", "|1k|"} {
		if !strings.Contains(text, want) {
			t.Errorf("log ticks: %q lacks %q", text, want)
		}
	}
	if el["polyline"] != 1 || el["circle"] != 0 {
		t.Errorf("elements %v", el)
	}
	// An empty chart still renders.
	checkSVG(t, (&Chart{Title: "empty"}).SVG())
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ raw, want float64 }{{0.13, 0.2}, {0.2, 0.2}, {3, 5}, {7, 10}, {120, 200}, {0, 1}} {
		if got := niceStep(tc.raw); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceStep(%g) = %g, want %g", tc.raw, got, tc.want)
		}
	}
}

func TestCDFPoints(t *testing.T) {
	s := make([]float64, 1000)
	for i := range s {
		s[i] = float64(i)
	}
	p := cdfPoints(s, 100)
	if len(p) > 102 || p[0] != (XY{0, 0.001}) || p[len(p)-1] != (XY{999, 1}) {
		t.Errorf("%d points, first %v last %v", len(p), p[0], p[len(p)-1])
	}
}

func sampleRun() *Run {
	base := Point{Size: 64, Mix: "v4v6", IPv6: 0.5, Prefixes: 4, Cores: 1}
	bare := func(size int, mpps float64) Measurement {
		return Measurement{Case: CaseBare, Point: Point{Size: size, IPv6: 0.5, Cores: 1}, Mpps: mpps,
			ProcNSPerPacket: 1000, Latency: NewLatency(3, []float64{10, 20, 30})}
	}
	tag := func(size, prefixes int, mpps float64) Measurement {
		p := base
		p.Size, p.Prefixes = size, prefixes
		return Measurement{Case: "psavd-tag", Point: p, Mpps: mpps, ProcNSPerPacket: 1400,
			Latency: NewLatency(4, []float64{15, 25, 35, 45})}
	}
	r := &Run{Scenario: "s", ScenarioFile: "s.toml", Date: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC),
		Machine: Machine{Hostname: "h", CPUs: 2}, Settings: Settings{Warmup: 1, Duration: 2, Runs: 1, ProbeRate: 1000},
		Base: base,
		Measurements: []Measurement{
			bare(64, 0.8), tag(64, 4, 0.72), bare(1500, 0.5), tag(1500, 4, 0.48),
			tag(64, 1000000, 0.6),
		}}
	idle := NewLatency(2, []float64{5, 6})
	r.Measurements[1].IdleLatency = &idle
	r.Measurements = append(r.Measurements, Measurement{Case: CaseKernel, Point: Point{Size: 64, IPv6: 0.5, Cores: 1}, Mpps: 0.3})
	for i, m := range r.Measurements {
		if m.Case == "psavd-tag" {
			b, _ := r.find(CaseBare, m.Point)
			r.Measurements[i].RatioBare = m.Mpps / b.Mpps
		}
	}
	return r
}

func TestWrite(t *testing.T) {
	r := sampleRun()
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{JSONFile, MarkdownFile, SizeChart, PrefixesChart, LatencyChart, CPUChart, IdleChart} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CoresChart)); err == nil {
		t.Errorf("cores chart written without a cores sweep")
	}
	if len(paths) != 7 {
		t.Errorf("paths %v", paths)
	}
	back, err := ReadJSON(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("JSON round trip differs:\n%+v\n%+v", back, r)
	}
	md, _ := os.ReadFile(filepath.Join(dir, MarkdownFile))
	for _, want := range []string{"](" + SizeChart + ")", "](" + PrefixesChart + ")", "](" + LatencyChart + ")",
		"**0.900**", "**0.960**", "| psavd-tag | 64 B, mix v4v6, 1M prefixes, 1 core(s) |",
		"## Latency without load", "| psavd-tag | 64 B, mix v4v6, 4 prefixes, 1 core(s) | 5.0 | 6.0 | 6.0 | 6.0 | 2/2 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{SizeChart, PrefixesChart, LatencyChart, CPUChart, IdleChart} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		text, _ := checkSVG(t, string(b))
		if !strings.Contains(text, "psavd-tag") {
			t.Errorf("%s has no psavd-tag legend", f)
		}
	}
	// The size chart has both cases at both sizes; the prefixes chart
	// psavd-tag at 4 and 1M plus the bare reference line.
	// The size chart has the three cases (kernel-forward at 64 only); the
	// prefixes chart psavd-tag at 4 and 1M plus the bare reference line;
	// the CPU chart leaves out kernel-forward (no process); the idle chart
	// has psavd-tag alone.
	charts := Charts(r)
	byFile := map[string]Chart{}
	for _, c := range charts {
		byFile[c.File] = c.Chart
	}
	if len(charts) != 5 || len(byFile[SizeChart].Series) != 3 || len(byFile[PrefixesChart].Series) != 2 ||
		len(byFile[PrefixesChart].Series[0].Points) != 2 || len(byFile[CPUChart].Series) != 2 ||
		len(byFile[IdleChart].Series) != 1 || len(byFile[LatencyChart].Series) != 2 {
		t.Errorf("charts %+v", charts)
	}
}
