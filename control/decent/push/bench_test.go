package push

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// BenchmarkPushConvergence (needs root; docs/perf.md): n nodes in
// namespaces on one bridge, default timers (TickInterval 100 ms, refresh
// 60 s, TTL 3 min). One op = one EID change at one node (a /24 added or
// removed, alternately, at node i mod n) until every node has the same
// registration digest again. Reported: ms/change (mean; p50 and max too),
// Map-Register datagrams per change (sent by all nodes, each unicast copy
// counted), and the cold-start convergence of the whole group. Changes
// are made at a random phase of the nodes' 100 ms ticks.
//
//	go test -run '^$' -bench PushConvergence -benchtime 20x ./control/decent
func BenchmarkPushConvergence(b *testing.B) {
	for _, tr := range []Transport{TransportMulticast, TransportUnicast} {
		for _, n := range []int{4, 8, 16} {
			b.Run(fmt.Sprintf("%v/n=%d", tr, n), func(b *testing.B) { benchPush(b, tr, n) })
		}
	}
}

func benchPush(b *testing.B, tr Transport, n int) {
	g := netip.MustParseAddr("239.1.1.1")
	lab := newPushLab(b, tr == TransportUnicast)
	ids := make([]int, n)
	for i := range n {
		ids[i] = i
		lab.ns(i)
	}
	start := time.Now()
	for i := range n {
		c := labConfig(i, g, tr)
		c.RefreshInterval, c.RegistrationTTL, c.LookupInterval, c.TickInterval = 0, 0, 0, 0 // defaults
		if tr == TransportUnicast {
			c.Members = []netip.Addr{labRLOC(0)}
		}
		lab.start(i, c)
	}
	ns := lab.pushNodes(ids...)
	waitConverged(b, ns, 60*time.Second, "start", func(now time.Time) bool {
		for _, x := range ns {
			if len(x.Members(g, now)) != n || len(x.MapServer().Registrations(now)) != n {
				return false
			}
		}
		return true
	})
	cold := time.Since(start)
	sent := func() (s uint64) {
		for _, x := range ns {
			s += x.Stats().RegistersSent
		}
		return s
	}
	// Let the start-up's last "new member" sends finish before counting.
	time.Sleep(3 * DefaultTick)
	var times []time.Duration
	msgs0 := sent()
	b.ResetTimer()
	for i := range b.N {
		// A change at a random phase of the nodes' ticks: right after a
		// convergence (which follows a tick) it would always wait a whole
		// TickInterval.
		b.StopTimer()
		time.Sleep(time.Duration(rand.Int64N(int64(DefaultTick))))
		b.StartTimer()
		k := i % n
		eids := []EID{pushEIDFor(k)}
		if (i/n)%2 == 0 {
			eids = append(eids, EID{Site: "as65001", Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.7.0/24", k))})
		}
		d0 := ns[0].Digest(time.Now())
		if err := ns[k].SetEIDs(eids); err != nil {
			b.Fatal(err)
		}
		times = append(times, waitConverged(b, ns, 60*time.Second, "change", func(now time.Time) bool {
			return ns[0].Digest(now) != d0
		}))
	}
	b.StopTimer()
	msgs := sent() - msgs0
	slices.Sort(times)
	var sum time.Duration
	for _, d := range times {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sum)/float64(len(times)), "ms/change")
	b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
	b.ReportMetric(ms(times[len(times)-1]), "max-ms")
	b.ReportMetric(float64(msgs)/float64(b.N), "registers/change")
	b.ReportMetric(ms(cold), "cold-start-ms")
}
