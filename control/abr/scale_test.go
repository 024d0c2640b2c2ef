package abr

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// The ABR's side of engine/scale_test.go: an ACS pushes a snapshot of
// 1,000,000 prefixes over 75,000 member ASes and 1,000 peers; the ABR
// unmarshals it and Convert validates it and builds the engine's tables.
// docs/scale.md has the numbers.
//
//	go test ./control/abr -run XXX -bench Scale -benchmem

const (
	scaleMembers = 75000
	scaleBig     = 1_000_000
	scalePeers   = 1000
)

// The same mix as engine/scale_test.go: IPv4 mostly /24 over /8–/24, IPv6
// mostly /48 and /32 over /19–/48; 90 % IPv4.
var (
	scaleV4Lens = [][2]int{{24, 560}, {23, 90}, {22, 110}, {21, 50}, {20, 50}, {19, 35}, {18, 20}, {17, 15}, {16, 40},
		{15, 4}, {14, 4}, {13, 4}, {12, 4}, {11, 4}, {10, 4}, {9, 4}, {8, 2}}
	scaleV6Lens = [][2]int{{48, 450}, {32, 250}, {44, 60}, {40, 60}, {36, 40}, {29, 60}, {46, 20}, {47, 10},
		{34, 10}, {35, 10}, {28, 10}, {24, 5}, {22, 5}, {20, 5}, {19, 5}}
	scaleReserved = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
)

func pickLen(r *rand.Rand, ls [][2]int) int {
	n := r.IntN(1000)
	for _, l := range ls {
		if n < l[1] {
			return l[0]
		}
		n -= l[1]
	}
	return ls[0][0]
}

// scaleSnapshot is the vectors' snapshot for AS 65001 (snapshot()) grown
// to n more distinct prefixes, deterministic, spread (skewed) over
// scaleMembers more members, and scalePeers−1 more peers with 4 keys each.
func scaleSnapshot(tb testing.TB, n int) *acspb.Tables {
	m := snapshot(tb, 1, 65001, vecNow)
	r := rand.New(rand.NewPCG(20261121, 0x9e3779b97f4a7c15))
	base := len(m.Members)
	for g := 0; g < scaleMembers; g++ {
		m.Members = append(m.Members, &acspb.Member{Asn: 100000 + uint32(g), TagPeer: -1, ValidatePeer: -1})
	}
	seen := make(map[netip.Prefix]struct{}, n)
	for len(seen) < n {
		var p netip.Prefix
		if r.IntN(10) < 9 {
			v := r.Uint32()
			a := [4]byte{byte(1 + r.IntN(223)), byte(v >> 16), byte(v >> 8), byte(v)}
			p = netip.PrefixFrom(netip.AddrFrom4(a), pickLen(r, scaleV4Lens)).Masked()
		} else {
			var a [16]byte
			for i := 0; i < 16; i += 8 {
				v := r.Uint64()
				for j := 0; j < 8; j++ {
					a[i+j] = byte(v >> (8 * j))
				}
			}
			a[0] = 0x20 | a[0]&0x1f
			p = netip.PrefixFrom(netip.AddrFrom16(a), pickLen(r, scaleV6Lens)).Masked()
		}
		if _, dup := seen[p]; dup {
			continue
		}
		overlaps := false
		for _, q := range scaleReserved {
			overlaps = overlaps || p.Overlaps(q)
		}
		if overlaps {
			continue
		}
		seen[p] = struct{}{}
		u := r.Float64()
		mm := m.Members[base+int(float64(scaleMembers)*u*u)]
		mm.Prefixes = append(mm.Prefixes, &acspb.Prefix{Addr: p.Addr().AsSlice(), Bits: uint32(p.Bits())})
	}
	e := engine.Epoch(vecNow, 0, vecPeriod)
	for i := 1; i < scalePeers; i++ {
		p := &acspb.PeerKeys{Asn: 200000 + uint32(i)}
		for ep := e - 1; ep <= e+2; ep++ {
			k := make([]byte, KeyLen)
			k[0], k[1], k[2] = byte(i), byte(i>>8), byte(ep)
			p.Keys = append(p.Keys, &acspb.EpochKey{Epoch: ep, Key: k})
		}
		m.Peers = append(m.Peers, p)
	}
	return m
}

var (
	scaleOnce sync.Once
	scaleMsg  *acspb.Tables
	scaleWire []byte
)

