package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// Scale: the cost of what the control plane does at every epoch boundary for
// 1,000 peers, of building and publishing an AS-Prefix table of 1,000,000
// prefixes, of looking up in it, and a test that packets are judged right
// while snapshots are swapped under them. docs/scale.md has the numbers.
//
//	go test ./engine -run XXX -bench Scale -benchmem
//	go test ./engine -run TestScalePublish -race -v

const (
	scaleMembers = 75000     // member ASes the generated prefixes are spread over
	scaleBig     = 1_000_000 // prefixes in the benchmarks
	scalePeers   = 1000      // PSAV neighbours (state machines)
	scaleSeed    = 20261121
)

// scaleReserved are the vectors' prefixes (and the documentation ranges the
// tests use as non-members): no generated prefix overlaps them, so the
// vectors' verdicts do not depend on the generated table.
var scaleReserved = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// scalePrefix is a generated prefix and its generated member (0 … scaleMembers−1).
type scalePrefix struct {
	p netip.Prefix
	m int
}

type lenWeight struct{ bits, w int }

// A mix shaped like the global routing table: IPv4 mostly /24 with the rest
// spread over /8–/23, IPv6 mostly /48 and /32 with the rest over /19–/47.
var (
	scaleV4Lens = []lenWeight{{24, 560}, {23, 90}, {22, 110}, {21, 50}, {20, 50}, {19, 35}, {18, 20}, {17, 15}, {16, 40},
		{15, 4}, {14, 4}, {13, 4}, {12, 4}, {11, 4}, {10, 4}, {9, 4}, {8, 2}}
	scaleV6Lens = []lenWeight{{48, 450}, {32, 250}, {44, 60}, {40, 60}, {36, 40}, {29, 60}, {46, 20}, {47, 10},
		{34, 10}, {35, 10}, {28, 10}, {24, 5}, {22, 5}, {20, 5}, {19, 5}}
)

func pickLen(r *rand.Rand, ls []lenWeight) int {
	n := r.IntN(1000)
	for _, l := range ls {
		if n < l.w {
			return l.bits
		}
		n -= l.w
	}
	return ls[0].bits
}

// genPrefixes returns n distinct prefixes, 90 % IPv4 and 10 % IPv6, from a
// fixed seed (the same n and seed give the same prefixes), none overlapping
// scaleReserved. Members are skewed: low member numbers hold many prefixes,
// most hold a few.
func genPrefixes(n int, seed uint64) []scalePrefix {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	seen := make(map[netip.Prefix]struct{}, n)
	out := make([]scalePrefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		if r.IntN(10) < 9 {
			var a [4]byte
			v := r.Uint32()
			a[0], a[1], a[2], a[3] = byte(1+r.IntN(223)), byte(v>>16), byte(v>>8), byte(v)
			p = netip.PrefixFrom(netip.AddrFrom4(a), pickLen(r, scaleV4Lens)).Masked()
		} else {
			var a [16]byte
			for i := 0; i < 16; i += 8 {
				v := r.Uint64()
				for j := 0; j < 8; j++ {
					a[i+j] = byte(v >> (8 * j))
				}
			}
			a[0] = 0x20 | a[0]&0x1f // 2000::/3
			p = netip.PrefixFrom(netip.AddrFrom16(a), pickLen(r, scaleV6Lens)).Masked()
		}
		if _, dup := seen[p]; dup || scaleOverlapsReserved(p) {
			continue
		}
		seen[p] = struct{}{}
		u := r.Float64()
		out = append(out, scalePrefix{p: p, m: int(float64(scaleMembers) * u * u)})
	}
	return out
}

