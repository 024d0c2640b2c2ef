package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/promtext"
	"github.com/psavd/psavd/internal/psavref"
)

// scrape is a parsed /metrics of one node.
type scrape promtext.Samples

// parseScrape parses Prometheus text (an HTTP response's headers, if any,
// are skipped) with the Prometheus project's own parser (internal/promtext).
func parseScrape(t *testing.T, text string) scrape {
	t.Helper()
	if i := strings.Index(text, "\r\n\r\n"); strings.HasPrefix(text, "HTTP/") && i >= 0 {
		text = text[i+4:]
	}
	s, err := promtext.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, text)
	}
	return scrape(s)
}

// sum adds up the series of metric name whose labels include match.
func (s scrape) sum(name string, match map[string]string) float64 {
	return promtext.Samples(s).Sum(name, match)
}

// judged returns, per port of arrival, every non-passthrough action and
// every drop reason with its count: what the node decided about IP data.
// Keys are "port action" / "port drop:reason".
func (s scrape) judged() map[string]float64 {
	m := map[string]float64{}
	for _, x := range s {
		switch {
		case x.Name == "psavd_packets_total" && x.Labels["action"] != "passthrough":
			m[x.Labels["port"]+" "+x.Labels["action"]] += x.Value
		case x.Name == "psavd_drops_total":
			m[x.Labels["port"]+" drop:"+x.Labels["reason"]] += x.Value
		}
	}
	return m
}

// nodeMetrics scrapes psavd's /metrics at 127.0.0.1:9100 in node's namespace.
func nodeMetrics(t *testing.T, env *lab.Env, node string) scrape {
	t.Helper()
	return parseScrape(t, rawMetrics(t, env.NS(node), "127.0.0.1:9100"))
}

