package lispload

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the rounds as a table (Map-Notifies/s per server,
// the table size after the round, psavd/OOR when both ran), the growth
// flatness (last growth round over the first) and the idle CPU.
func (r *Report) WriteMarkdown(w io.Writer) {
	both := len(r.Servers) == 2 && r.Servers[0] == Psavd && r.Servers[1] == OOR
	fmt.Fprintf(w, "| round | table |")
	for _, s := range r.Servers {
		fmt.Fprintf(w, " %s Map-Notify/s | %s CPU s |", s, s)
	}
	if both {
		fmt.Fprint(w, " psavd/OOR |")
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|--:|"+strings.Repeat("--:|--:|", len(r.Servers)))
	if both {
		fmt.Fprint(w, "--:|")
	}
	fmt.Fprintln(w)
	for i, row := range r.Rounds {
		fmt.Fprintf(w, "| %d %s | %d |", i+1, row[0].Kind, row[0].Round.Table)
		for _, res := range row {
			fmt.Fprintf(w, " %.0f | %.2f |", res.Round.Rate(), res.CPU.Seconds())
		}
		if both {
			fmt.Fprintf(w, " %.2f× |", row[0].Round.Rate()/row[1].Round.Rate())
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for j, s := range r.Servers {
		var first, last, sum, n float64
		var lost int
		for _, row := range r.Rounds {
			res := row[j]
			lost += res.Round.Lost
			if res.Kind != "new" {
				continue
			}
			if n == 0 {
				first = res.Round.Rate()
			}
			last = res.Round.Rate()
			sum += res.Round.Rate()
			n++
		}
		if n > 0 {
			fmt.Fprintf(w, "- %s: new EIDs %.0f/s on average; last growth round (table %d) / first: %.2f; lost %d; idle CPU with %d registrations over %.0f s: %.2f %% of a core\n",
				s, sum/n, r.Table, last/first, lost, r.Table, r.Idle.Seconds(), 100*r.IdleCPU[s])
		}
	}
	if both {
		var a, b float64
		for _, row := range r.Rounds {
			a += row[0].Round.Rate()
			b += row[1].Round.Rate()
		}
		fmt.Fprintf(w, "- psavd/OOR over all rounds (mean of rates): %.2f×\n", a/b)
	}
}