func scaleOverlapsReserved(p netip.Prefix) bool {
	for _, q := range scaleReserved {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

var (
	bigOnce     sync.Once
	bigPrefixes []scalePrefix
)

// scaleBigPrefixes is the 1M-prefix set, generated once per test binary.
func scaleBigPrefixes() []scalePrefix {
	bigOnce.Do(func() { bigPrefixes = genPrefixes(scaleBig, scaleSeed) })
	return bigPrefixes
}

// memberIndex places generated member g around the two vector members,
// which sit at off (AS 65001) and off+1 (AS 65002).
func memberIndex(g, off int) int {
	if g < off {
		return g
	}
	return g + 2
}

// scalePrefixTable builds the AS-Prefix table of the vectors' two ASes (at
// member indices off, off+1) plus ps, as the control plane does.
func scalePrefixTable(tb testing.TB, ps []scalePrefix, off int) *bart.Fast[uint32] {
	b := NewPrefixTableBuilder()
	for _, e := range []struct {
		p string
		m int
	}{{"198.51.100.0/24", off}, {"2001:db8:1::/48", off}, {"203.0.113.0/24", off + 1}, {"2001:db8:2::/48", off + 1}} {
		if err := b.Add(netip.MustParsePrefix(e.p), e.m); err != nil {
			tb.Fatal(err)
		}
	}
	for _, e := range ps {
		if err := b.Add(e.p, memberIndex(e.m, off)); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Table()
}

// scaleSnapshot is the snapshot of AS local's ABR over a prefix table made
// by scalePrefixTable(…, off): scaleMembers+2 members and nPeers peers, the
// vectors' peer at index peer with its real keys for e−1 … e+2 around now,
// the others with keys of their own. Members and Peers are new slices; the
// prefix table is shared, as static.Schedule.At shares it.
func scaleSnapshot(tb testing.TB, prefixes *bart.Fast[uint32], off, peer, nPeers int, local uint32, now int64, version uint64) *Tables {
	t := &Tables{Version: version, T0: 0, Period: vecPeriod, Prefixes: prefixes,
		Members: make([]Member, scaleMembers+2), Peers: make([]PeerKeys, nPeers)}
	for g := 0; g < scaleMembers; g++ {
		t.Members[memberIndex(g, off)] = Member{ASN: 100000 + uint32(g), TagPeer: -1, ValidatePeer: -1}
	}
	t.Members[off] = Member{ASN: 65001, Local: local == 65001, TagPeer: -1, ValidatePeer: -1}
	t.Members[off+1] = Member{ASN: 65002, Local: local == 65002, TagPeer: -1, ValidatePeer: -1}
	remote, rm := uint32(65002), off+1
	if local == 65002 {
		remote, rm = 65001, off
	}
	t.Members[rm].TagPeer, t.Members[rm].ValidatePeer = int32(peer), int32(peer)
	e := Epoch(now, 0, vecPeriod)
	for i := range t.Peers {
		t.Peers[i].ASN = 200000 + uint32(i)
		for ep := e - 1; ep <= e+2; ep++ {
			var k Key
			k[0], k[1], k[2] = byte(i), byte(i>>8), byte(ep)
			t.Peers[i].SetKey(ep, k)
		}
	}
	t.Peers[peer].ASN = remote
	keys, ok := NewStateMachine(vecE0, vecState()).Window(uint64(e-1), KeyWindow)
	if !ok {
		tb.Fatal("window")
	}
	for i, k := range keys {
		t.Peers[peer].SetKey(e-1+int64(i), k)
	}
	return t
}

// heapAlloc is the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// --- 1. Key derivation per epoch -----------------------------------------

func scaleMachines(n int, e0 uint64) []*StateMachine {
	ms := make([]*StateMachine, n)
	for i := range ms {
		s := vecState()
		s[0], s[1] = byte(i), byte(i>>8)
		ms[i] = NewStateMachine(e0, s)
	}
	return ms
}

// BenchmarkScaleKeys: one op is one epoch boundary for 1,000 peers.
//
//   - window: what static.Schedule.At (and an ACS building an ABR's
//     snapshot) does — advance each machine to e−1 and derive K(e−1) … K(e+2)
//     into a fresh []PeerKeys (one state step plus KeyWindow keys and
//     KeyWindow transient steps per peer);
//   - step: the minimum — advance each machine one epoch and derive its one
//     new key.
//
// catch-up/N is one machine started at e0 and asked for the window at
// e0+N (a node that comes up N epochs after e0, or after an outage: N state
// steps first). One day at P = 60 s is N = 1440.
func BenchmarkScaleKeys(b *testing.B) {
	b.Run(fmt.Sprintf("window/%d-peers", scalePeers), func(b *testing.B) {
		ms := scaleMachines(scalePeers, vecE0)
		e := uint64(vecE0)
		var sink *PeerKeys
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e++
			peers := make([]PeerKeys, len(ms))
			for j, m := range ms {
				keys, ok := m.Window(e-1, KeyWindow)
				if !ok {
					b.Fatal("window")
				}
				for k, key := range keys {
					peers[j].SetKey(int64(e-1)+int64(k), key)
				}
			}
			sink = &peers[0]
		}
		b.StopTimer()
		_ = sink
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/epoch")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scalePeers), "ns/peer")
	})
	b.Run(fmt.Sprintf("step/%d-peers", scalePeers), func(b *testing.B) {
		ms := scaleMachines(scalePeers, vecE0)
		e := uint64(vecE0)
		peers := make([]PeerKeys, len(ms))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e++
			for j, m := range ms {
				k, ok := m.Key(e)
				if !ok {
					b.Fatal("key")
				}
				peers[j].SetKey(int64(e), k)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/epoch")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scalePeers), "ns/peer")
	})
	for _, n := range []int{1, 60, 1440, 10080} {
		b.Run(fmt.Sprintf("catch-up/%d-epochs", n), func(b *testing.B) {
			s := vecState()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				m := NewStateMachine(vecE0, s)
				if _, ok := m.Window(uint64(vecE0+n), KeyWindow); !ok {
					b.Fatal("window")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/step")
		})
	}
}

// --- 2. The AS-Prefix table at 1,000,000 prefixes --------------------------

// BenchmarkScalePrefixBuild builds the 1M-prefix AS-Prefix table with
// NewPrefixTableBuilder (bart.Fast, what the engine uses) and, for
// comparison, the same inserts into a bart.Table. heap-MB is what the built
// table keeps live (heap after GC, after − before); B/op is everything
// allocated while building.
func BenchmarkScalePrefixBuild(b *testing.B) {
	ps := scaleBigPrefixes()
	b.Run("fast", func(b *testing.B) {
		var t *bart.Fast[uint32]
		var heap uint64
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			t = nil
			before := heapAlloc()
			b.StartTimer()
			t = scalePrefixTable(b, ps, 0)
			b.StopTimer()
			heap = heapAlloc() - before
			b.StartTimer()
		}
		b.StopTimer()
		if t.Size() != len(ps)+4 {
			b.Fatalf("size %d, want %d", t.Size(), len(ps)+4)
		}
		b.ReportMetric(float64(heap)/1e6, "heap-MB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/build")
		b.ReportMetric(float64(heap)/float64(len(ps)), "heap-B/prefix")
	})
	b.Run("table", func(b *testing.B) {
		var t *bart.Table[uint32]
		var heap uint64
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			t = nil
			before := heapAlloc()
			b.StartTimer()
			t = scaleBartTable(b, ps)
			b.StopTimer()
			heap = heapAlloc() - before
			b.StartTimer()
		}
		b.StopTimer()
		if t.Size() != len(ps) {
			b.Fatalf("size %d, want %d", t.Size(), len(ps))
		}
		b.ReportMetric(float64(heap)/1e6, "heap-MB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/build")
		b.ReportMetric(float64(heap)/float64(len(ps)), "heap-B/prefix")
	})
}

// scaleBartTable does what PrefixTableBuilder.Add does, into a bart.Table.
func scaleBartTable(tb testing.TB, ps []scalePrefix) *bart.Table[uint32] {
	t := new(bart.Table[uint32])
	for _, e := range ps {
		m := memberIndex(e.m, 0)
		if v, ok := t.Get(e.p); ok && int(v>>8) != m {
			tb.Fatalf("prefix %s belongs to two members", e.p)
		}
		t.Insert(e.p, uint32(m)<<8|uint32(e.p.Bits()))
	}
	return t
}

var (
	bigTablesOnce sync.Once
	bigFast       *bart.Fast[uint32]
	bigTable      *bart.Table[uint32]
)

func scaleBigTables(tb testing.TB) (*bart.Fast[uint32], *bart.Table[uint32]) {
	bigTablesOnce.Do(func() {
		ps := scaleBigPrefixes()
		bigFast = scalePrefixTable(tb, ps, 0)
		bigTable = scaleBartTable(tb, ps)
	})
	return bigFast, bigTable
}

// scaleAddrs returns 64Ki 16-octet addresses (IPv4 mapped): inside the
// generated prefixes (hit) or uniformly random (in 1/8–223/8 or 2000::/3).
func scaleAddrs(ps []scalePrefix, v6, hit bool) [][16]byte {
	r := rand.New(rand.NewPCG(7, 11))
	out := make([][16]byte, 0, 1<<16)
	for len(out) < 1<<16 {
		var a [16]byte
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		if hit {
			p := ps[r.IntN(len(ps))].p
			if p.Addr().Is6() != v6 {
				continue
			}
			// Random host bits under the prefix.
			pa := p.Addr().As16() // IPv4: IPv4-mapped
			bits := p.Bits()
			if !v6 {
				bits += 96
			}
			for i := range a {
				switch {
				case (i+1)*8 <= bits:
					a[i] = pa[i]
				case i*8 < bits:
					mask := byte(0xff << (8 - (bits - i*8)))
					a[i] = pa[i]&mask | a[i]&^mask
				}
			}
		} else if v6 {
			a[0] = 0x20 | a[0]&0x1f
		} else {
			a = netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), a[1], a[2], a[3]}).As16()
		}
		out = append(out, a)
	}
	return out
}

