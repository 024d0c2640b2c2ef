package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/psavref"
)

// Generous bounds for waiting; no assertion is about speed.
const (
	waitDelivery = 20 * time.Second
	waitCounters = 20 * time.Second
	settle       = time.Second
)

// skipUnlessLab skips when the machine cannot run the lab.
func skipUnlessLab(t *testing.T) {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("AF_XDP unavailable: %v", err)
	}
	unix.Close(fd)
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// psavdBinary builds ./cmd/psavd from the module root once per test binary.
func psavdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "psavd-integration-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "psavd")
		// go test puts its own GOROOT/bin first in PATH, so this is the
		// toolchain that builds the test.
		cmd := exec.Command("go", "build", "-o", dir, "./cmd/psavd", "./cmd/psavctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/psavd ./cmd/psavctl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// psavctlBinary is cmd/psavctl, built next to psavd.
func psavctlBinary(t *testing.T) string {
	return filepath.Join(filepath.Dir(psavdBinary(t)), "psavctl")
}

// logWriter sends lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startLab builds the default topology and starts psavd on abr1 and abr2.
func startLab(t *testing.T, ctx context.Context) *lab.Env {
	t.Helper()
	bin := psavdBinary(t)
	topo, err := lab.Parse(lab.StaticTopology)
	if err != nil {
		t.Fatal(err)
	}
	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = logWriter{t}
	}
	env, err := lab.Build(ctx, topo, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left := env.Leftovers(); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	if err := env.StartABRs(ctx, bin); err != nil {
		t.Fatal(err)
	}
	return env
}

// runLab runs `psavd lab` (deploy/lab.Run) on a topology: real sockets for
// legitimate traffic, forged frames for spoofed traffic, every outcome
// checked against the ABRs' counters. It returns what the lab printed.
func runLab(t *testing.T, topo []byte) string {
	t.Helper()
	skipUnlessLab(t)
	bin := psavdBinary(t)
	var out bytes.Buffer
	res, err := lab.Run(context.Background(), lab.Options{Psavd: bin, Topology: topo, PacketsPerFlow: 10}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Flows) == 0 {
		t.Fatal("lab not OK")
	}
	return out.String()
}

// TestLab runs the default lab (`make run`): no key configured, each ABR
// runs its AS's ACS and the keys are negotiated over mutual TLS 1.3.
func TestLab(t *testing.T) {
	if out := runLab(t, nil); !strings.Contains(out, "ACS: keys in place") {
		t.Fatal("the default lab did not run in ACS mode")
	}
}

// TestLabStatic runs the same network with static keys and no ACS: every
// flow behaves as with negotiated keys.
func TestLabStatic(t *testing.T) {
	if out := runLab(t, lab.StaticTopology); strings.Contains(out, "ACS:") {
		t.Fatal("the static lab ran an ACS")
	}
}

// TestLabFive: five ACS of a flat alliance negotiate the ten pairs' keys
// over mutual TLS 1.3 and their ABRs tag and validate traffic between every
// two of them through AF_XDP (issue 3, must-show 1; deploy/lab/five.toml).
func TestLabFive(t *testing.T) {
	if out := runLab(t, lab.FiveTopology); !strings.Contains(out, "ACS: 5 ACS peer") {
		t.Fatal("the five-AS lab did not run five ACS")
	}
}

// TestLabLISP: the ABRs are LISP xTRs registering with, and resolving
// through, a Map-Server/Map-Resolver node; traffic between the ASes is
// tagged inside and encapsulated across tr (issue 4; deploy/lab/lisp.toml).
func TestLabLISP(t *testing.T) {
	if out := runLab(t, lab.LISPTopology); !strings.Contains(out, "warm-up:") {
		t.Fatal("the LISP lab did not warm up its map-caches")
	}
}

// TestLabDecentPush and TestLabDecentPull: the LISP lab with no Map-Server
// configured — the xTRs find each other's mappings through LISP-Decent, in
// push mode (a registration group by unicast replication) and in pull mode
// (map-servers named in a zone served over DNS-over-TLS by the lab's dns
// node); every legitimate flow is counted encapsulated and decapsulated as
// well as tagged and validated (issue 6; deploy/lab/decent-*.toml).
func TestLabDecentPush(t *testing.T) { runLab(t, lab.DecentPushTopology) }

func TestLabDecentPull(t *testing.T) { runLab(t, lab.DecentPullTopology) }

// TestLabHierarchy is the two-level community tree (issue 3, must-show 5;
// deploy/lab/hierarchy.toml): packets between AS 65001 (community 1) and
// AS 65004 (the root community) are tagged at the sender's ABR, validated
// and re-tagged at both community borders (abr2, abr3) and validated at the
// receiver's — each flow's counters say so at each ABR — and a forged source
// of community 1 arriving from outside is dropped at the first border
// (abr2: no-tag, bad-tag, stale-epoch).
func TestLabHierarchy(t *testing.T) {
	out := runLab(t, lab.HierarchyTopology)
	if !strings.Contains(out, "re-tagged at the community borders (abr2, abr3)") {
		t.Fatal("no replacement at the community borders")
	}
}

// probe is one crafted legitimate packet from h1 to h2.
type probe struct {
	name string
	ip   []byte // as sent by h1
	// transit: the router rewrites more than the hop count (IPv4 record
	// route), so only the per-link comparisons apply, not the end-to-end one.
	transit bool
}

// TestTagAddAndStrip sends crafted legitimate packets from h1 to h2 and
// checks them on every link:
//
//   - h1 → tr (after abr1): exactly one PSAV tag, well formed, with the tag
//     value an independent implementation of docs/wire.md §2.4 computes; removing
//     it gives back the bytes h1 sent (TTL included: tr has not routed it yet).
//   - tr → h2 (before abr2, and at h2): removing the tag from what tr sent
//     gives exactly the bytes h2 received.
//   - end to end: h2 receives what h1 sent, except the hop count that tr
//     decremented by one and the IPv4 header checksum that follows it.
//   - MAC addresses are untouched by the bump-in-the-wire ABRs.
//
// Comparing per link makes a failure point at the ABR that caused it; the
// end-to-end comparison holds even where the tag shares an existing
// Destination Options header and the per-link strip does not apply.
func TestTagAddAndStrip(t *testing.T) {
	skipUnlessLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := startLab(t, ctx)

	h2Sniff := mustSniff(t, env, "h2", "eth0")
	trIn := mustSniff(t, env, "tr", "to-abr1")
	trOut := mustSniff(t, env, "tr", "to-abr2")
	iface, gwMAC, err := env.NextHop("h1", netip.MustParseAddr("203.0.113.10"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := lab.OpenRaw(env.NS("h1"), iface)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	before := counters(t, ctx, env)

	probes := legitimateProbes(env.Run)
	for _, p := range probes {
		if err := raw.Send(header.AppendEthernet(nil, gwMAC, raw.MAC, p.ip)); err != nil {
			t.Fatalf("%s: send: %v", p.name, err)
		}
	}
	h2MAC, err := env.MAC("h2", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	trMAC, err := env.MAC("tr", "to-abr2")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			m := lab.Marker{Flow: 0, Seq: i}
			atH2 := waitFrame(t, ctx, h2Sniff, env.Run, m, false)
			atTrIn := waitFrame(t, ctx, trIn, env.Run, m, false)
			atTrOut := waitFrame(t, ctx, trOut, env.Run, m, true)
			if atH2 == nil || atTrIn == nil || atTrOut == nil {
				t.Fatalf("not seen everywhere: tr from abr1 %v, tr to abr2 %v, h2 %v", atTrIn != nil, atTrOut != nil, atH2 != nil)
			}
			if !bytes.Equal(atTrIn[:12], append(append([]byte{}, gwMAC...), raw.MAC...)) {
				t.Errorf("abr1 changed the MACs: % x", atTrIn[:12])
			}
			if !bytes.Equal(atH2[:12], append(append([]byte{}, h2MAC...), trMAC...)) {
				t.Errorf("abr2 changed the MACs: % x", atH2[:12])
			}
			checkTag(t, env, "h1 → tr (tagged by abr1)", lab.IPOf(atTrIn), p.ip)
			checkTag(t, env, "tr → abr2", lab.IPOf(atTrOut), nil)
			got := lab.IPOf(atH2)
			if ti, err := psavref.Find(lab.IPOf(atTrOut)); err == nil && ti.Alone {
				if s, err := psavref.Strip(lab.IPOf(atTrOut)); err != nil {
					t.Errorf("tr → abr2: %v", err)
				} else if !bytes.Equal(s, got) {
					t.Errorf("abr2 did not restore the packet tr sent it:\n tr sent, tag removed % x\n h2 got              % x", s, got)
				}
			}
			if !p.transit {
				if hopCount(got) != hopCount(p.ip)-1 {
					t.Errorf("hop count %d at h2, sent %d", hopCount(got), hopCount(p.ip))
				}
				if want := normalised(p.ip, 0); !bytes.Equal(normalised(got, 0), want) {
					t.Errorf("h2 received a different packet (hop count and IPv4 checksum normalised):\n sent % x\n got  % x", want, normalised(got, 0))
				}
			}
		})
	}
	after := waitCountersReach(t, ctx, env, before, map[string]map[string]float64{
		"abr1": {"tagged": float64(len(probes))},
		"abr2": {"validated": float64(len(probes))},
	}, "packets")
	for _, node := range []string{"abr1", "abr2"} {
		for k, v := range after[node].Sub(before[node]) {
			if k.Metric == "drops" {
				t.Errorf("%s dropped %v %s on %s during legitimate traffic", node, v, k.What, k.Port)
			}
		}
	}
}

// legitimateProbes returns the crafted packets from h1 to h2, each carrying
// marker (flow 0, its index).
func legitimateProbes(run string) []probe {
	s4, d4 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("203.0.113.10")
	s6, d6 := netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::10")
	pl := func(i int) []byte {
		return []byte(lab.MarkerText(run, lab.Marker{Flow: 0, Seq: i}) + " integration")
	}
	padN := []byte{1, 4, 0, 0, 0, 0} // PadN filling an 8-octet header
	var ps []probe
	add := func(name string, transit bool, build func(pl []byte) []byte) {
		ps = append(ps, probe{name: name, ip: build(pl(len(ps))), transit: transit})
	}
	add("IPv4 UDP", false, func(pl []byte) []byte {
		return header.AppendIPv4(nil, header.IPv4Fields{ID: 101, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: s4, Dst: d4}, header.AppendUDP(nil, s4, d4, 33001, 44001, pl))
	})
	add("IPv4 ICMP echo", false, func(pl []byte) []byte {
		return header.AppendIPv4(nil, header.IPv4Fields{ID: 102, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoICMP, Src: s4, Dst: d4}, header.AppendICMPEcho(nil, s4, d4, 7, 1, pl))
	})
	add("IPv4 TCP", false, func(pl []byte) []byte {
		return header.AppendIPv4(nil, header.IPv4Fields{ID: 103, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoTCP, Src: s4, Dst: d4}, header.AppendTCP(nil, s4, d4, header.TCPFields{SrcPort: 20003, DstPort: 44003, Seq: 1000, Ack: 1, Flags: header.TCPFlagAck | header.TCPFlagPsh, Window: 65535}, pl))
	})
	add("IPv4 UDP with 4 NOP options", false, func(pl []byte) []byte {
		return header.AppendIPv4(nil, header.IPv4Fields{ID: 104, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: s4, Dst: d4, Options: []byte{1, 1, 1, 1}}, header.AppendUDP(nil, s4, d4, 33004, 44004, pl))
	})
	// Record route: tr writes its address into the option, so this one is
	// compared per link only.
	add("IPv4 UDP with record route", true, func(pl []byte) []byte {
		return header.AppendIPv4(nil, header.IPv4Fields{ID: 105, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: s4, Dst: d4, Options: []byte{7, 7, 4, 0, 0, 0, 0, 0}}, header.AppendUDP(nil, s4, d4, 33005, 44005, pl))
	})
	add("IPv6 UDP", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: s6, Dst: d6}, header.AppendUDP(nil, s6, d6, 33006, 44006, pl))
	})
	add("IPv6 ICMPv6 echo", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoICMPv6, Src: s6, Dst: d6}, header.AppendICMPEcho(nil, s6, d6, 7, 2, pl))
	})
	add("IPv6 TCP", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoTCP, Src: s6, Dst: d6}, header.AppendTCP(nil, s6, d6, header.TCPFields{SrcPort: 20008, DstPort: 44008, Seq: 1000, Ack: 1, Flags: header.TCPFlagAck | header.TCPFlagPsh, Window: 65535}, pl))
	})
	add("IPv6 UDP with Hop-by-Hop header", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: s6, Dst: d6, Ext: []header.IPv6ExtHeader{{Type: header.ProtoHopByHop, Body: padN}}}, header.AppendUDP(nil, s6, d6, 33009, 44009, pl))
	})
	add("IPv6 UDP with Destination Options header", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: s6, Dst: d6, Ext: []header.IPv6ExtHeader{{Type: header.ProtoDestOpts, Body: padN}}}, header.AppendUDP(nil, s6, d6, 33010, 44010, pl))
	})
	add("IPv6 UDP with Hop-by-Hop and Destination Options headers", false, func(pl []byte) []byte {
		return header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: s6, Dst: d6, Ext: []header.IPv6ExtHeader{{Type: header.ProtoHopByHop, Body: padN}, {Type: header.ProtoDestOpts, Body: padN}}}, header.AppendUDP(nil, s6, d6, 33011, 44011, pl))
	})
	return ps
}

// checkTag checks the tag of a packet on the wire between the ABRs: one
// tag, of the current epoch (±1), the source's prefix length, and the value
// the reference computes. With orig, removing the tag must give orig back.
func checkTag(t *testing.T, env *lab.Env, where string, p, orig []byte) {
	t.Helper()
	ti, err := psavref.Find(p)
	if err != nil {
		t.Errorf("%s: %v in % x", where, err, p)
		return
	}
	var src, dst netip.Addr
	if p[0]>>4 == 4 {
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
	}
	_, bits := env.Topo.MemberOf(src)
	if int(ti.PrefixLen) != bits {
		t.Errorf("%s: source prefix length %d, want %d", where, ti.PrefixLen, bits)
	}
	now := env.Topo.Epoch(time.Now())
	ok := false
	for e := now - 1; e <= now+1; e++ {
		if uint8(e) != ti.Epoch {
			continue
		}
		key, err := tagKey(env.S0, env.StartEpoch, e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if want := psavref.Tag(key, src, dst, ti.FirstOctet, uint8(bits)); want != ti.Tag {
			t.Errorf("%s: tag %016x of epoch %d, the reference computes %016x", where, ti.Tag, e, want)
		}
		ok = true
	}
	if !ok {
		t.Errorf("%s: epoch octet %d is not of epoch %d±1", where, ti.Epoch, now)
	}
	if orig == nil {
		return
	}
	if !ti.Alone {
		// The tag was merged into an existing Destination Options header;
		// how it is padded there is the tagger's choice, so only the
		// end-to-end comparison judges this case.
		return
	}
	s, err := psavref.Strip(p)
	if err != nil {
		t.Errorf("%s: %v", where, err)
	} else if !bytes.Equal(s, orig) {
		t.Errorf("%s: with the tag removed the packet differs from what h1 sent:\n sent % x\n got  % x", where, orig, s)
	}
}

// spoof is a forged packet and where and why it must be dropped.
type spoof struct {
	name, from string
	src        string
	tag        string // "", "random", "stale"
	at, reason string
}

// TestSpoofedDropped forges packets (raw frames addressed to the router, as
// an attacker would) and checks that none reaches h2 and that the ABRs count
// each under the right reason.
func TestSpoofedDropped(t *testing.T) {
	skipUnlessLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := startLab(t, ctx)
	h2Sniff := mustSniff(t, env, "h2", "eth0")
	const per = 5
	spoofs := []spoof{
		{"member source without tag", "attacker", "198.51.100.77", "", "abr2", "no-tag"},
		{"member source without tag", "attacker", "2001:db8:1::77", "", "abr2", "no-tag"},
		{"source of the receiving AS", "attacker", "203.0.113.99", "", "abr2", "spoofed-local"},
		{"source of the receiving AS", "attacker", "2001:db8:2::99", "", "abr2", "spoofed-local"},
		{"another AS's source from inside", "h1", "203.0.113.50", "", "abr1", "spoofed-inside"},
		{"another AS's source from inside", "h1", "2001:db8:2::50", "", "abr1", "spoofed-inside"},
		{"made-up tag", "attacker", "198.51.100.10", "random", "abr2", "bad-tag"},
		{"made-up tag", "attacker", "2001:db8:1::10", "random", "abr2", "bad-tag"},
		{"tag of a far epoch", "attacker", "198.51.100.10", "stale", "abr2", "stale-epoch"},
		{"tag of a far epoch", "attacker", "2001:db8:1::10", "stale", "abr2", "stale-epoch"},
	}
	before := counters(t, ctx, env)
	want := map[string]map[string]float64{"abr1": {}, "abr2": {}}
	for i, s := range spoofs {
		src := netip.MustParseAddr(s.src)
		dst := netip.MustParseAddr("203.0.113.10")
		if src.Is6() {
			dst = netip.MustParseAddr("2001:db8:2::10")
		}
		iface, hop, err := env.NextHop(s.from, dst)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := lab.OpenRaw(env.NS(s.from), iface)
		if err != nil {
			t.Fatal(err)
		}
		_, bits := env.Topo.MemberOf(src)
		for j := 0; j < per; j++ {
			udp := header.AppendUDP(nil, src, dst, 33100, uint16(44100+i), []byte(lab.MarkerText(env.Run, lab.Marker{Flow: 1 + i, Seq: j})))
			epoch := uint8(env.Topo.Epoch(time.Now()))
			if s.tag == "stale" {
				epoch += 100
			}
			tag := [8]byte{0xde, 0xad, 0xbe, 0xef, byte(i), byte(j), 0x5a, 0xa5}
			var ip []byte
			if src.Is4() {
				var opts []byte
				if s.tag != "" {
					opts = psavref.IPv4Option(tag, epoch, uint8(max(bits, 0)))
				}
				ip = header.AppendIPv4(nil, header.IPv4Fields{ID: uint16(i<<8 | j), Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: src, Dst: dst, Options: opts}, udp)
			} else {
				var ext []header.IPv6ExtHeader
				if s.tag != "" {
					ext = []header.IPv6ExtHeader{psavref.IPv6DestOpts(tag, epoch, uint8(max(bits, 0)))}
				}
				ip = header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: src, Dst: dst, Ext: ext}, udp)
			}
			if err := raw.Send(header.AppendEthernet(nil, hop, raw.MAC, ip)); err != nil {
				t.Fatal(err)
			}
		}
		raw.Close()
		want[s.at][s.reason] += per
	}
	after := waitCountersReach(t, ctx, env, before, want, "drops")
	time.Sleep(settle) // a forged packet that got through would be at h2 by now
	for _, c := range h2Sniff.Frames() {
		if ms := lab.Markers(c.Frame, env.Run); len(ms) > 0 && !c.Outgoing {
			t.Errorf("forged packet %q (%s) reached h2: % x", spoofs[ms[0].Flow-1].name, spoofs[ms[0].Flow-1].src, c.Frame)
		}
	}
	for node, reasons := range want {
		d := after[node].Sub(before[node])
		for reason, n := range reasons {
			if got := d.Total("drops", reason); got != n {
				t.Errorf("%s: %v drops %s, want %v", node, got, reason, n)
			}
		}
		for k, v := range d {
			if k.Metric == "drops" && reasons[k.What] == 0 {
				t.Errorf("%s: unexpected %v drops %s on %s", node, v, k.What, k.Port)
			}
		}
	}
}

