package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/mem"
)

// The pipeline benchmarks run what a poll loop runs for each batch — receive
// from a mem port (frames copied into the port's buffers, as DMA would),
// process, transmit to a discarding mem port, release — and report ns/pkt.
// "noop" skips the engine (every frame to the peer port, unparsed): it is the
// baseline the others are read against, measured in the same run.

const benchBatch = 64

func benchPipeline(b *testing.B, e *Engine, in int, noop bool, frames ...[]byte) {
	src := mem.New("in", benchBatch)
	src.Loop(frames...)
	dst := mem.New("out", benchBatch)
	dst.Discard = true
	outs := make([]ports.Port, len(e.spec.Ports))
	outs[e.spec.Ports[in].Peer] = dst
	l := &Loop{In: in, Port: src, Out: outs}
	pr := e.NewProcessor(in)
	batch := ports.NewBatch(benchBatch)
	fwd := make([][]ports.Packet, len(outs))
	for i := range fwd {
		fwd[i] = make([]ports.Packet, 0, benchBatch)
	}
	o := &RunOptions{}
	t := e.Tables()
	peer := int16(e.spec.Ports[in].Peer)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src.Receive(batch, 0)
		if noop {
			for j := range batch.Pkts {
				batch.Pkts[j].Out = peer
			}
		} else {
			pr.Process(batch, t, vecNow)
		}
		pr.forward(batch, l, fwd, o)
		src.Release(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
	if !noop {
		var d uint64
		for _, r := range Reasons() {
			d += pr.Counters.Drops[r].Load()
		}
		if d != 0 {
			b.Fatalf("benchmark traffic was dropped: %v", drops(pr))
		}
	}
}

func BenchmarkPipeline(b *testing.B) {
	v4 := mustHex(b, v4In)
	v4Other := append([]byte(nil), v4...)
	copy(v4Other[30:34], []byte{192, 0, 2, 10}) // destination not a member: forwarded untagged
	header.IPv4(v4Other[14:]).UpdateChecksum()
	v6 := mustHex(b, v6In)
	v6Other := append([]byte(nil), v6...)
	v6Other[14+24+5] = 0x99 // 2001:db8:99:: is not a member
	// The replace scenario: AS 65002 as a community border (see TestReplaceAtCommunityBorder).
	border, borderIn := replaceEngine(b)

	cases := []struct {
		name  string
		e     *Engine
		in    int
		frame []byte
		noop  bool
	}{
		{"noop/ipv4", abr(b, 65001, vecNow), 0, v4, true},
		{"passthrough/ipv4", abr(b, 65001, vecNow), 0, v4Other, false},
		{"tag-add/ipv4", abr(b, 65001, vecNow), 0, v4, false},
		{"validate-strip/ipv4", abr(b, 65002, vecNow), 1, mustHex(b, v4Out), false},
		{"replace/ipv4", border, 0, borderIn, false},
		{"noop/ipv6", abr(b, 65001, vecNow), 0, v6, true},
		{"passthrough/ipv6", abr(b, 65001, vecNow), 0, v6Other, false},
		{"tag-add/ipv6", abr(b, 65001, vecNow), 0, v6, false},
		{"validate-strip/ipv6", abr(b, 65002, vecNow), 1, mustHex(b, v6Out), false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchPipeline(b, c.e, c.in, c.noop, c.frame) })
	}
}

// replaceEngine is the community-border ABR of TestReplaceAtCommunityBorder
// and a frame it replaces the tag of.
func replaceEngine(tb testing.TB) (*Engine, []byte) {
	e, err := New(Spec{Ports: []PortSpec{{Name: "west", Role: RoleEgress, Peer: 1}, {Name: "east", Role: RoleEgress, Peer: 0}}})
	if err != nil {
		tb.Fatal(err)
	}
	t := testTables(tb, 65002, vecNow)
	b := NewPrefixTableBuilder()
	for p, m := range map[string]int{"198.51.100.0/24": 0, "203.0.113.0/24": 1, "192.0.2.0/24": 2} {
		_ = b.Add(netip.MustParsePrefix(p), m)
	}
	t.Prefixes = b.Table()
	t.Members = append(t.Members, Member{ASN: 65003, TagPeer: 1, ValidatePeer: 1})
	var other PeerKeys
	var k Key
	k[0] = 42
	for ep := int64(vecEpoch - 1); ep <= vecEpoch+2; ep++ {
		other.SetKey(ep, k)
	}
	t.Peers = append(t.Peers, other)
	t.Replace = map[uint64]ReplaceEntry{ReplaceKey(0, 2): {In: 0, Out: 1}}
	e.Publish(t)
	in := mustHex(tb, v4Out)
	copy(in[30:34], []byte{192, 0, 2, 10})
	header.IPv4(in[14:]).UpdateChecksum()
	var p parsed
	p.parse(in)
	k0, k1, _ := t.Peers[0].Key(vecEpoch)
	writeOptData(in[p.optOff+2:], ComputeTag(k0, k1, &p.src, &p.dst, p.firstOctet, 24), byte(vecEpoch%256), 24)
	header.IPv4(in[14:]).UpdateChecksum()
	return e, in
}

