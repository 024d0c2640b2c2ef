package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// Chart is a line chart: series of (x, y) points over linear or
// logarithmic axes, with axis labels, ticks, a title and a legend.
type Chart struct {
	Title          string
	XLabel, YLabel string
	XLog, YLog     bool // logarithmic axis (positive values only)
	// YFrom0 starts a linear y axis at 0 whatever the data.
	YFrom0 bool
	// Step draws each series as a staircase (a CDF) instead of straight
	// segments with markers.
	Step   bool
	Series []Series
	// Width and Height in pixels (default 640 × 360).
	Width, Height int
}

// Series is one line of a chart.
type Series struct {
	Name   string
	Points []XY
	// Color is an SVG colour; "" takes the palette's next one.
	Color string
}

// XY is one point.
type XY struct{ X, Y float64 }

// palette is colour-blind-safe (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// Layout margins, pixels.
const (
	marginLeft   = 70
	marginRight  = 20
	marginTop    = 36
	marginBottom = 50
	legendRow    = 16
)

// axis maps data values to pixels.
type axis struct {
	lo, hi   float64 // data range (log10 of it on a log axis)
	log      bool
	from, to float64 // pixels
}

func (a axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	if a.hi == a.lo {
		return (a.from + a.to) / 2
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// ticks returns tick values (data units) and labels.
func (a axis) ticks() ([]float64, []string) {
	var vs []float64
	if a.log {
		for e := math.Floor(a.lo); e <= math.Ceil(a.hi)+1e-9; e++ {
			if e >= a.lo-1e-9 && e <= a.hi+1e-9 {
				vs = append(vs, math.Pow(10, e))
			}
		}
	} else {
		step := niceStep((a.hi - a.lo) / 5)
		for v := math.Ceil(a.lo/step-1e-9) * step; v <= a.hi+step*1e-9; v += step {
			vs = append(vs, v)
		}
	}
	labels := make([]string, len(vs))
	for i, v := range vs {
		labels[i] = formatTick(v)
	}
	return vs, labels
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6 && math.Mod(a, 1e6) == 0:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case a >= 1e3 && math.Mod(a, 1e3) == 0:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// dataRange returns the range of the values taken by get over every point
// (log10 of it on a log axis, ignoring values ≤ 0 there).
func (c *Chart) dataRange(get func(XY) float64, log, from0 bool) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			v := get(p)
			if math.IsNaN(v) || math.IsInf(v, 0) || (log && v <= 0) {
				continue
			}
			if log {
				v = math.Log10(v)
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if lo > hi {
		return 0, 1, false
	}
	if log {
		return math.Floor(lo), math.Max(math.Ceil(hi), math.Floor(lo)+1), true
	}
	if from0 && lo > 0 {
		lo = 0
	}
	if hi == lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step, true
}

// SVG renders the chart as a standalone SVG document.
func (c *Chart) SVG() string {
	w, h := c.Width, c.Height
	if w == 0 {
		w = 640
	}
	if h == 0 {
		h = 360
	}
	legendH := legendRow * len(c.Series)
	plotTop := float64(marginTop)
	plotBottom := float64(h - marginBottom - legendH)
	xlo, xhi, _ := c.dataRange(func(p XY) float64 { return p.X }, c.XLog, false)
	ylo, yhi, _ := c.dataRange(func(p XY) float64 { return p.Y }, c.YLog, c.YFrom0)
	xa := axis{lo: xlo, hi: xhi, log: c.XLog, from: marginLeft, to: float64(w - marginRight)}
	ya := axis{lo: ylo, hi: yhi, log: c.YLog, from: plotBottom, to: plotTop}

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", w/2, esc(c.Title))

	// Grid and ticks.
	xs, xl := xa.ticks()
	for i, v := range xs {
		x := xa.pos(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, plotTop, x, plotBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, plotBottom+16, esc(xl[i]))
	}
	ys, yl := ya.ticks()
	for i, v := range ys {
		y := ya.pos(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", xa.from, y, xa.to, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", xa.from-6, y+4, esc(yl[i]))
	}
	// Axes and their labels.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", xa.from, plotBottom, xa.to, plotBottom)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", xa.from, plotTop, xa.from, plotBottom)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (xa.from+xa.to)/2, plotBottom+36, esc(c.XLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", (plotTop+plotBottom)/2, (plotTop+plotBottom)/2, esc(c.YLabel))

	// Series.
	for i, s := range c.Series {
		color := palette[i%len(palette)]
		if s.Color != "" {
			color = s.Color
		}
		var pts []string
		var prev *XY
		for _, p := range s.Points {
			if (c.XLog && p.X <= 0) || (c.YLog && p.Y <= 0) || math.IsNaN(p.X) || math.IsNaN(p.Y) {
				continue
			}
			if c.Step && prev != nil {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa.pos(p.X), ya.pos(prev.Y)))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa.pos(p.X), ya.pos(p.Y)))
			q := p
			prev = &q
		}
		fmt.Fprintf(&b, `<g><title>%s</title>`+"\n", esc(s.Name))
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		}
		if !c.Step {
			for _, p := range s.Points {
				if (c.XLog && p.X <= 0) || (c.YLog && p.Y <= 0) || math.IsNaN(p.X) || math.IsNaN(p.Y) {
					continue
				}
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", xa.pos(p.X), ya.pos(p.Y), color)
			}
		}
		b.WriteString("</g>\n")
		// Legend row under the plot.
		ly := float64(h-legendH) + float64(i*legendRow) + 2
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", marginLeft, ly+6, marginLeft+24, ly+6, color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f">%s</text>`+"\n", marginLeft+30, ly+10, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }
