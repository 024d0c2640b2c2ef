package afxdp

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/psavref"
	"github.com/psavd/psavd/ports"
)

// The differential tests' alliance: AS 65001 is local (gen.InsideV4/V6 are
// in it), AS 65002 a member with keys (gen.OutsideV4/V6), AS 65003 a member
// whose peer has no keys, AS 65004 a member with no peer; 203.0.113.128/25
// is a more-specific local prefix inside 65002's, 203.0.113.64/26 points
// to no member (a bad index from a feed).
var (
	pfEpoch    = int64(29000000)
	pfNow      = pfEpoch*60 + 30
	pfKey65002 = engine.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	pfUnkeyed4 = netip.MustParseAddr("100.64.0.10")
	pfUnkeyed6 = netip.MustParseAddr("2001:db8:3::10")
	pfNoPeer4  = netip.MustParseAddr("10.0.0.10")
	pfLocalIn  = netip.MustParseAddr("203.0.113.200") // local, inside 65002's /24
	pfBadIdx   = netip.MustParseAddr("203.0.113.70")
	pfOutside2 = netip.MustParseAddr("2001:db8:2::99")
	pfNobody4  = netip.MustParseAddr("192.0.2.77")
	pfMACs     = [2]net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}}
)

// pfTables builds a snapshot; localOutside makes 65002's prefixes local
// (the other snapshot of the swap test).
func pfTables(t testing.TB, localOutside bool) *engine.Tables {
	t.Helper()
	b := engine.NewPrefixTableBuilder()
	add := func(p string, m int) {
		if err := b.Add(netip.MustParsePrefix(p), m); err != nil {
			t.Fatal(err)
		}
	}
	add("198.51.100.0/24", 0)
	add("2001:db8:1::/48", 0)
	add("203.0.113.0/24", 1)
	add("2001:db8:2::/48", 1)
	add("100.64.0.0/16", 2)
	add("2001:db8:3::/48", 2)
	add("10.0.0.0/8", 3)
	add("203.0.113.128/25", 0)
	add("203.0.113.64/26", 9)
	peers := []engine.PeerKeys{{ASN: 65002}, {ASN: 65003}}
	for e := pfEpoch - 1; e <= pfEpoch+3; e++ {
		peers[0].SetKey(e, pfKey65002)
	}
	members := []engine.Member{
		{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1},
		{ASN: 65002, TagPeer: 0, ValidatePeer: 0},
		{ASN: 65003, TagPeer: 1, ValidatePeer: 1},
		{ASN: 65004, TagPeer: -1, ValidatePeer: -1},
	}
	if localOutside {
		members[1].Local = true
	}
	return &engine.Tables{Version: 1, T0: 0, Period: 60, Prefixes: b.Table(), Members: members, Peers: peers}
}