func BenchmarkComputeTag(b *testing.B) {
	var src, dst [16]byte
	var sum uint64
	for i := 0; i < b.N; i++ {
		src[15] = byte(i)
		sum += ComputeTag(1, 2, &src, &dst, 17, 24)
	}
	_ = sum
}

// TestPipelineAllocs keeps the hot path allocation-free outside benchmarks
// too, so a regression fails make test, not only a benchmark reading.
func TestPipelineAllocs(t *testing.T) {
	for _, c := range []struct {
		local uint32
		in    int
		frame string
	}{{65001, 0, v4In}, {65001, 0, v6HbhIn}, {65002, 1, v4OptOut}, {65002, 1, v6DoOut}} {
		e := abr(t, c.local, vecNow)
		pr := e.NewProcessor(c.in)
		frame := mustHex(t, c.frame)
		batch := ports.NewBatch(1)
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		tb := e.Tables()
		allocs := testing.AllocsPerRun(100, func() {
			n := copy(buf[ports.Headroom:], frame)
			batch.Pkts = append(batch.Pkts[:0], ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
			pr.Process(batch, tb, vecNow)
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per packet", c.frame[:20], allocs)
		}
		if batch.Pkts[0].Out == ports.Drop {
			t.Errorf("dropped: %v", drops(pr))
		}
	}
}

// BenchmarkPipelineManyFlows is BenchmarkPipeline with every frame of a
// different flow (4,096 frames, IPv6 with random interface identifiers on
// both sides, IPv4 with random host octets in the /24s), so that the
// Processor's look-up memo (the last source and destination) almost never
// holds the next packet's addresses: the cost of traffic without flow
// locality, in the same run as its noop baseline. The validating cases take the frames the tagging
// ABR produced.
func BenchmarkPipelineManyFlows(b *testing.B) {
	const flows = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	tagger, validator := abr(b, 65001, vecNow), abr(b, 65002, vecNow)
	mk := func(base string, vary func(f []byte)) (in, tagged [][]byte) {
		for range flows {
			f := mustHex(b, base)
			vary(f)
			in = append(in, f)
			out, _ := run(b, tagger, 0, f, vecNow)
			if out == nil {
				b.Fatal("the tagging ABR dropped a flow")
			}
			tagged = append(tagged, out)
		}
		return in, tagged
	}
	v4, v4Tagged := mk(v4In, func(f []byte) {
		f[29], f[33] = byte(rng.Uint32()), byte(rng.Uint32())
		header.IPv4(f[14:]).UpdateChecksum()
	})
	v6, v6Tagged := mk(v6In, func(f []byte) {
		binary.BigEndian.PutUint64(f[30:], rng.Uint64())
		binary.BigEndian.PutUint64(f[46:], rng.Uint64())
	})
	for _, c := range []struct {
		name   string
		e      *Engine
		in     int
		frames [][]byte
		noop   bool
	}{
		{"noop/ipv4", tagger, 0, v4, true}, {"tag-add/ipv4", tagger, 0, v4, false}, {"validate-strip/ipv4", validator, 1, v4Tagged, false},
		{"noop/ipv6", tagger, 0, v6, true}, {"tag-add/ipv6", tagger, 0, v6, false}, {"validate-strip/ipv6", validator, 1, v6Tagged, false},
	} {
		b.Run(c.name, func(b *testing.B) { benchPipeline(b, c.e, c.in, c.noop, c.frames...) })
	}
}
