// Package promtext reads the Prometheus text exposition format — what
// psavd's [metrics] listener serves — into flat samples, with the Prometheus
// project's own parser (github.com/prometheus/common/expfmt). It is the one
// reader of scrapes for psavctl, the lab and the tests.
package promtext

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series of a scrape.
type Sample struct {
	Name   string
	Labels map[string]string // never nil
	// Value is the value of a counter, gauge or untyped series, and the
	// sample count of a histogram or summary.
	Value float64
	// Sum is the sum of a histogram's or summary's observations.
	Sum float64
	// Buckets are a histogram's buckets, as exposed (cumulative counts).
	Buckets []Bucket
}

// Bucket is one bucket of a histogram.
type Bucket struct {
	UpperBound float64
	Count      uint64 // cumulative: observations ≤ UpperBound
}

// Series is the sample's name and labels as Prometheus prints them, labels
// sorted by name: `psavd_drops_total{port="outside",reason="no-tag"}`, or
// the bare name without labels.
func (s Sample) Series() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	names := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(s.Labels[k]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// Has reports whether the sample's labels include every name/value pair of
// match.
func (s Sample) Has(match map[string]string) bool {
	for k, v := range match {
		if got, ok := s.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Samples is a parsed scrape, ordered by metric name, then as exposed.
type Samples []Sample

// Parse reads Prometheus text (format 0.0.4).
func Parse(r io.Reader) (Samples, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("prometheus text: %w", err)
	}
	names := make([]string, 0, len(fams))
	for name := range fams {
		names = append(names, name)
	}
	sort.Strings(names)
	var out Samples
	for _, name := range names {
		for _, m := range fams[name].GetMetric() {
			s := Sample{Name: name, Labels: make(map[string]string, len(m.GetLabel()))}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.Value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.Value = m.GetGauge().GetValue()
			case m.Untyped != nil:
				s.Value = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				s.Value, s.Sum = float64(h.GetSampleCount()), h.GetSampleSum()
				for _, b := range h.GetBucket() {
					s.Buckets = append(s.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: b.GetCumulativeCount()})
				}
			case m.Summary != nil:
				s.Value, s.Sum = float64(m.GetSummary().GetSampleCount()), m.GetSummary().GetSampleSum()
			default:
				continue
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Scrape fetches url (http://host:port/metrics) with client (nil:
// http.DefaultClient) and parses the response.
func Scrape(ctx context.Context, client *http.Client, url string) (Samples, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Named returns the samples of metric name.
func (ss Samples) Named(name string) Samples {
	var out Samples
	for _, s := range ss {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Sum adds up the values of the samples of metric name whose labels include
// match (nil: all of them).
func (ss Samples) Sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range ss {
		if s.Name == name && s.Has(match) {
			total += s.Value
		}
	}
	return total
}

// Series returns the sample whose Series() is series, e.g.
// `psavd_acs_events_total{event="established"}`.
func (ss Samples) Series(series string) (Sample, bool) {
	for _, s := range ss {
		if s.Series() == series {
			return s, true
		}
	}
	return Sample{}, false
}