// pfEngine is the reference: port 0 "outside" (EGRESS) cross-connected to
// port 1 "inside" (INGRESS).
func pfEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "outside", Role: engine.RoleEgress, Peer: 1},
		{Name: "inside", Role: engine.RoleIngress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// engineVerdict returns the reason the engine drops frame for, or -1.
func engineVerdict(pr *engine.Processor, t *engine.Tables, frame []byte) int {
	return engineVerdictAt(pr, t, frame, pfNow)
}

// engineVerdictAt is engineVerdict at unix time now.
func engineVerdictAt(pr *engine.Processor, t *engine.Tables, frame []byte, now int64) int {
	var before [32]uint64
	for i := range pr.Counters.Drops {
		before[i] = pr.Counters.Drops[i].Load()
	}
	buf := append(make([]byte, 0, len(frame)+64), frame...)
	b := &ports.Batch{Pkts: []ports.Packet{{Buf: buf, Off: 0, Len: len(frame)}}}
	pr.Process(b, t, now)
	if b.Pkts[0].Out != ports.Drop {
		return -1
	}
	for i := range pr.Counters.Drops {
		if pr.Counters.Drops[i].Load() != before[i] {
			return i
		}
	}
	return -2
}

// pfRig is the XDP program with its pre-filter, no socket, fail-open: the
// program returns XDP_DROP only for a pre-filter drop.
type pfRig struct {
	coll *ebpf.Collection
	prog *ebpf.Program
	pf   *Prefilter
}

func newPFRig(t testing.TB, tb *engine.Tables) *pfRig {
	t.Helper()
	if r := Supported(); r != "" {
		t.Skip(r)
	}
	coll, err := ebpf.NewCollection(collectionSpec(1))
	if err != nil {
		t.Skipf("XDP program with LPM trie does not load here: %v", err)
	}
	t.Cleanup(func() { coll.Close() })
	r := &pfRig{coll: coll, prog: coll.Programs[ProgramName],
		pf: newPrefilter(coll, Options{CrossConnect: true, FailOpen: true}.configFlags())}
	if err := r.pf.Configure(PrefilterOptions{Enabled: true, Validate: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.pf.Sync(tb, pfNow); err != nil {
		t.Fatal(err)
	}
	if _, err := r.prog.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Skipf("BPF_PROG_TEST_RUN unavailable: %v", err)
	}
	return r
}

// verdict runs frame through the program: the pre-filter's reason, -1 when
// it let the frame through.
func (r *pfRig) verdict(t testing.TB, frame []byte) int {
	before, err := r.pf.Drops()
	if err != nil {
		t.Fatal(err)
	}
	code, err := r.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if code != xdpDrop {
		return -1
	}
	after, err := r.pf.Drops()
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range PrefilterReasons() {
		if after[re] != before[re] {
			return int(re)
		}
	}
	return -2
}

func reasonName(r int) string {
	if r < 0 {
		return "pass"
	}
	return engine.Reason(r).String()
}

type pfCase struct {
	name  string
	frame []byte
	xdp   int // expected pre-filter verdict
}

func udp(t testing.TB, src, dst netip.Addr) []byte {
	t.Helper()
	size := gen.FrameSize
	if src.Is6() {
		size = 80
	}
	f, err := gen.UDPFrame{SrcMAC: pfMACs[0], DstMAC: pfMACs[1], Src: src, Dst: dst, SrcPort: 40000, DstPort: 9, Size: size}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tagged(t testing.TB, f []byte, key engine.Key, epoch int64, bits uint8) []byte {
	t.Helper()
	out, err := psavref.TagFrame(f, key, uint64(epoch), bits)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pfCases are the hand-made frames with the pre-filter's expected verdict
// (the engine's is computed).
func pfCases(t testing.TB) []pfCase {
	const (
		pass  = -1
		local = int(engine.DropSpoofedLocal)
		notag = int(engine.DropNoTag)
		stale = int(engine.DropStaleEpoch)
	)
	keyBad := engine.Key{0xff}
	var cs []pfCase
	for _, fam := range []struct {
		name           string
		in, out, unkey netip.Addr
		bits           uint8
	}{
		{"v4", gen.InsideV4, gen.OutsideV4, pfUnkeyed4, 24},
		{"v6", gen.InsideV6, gen.OutsideV6, pfUnkeyed6, 48},
	} {
		n := func(s string) string { return fam.name + "-" + s }
		legit := udp(t, fam.out, fam.in)
		cs = append(cs,
			pfCase{n("legit-tagged"), tagged(t, legit, pfKey65002, pfEpoch, fam.bits), pass},
			pfCase{n("legit-tagged-e-1"), tagged(t, legit, pfKey65002, pfEpoch-1, fam.bits), pass},
			pfCase{n("legit-tagged-e+1"), tagged(t, legit, pfKey65002, pfEpoch+1, fam.bits), pass},
			pfCase{n("tagged-e+2"), tagged(t, legit, pfKey65002, pfEpoch+2, fam.bits), pass}, // widened by one: the engine's
			pfCase{n("tagged-e-2"), tagged(t, legit, pfKey65002, pfEpoch-2, fam.bits), pass},
			pfCase{n("stale-e+3"), tagged(t, legit, pfKey65002, pfEpoch+3, fam.bits), stale},
			pfCase{n("stale-e-3"), tagged(t, legit, pfKey65002, pfEpoch-3, fam.bits), stale},
			pfCase{n("stale-e+128"), tagged(t, legit, pfKey65002, pfEpoch+128, fam.bits), stale},
			pfCase{n("bad-tag"), tagged(t, legit, keyBad, pfEpoch, fam.bits), pass},
			pfCase{n("untagged-member"), legit, notag},
			pfCase{n("spoofed-local"), udp(t, fam.in, fam.in), local},
			pfCase{n("spoofed-local-tagged"), tagged(t, udp(t, fam.in, fam.out), pfKey65002, pfEpoch, fam.bits), local},
			pfCase{n("unkeyed-member"), udp(t, fam.unkey, fam.in), pass},
			pfCase{n("unkeyed-member-stale"), tagged(t, udp(t, fam.unkey, fam.in), pfKey65002, pfEpoch+9, fam.bits), pass},
		)
		// Bad TagLen/AI: the engine's bad-tag, not the pre-filter's.
		ai := tagged(t, legit, pfKey65002, pfEpoch+9, fam.bits)
		if fam.in.Is4() {
			ai[lenEth+22] = 0x72
			fixIPv4Checksum(ai)
		} else {
			ai[endIP6+4] = 0x72
		}
		cs = append(cs, pfCase{n("bad-ai-stale"), ai, pass})
		// Truncated: the frame ends before what the length fields say.
		tr := tagged(t, legit, pfKey65002, pfEpoch+9, fam.bits)
		cs = append(cs, pfCase{n("truncated"), tr[:len(tr)-3], pass})
		sl := udp(t, fam.in, fam.out)
		cs = append(cs, pfCase{n("truncated-local"), sl[:len(sl)-1], pass})
	}
	// IPv4 specifics.
	badck := udp(t, gen.InsideV4, gen.OutsideV4)
	badck[lenEth+10] ^= 0x55
	cs = append(cs,
		pfCase{"v4-bad-checksum-local", badck, pass},
		pfCase{"v4-more-specific-local", udp(t, pfLocalIn, gen.InsideV4), local},
		pfCase{"v4-bad-member-index", udp(t, pfBadIdx, gen.InsideV4), pass},
		pfCase{"v4-no-peer", udp(t, pfNoPeer4, gen.InsideV4), pass},
		pfCase{"v4-non-member", udp(t, pfNobody4, gen.InsideV4), pass},
		pfCase{"v4-local-to-multicast", udp(t, gen.InsideV4, netip.MustParseAddr("224.0.0.9")), pass},
		pfCase{"v6-member-other-addr", udp(t, pfOutside2, gen.InsideV6), notag},
		pfCase{"v6-local-to-multicast", udp(t, gen.InsideV6, netip.MustParseAddr("ff02::9")), pass},
	)
	return cs
}

func fixIPv4Checksum(f []byte) {
	h := f[lenEth : lenEth+int(f[lenEth]&0xf)*4]
	h[10], h[11] = 0, 0
	var s uint32
	for i := 0; i < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(s))
}

// TestPrefilterMatchesEngine (issue 18, must-show 4): the same frames through
// the XDP pre-filter (BPF_PROG_TEST_RUN) and through the engine on the same
// snapshot: every pre-filter drop is an engine drop with the same reason,
// and the pre-filter drops what it is meant to.
func TestPrefilterMatchesEngine(t *testing.T) {
	tb := pfTables(t, false)
	r := newPFRig(t, tb)
	pr := pfEngine(t).NewProcessor(0)
	for _, c := range pfCases(t) {
		x := r.verdict(t, c.frame)
		e := engineVerdict(pr, tb, c.frame)
		if x >= 0 && x != e {
			t.Errorf("%s: pre-filter drops %s, engine says %s", c.name, reasonName(x), reasonName(e))
		}
		if x != c.xdp {
			t.Errorf("%s: pre-filter %s, want %s (engine %s)", c.name, reasonName(x), reasonName(c.xdp), reasonName(e))
		}
		t.Logf("%-28s xdp %-14s engine %s", c.name, reasonName(x), reasonName(e))
	}
	// Off, the pre-filter drops nothing; without Validate only spoofed-local.
	if err := r.pf.Configure(PrefilterOptions{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range pfCases(t) {
		if x := r.verdict(t, c.frame); x >= 0 && x != int(engine.DropSpoofedLocal) {
			t.Errorf("without validate: %s dropped %s", c.name, reasonName(x))
		}
	}
	if err := r.pf.Configure(PrefilterOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range pfCases(t) {
		if x := r.verdict(t, c.frame); x >= 0 {
			t.Errorf("disabled: %s dropped %s", c.name, reasonName(x))
		}
	}
}

// TestPrefilterSample: with sampling, one drop in pfSampleEvery goes to
// the socket (the engine captures it) and is not counted by the pre-filter.
func TestPrefilterSample(t *testing.T) {
	tb := pfTables(t, false)
	r := newPFRig(t, tb)
	if err := r.pf.Configure(PrefilterOptions{Enabled: true, Validate: true, Sample: true}); err != nil {
		t.Fatal(err)
	}
	f := udp(t, gen.InsideV4, gen.OutsideV4)
	res, err := r.prog.Run(&ebpf.RunOptions{Data: f, Repeat: 2 * pfSampleEvery})
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.pf.Drops()
	if err != nil {
		t.Fatal(err)
	}
	if got := d[engine.DropSpoofedLocal]; got != 2*pfSampleEvery-2 {
		t.Errorf("counted %d drops of %d, want all but 2 (result of the last run %d)", got, 2*pfSampleEvery, res)
	}
}

// pfFuzzSeeds are the seed corpus: every hand-made case.
func pfFuzzSeeds(t testing.TB) [][]byte {
	var s [][]byte
	for _, c := range pfCases(t) {
		s = append(s, c.frame)
	}
	return s
}

// FuzzPrefilterMatchesEngine: mutated frames through both; a pre-filter drop
// must be the engine's drop for the same reason.
func FuzzPrefilterMatchesEngine(f *testing.F) {
	for _, s := range pfFuzzSeeds(f) {
		f.Add(s)
	}
	tb := pfTables(f, false)
	r := newPFRig(f, tb)
	pr := pfEngine(f).NewProcessor(0)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < lenEth || len(frame) > 1500 {
			return // BPF_PROG_TEST_RUN wants an Ethernet header; the program passes runts anyway
		}
		x := r.verdict(t, frame)
		if x < 0 {
			return
		}
		if e := engineVerdict(pr, tb, frame); e != x {
			t.Fatalf("pre-filter drops %s, engine says %s: %x", reasonName(x), reasonName(e), frame)
		}
	})
}

// TestPrefilterFuzzedFrames runs many random mutations of the seeds in
// plain `go test` (the fuzz target runs only its seeds there).
func TestPrefilterFuzzedFrames(t *testing.T) {
	tb := pfTables(t, false)
	r := newPFRig(t, tb)
	pr := pfEngine(t).NewProcessor(0)
	seeds := pfFuzzSeeds(t)
	rng := rand.New(rand.NewPCG(18, 4))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	drops := 0
	for i := 0; i < n; i++ {
		f := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
		for k := rng.IntN(4); k >= 0; k-- {
			switch rng.IntN(3) {
			case 0:
				f[lenEth+rng.IntN(len(f)-lenEth)] = byte(rng.Uint32())
			case 1:
				f = f[:lenEth+rng.IntN(len(f)-lenEth)+1]
			case 2:
				f[lenEth+rng.IntN(min(len(f)-lenEth, 60))] ^= 1 << rng.IntN(8)
			}
		}
		if rng.IntN(2) == 0 && f[12] == 0x08 && len(f) >= lenEth+20 && int(f[lenEth]&0xf)*4+lenEth <= len(f) && f[lenEth]&0xf >= 5 {
			fixIPv4Checksum(f) // keep many IPv4 mutations well formed
		}
		x := r.verdict(t, f)
		if x < 0 {
			continue
		}
		drops++
		if e := engineVerdict(pr, tb, f); e != x {
			t.Fatalf("frame %d: pre-filter drops %s, engine says %s: %x", i, reasonName(x), reasonName(e), f)
		}
	}
	t.Logf("%d mutated frames, %d dropped by the pre-filter, all agreed by the engine", n, drops)
}

// TestPrefilterSwapUnderFlood (must-show 4): while one goroutine floods the
// program (BPF_PROG_TEST_RUN) with every case, another swaps between two
// snapshots (65002's prefixes a keyed member, then local) and moves the
// epoch; every pre-filter drop must be what the engine on one of the
// snapshots in use around it, at one of those epochs, says.
func TestPrefilterSwapUnderFlood(t *testing.T) {
	a, b := pfTables(t, false), pfTables(t, true)
	r := newPFRig(t, a)
	pr := pfEngine(t).NewProcessor(0)
	cases := pfCases(t)
	// What the engine says for each case under each (snapshot, time) the
	// swapper installs: a and b now, a one epoch later.
	steps := []struct {
		tb  *engine.Tables
		now int64
	}{{a, pfNow}, {b, pfNow}, {a, pfNow + 60}, {b, pfNow}}
	allowed := make([]map[int]bool, len(cases))
	for i, c := range cases {
		allowed[i] = map[int]bool{}
		for _, st := range steps {
			allowed[i][engineVerdictAt(pr, st.tb, c.frame, st.now)] = true
		}
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			st := steps[i%len(steps)]
			if err := r.pf.Sync(st.tb, st.now); err != nil {
				done <- err
				return
			}
			swaps.Add(1)
		}
		done <- nil
	}()
	// Only this goroutine runs the program, so the counters' change across
	// one run is that run's reason.
	runs, bad, dropped := 0, 0, 0
	for round := 0; round < 200 || swaps.Load() < 50; round++ {
		for i, c := range cases {
			x := r.verdict(t, c.frame)
			runs++
			if x < 0 {
				continue
			}
			dropped++
			if !allowed[i][x] {
				bad++
				t.Errorf("%s dropped %s; the engine says %v under the snapshots in use", c.name, reasonName(x), allowed[i])
			}
		}
		if round > 20000 {
			break
		}
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Reasons: after the flood, each snapshot's generation judged alone.
	for _, tb := range []*engine.Tables{a, b} {
		if err := r.pf.Sync(tb, pfNow); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if x := r.verdict(t, c.frame); x >= 0 {
				if e := engineVerdict(pr, tb, c.frame); e != x {
					t.Errorf("%s: pre-filter %s, engine %s", c.name, reasonName(x), reasonName(e))
				}
			}
		}
	}
	t.Logf("%d runs (%d dropped by the pre-filter) across %d snapshot swaps, %d misjudged", runs, dropped, swaps.Load(), bad)
}

// BenchmarkPrefilter measures the XDP program per packet on one core
// (BPF_PROG_TEST_RUN, repeat 1M: the kernel's timing of the program alone,
// without driver or redirect): a forged frame of each reason dropped by the
// pre-filter, and a legitimate tagged frame that it hands on; the baseline,
// in the same run, is the program with the pre-filter off. Reported as
// kernel ns per packet and Mpps.
func BenchmarkPrefilter(b *testing.B) {
	tb := pfTables(b, false)
	r := newPFRig(b, tb)
	legit := udp(b, gen.OutsideV4, gen.InsideV4)
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"baseline-off-legit-tagged-v4", tagged(b, legit, pfKey65002, pfEpoch, 24)},
		{"baseline-off-legit-tagged-v6", tagged(b, udp(b, gen.OutsideV6, gen.InsideV6), pfKey65002, pfEpoch, 48)},
		{"spoofed-local-v4", udp(b, gen.InsideV4, gen.OutsideV4)},
		{"no-tag-v4", legit},
		{"stale-epoch-v4", tagged(b, legit, pfKey65002, pfEpoch+128, 24)},
		{"legit-tagged-v4", tagged(b, legit, pfKey65002, pfEpoch, 24)},
		{"spoofed-local-v6", udp(b, gen.InsideV6, gen.OutsideV6)},
		{"no-tag-v6", udp(b, gen.OutsideV6, gen.InsideV6)},
		{"stale-epoch-v6", tagged(b, udp(b, gen.OutsideV6, gen.InsideV6), pfKey65002, pfEpoch+128, 48)},
		{"legit-tagged-v6", tagged(b, udp(b, gen.OutsideV6, gen.InsideV6), pfKey65002, pfEpoch, 48)},
	} {
		b.Run(c.name, func(b *testing.B) {
			if err := r.pf.Configure(PrefilterOptions{Enabled: !strings.HasPrefix(c.name, "baseline-off"), Validate: true}); err != nil {
				b.Fatal(err)
			}
			const repeat = 1 << 20
			var total float64
			for i := 0; i < b.N; i++ {
				_, d, err := r.prog.Benchmark(c.frame, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(d.Nanoseconds())
			}
			ns := total / float64(b.N)
			b.ReportMetric(ns, "kernel-ns/pkt")
			b.ReportMetric(1e3/ns, "Mpps/core")
		})
	}
}

// TestPrefilterDeadline: past the deadline Sync wrote (the syncer stopped
// for an epoch), the epoch-dependent drops stop; spoofed-local, which needs
// no clock, goes on.
func TestPrefilterDeadline(t *testing.T) {
	tb := pfTables(t, false)
	r := newPFRig(t, tb)
	untagged := udp(t, gen.OutsideV4, gen.InsideV4)
	stale := tagged(t, untagged, pfKey65002, pfEpoch+128, 24)
	local := udp(t, gen.InsideV4, gen.OutsideV4)
	if r.verdict(t, untagged) != int(engine.DropNoTag) || r.verdict(t, stale) != int(engine.DropStaleEpoch) {
		t.Fatal("before the deadline: no-tag and stale-epoch not dropped")
	}
	if err := r.coll.Maps[mapPFDead].Put(uint32(0), uint64(1)); err != nil {
		t.Fatal(err)
	}
	if x := r.verdict(t, untagged); x != -1 {
		t.Errorf("past the deadline: untagged member %s", reasonName(x))
	}
	if x := r.verdict(t, stale); x != -1 {
		t.Errorf("past the deadline: stale tag %s", reasonName(x))
	}
	if x := r.verdict(t, local); x != int(engine.DropSpoofedLocal) {
		t.Errorf("past the deadline: spoofed-local %s", reasonName(x))
	}
	// The next epoch's Sync writes a new deadline.
	if err := r.pf.Sync(tb, pfNow+60); err != nil {
		t.Fatal(err)
	}
	if x := r.verdict(t, untagged); x != int(engine.DropNoTag) {
		t.Errorf("after a new Sync: untagged member %s", reasonName(x))
	}
}