// BenchmarkScaleLookup is one AS-Prefix look-up (Tables.lookup, what the
// packet path does twice per packet) in the 1M-prefix table, over 64Ki
// different addresses so that caches see a realistic spread; "table" is
// the same look-up in a bart.Table for comparison.
func BenchmarkScaleLookup(b *testing.B) {
	ps := scaleBigPrefixes()
	fast, table := scaleBigTables(b)
	t := &Tables{Prefixes: fast, Members: make([]Member, scaleMembers+2)}
	for _, c := range []struct {
		name    string
		v6, hit bool
	}{{"hit-v4", false, true}, {"hit-v6", true, true}, {"random-v4", false, false}, {"random-v6", true, false}} {
		addrs := scaleAddrs(ps, c.v6, c.hit)
		b.Run("fast/"+c.name, func(b *testing.B) {
			found := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if m, _ := t.lookup(&addrs[i&(1<<16-1)]); m >= 0 {
					found++
				}
			}
			b.StopTimer()
			if c.hit && found != b.N {
				b.Fatalf("%d of %d hit", found, b.N)
			}
			b.ReportMetric(float64(found)/float64(b.N), "hit-ratio")
		})
		b.Run("table/"+c.name, func(b *testing.B) {
			found := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, ok := table.Lookup(addrFrom16(&addrs[i&(1<<16-1)]))
				if ok && int(v>>8) < len(t.Members) {
					found++
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(found)/float64(b.N), "hit-ratio")
		})
	}
}

