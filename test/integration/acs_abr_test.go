package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
)

// TestNegotiatedKeysEndToEnd: two ASes, each with one psavd that is both
// its ACS and its ABR. No key is configured: the ACS peer over a management
// link (mutual TLS 1.3), negotiate their state machine from the TLS
// exporter, learn each other's prefixes from the signed membership records,
// and hand the keys to their own data planes — which then tag (AS 65001)
// and validate (AS 65002) real traffic through AF_XDP — a steady stream
// across four epoch boundaries loses nothing — while a spoofed source from
// inside AS 65001 is dropped at its border.
func TestNegotiatedKeysEndToEnd(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	al := newAlliance(t)
	topo, must := newTopology(t)
	ns := func(name string) string {
		n, err := topo.NS(name)
		must(err)
		return n
	}
	h1, abr1, abr2, h2 := ns("nh1"), ns("nabr1"), ns("nabr2"), ns("nh2")
	// Data path: h1 — [abr1] — [abr2] — h2, two bumps in one wire.
	must(topo.Veth(h1, "eth0", "", abr1, "in", ""))
	must(topo.Veth(abr1, "out", "", abr2, "out", ""))
	must(topo.Veth(abr2, "in", "", h2, "eth0", ""))
	// Management link between the two ACS.
	must(topo.Veth(abr1, "mgmt", "", abr2, "mgmt", ""))
	must(netlab.IP("-n", abr1, "addr", "add", "198.18.0.1/30", "dev", "mgmt"))
	must(netlab.IP("-n", abr2, "addr", "add", "198.18.0.2/30", "dev", "mgmt"))
	// Hosts on one subnet; the AS-Prefix table splits it between the ASes.
	must(netlab.IP("-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"))
	must(netlab.IP("-n", h2, "addr", "add", "198.51.100.200/24", "dev", "eth0"))
	if _, err := netlab.Exec(h1, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
		t.Skipf("ethtool: %v", err)
	}

	type as struct {
		asn             uint32
		prefix, ns, acs string
		peer            uint32
		peerAddr        string
	}
	procs := map[uint32]*psavdProc{}
	cfgs := map[uint32]string{}
	for _, a := range []as{
		{65001, "198.51.100.0/25", abr1, "198.18.0.1:7443", 65002, "198.18.0.2:7443"},
		{65002, "198.51.100.128/25", abr2, "198.18.0.2:7443", 65001, "198.18.0.1:7443"},
	} {
		// Short epochs: the negotiated start epoch is two epochs ahead.
		cfg := psavHeader(a.asn, 2, a.prefix) + bumpInWirePorts("egress") + metricsTOML("127.0.0.1:9100") +
			al.acsSection(t, a.asn, a.prefix, a.acs, a.peer, a.peerAddr)
		cfgs[a.asn] = al.write(t, fmt.Sprintf("abr%d.toml", a.asn), []byte(cfg))
		procs[a.asn] = startPsavd(t, bin, a.ns, cfgs[a.asn], true)
	}

	sniff, err := lab.Sniff(h2, "eth0")
	must(err)
	defer sniff.Close()
	var sink net.PacketConn
	must(netlab.Do(h2, func() error {
		var err error
		sink, err = net.ListenPacket("udp", "198.51.100.200:5555")
		return err
	}))
	defer sink.Close()
	send := func(payload string) {
		must(netlab.Do(h1, func() error {
			c, err := net.Dial("udp", "198.51.100.200:5555")
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte(payload))
			return err
		}))
	}
	ctx := context.Background()
	counters := func(ns string) lab.Counters {
		c, err := lab.Scrape(ctx, ns, "127.0.0.1:9100")
		must(err)
		return c
	}
	// Before the membership has converged the other AS is no member: its
	// traffic goes untagged and counts as unverifiable (partial deployment).
	// Before the negotiated start epoch there are no keys: untagged, and
	// AS 65002 drops it no-tag. Then packets are tagged at abr1, validated
	// and stripped at abr2, and delivered — wait for that.
	// sendUntil sends numbered datagrams until one is delivered while cond
	// holds (at most 300 tries of 200 ms).
	sendUntil := func(prefix string, cond func() bool) bool {
		for i := 0; i < 300; i++ {
			payload := fmt.Sprintf("%s-%03d", prefix, i)
			send(payload)
			delivered := sniff.Wait(ctx, 200*time.Millisecond, func(fs []lab.Captured) bool {
				for _, f := range fs {
					if !f.Outgoing && bytes.Contains(f.Frame, []byte(payload)) {
						return true
					}
				}
				return false
			})
			if delivered && cond() {
				return true
			}
			if delivered {
				// Delivered but not yet as wanted (untagged before the
				// keys, forwarded as unverifiable): wait before the next
				// try, or the 300 tries pass in a second.
				time.Sleep(200 * time.Millisecond)
			}
		}
		return false
	}
	if !sendUntil("negotiated", func() bool {
		return counters(abr1).Total("packets", "tagged") >= 1 && counters(abr2).Total("packets", "validated") >= 1
	}) {
		t.Fatalf("no packet tagged, validated and delivered with negotiated keys; abr1 %v; abr2 %v", counters(abr1), counters(abr2))
	}
	// The delivered packet is the original: the tag was stripped at abr2.
	for _, f := range sniff.Frames() {
		if !f.Outgoing && bytes.Contains(f.Frame, []byte("negotiated-")) && f.Frame[14] != 0x45 {
			t.Fatalf("a delivered packet still carries IP options (the tag?): %x", f.Frame[14:40])
		}
	}

	// The ACS's own view is in the same /metrics.
	if m := rawMetrics(t, abr1, "127.0.0.1:9100"); !strings.Contains(m, `psavd_acs_peer_up{peer="65002",state="up"} 1`) ||
		!strings.Contains(m, `psavd_acs_events_total{event="established"}`) {
		t.Errorf("ACS metrics missing or peer not up:\n%s", m)
	}

	// Key changes at epoch boundaries lose nothing: a steady stream over four
	// 2-second epochs, every datagram tagged at abr1, validated at abr2 and
	// delivered.
	tagged0, validated0 := counters(abr1).Total("packets", "tagged"), counters(abr2).Total("packets", "validated")
	const streamed = 800 // one every 10 ms: 8 s, four epoch boundaries
	must(netlab.Do(h1, func() error {
		c, err := net.Dial("udp", "198.51.100.200:5555")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < streamed; i++ {
			if _, err := fmt.Fprintf(c, "epochs-%04d", i); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}))
	seen := func() int {
		got := map[string]bool{}
		for _, f := range sniff.Frames() {
			if i := bytes.Index(f.Frame, []byte("epochs-")); i >= 0 && !f.Outgoing && i+11 <= len(f.Frame) {
				got[string(f.Frame[i:i+11])] = true
			}
		}
		return len(got)
	}
	for deadline := time.Now().Add(20 * time.Second); seen() < streamed && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	if n := seen(); n != streamed {
		t.Fatalf("%d of %d datagrams delivered across epoch boundaries; abr2 %v", n, streamed, counters(abr2))
	}
	if d := counters(abr1).Total("packets", "tagged") - tagged0; d < streamed {
		t.Errorf("only %v of the stream tagged at abr1", d)
	}
	if d := counters(abr2).Total("packets", "validated") - validated0; d < streamed {
		t.Errorf("only %v of the stream validated at abr2", d)
	}

	// A host inside AS 65001 forging an AS 65002 source: dropped at abr1.
	before := counters(abr1).Total("drops", "spoofed-inside")
	raw, err := lab.OpenRaw(h1, "eth0")
	must(err)
	defer raw.Close()
	forged, dst := netip.MustParseAddr("198.51.100.150"), netip.MustParseAddr("198.51.100.200")
	ip := header.AppendIPv4(nil, header.IPv4Fields{ID: 1, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: 17, Src: forged, Dst: dst}, header.AppendUDP(nil, forged, dst, 4000, 5555, []byte("forged-source")))
	must(raw.Send(header.AppendEthernet(nil, mustMAC(t, "ff:ff:ff:ff:ff:ff"), mustMAC(t, "02:00:00:00:00:99"), ip)))
	for deadline := time.Now().Add(10 * time.Second); counters(abr1).Total("drops", "spoofed-inside") < before+1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the forged source was not dropped spoofed-inside at abr1")
		}
	}
	for _, f := range sniff.Frames() {
		if bytes.Contains(f.Frame, []byte("forged-source")) {
			t.Fatal("the forged packet reached h2")
		}
	}

	// An ACS dies (AS 65002's psavd stops): AS 65001's ACS declares it dead
	// after dead_after missed heartbeats and removes its state machine, but
	// its data plane keeps the keys it holds until their epochs are past
	// (make before break, docs/wire.md §2.8): a restart costs nothing.
	keyed := func(ns string) float64 { return counters(ns)[lab.CounterKey{Metric: "peers_keyed"}] }
	if keyed(abr1) < 1 {
		t.Fatal("abr1 holds no key before the fault")
	}
	procs[65002].Stop()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(procs[65001].log.String(), "peer dead"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("AS 65001's ACS did not declare AS 65002 dead")
		}
	}
	if keyed(abr1) < 1 {
		t.Fatal("abr1 dropped its keys for AS 65002 when the peer was declared dead")
	}
	// It comes back from the same files: re-admitted, a new state machine is
	// negotiated, and traffic is tagged and validated again.
	startPsavd(t, bin, abr2, cfgs[65002], true)
	validated0 = counters(abr2).Total("packets", "validated")
	if !sendUntil("readmitted", func() bool { return counters(abr2).Total("packets", "validated") > validated0 }) {
		t.Fatalf("after the restart, traffic is not validated again; abr1 %v abr2 %v", counters(abr1), counters(abr2))
	}
}
