package harness

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/bench/report"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/engine/header"
)

// TestSlots checks that a mix's MixSlots templates have the shares asked,
// family and class independently.
func TestSlots(t *testing.T) {
	for _, m := range []Mix{
		{IPv6: 0.5}, {IPv6: 0}, {IPv6: 1}, {IPv6: 0.5, Untagged: 0.2, Spoofed: 0.2},
		{IPv6: 0.25, Untagged: 0.05, Spoofed: 0.95 - 0.05}, {IPv6: 0.75, Spoofed: 1},
	} {
		v6, cls := slots(m)
		n6, n := 0, map[class]int{}
		for i := range MixSlots {
			if v6[i] {
				n6++
			}
			n[cls[i]]++
		}
		want := func(share float64) int { return int(share*MixSlots + 0.5) }
		if n6 != want(m.IPv6) || n[classUntagged] != want(m.Untagged) || n[classSpoofed] != want(m.Spoofed) ||
			n[classTagged] != MixSlots-want(m.Untagged)-want(m.Spoofed) {
			t.Errorf("%+v: %d IPv6, classes %v", m, n6, n)
		}
	}
}

func decode(t *testing.T, f []byte) (src, dst netip.Addr, tos uint8, p gopacket.Packet) {
	t.Helper()
	p = gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("frame does not decode: %v", e.Error())
	}
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		s, _ := netip.AddrFromSlice(ip.SrcIP)
		d, _ := netip.AddrFromSlice(ip.DstIP)
		return s.Unmap(), d.Unmap(), ip.TOS, p
	}
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	s, _ := netip.AddrFromSlice(ip.SrcIP)
	d, _ := netip.AddrFromSlice(ip.DstIP)
	return s, d, 0, p
}