// BenchmarkScalePipeline is BenchmarkPipeline's tag-add and validate-strip
// with the 1M-prefix table and 1,000 peers instead of the vectors' four
// prefixes and one peer (the same frames: their look-ups stay in cache, so
// this shows the cost of the deeper trie, not of cache misses — see
// BenchmarkScaleLookup for those).
func BenchmarkScalePipeline(b *testing.B) {
	fast, _ := scaleBigTables(b)
	eng := func(local uint32) *Engine {
		e := abr(b, local, vecNow)
		e.Publish(scaleSnapshot(b, fast, 0, 17, scalePeers, local, vecNow, 1))
		return e
	}
	tagger, validator := eng(65001), eng(65002)
	for _, c := range []struct {
		name  string
		e     *Engine
		in    int
		frame string
	}{{"tag-add/ipv4", tagger, 0, v4In}, {"validate-strip/ipv4", validator, 1, v4Out},
		{"tag-add/ipv6", tagger, 0, v6In}, {"validate-strip/ipv6", validator, 1, v6Out}} {
		b.Run(c.name, func(b *testing.B) { benchPipeline(b, c.e, c.in, false, mustHex(b, c.frame)) })
	}
}

// --- 3. No packet lost or misclassified while snapshots are published ------

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return true
			}
		}
	}
	return false
}

type scaleCase struct {
	in, want []byte // want nil: dropped
	reason   Reason // the drop's reason
}