func mustSniff(t *testing.T, env *lab.Env, node, iface string) *lab.Sniffer {
	t.Helper()
	s, err := lab.Sniff(env.NS(node), iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitFrame waits for the frame carrying marker m (incoming, or outgoing
// when out) and fails the test if there is more than one.
func waitFrame(t *testing.T, ctx context.Context, s *lab.Sniffer, run string, m lab.Marker, out bool) []byte {
	t.Helper()
	var found [][]byte
	s.Wait(ctx, waitDelivery, func(frames []lab.Captured) bool {
		found = found[:0]
		for _, c := range frames {
			if c.Outgoing != out {
				continue
			}
			for _, fm := range lab.Markers(c.Frame, run) {
				if fm == m {
					found = append(found, c.Frame)
				}
			}
		}
		return len(found) > 0
	})
	if len(found) > 1 {
		t.Errorf("marker %v seen %d times", m, len(found))
	}
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

func counters(t *testing.T, ctx context.Context, env *lab.Env) map[string]lab.Counters {
	t.Helper()
	m := map[string]lab.Counters{}
	for _, n := range []string{"abr1", "abr2"} {
		c, err := env.Counters(ctx, n)
		if err != nil {
			t.Fatalf("%v\n%s output:\n%s", err, n, env.Output(n))
		}
		m[n] = c
	}
	return m
}

// waitCountersReach polls the counters until, per node, the metric's
// totals by reason/action grew by at least want, or the wait times out.
func waitCountersReach(t *testing.T, ctx context.Context, env *lab.Env, before map[string]lab.Counters, want map[string]map[string]float64, metric string) map[string]lab.Counters {
	t.Helper()
	deadline := time.Now().Add(waitCounters)
	for {
		after := counters(t, ctx, env)
		done := true
		for node, whats := range want {
			d := after[node].Sub(before[node])
			for what, n := range whats {
				if d.Total(metric, what) < n {
					done = false
				}
			}
		}
		if done || time.Now().After(deadline) || ctx.Err() != nil {
			return after
		}
		time.Sleep(200 * time.Millisecond)
	}
}