func scaleBigSnapshot(tb testing.TB) (*acspb.Tables, []byte) {
	scaleOnce.Do(func() {
		scaleMsg = scaleSnapshot(tb, scaleBig)
		var err error
		if scaleWire, err = proto.Marshal(scaleMsg); err != nil {
			tb.Fatal(err)
		}
	})
	return scaleMsg, scaleWire
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkScaleConvert: one op is one 1M-prefix snapshot received by an
// ABR. "unmarshal" is proto.Unmarshal of the pushed message (wire-MB is its
// size); "convert" is Convert (validation, member and peer tables, the
// bart.Fast AS-Prefix table). heap-MB is what the result keeps live (heap
// after GC, after − before); B/op is everything allocated on the way.
func BenchmarkScaleConvert(b *testing.B) {
	msg, wire := scaleBigSnapshot(b)
	b.Run("unmarshal", func(b *testing.B) {
		var got *acspb.Tables
		var heap uint64
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			got = nil
			before := heapAlloc()
			b.StartTimer()
			got = new(acspb.Tables)
			if err := proto.Unmarshal(wire, got); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			heap = heapAlloc() - before
			b.StartTimer()
		}
		b.StopTimer()
		if len(got.GetMembers()) != len(msg.GetMembers()) {
			b.Fatal("members lost")
		}
		b.ReportMetric(float64(len(wire))/1e6, "wire-MB")
		b.ReportMetric(float64(heap)/1e6, "heap-MB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/snapshot")
	})
	b.Run("convert", func(b *testing.B) {
		var t *engine.Tables
		var heap uint64
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			t = nil
			before := heapAlloc()
			b.StartTimer()
			var err error
			if t, err = Convert(msg); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			heap = heapAlloc() - before
			b.StartTimer()
		}
		b.StopTimer()
		if t.Prefixes.Size() != scaleBig+4 || len(t.Peers) != scalePeers || len(t.Members) != scaleMembers+2 {
			b.Fatalf("converted %d prefixes, %d peers, %d members", t.Prefixes.Size(), len(t.Peers), len(t.Members))
		}
		if v, ok := t.Prefixes.Lookup(netip.MustParseAddr("203.0.113.200")); !ok || v>>8 != 1 {
			b.Fatal("vector prefix lost")
		}
		b.ReportMetric(float64(heap)/1e6, "heap-MB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/snapshot")
	})
}

// TestScaleConvert keeps the generator and Convert at scale honest in
// regular runs, at 20,000 prefixes.
func TestScaleConvert(t *testing.T) {
	m := scaleSnapshot(t, 20_000)
	tb, err := Convert(m)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Prefixes.Size() != 20_000+4 || len(tb.Members) != scaleMembers+2 || len(tb.Peers) != scalePeers {
		t.Fatalf("converted %d prefixes, %d members, %d peers", tb.Prefixes.Size(), len(tb.Members), len(tb.Peers))
	}
	for addr, member := range map[string]uint32{"198.51.100.7": 0, "2001:db8:1::5": 0, "203.0.113.200": 1, "2001:db8:2:ffff::1": 1} {
		if v, ok := tb.Prefixes.Lookup(netip.MustParseAddr(addr)); !ok || v>>8 != member {
			t.Errorf("%s → %x %v, want member %d", addr, v, ok, member)
		}
	}
}

// BenchmarkFeedEpochABR is the ABR's side of the split feed at the same
// scale (docs/scale.md): "assemble" takes one whole 1M-prefix membership
// in chunks and its first FeedKeys (once per membership change: the
// counterpart of BenchmarkScaleConvert, which the whole-table feed paid at
// every epoch); "epoch" is one epoch boundary afterwards: a FeedKeys with
// one new key for each of the 1,000 peers, merged, and the new snapshot
// built (the prefix table and members shared).
func BenchmarkFeedEpochABR(b *testing.B) {
	msg, _ := scaleBigSnapshot(b)
	msgs := feedMessages(msg, 0)
	wire := 0
	for _, m := range msgs {
		wire += proto.Size(m)
	}
	b.Run("assemble", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			f := newFeedState(65001)
			if t, errs := run(f, vecNow, msgs...); errs != nil || t == nil || t.Prefixes.Size() != scaleBig+4 {
				b.Fatal(errs)
			}
		}
		b.ReportMetric(float64(len(msgs)-1), "chunks")
		b.ReportMetric(float64(wire)/1e6, "wire-MB")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/membership")
	})
	b.Run("epoch", func(b *testing.B) {
		f := newFeedState(65001)
		first, errs := run(f, vecNow, msgs...)
		if errs != nil {
			b.Fatal(errs)
		}
		e := engine.Epoch(vecNow, 0, vecPeriod)
		var size int
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			k := &acspb.FeedKeys{Version: uint64(2 + i), MembershipVersion: msg.Version}
			for _, p := range msg.Peers {
				key := make([]byte, KeyLen)
				key[0], key[1] = byte(i), byte(p.Asn)
				k.Peers = append(k.Peers, &acspb.PeerKeys{Asn: p.Asn, Keys: []*acspb.EpochKey{{Epoch: e + 3 + int64(i), Key: key}}})
			}
			m := &acspb.FeedMessage{Body: &acspb.FeedMessage_Keys{Keys: k}}
			size += proto.Size(m)
			b.StartTimer()
			t, errs := run(f, vecNow+int64(i+1)*vecPeriod, m)
			if errs != nil || t == nil || t.Prefixes != first.Prefixes || len(t.Peers) != scalePeers {
				b.Fatalf("%v: %d peers", errs, len(t.Peers))
			}
		}
		b.ReportMetric(float64(size)/float64(b.N), "feed-B/epoch")
	})
}