// TestFrames checks the templates' sizes, addresses per class and tags.
func TestFrames(t *testing.T) {
	keys, err := bench.NewKeys(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := Mix{IPv6: 0.5, Untagged: 0.25, Spoofed: 0.25}
	for _, validating := range []bool{false, true} {
		for _, size := range []int{64, 1500} {
			fs, err := Frames(m, size, validating, keys, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != MixSlots {
				t.Fatalf("%d templates", len(fs))
			}
			seen := map[string]int{}
			for _, f := range fs {
				src, dst, _, p := decode(t, f)
				tagged := p.Layer(layers.LayerTypeIPv6Destination) != nil
				if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && len(ip.Options) > 0 {
					tagged = true
				}
				want := size
				if tagged {
					want += 16
				}
				if len(f) != want {
					t.Errorf("validating %v: %v → %v: %d octets, want %d", validating, src, dst, len(f), want)
				}
				seen[fmt.Sprintf("%v>%v tagged=%v", src, dst, tagged)]++
			}
			var want map[string]int
			if !validating {
				want = map[string]int{
					"198.51.100.10>203.0.113.10 tagged=false":    5, // 10 tagged class, half IPv4
					"2001:db8:1::10>2001:db8:2::10 tagged=false": 5,
					"198.51.100.10>192.0.2.10 tagged=false":      -1, // untagged class: counted together below
					"100.64.0.10>203.0.113.10 tagged=false":      -1,
					"2001:db8:1::10>2001:db8:3::10 tagged=false": -1,
					"2001:db8:9::10>2001:db8:2::10 tagged=false": -1,
				}
			} else {
				want = map[string]int{
					"203.0.113.10>198.51.100.10 tagged=true":     5,
					"2001:db8:2::10>2001:db8:1::10 tagged=true":  5,
					"192.0.2.10>198.51.100.10 tagged=false":      -1,
					"2001:db8:3::10>2001:db8:1::10 tagged=false": -1,
					"203.0.113.10>198.51.100.10 tagged=false":    -1,
					"2001:db8:2::10>2001:db8:1::10 tagged=false": -1,
				}
			}
			total := 0
			for k, n := range seen {
				w, ok := want[k]
				if !ok {
					t.Errorf("validating %v: unexpected frame %s", validating, k)
				}
				if w >= 0 && n != w {
					t.Errorf("validating %v: %d × %s, want %d", validating, n, k, w)
				}
				total += n
			}
			if total != MixSlots || len(seen) != 6 {
				t.Errorf("validating %v: kinds %v", validating, seen)
			}
		}
	}
	// One kind of frame: one template.
	fs, err := Frames(Mix{IPv6: 1}, 64, false, keys, time.Now())
	if err != nil || len(fs) != 1 {
		t.Errorf("all-IPv6 mix: %d templates, %v", len(fs), err)
	}
}

// TestValidatingFramesMatchBench checks that the validating direction's
// tagged frames are the bench package's own (same tag, same layout).
func TestValidatingFramesMatchBench(t *testing.T) {
	keys, err := bench.NewKeys(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	want, err := bench.ValidatingFrames(keys, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Frames(Mix{IPv6: 0.5}, gen.FrameSize, true, keys, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || bytes.Equal(g, w)
		}
		if !found {
			t.Errorf("bench's validating frame %x not among the templates", w)
		}
	}
}

// TestProbeFrame checks the probe: IPv4 with the sink's TOS, a correct
// header checksum, and a trailer that survives a round trip.
func TestProbeFrame(t *testing.T) {
	keys, _ := bench.NewKeys(time.Now())
	for _, validating := range []bool{false, true} {
		f, err := ProbeFrame(64, validating, keys, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		putTrailer(f, 77, 1234567890123)
		_, _, tos, p := decode(t, f)
		if tos != gen.ProbeTOS {
			t.Errorf("TOS %#x", tos)
		}
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		hdr := f[14 : 14+int(ip.IHL)*4]
		if !header.IPv4(hdr).ChecksumValid() {
			t.Errorf("IPv4 header checksum does not verify")
		}
		if validating != (len(ip.Options) > 0) {
			t.Errorf("validating %v: options %v", validating, ip.Options)
		}
		seq, ns, ok := readTrailer(f)
		if !ok || seq != 77 || ns != 1234567890123 {
			t.Errorf("trailer %d %d %v", seq, ns, ok)
		}
		f[len(f)-ProbeTrailer] ^= 1
		if _, _, ok := readTrailer(f); ok {
			t.Error("a frame without the magic was read as a probe")
		}
	}
	// The largest probes fit a packet socket on a 1500-octet MTU.
	for _, validating := range []bool{false, true} {
		f, err := ProbeFrame(MaxSize+14, validating, keys, time.Now())
		if err != nil || len(f) != maxSocketFrame {
			t.Errorf("validating %v: largest probe %d octets (%v), want %d", validating, len(f), err, maxSocketFrame)
		}
	}
	if _, _, ok := readTrailer(make([]byte, 20)); ok {
		t.Error("short frame read as a probe")
	}
}

// TestPsavdConfig checks the generated configuration through psavd's own
// configuration loader: it is accepted and its AS-Prefix table has exactly
// the number of prefixes asked.
func TestPsavdConfig(t *testing.T) {
	keys, _ := bench.NewKeys(time.Now())
	env := bench.Env{In: "in0", Out: "out0", CPUs: []int{1}}
	for _, n := range []int{4, 5, 1001, 250_003} {
		var b bytes.Buffer
		if err := WritePsavdConfig(&b, env, keys, n%2 == 1, n); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "engine.toml")
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			t.Fatalf("%d prefixes: %v", n, err)
		}
		got := 0
		seen := map[netip.Prefix]bool{}
		for _, m := range c.PSAV.Members {
			got += len(m.Prefixes)
			for _, p := range m.Prefixes {
				if seen[p] {
					t.Fatalf("prefix %s twice", p)
				}
				seen[p] = true
				pf := p
				for _, a := range []netip.Addr{gen.InsideV4, gen.OutsideV4, gen.InsideV6, gen.OutsideV6,
					NonMemberV4, NonMemberV6, SpoofedV4, SpoofedV6} {
					if pf.Contains(a) && m.ASN >= fillerASNBase {
						t.Fatalf("filler %s covers %v", p, a)
					}
				}
			}
		}
		if got != n {
			t.Errorf("%d prefixes in the table, want %d", got, n)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Field 2 with a space and a parenthesis; utime 1234, stime 56.
	s := "4242 (psa v) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 7 0 100 0 0"
	if v, ok := parseProcStat(s); !ok || v != 1290 {
		t.Errorf("got %d %v, want 1290", v, ok)
	}
	if _, ok := parseProcStat("4242 (x) S 1 2"); ok {
		t.Error("a short line was accepted")
	}
	if _, ok := parseProcStat("no parenthesis"); ok {
		t.Error("a line without the command was accepted")
	}
}

func TestParseCPUBusy(t *testing.T) {
	s := `cpu  10 0 10 1000 5 0 0 0 0 0
cpu0 100 1 20 5000 7 3 4 2 9 9
cpu1 200 2 30 6000 8 5 6 1 0 0
intr 1 2 3
`
	// cpu1: user 200 + nice 2 + system 30 + irq 5 + softirq 6 + steal 1.
	if v, ok := parseCPUBusy(s, []int{1}); !ok || v != 244 {
		t.Errorf("cpu1: %d %v, want 244", v, ok)
	}
	// cpu0: 100+1+20+3+4+2 = 130.
	if v, ok := parseCPUBusy(s, []int{0, 1}); !ok || v != 374 {
		t.Errorf("cpu0+1: %d %v, want 374", v, ok)
	}
	if _, ok := parseCPUBusy(s, []int{2}); ok {
		t.Error("a missing CPU was accepted")
	}
}

func TestCPUs(t *testing.T) {
	g, d := cpus(1)
	if len(g) != 1 || len(d) != 1 || g[0] != 0 {
		t.Errorf("1 core: gen %v dut %v", g, d)
	}
	g, d = cpus(1000)
	if len(g) != len(d) || len(d) == 0 {
		t.Errorf("more cores than CPUs: gen %v dut %v", g, d)
	}
}

// TestRatios checks that psavd's measurements are divided by the
// baselines of their own size, IPv6 share and cores, and no other.
func TestRatios(t *testing.T) {
	pt := func(size int, ipv6 float64, cores int) report.Point {
		return report.Point{Size: size, IPv6: ipv6, Cores: cores}
	}
	r := &report.Run{Measurements: []report.Measurement{
		{Case: CaseBare, Point: pt(64, 0.5, 1), Mpps: 0.8, ProcNSPerPacket: 1000},
		{Case: CaseKernel, Point: pt(64, 0.5, 1), Mpps: 0.4},
		{Case: CaseBare, Point: pt(1500, 0.5, 1), Mpps: 0.5, ProcNSPerPacket: 2000},
		{Case: CaseBare, Point: pt(64, 1, 1), Mpps: 2},
		{Case: CaseTag, Point: report.Point{Size: 64, IPv6: 0.5, Cores: 1, Mix: "m", Prefixes: 1000}, Mpps: 0.6, ProcNSPerPacket: 1250},
		{Case: CaseValidate, Point: report.Point{Size: 1500, IPv6: 0.5, Cores: 1, Mix: "m", Prefixes: 4}, Mpps: 0.45},
		{Case: CaseTag, Point: report.Point{Size: 64, IPv6: 0.5, Cores: 2, Mix: "m", Prefixes: 4}, Mpps: 1},
	}}
	ratios(r)
	for i, want := range []struct{ bare, kernel, cpu float64 }{{0.75, 1.5, 1.25}, {0.9, 0, 0}, {0, 0, 0}} {
		m := r.Measurements[4+i]
		if math.Abs(m.RatioBare-want.bare) > 1e-9 || math.Abs(m.RatioKernel-want.kernel) > 1e-9 || math.Abs(m.CPURatioBare-want.cpu) > 1e-9 {
			t.Errorf("%s %+v: ratios %g %g %g, want %+v", m.Case, m.Point, m.RatioBare, m.RatioKernel, m.CPURatioBare, want)
		}
	}
	if r.Measurements[0].RatioBare != 0 {
		t.Error("a baseline got a ratio")
	}
}
