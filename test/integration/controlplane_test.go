package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
)

// datagramStream sends numbered UDP datagrams from one host namespace to
// another every 10 ms (pacing, not timing) and records which arrive: the
// probe of "no control-plane event may cost a legitimate packet".
type datagramStream struct {
	name      string
	src, sink net.Conn
	got       sync.Map // sequence number → struct{}
	next      atomic.Uint64
	stopped   chan struct{}
	done      chan struct{}
	sendErr   atomic.Value
	recvDupes atomic.Int64
}

// startDatagramStream opens the sink in toNS on to (ip:port) and the
// source in fromNS, and starts streaming.
func startDatagramStream(t *testing.T, name, fromNS, toNS, to string) *datagramStream {
	t.Helper()
	s := &datagramStream{name: name, stopped: make(chan struct{}), done: make(chan struct{})}
	if err := netlab.Do(toNS, func() error {
		c, err := net.ListenPacket("udp", to)
		if err == nil {
			s.sink = c.(*net.UDPConn)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := netlab.Do(fromNS, func() error {
		var err error
		s.src, err = net.Dial("udp", to)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(); s.sink.Close(); s.src.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := s.sink.Read(buf)
			if err != nil {
				return
			}
			if n == 10 && string(buf[:2]) == "cp" {
				if _, dup := s.got.LoadOrStore(binary.BigEndian.Uint64(buf[2:10]), struct{}{}); dup {
					s.recvDupes.Add(1)
				}
			}
		}
	}()
	go func() {
		defer close(s.done)
		var b [10]byte
		copy(b[:], "cp")
		for {
			select {
			case <-s.stopped:
				return
			default:
			}
			binary.BigEndian.PutUint64(b[2:], s.next.Load())
			if _, err := s.src.Write(b[:]); err != nil {
				s.sendErr.Store(err)
				return
			}
			s.next.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return s
}

func (s *datagramStream) stop() {
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	<-s.done
}

// sent is how many datagrams have been sent so far.
func (s *datagramStream) sent() uint64 { return s.next.Load() }

// arrived reports whether datagram seq arrived.
func (s *datagramStream) arrived(seq uint64) bool { _, ok := s.got.Load(seq); return ok }

// lost lists the datagrams of [first, last) that have not arrived after
// waiting (as long as it takes to drain, up to 30 s: only loss is judged).
func (s *datagramStream) lost(first, last uint64) []uint64 {
	var lost []uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lost = lost[:0]
		for q := first; q < last; q++ {
			if !s.arrived(q) {
				lost = append(lost, q)
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			return lost
		}
	}
}

// TestControlPlaneEventsCostNoPacket is DESIGN §2.8 through AF_XDP with
// every ACS and ABR in its own process: AS 65001 and AS 65002 each run an
// ACS and an ABR fed over a management link; hosts of the two ASes stream
// datagrams both ways, tagged by one ABR and validated by the other, while
// the control plane goes through what operators do to it and what networks
// do to it:
//   - each ACS in turn is stopped (SIGTERM) and started again from the same
//     files, as an upgrade or a certificate renewal does;
//   - the ACS↔ACS link is cut for 10 s (the peers are declared dead), and
//     then for 3 epochs.
//
// Not one legitimate datagram may be lost, in either direction, across all
// of it (key_lead's keys at the ABRs, merged make-before-break, carry the
// data plane while the pair is re-negotiated).
func TestControlPlaneEventsCostNoPacket(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	al := newAlliance(t)
	topo, must := newTopology(t)
	ns := func(name string) string {
		n, err := topo.NS(name)
		must(err)
		return n
	}
	h1, abr1, acs1, acs2, abr2, h2 := ns("ch1"), ns("cabr1"), ns("cacs1"), ns("cacs2"), ns("cabr2"), ns("ch2")
	// Data path: h1 — [abr1] — [abr2] — h2.
	must(topo.Veth(h1, "eth0", "", abr1, "in", ""))
	must(topo.Veth(abr1, "out", "", abr2, "out", ""))
	must(topo.Veth(abr2, "in", "", h2, "eth0", ""))
	// ACS ↔ ACS, the link the test cuts.
	must(topo.Veth(acs1, "peer", "", acs2, "peer", ""))
	must(netlab.IP("-n", acs1, "addr", "add", "198.18.0.1/30", "dev", "peer"))
	must(netlab.IP("-n", acs2, "addr", "add", "198.18.0.2/30", "dev", "peer"))
	// Each ABR's feed from its ACS (the ACS listens on every address).
	for i, p := range [][2]string{{acs1, abr1}, {acs2, abr2}} {
		must(topo.Veth(p[0], "feed", "", p[1], "feed", ""))
		must(netlab.IP("-n", p[0], "addr", "add", fmt.Sprintf("198.18.%d.1/30", i+1), "dev", "feed"))
		must(netlab.IP("-n", p[1], "addr", "add", fmt.Sprintf("198.18.%d.2/30", i+1), "dev", "feed"))
	}
	must(netlab.IP("-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"))
	must(netlab.IP("-n", h2, "addr", "add", "198.51.100.200/24", "dev", "eth0"))
	for _, h := range []string{h1, h2} {
		if _, err := netlab.Exec(h, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
		// The hops into the hosts on the veths' NAPI rings (see
		// TestFailStaticSeparateProcesses).
		if _, err := netlab.Exec(h, "ethtool", "-K", "eth0", "gro", "on"); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{abr1, abr2} {
		if _, err := netlab.Exec(a, "ethtool", "-K", "in", "tso", "off"); err != nil {
			t.Fatal(err)
		}
	}

	// 6-second epochs (see TestFailStaticSeparateProcesses); the contract's
	// default heartbeat (1 s, dead after 3) so that a 10-second cut does
	// declare the peers dead.
	const period = 6
	header := func(asn uint32, prefix string) string { return psavHeader(asn, period, prefix) }
	dataPorts := bumpInWirePorts("egress")
	const metricsAt = "127.0.0.1:9100"
	metricsSection := metricsTOML(metricsAt)
	acsSection := func(asn uint32, prefix string, peer uint32, peerAddr string) string {
		const fast, dflt = "heartbeat = \"200ms\"\ndead_after = 3\n", "heartbeat = \"1s\"\ndead_after = 3\n"
		s := al.acsSection(t, asn, prefix, "0.0.0.0:7443", peer, peerAddr)
		if !strings.Contains(s, fast) {
			t.Fatalf("acsSection's heartbeat settings changed; adapt this test:\n%s", s)
		}
		return strings.Replace(s, fast, dflt, 1)
	}
	acsCfg := map[string]string{
		acs1: al.write(t, "cacs65001.toml", []byte(header(65001, "198.51.100.0/25")+metricsSection+
			acsSection(65001, "198.51.100.0/25", 65002, "198.18.0.2:7443"))),
		acs2: al.write(t, "cacs65002.toml", []byte(header(65002, "198.51.100.128/25")+metricsSection+
			acsSection(65002, "198.51.100.128/25", 65001, "198.18.0.1:7443"))),
	}
	acsProc := map[string]*psavdProc{}
	for _, n := range []string{acs1, acs2} {
		acsProc[n] = startPsavd(t, bin, n, acsCfg[n], true)
	}
	for i, a := range []struct {
		ns, name string
		asn      uint32
		prefix   string
	}{{abr1, "abr1", 65001, "198.51.100.0/25"}, {abr2, "abr2", 65002, "198.51.100.128/25"}} {
		cfg := header(a.asn, a.prefix) + dataPorts + metricsSection + al.abrSection(t, a.asn, a.name, fmt.Sprintf("198.18.%d.1:7443", i+1))
		startPsavd(t, bin, a.ns, al.write(t, fmt.Sprintf("c%s.toml", a.name), []byte(cfg)), true)
	}

	ctx := context.Background()
	counters := func(ns string) lab.Counters {
		c, err := lab.Scrape(ctx, ns, metricsAt)
		must(err)
		return c
	}
	pairUp := func(n string, peer uint32) bool {
		return strings.Contains(rawMetrics(t, n, metricsAt), fmt.Sprintf(`psavd_acs_peer_up{peer="%d",state="up"} 1`, peer))
	}
	established := func(n string) float64 {
		return metricValue(t, rawMetrics(t, n, metricsAt), `psavd_acs_events_total{event="established"}`)
	}
	// waitKeyed waits until both ABRs tag and validate with negotiated keys.
	waitKeyed := func(what string) {
		t.Helper()
		t1, v2 := counters(abr1).Total("packets", "tagged"), counters(abr2).Total("packets", "validated")
		t2, v1 := counters(abr2).Total("packets", "tagged"), counters(abr1).Total("packets", "validated")
		for deadline := time.Now().Add(30 * period * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: traffic not tagged and validated both ways; abr1 %v; abr2 %v", what, counters(abr1), counters(abr2))
			}
			c1, c2 := counters(abr1), counters(abr2)
			if c1.Total("packets", "tagged") > t1 && c2.Total("packets", "validated") > v2 &&
				c2.Total("packets", "tagged") > t2 && c1.Total("packets", "validated") > v1 {
				return
			}
		}
	}
	// Streams both ways; before the first event, the pair must be keyed
	// (the stream's start, before any key, is forwarded unverifiable).
	fwd := startDatagramStream(t, "65001→65002", h1, h2, "198.51.100.200:5555")
	rev := startDatagramStream(t, "65002→65001", h2, h1, "198.51.100.10:5556")
	waitKeyed("before the events")
	// The counters before the first datagram judged: every datagram from
	// first on is tagged after this snapshot.
	before1, before2 := counters(abr1), counters(abr2)
	first := [2]uint64{fwd.sent(), rev.sent()}

	// afterRenegotiation waits until the pair is up on both ACS with a new
	// machine (established counted past est) and its start epoch has
	// begun, so that the next event hits a pair running on new keys.
	afterRenegotiation := func(what string, est map[string]float64) {
		t.Helper()
		for deadline := time.Now().Add(30 * period * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the pair did not come back; acs1 %s; acs2 %s", what, rawMetrics(t, acs1, metricsAt), rawMetrics(t, acs2, metricsAt))
			}
			if pairUp(acs1, 65002) && pairUp(acs2, 65001) && established(acs1) > est[acs1] && established(acs2) > est[acs2] {
				break
			}
		}
		// The new machine starts at most 2 epochs on (e0 = e+2): wait past
		// it, and a little more for the feeds.
		time.Sleep(3 * period * time.Second)
		waitKeyed(what)
	}
	snapshot := func() map[string]float64 { return map[string]float64{acs1: established(acs1), acs2: established(acs2)} }

	for _, n := range []string{acs1, acs2} {
		est := snapshot()
		t.Logf("restarting the ACS in %s", n)
		acsProc[n].Stop()
		acsProc[n] = startPsavd(t, bin, n, acsCfg[n], true)
		est[n] = 0 // a new process counts from zero
		afterRenegotiation("ACS restart in "+n, est)
	}
	for _, cut := range []time.Duration{10 * time.Second, 3 * period * time.Second} {
		est := snapshot()
		t.Logf("cutting the ACS↔ACS link for %v", cut)
		must(netlab.IP("-n", acs1, "link", "set", "peer", "down"))
		time.Sleep(cut) // the length of the outage under test, not a wait for an outcome
		must(netlab.IP("-n", acs1, "link", "set", "peer", "up"))
		afterRenegotiation(fmt.Sprintf("a %v cut", cut), est)
	}
	fwd.stop()
	rev.stop()
	last := [2]uint64{fwd.sent(), rev.sent()}
	var lost [2][]uint64
	for i, s := range []*datagramStream{fwd, rev} {
		lost[i] = s.lost(first[i], last[i]) // waits for the stream to drain
	}
	// After the drain: every datagram of [first, last) has been counted.
	c1, c2 := counters(abr1).Sub(before1), counters(abr2).Sub(before2)
	for i, s := range []*datagramStream{fwd, rev} {
		if err, _ := s.sendErr.Load().(error); err != nil {
			t.Errorf("%s: send: %v", s.name, err)
		}
		if l := lost[i]; len(l) > 0 {
			t.Errorf("%s: %d of %d datagrams lost (first lost %v); abr1 %v; abr2 %v", s.name, len(l), last[i]-first[i], l[:min(len(l), 10)], c1, c2)
		} else {
			t.Logf("%s: %d datagrams, none lost", s.name, last[i]-first[i])
		}
	}
	// Every datagram was carried by keys, not let through for want of
	// them: tagged at one ABR and validated at the other.
	for _, d := range []struct {
		name     string
		tag, val lab.Counters
		n        uint64
	}{{"65001→65002", c1, c2, last[0] - first[0]}, {"65002→65001", c2, c1, last[1] - first[1]}} {
		tagged, validated := d.tag.Total("packets", "tagged"), d.val.Total("packets", "validated")
		t.Logf("%s: %v tagged, %v validated; the validator's counters over the run: %v", d.name, tagged, validated, d.val)
		if tagged < float64(d.n) || validated < float64(d.n) {
			t.Errorf("%s: of %d datagrams only %v tagged and %v validated: keys were missing during an event (the datagrams went through unverifiable)", d.name, d.n, tagged, validated)
		}
	}
}