// diff returns after − before of two judged maps, keeping what moved.
func diff(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func mapText(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// opsFlow is one flow of TestMetricsAccountForTraffic and what each ABR must
// count for it, by port of arrival and action or drop reason.
type opsFlow struct {
	name     string
	from, to string
	src, dst string // src differs from the sender's own address: forged
	tag      string // forged frames only: "", "random", "stale"
	expect   map[string]map[string]float64
	// deliveredBy is the counter at the last ABR whose count must equal the
	// packets that reached the destination ("" for a dropped flow).
	deliveredBy string
}

// TestMetricsAccountForTraffic (issue 7, must-show 2) runs the lab's
// network with static keys, sends flows of known size one at a time —
// legitimate traffic between the member ASes in both directions, traffic
// from outside the alliance with its own address, and every kind of forged
// source — and reads /metrics of both ABRs before and after each flow. Per
// ABR and port of arrival, the delivered actions (tagged, validated,
// unverifiable, forwarded) plus the drops by reason must equal exactly what
// was sent; no other counter but passthrough (the kernel's own ARP and NDP)
// may move; the packets seen at the destination must equal the delivering
// ABR's count; and on every port the frames received equal the frames
// judged (actions, passthrough included, plus drops): no packet
// unaccounted for.
func TestMetricsAccountForTraffic(t *testing.T) {
	skipUnlessLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := startLab(t, ctx)
	const n = 50
	in := func(abr, port, what string) map[string]map[string]float64 {
		return map[string]map[string]float64{abr: {port + " " + what: n}}
	}
	both := func(a, b map[string]map[string]float64) map[string]map[string]float64 {
		for k, v := range b {
			a[k] = v
		}
		return a
	}
	flows := []opsFlow{
		{name: "h1 → h2 UDP IPv4", from: "h1", to: "h2", src: "198.51.100.10", dst: "203.0.113.10",
			expect: both(in("abr1", "inside", "tagged"), in("abr2", "outside", "validated")), deliveredBy: "abr2 outside validated"},
		{name: "h1 → h2 UDP IPv6", from: "h1", to: "h2", src: "2001:db8:1::10", dst: "2001:db8:2::10",
			expect: both(in("abr1", "inside", "tagged"), in("abr2", "outside", "validated")), deliveredBy: "abr2 outside validated"},
		{name: "h2 → h1 UDP IPv4", from: "h2", to: "h1", src: "203.0.113.10", dst: "198.51.100.10",
			expect: both(in("abr2", "inside", "tagged"), in("abr1", "outside", "validated")), deliveredBy: "abr1 outside validated"},
		{name: "attacker → h2, own address, IPv4", from: "attacker", to: "h2", src: "192.0.2.66", dst: "203.0.113.10",
			expect: in("abr2", "outside", "unverifiable"), deliveredBy: "abr2 outside unverifiable"},
		{name: "attacker → h2, own address, IPv6", from: "attacker", to: "h2", src: "2001:db8:ff::66", dst: "2001:db8:2::10",
			expect: in("abr2", "outside", "unverifiable"), deliveredBy: "abr2 outside unverifiable"},
		{name: "forged member source, no tag, IPv4", from: "attacker", to: "h2", src: "198.51.100.77", dst: "203.0.113.10",
			expect: in("abr2", "outside", "drop:no-tag")},
		{name: "forged member source, no tag, IPv6", from: "attacker", to: "h2", src: "2001:db8:1::77", dst: "2001:db8:2::10",
			expect: in("abr2", "outside", "drop:no-tag")},
		{name: "forged source of the receiving AS", from: "attacker", to: "h2", src: "203.0.113.99", dst: "203.0.113.10",
			expect: in("abr2", "outside", "drop:spoofed-local")},
		{name: "forged foreign source from inside", from: "h1", to: "h2", src: "203.0.113.50", dst: "203.0.113.10",
			expect: in("abr1", "inside", "drop:spoofed-inside")},
		{name: "forged foreign source from inside, IPv6", from: "h1", to: "h2", src: "2001:db8:2::50", dst: "2001:db8:2::10",
			expect: in("abr1", "inside", "drop:spoofed-inside")},
		{name: "made-up tag", from: "attacker", to: "h2", src: "198.51.100.10", dst: "203.0.113.10", tag: "random",
			expect: in("abr2", "outside", "drop:bad-tag")},
		{name: "made-up tag, IPv6", from: "attacker", to: "h2", src: "2001:db8:1::10", dst: "2001:db8:2::10", tag: "random",
			expect: in("abr2", "outside", "drop:bad-tag")},
		{name: "tag of a far epoch", from: "attacker", to: "h2", src: "198.51.100.10", dst: "203.0.113.10", tag: "stale",
			expect: in("abr2", "outside", "drop:stale-epoch")},
	}
	abrs := []string{"abr1", "abr2"}
	// Receivers on every destination, so that no datagram provokes an ICMP
	// error that would cross the ABRs outside the flows' accounting.
	watches := map[string]*lab.Watch{}
	for i, f := range flows {
		if watches[f.to] == nil {
			w, err := env.Watch(f.to, "eth0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Close)
			watches[f.to] = w
		}
		dst := netip.MustParseAddr(f.dst)
		var pc net.PacketConn
		if err := netlab.Do(env.NS(f.to), func() (err error) {
			pc, err = net.ListenPacket("udp", netip.AddrPortFrom(dst, uint16(41000+i)).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
	totalSent, totalDelivered, totalDropped := 0, 0.0, 0.0
	for i, f := range flows {
		idx := 1 + i
		before := map[string]scrape{}
		for _, a := range abrs {
			before[a] = nodeMetrics(t, env, a)
		}
		sendOpsFlow(t, env, idx, f, n)
		totalSent += n
		// Wait until every ABR on the path has judged the flow's packets.
		want := map[string]float64{}
		for a, m := range f.expect {
			for _, v := range m {
				want[a] += v
			}
		}
		var after map[string]scrape
		for deadline := time.Now().Add(waitCounters); ; time.Sleep(100 * time.Millisecond) {
			after = map[string]scrape{}
			done := true
			for _, a := range abrs {
				after[a] = nodeMetrics(t, env, a)
				var moved float64
				for _, v := range diff(after[a].judged(), before[a].judged()) {
					moved += v
				}
				if moved < want[a] {
					done = false
				}
			}
			if done || time.Now().After(deadline) {
				break
			}
		}
		time.Sleep(settle) // anything late or extra shows up now
		for _, a := range abrs {
			after[a] = nodeMetrics(t, env, a)
		}
		for _, a := range abrs {
			got := diff(after[a].judged(), before[a].judged())
			if mapText(got) != mapText(f.expect[a]) {
				t.Errorf("%s: %s counted %s, want %s (sent %d)", f.name, a, mapText(got), mapText(f.expect[a]), n)
			}
			for _, port := range []string{"inside", "outside"} {
				rx := after[a].sum("psavd_rx_packets_total", map[string]string{"port": port}) -
					before[a].sum("psavd_rx_packets_total", map[string]string{"port": port})
				judged := after[a].sum("psavd_packets_total", map[string]string{"port": port}) -
					before[a].sum("psavd_packets_total", map[string]string{"port": port}) +
					after[a].sum("psavd_drops_total", map[string]string{"port": port}) -
					before[a].sum("psavd_drops_total", map[string]string{"port": port})
				if rx != judged {
					t.Errorf("%s: %s port %s received %v frames but judged %v", f.name, a, port, rx, judged)
				}
			}
		}
		arrived := watches[f.to].FrameCount(idx)
		var drops float64
		for _, m := range f.expect {
			for k, v := range m {
				if strings.Contains(k, " drop:") {
					drops += v
				}
			}
		}
		if f.deliveredBy == "" {
			if arrived != 0 {
				t.Errorf("%s: %d forged packets reached %s", f.name, arrived, f.to)
			}
		} else {
			by := strings.SplitN(f.deliveredBy, " ", 2)
			counted := diff(after[by[0]].judged(), before[by[0]].judged())[by[1]]
			if float64(arrived) != counted {
				t.Errorf("%s: %d packets reached %s, %s counted %v", f.name, arrived, f.to, f.deliveredBy, counted)
			}
		}
		if float64(arrived)+drops != n {
			t.Errorf("%s: sent %d, delivered %d + dropped %v", f.name, n, arrived, drops)
		}
		totalDelivered += float64(arrived)
		totalDropped += drops
		t.Logf("%-40s sent %d: abr1 %s | abr2 %s | arrived %d", f.name, n,
			mapText(diff(after["abr1"].judged(), before["abr1"].judged())),
			mapText(diff(after["abr2"].judged(), before["abr2"].judged())), arrived)
	}
	t.Logf("sent %d, delivered %v, dropped %v", totalSent, totalDelivered, totalDropped)

	// psavctl counters reads the same numbers from the running node (no
	// traffic moves them any more).
	out, err := exec.Command("ip", "netns", "exec", env.NS("abr2"), psavctlBinary(t), "counters", "-json", "-metrics", "127.0.0.1:9100").Output()
	if err != nil {
		t.Fatalf("psavctl counters: %v", err)
	}
	var ctl struct {
		Ports []struct {
			Port      string             `json:"port"`
			RxPackets float64            `json:"rx_packets"`
			Actions   map[string]float64 `json:"actions"`
			Drops     map[string]float64 `json:"drops"`
		} `json:"ports"`
	}
	if err := json.Unmarshal(out, &ctl); err != nil {
		t.Fatalf("psavctl counters -json: %v\n%s", err, out)
	}
	now := nodeMetrics(t, env, "abr2")
	for _, p := range ctl.Ports {
		on := map[string]string{"port": p.Port}
		if p.RxPackets != now.sum("psavd_rx_packets_total", on) ||
			p.Drops["no-tag"] != now.sum("psavd_drops_total", map[string]string{"port": p.Port, "reason": "no-tag"}) ||
			p.Actions["validated"] != now.sum("psavd_packets_total", map[string]string{"port": p.Port, "action": "validated"}) {
			t.Errorf("psavctl counters disagrees with /metrics on %s:\n%s", p.Port, out)
		}
	}
	if len(ctl.Ports) != 2 {
		t.Errorf("psavctl counters shows %d ports:\n%s", len(ctl.Ports), out)
	}
}

// sendOpsFlow sends n packets of flow f: through a UDP socket of the sender
// when the source is its own address (the kernel routes them), as raw
// frames addressed to the next hop when the source is forged.
func sendOpsFlow(t *testing.T, env *lab.Env, idx int, f opsFlow, n int) {
	t.Helper()
	src, dst := netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst)
	dport := uint16(41000 + idx - 1)
	payload := func(seq int) []byte {
		return []byte(lab.MarkerText(env.Run, lab.Marker{Flow: idx, Seq: seq}) + " " + strings.Repeat("ops", 10))
	}
	if owner, ok := env.Topo.Owner(src); ok && owner.Node == f.from {
		err := netlab.Do(env.NS(f.from), func() error {
			c, err := net.Dial("udp", netip.AddrPortFrom(dst, dport).String())
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < n; i++ {
				if _, err := c.Write(payload(i)); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		return
	}
	iface, hop, err := env.NextHop(f.from, dst)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := lab.OpenRaw(env.NS(f.from), iface)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, bits := env.Topo.MemberOf(src)
	for i := 0; i < n; i++ {
		udp := header.AppendUDP(nil, src, dst, 33000, dport, payload(i))
		epoch := uint8(env.Topo.Epoch(time.Now()))
		if f.tag == "stale" {
			epoch += 100
		}
		tag := [8]byte{0xba, 0xd0, byte(idx), byte(i), 1, 2, 3, 4}
		var ip []byte
		if src.Is4() {
			var opts []byte
			if f.tag != "" {
				opts = psavref.IPv4Option(tag, epoch, uint8(max(bits, 0)))
			}
			ip = header.AppendIPv4(nil, header.IPv4Fields{ID: uint16(idx<<8 | i), Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: src, Dst: dst, Options: opts}, udp)
		} else {
			var ext []header.IPv6ExtHeader
			if f.tag != "" {
				ext = []header.IPv6ExtHeader{psavref.IPv6DestOpts(tag, epoch, uint8(max(bits, 0)))}
			}
			ip = header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: src, Dst: dst, Ext: ext}, udp)
		}
		if err := raw.Send(header.AppendEthernet(nil, hop, raw.MAC, ip)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}
