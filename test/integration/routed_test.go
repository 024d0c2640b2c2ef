package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/ports/pcap"
)

// TestRoutedABR runs psavd in routed forwarding between two subnets through
// real AF_XDP sockets: the ABR's own kernel answers ARP for its addresses
// (the XDP program passes ARP to it on routed ports), data is routed by
// [[route]], tagged on the way out with MACs rewritten and the TTL
// decremented, and an untagged packet from the member AS is dropped no-tag.
func TestRoutedABR(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	topo, _ := newTopology(t)
	h1, err := topo.NS("rh1")
	if err != nil {
		t.Fatal(err)
	}
	abr, err := topo.NS("rabr")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := topo.NS("rh2")
	if err != nil {
		t.Fatal(err)
	}
	const h1MAC, inMAC, outMAC, h2MAC = "02:00:00:00:01:10", "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:02:10"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(topo.Veth(h1, "eth0", h1MAC, abr, "in", inMAC))
	must(topo.Veth(abr, "out", outMAC, h2, "eth0", h2MAC))
	for _, c := range [][]string{
		{"-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"},
		{"-n", h1, "route", "add", "default", "via", "198.51.100.1"},
		{"-n", abr, "addr", "add", "198.51.100.1/24", "dev", "in"},
		{"-n", abr, "addr", "add", "203.0.113.1/24", "dev", "out"},
		{"-n", h2, "addr", "add", "203.0.113.10/24", "dev", "eth0"},
		{"-n", h2, "route", "add", "default", "via", "203.0.113.1"},
	} {
		must(netlab.IP(c...))
	}
	// The hosts send through their kernels: no checksum left to offload
	// (an AF_XDP copy would carry a partial one).
	for _, ns := range []string{h1, h2} {
		if _, err := netlab.Exec(ns, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
	}

	dir := t.TempDir()
	cfg := psavTOML(65001, "198.51.100.0/24") + memberTOML(65002, "203.0.113.0/24") +
		staticPeerTOML(65002, time.Now().Unix()/60-1) + routedPorts +
		routeTOML("203.0.113.0/24", "outside", h2MAC) + routeTOML("198.51.100.0/24", "inside", h1MAC) +
		metricsTOML("127.0.0.1:9100") + fmt.Sprintf("[capture]\ndir = %q\nevery = 1\n", filepath.Join(dir, "drops"))
	path := filepath.Join(dir, "routed.toml")
	must(os.WriteFile(path, []byte(cfg), 0o644))
	startPsavd(t, bin, abr, path, true)

	at2, err := lab.Sniff(h2, "eth0")
	must(err)
	defer at2.Close()
	at1, err := lab.Sniff(h1, "eth0")
	must(err)
	defer at1.Close()
	send := func(ns, dst, payload string) {
		t.Helper()
		must(sendDatagram(ns, dst, payload))
	}
	find := func(s *lab.Sniffer, payload string) func([]lab.Captured) bool {
		return func(fs []lab.Captured) bool {
			for _, f := range fs {
				if !f.Outgoing && bytes.Contains(f.Frame, []byte(payload)) {
					return true
				}
			}
			return false
		}
	}
	ctx := context.Background()

	// h1 → h2: ARP for the gateway answered by the ABR's kernel, then routed,
	// tagged, MACs rewritten, TTL 64 → 63.
	send(h1, "203.0.113.10:4242", "routed-legit")
	if !at2.Wait(ctx, 20*time.Second, find(at2, "routed-legit")) {
		t.Fatal("h1 → h2 not delivered through the routed ABR")
	}
	var got []byte
	for _, f := range at2.Frames() {
		if !f.Outgoing && bytes.Contains(f.Frame, []byte("routed-legit")) {
			got = f.Frame
		}
	}
	if !bytes.Equal(got[0:6], mustMAC(t, h2MAC)) || !bytes.Equal(got[6:12], mustMAC(t, outMAC)) {
		t.Errorf("MACs not rewritten: dst %x src %x", got[0:6], got[6:12])
	}
	if got[14]&0x0f != 9 || got[34] != 0x9e || got[35] != 14 {
		t.Errorf("no PSAV option on the routed packet: %x", got[14:50])
	}
	if got[22] != 63 {
		t.Errorf("TTL %d, want 63", got[22])
	}

	// h2 → h1 untagged (AS 65002 has no ABR here): dropped no-tag at the
	// routed ABR's EGRESS port, never reaches h1.
	send(h2, "198.51.100.10:4242", "routed-untagged")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := lab.Scrape(ctx, abr, "127.0.0.1:9100")
		must(err)
		if c.Total("drops", "no-tag") >= 1 {
			if c.Total("packets", "tagged") < 1 {
				t.Errorf("tagged counter %v", c.Total("packets", "tagged"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no no-tag drop counted; counters %v", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if find(at1, "routed-untagged")(at1.Frames()) {
		t.Fatal("an untagged packet from a member AS reached h1")
	}

	// The sockets' own counters are exported too.
	body := rawMetrics(t, abr, "127.0.0.1:9100")
	if !regexp.MustCompile(`psavd_xdp_socket_total\{counter="rx_packets",port="inside",queue="0"\} [1-9]`).MatchString(body) ||
		!strings.Contains(body, `counter="rx_fill_ring_empty_descs"`) {
		t.Errorf("AF_XDP socket counters missing from /metrics:\n%s", body)
	}

	// Drop capture: the dropped frame, as it arrived, in outside-no-tag.pcap.
	capFile := filepath.Join(dir, "drops", "outside-no-tag.pcap")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		frames, _ := pcap.ReadFile(capFile)
		found := false
		for _, f := range frames {
			found = found || bytes.Contains(f, []byte("routed-untagged"))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the no-tag drop is not in %s (%d frames)", capFile, len(frames))
		}
	}
}

func mustMAC(t *testing.T, s string) []byte {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