// TestScalePublishNoMisclassification runs two poll-loop-like goroutines —
// AS 65001's ABR tagging on the way out, AS 65002's validating and
// stripping on the way in — each processing batches back to back and
// loading the current snapshot for every batch as Engine.poll does, while a
// publisher goroutine keeps publishing new snapshots to both: new Version,
// new Members and Peers slices, the vectors' members and peer at other
// indices in every variant, prefix tables rebuilt with churn (prefixes
// withdrawn and added elsewhere) or shared between snapshots. Every packet
// of every batch must come out octet for octet as the vectors say.
func TestScalePublishNoMisclassification(t *testing.T) {
	n, publishes := 200_000, 120
	switch {
	case raceEnabled():
		n, publishes = 20_000, 60
	case testing.Short():
		n, publishes = 20_000, 60
	}
	base := genPrefixes(n, scaleSeed)
	// A generated destination whose member has no peer: forwarded untagged.
	// Churn withdraws only prefixes at odd positions; base[0] stays, and its
	// address stays in some generated member whatever is added.
	genDst := base[0].p.Addr()

	// Each variant: member offset and vector peer index, and a prefix table.
	type variant struct {
		off, peer int
		prefixes  *bart.Fast[uint32]
	}
	churn := func(round int) []scalePrefix {
		r := rand.New(rand.NewPCG(uint64(round), 3))
		out := make([]scalePrefix, 0, len(base))
		for i, e := range base {
			if i%2 == 1 && r.IntN(100) < 2 {
				continue // withdrawn this round
			}
			out = append(out, e)
		}
		seen := make(map[netip.Prefix]bool, len(out))
		for _, e := range out {
			seen[e.p] = true
		}
		for _, e := range genPrefixes(len(base)/100, uint64(round)+1000) {
			if !seen[e.p] {
				out = append(out, e)
			}
		}
		return out
	}
	mkVariant := func(round int) variant {
		off := (round * 7919) % scaleMembers
		return variant{off: off, peer: (round * 31) % scalePeers, prefixes: scalePrefixTable(t, churn(round), off)}
	}
	variants := []variant{mkVariant(0), mkVariant(1)}

	tagger, validator := abr(t, 65001, vecNow), abr(t, 65002, vecNow)
	var version uint64
	publish := func(v variant) {
		version++
		// Alternate the key window: built for now (e−1 … e+2), or a snapshot
		// built an epoch earlier (e−2 … e+1); both hold K(e).
		now := int64(vecNow)
		if version%2 == 0 {
			now -= vecPeriod
		}
		tagger.Publish(scaleSnapshot(t, v.prefixes, v.off, v.peer, scalePeers, 65001, now, version))
		validator.Publish(scaleSnapshot(t, v.prefixes, v.off, v.peer, scalePeers, 65002, now, version))
	}
	publish(variants[0])

	// Packets under test and the verdicts the vectors give.
	other := mustHex(t, v4In)
	copy(other[30:34], []byte{192, 0, 2, 10}) // not a member: untagged
	header.IPv4(other[14:]).UpdateChecksum()
	toGen := mustHex(t, v6In)
	if genDst.Is4() {
		toGen = mustHex(t, v4In)
		a := genDst.As4()
		copy(toGen[30:34], a[:])
		header.IPv4(toGen[14:]).UpdateChecksum()
	} else {
		a := genDst.As16()
		copy(toGen[38:54], a[:])
	}
	badTag := mustHex(t, v4Out)
	badTag[40] ^= 1 // a tag bit (the header checksum made right again)
	header.IPv4(badTag[14:]).UpdateChecksum()
	tagCases := []scaleCase{
		{mustHex(t, v4In), mustHex(t, v4Out), 0},
		{mustHex(t, v4OptIn), mustHex(t, v4OptOut), 0},
		{mustHex(t, v6In), mustHex(t, v6Out), 0},
		{mustHex(t, v6HbhIn), mustHex(t, v6HbhOut), 0},
		{mustHex(t, v6DoIn), mustHex(t, v6DoOut), 0},
		{other, other, 0},
		{toGen, toGen, 0},
	}
	validateCases := []scaleCase{
		{mustHex(t, v4Out), mustHex(t, v4In), 0},
		{mustHex(t, v4OptOut), mustHex(t, v4OptIn), 0},
		{mustHex(t, v6Out), mustHex(t, v6In), 0},
		{mustHex(t, v6HbhOut), mustHex(t, v6HbhIn), 0},
		{mustHex(t, v6DoOut), mustHex(t, v6DoIn), 0},
		{badTag, nil, DropBadTag},
		{mustHex(t, v4In), nil, DropNoTag}, // untagged from outside, from a member
	}

	var stop atomic.Bool
	type loopResult struct {
		batches, packets, wrong uint64
		versions                map[uint64]bool
		first                   string
	}
	var batches [2]atomic.Uint64
	loop := func(idx int, e *Engine, in int, cases []scaleCase, res *loopResult) {
		pr := e.NewProcessor(in)
		const size = 64
		b := ports.NewBatch(size)
		bufs := make([][]byte, size)
		for i := range bufs {
			bufs[i] = make([]byte, ports.Headroom+ports.MaxFrame)
		}
		res.versions = map[uint64]bool{}
		peer := int16(e.spec.Ports[in].Peer)
		for k := 0; !stop.Load(); k++ {
			b.Pkts = b.Pkts[:0]
			for i := 0; i < size; i++ {
				c := &cases[(k*size+i)%len(cases)]
				n := copy(bufs[i][ports.Headroom:], c.in)
				b.Pkts = append(b.Pkts, ports.Packet{Buf: bufs[i], Off: ports.Headroom, Len: n})
			}
			tb := e.Tables() // once per batch, as Engine.poll
			res.versions[tb.Version] = true
			pr.Process(b, tb, vecNow)
			for i := range b.Pkts {
				c := &cases[(k*size+i)%len(cases)]
				p := &b.Pkts[i]
				ok := true
				var why string
				switch {
				case c.want == nil && p.Out != ports.Drop:
					ok, why = false, "forwarded, want dropped"
				case c.want != nil && p.Out != peer:
					ok, why = false, fmt.Sprintf("out %d, want %d", p.Out, peer)
				case c.want != nil && !bytes.Equal(p.Frame(), c.want):
					ok, why = false, fmt.Sprintf("frame\n got %x\nwant %x", p.Frame(), c.want)
				}
				res.packets++
				if !ok {
					res.wrong++
					if res.first == "" {
						res.first = fmt.Sprintf("snapshot %d, case %d: %s", tb.Version, (k*size+i)%len(cases), why)
					}
				}
			}
			res.batches++
			batches[idx].Add(1)
		}
		// The drops are exactly the cases that should drop, for their reason.
		var want [numReasons]uint64
		for k := 0; k < int(res.batches); k++ {
			for i := 0; i < size; i++ {
				if c := &cases[(k*size+i)%len(cases)]; c.want == nil {
					want[c.reason]++
				}
			}
		}
		for _, r := range Reasons() {
			if got := pr.Counters.Drops[r].Load(); got != want[r] {
				res.wrong++
				if res.first == "" {
					res.first = fmt.Sprintf("drops[%v] = %d, want %d", r, got, want[r])
				}
			}
		}
	}

	var wg sync.WaitGroup
	var results [2]loopResult
	wg.Add(2)
	go func() { defer wg.Done(); loop(0, tagger, 0, tagCases, &results[0]) }()
	go func() { defer wg.Done(); loop(1, validator, 1, validateCases, &results[1]) }()

	// The publisher: every snapshot is seen by at least one batch of each
	// loop before the next (it waits for both loops to move on), so every
	// swap happens under traffic. Every 10th publish builds a new prefix
	// table with fresh churn while the loops run; the others reuse one.
	waitBatches := func() {
		w0, w1 := batches[0].Load()+2, batches[1].Load()+2
		for batches[0].Load() < w0 || batches[1].Load() < w1 {
			runtime.Gosched()
		}
	}
	waitBatches() // snapshot 1 seen by both
	for i := 1; i <= publishes; i++ {
		v := variants[i%len(variants)]
		if i%10 == 0 {
			v = mkVariant(i)
			variants[i%len(variants)] = v
		}
		publish(v)
		waitBatches()
	}
	stop.Store(true)
	wg.Wait()

	for i, name := range []string{"tagging (AS 65001)", "validating (AS 65002)"} {
		r := &results[i]
		t.Logf("%s: %d batches, %d packets, %d snapshots seen of %d published, %d prefixes", name, r.batches, r.packets, len(r.versions), version, n)
		if r.wrong > 0 {
			t.Errorf("%s: %d packets misjudged; first: %s", name, r.wrong, r.first)
		}
		if len(r.versions) != int(version) {
			t.Errorf("%s saw %d snapshots of %d", name, len(r.versions), version)
		}
	}
}
