package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/internal/promtext"
)

// PortCounters are one port's counters, as psavd exports them (by port of
// arrival, except TxPackets: by port left by).
type PortCounters struct {
	Port      string            `json:"port"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	Actions   map[string]uint64 `json:"actions"` // psavd_packets_total by action
	Drops     map[string]uint64 `json:"drops"`   // psavd_drops_total by reason
}

// RingCounters are one AF_XDP socket's counters (psavd_xdp_socket_total).
type RingCounters struct {
	Port     string            `json:"port"`
	Queue    string            `json:"queue"`
	Counters map[string]uint64 `json:"counters"`
}

// NodeCounters is what `psavctl counters` shows of one node.
type NodeCounters struct {
	Ports         []*PortCounters `json:"ports"`
	Rings         []*RingCounters `json:"rings"`
	Epoch         *int64          `json:"epoch,omitempty"`
	TablesVersion *uint64         `json:"tables_version,omitempty"`
	PeersKeyed    *uint64         `json:"peers_keyed,omitempty"`
}

// scrapeCounters fetches http://addr/metrics and reads the data plane's
// counters from it.
func scrapeCounters(ctx context.Context, addr string) (*NodeCounters, error) {
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + addr
	}
	if !strings.HasSuffix(url, "/metrics") {
		url = strings.TrimSuffix(url, "/") + "/metrics"
	}
	s, err := promtext.Scrape(ctx, nil, url)
	if err != nil {
		return nil, err
	}
	return nodeCounters(s)
}

// nodeCounters picks psavd's data-plane series out of a scrape.
func nodeCounters(s promtext.Samples) (*NodeCounters, error) {
	n := &NodeCounters{}
	ports := map[string]*PortCounters{}
	port := func(name string) *PortCounters {
		pc := ports[name]
		if pc == nil {
			pc = &PortCounters{Port: name, Actions: map[string]uint64{}, Drops: map[string]uint64{}}
			ports[name] = pc
			n.Ports = append(n.Ports, pc)
		}
		return pc
	}
	rings := map[[2]string]*RingCounters{}
	for _, x := range s {
		l, v := x.Labels, x.Value
		u := uint64(max(v, 0))
		switch x.Name {
		case "psavd_rx_packets_total":
			port(l["port"]).RxPackets = u
		case "psavd_rx_bytes_total":
			port(l["port"]).RxBytes = u
		case "psavd_tx_packets_total":
			port(l["port"]).TxPackets = u
		case "psavd_packets_total":
			port(l["port"]).Actions[l["action"]] = u
		case "psavd_drops_total":
			port(l["port"]).Drops[l["reason"]] += u // both stages: the engine's and the XDP pre-filter's
		case "psavd_xdp_socket_total":
			k := [2]string{l["port"], l["queue"]}
			rc := rings[k]
			if rc == nil {
				rc = &RingCounters{Port: k[0], Queue: k[1], Counters: map[string]uint64{}}
				rings[k] = rc
				n.Rings = append(n.Rings, rc)
			}
			rc.Counters[l["counter"]] = u
		case "psavd_epoch":
			e := int64(v)
			n.Epoch = &e
		case "psavd_tables_version":
			n.TablesVersion = &u
		case "psavd_peers_keyed":
			n.PeersKeyed = &u
		}
	}
	sort.Slice(n.Ports, func(i, j int) bool { return n.Ports[i].Port < n.Ports[j].Port })
	sort.Slice(n.Rings, func(i, j int) bool {
		a, b := n.Rings[i], n.Rings[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		qa, _ := strconv.Atoi(a.Queue)
		qb, _ := strconv.Atoi(b.Queue)
		return qa < qb
	})
	if len(n.Ports) == 0 && n.Epoch == nil {
		return nil, fmt.Errorf("metrics: no psavd data-plane series (is this a psavd with ports?)")
	}
	return n, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

const countersLong = `Without -metrics: the local node's data-plane counters through the
management socket, per port.

With -metrics HOST:PORT: a node's counters from its Prometheus /metrics
([metrics] listen): per port frames received and sent, actions, drops by
reason; the AF_XDP sockets' ring counters. Zero counters are left out
unless -all.`

func (a *app) countersCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "counters [-metrics HOST:PORT [-all]]",
		Short: "the data plane's counters per port, or from a node's /metrics",
		Long:  countersLong,
	}
	l := localFlags(c)
	noteRemoteTimeout(c)
	var addr string
	var all bool
	c.Flags().StringVar(&addr, "metrics", "", "read psavd's /metrics at this [metrics] listen address, `HOST:PORT`")
	c.Flags().BoolVar(&all, "all", false, "with -metrics: show counters that are zero too")
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		if addr == "" {
			if c.Flags().Changed("all") {
				fmt.Fprintln(a.stderr, "psavctl counters: -all is for -metrics HOST:PORT")
				return 2
			}
			return a.runLocal("counters", l.timeout, l.asJSON, askCounters, printCountersReply)
		}
		return a.remoteCounters(addr, remoteTimeout(c, l), l.asJSON, all)
	})
}

// remoteCounters is psavctl counters -metrics HOST:PORT [-json] [-all].
func (a *app) remoteCounters(addr string, timeout time.Duration, asJSON, all bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := scrapeCounters(ctx, addr)
	if err != nil {
		fmt.Fprintf(a.stderr, "psavctl counters: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(n); err != nil {
			fmt.Fprintf(a.stderr, "psavctl counters: %v\n", err)
			return 1
		}
		return 0
	}
	printCounters(a.stdout, n, all)
	return 0
}

// printCounters prints a node's counters as tables: per port, what arrived
// and what became of it, then the AF_XDP sockets' counters.
func printCounters(w io.Writer, n *NodeCounters, all bool) {
	if n.Epoch != nil {
		fmt.Fprintf(w, "epoch %d", *n.Epoch)
		if n.TablesVersion != nil {
			fmt.Fprintf(w, ", tables version %d", *n.TablesVersion)
		}
		if n.PeersKeyed != nil {
			fmt.Fprintf(w, ", %d peers keyed", *n.PeersKeyed)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tCOUNTER\tPACKETS")
	for _, p := range n.Ports {
		fmt.Fprintf(tw, "%s\treceived\t%d\n", p.Port, p.RxPackets)
		fmt.Fprintf(tw, "%s\treceived octets\t%d\n", p.Port, p.RxBytes)
		for _, a := range sortedKeys(p.Actions) {
			if v := p.Actions[a]; v != 0 || all {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", p.Port, a, v)
			}
		}
		for _, r := range sortedKeys(p.Drops) {
			if v := p.Drops[r]; v != 0 || all {
				fmt.Fprintf(tw, "%s\tdrop %s\t%d\n", p.Port, r, v)
			}
		}
		fmt.Fprintf(tw, "%s\ttransmitted\t%d\n", p.Port, p.TxPackets)
	}
	tw.Flush()
	if len(n.Rings) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOCKET\tCOUNTER\tVALUE")
	for _, r := range n.Rings {
		for _, c := range sortedKeys(r.Counters) {
			if v := r.Counters[c]; v != 0 || all {
				fmt.Fprintf(tw, "%s/%s\t%s\t%d\n", r.Port, r.Queue, c, v)
			}
		}
	}
	tw.Flush()
}
