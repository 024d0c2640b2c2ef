package acs

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/engine"
)

// The feed at scale (issue 13, must-shows 5 and 6; docs/scale.md has the
// numbers): a membership of 1,000,000 prefixes reaches an ABR over the real
// feed and is in force, after which the feed carries keys only; and the
// ACS's cost of one epoch for 1,000 peers, against the whole-table feed it
// replaces.

// scalePrefix is the i-th prefix of the scale membership: nine in ten an
// IPv4 /24 from 11.0.0.0 up (clear of the lab's own 10/8 records), the
// tenth an IPv6 /48 under 2a00::/16; all distinct.
func scalePrefix(i int) netip.Prefix {
	if i%10 == 9 {
		j := i / 10
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x2a, 0x00, byte(j >> 16), byte(j >> 8), byte(j), 0}), 48)
	}
	j := uint32(i-i/10) + 11<<16 // /24 number
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(j >> 16), byte(j >> 8), byte(j), 0}), 24)
}

// scaleASN is the member holding prefix i: records of
// membership.MaxPrefixes prefixes each, both families mixed.
func scaleASN(i int) uint32 { return 4200000000 + uint32(i/membership.MaxPrefixes) }

// scaleRecords are the join records of n prefixes (scalePrefix), signed and
// endorsed as the lab's, over ⌈n / MaxPrefixes⌉ members. Their ACS address
// is unspecified (0.0.0.0:7443), which no ACS dials: a thousand members
// with an address each would have both ACS dial a thousand peers that do
// not exist (lab.record reserves a listener per member), which is not
// what is measured here.
func scaleRecords(tb testing.TB, l *lab, n int) [][]byte {
	tb.Helper()
	var out [][]byte
	for first := 0; first < n; first += membership.MaxPrefixes {
		asn := scaleASN(first)
		as, err := membership.NewEd25519SignerFromSeed(bytes.Repeat([]byte{byte(asn), byte(asn >> 8)}, 16))
		if err != nil {
			tb.Fatal(err)
		}
		r := membership.Record{Kind: membership.KindJoin, ASN: asn, Version: 1, Key: as.Public(),
			ACS: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:7443")}}
		for i := first; i < min(n, first+membership.MaxPrefixes); i++ {
			r.Prefixes = append(r.Prefixes, scalePrefix(i))
		}
		r.Canonicalize()
		if err := r.Sign(as); err != nil {
			tb.Fatal(err)
		}
		if err := r.Endorse(l.comm); err != nil {
			tb.Fatal(err)
		}
		b, err := r.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// scalePolicy lets community 0 hold the scale membership.
func scalePolicy(t testing.TB, l *lab, prefixes int) {
	t.Helper()
	if err := l.policy.SetQuotas(map[uint32]membership.Quota{0: {MaxMembers: prefixes/membership.MaxPrefixes + 100, MaxPrefixes: prefixes + 100}}); err != nil {
		t.Fatal(err)
	}
}

// countingConn counts the octets read from the ACS: the feed's cost on the
// wire, TLS and HTTP/2 framing and heartbeats included.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Read(b []byte) (int, error) {
	k, err := c.Conn.Read(b)
	c.n.Add(uint64(k))
	return k, err
}

// TestFeedMillionPrefixes (issue 13, must-show 5): AS65001's ACS holds a
// membership of 1,000,000 prefixes (90 % IPv4 /24, 10 % IPv6 /48) over 979
// members and a live pair with AS65002; its ABR, a real abr.Client over
// loopback mutual TLS, receives it in chunks well under the receive limit
// and puts it in force: sampled addresses find their AS in the engine's
// tables. Then, over several epochs (P = 2 s here), the feed carries only
// FeedKeys: no membership chunk, the same prefix table, and the octets per
// epoch are logged (docs/scale.md). The whole-table feed sent every
// prefix at every epoch and could not pass. -short: 50,000 prefixes.
func TestFeedMillionPrefixes(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 50_000
	}
	const period = 2
	l := newLab(t)
	scalePolicy(t, l, n)
	inMemory := func(c *Config) { c.MembershipDir = ""; c.Period = period }
	l.addr(65001)
	l.addr(65002)
	a := l.start(65001, []uint32{65001, 65002}, inMemory)
	b := l.start(65002, []uint32{65001, 65002}, inMemory)
	waitFor(t, "pair up", func() bool { return isUp(a, 65002) && isUp(b, 65001) })

	start := time.Now()
	for _, rec := range scaleRecords(t, l, n) {
		if _, err := a.Publish(rec); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d prefixes in %d records applied at the ACS in %s", n, len(a.Membership().Records()), time.Since(start).Round(time.Millisecond))

	cert, err := l.ca.IssueABR(65001, "edge-1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Spec{Ports: []engine.PortSpec{{Name: "inside", Role: engine.RoleIngress, Peer: 1}, {Name: "outside", Role: engine.RoleEgress, Peer: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	var wire atomic.Uint64
	c, err := abr.New(abr.Config{
		Addr: l.addrs[65001], Name: "edge-1", Engine: eng, Log: zap.NewNop(),
		Identity: pair.Identity{ASN: 65001, Role: pki.RoleABR, Cert: cert, CA: l.ca.Pool()},
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: conn, n: &wire}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	start = time.Now()
	total := n + 2 // and the two ASes' own /24s
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if tb := eng.Tables(); tb.Prefixes != nil && tb.Prefixes.Size() == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ABR holds %d prefixes after 10 minutes, want %d (chunks %d, refused %d)", eng.Tables().Prefixes.Size(), total,
				c.Counters.MembershipChunks.Load(), c.Counters.Refused.Load())
		}
	}
	k := &c.Counters
	if k.Refused.Load() != 0 {
		t.Fatalf("%d updates refused", k.Refused.Load())
	}
	t.Logf("membership in force at the ABR %s after it dialled: %d chunks, %d octets encoded, %d octets read on the wire",
		time.Since(start).Round(time.Millisecond), k.MembershipChunks.Load(), k.MembershipBytes.Load(), wire.Load())
	if k.MembershipChunks.Load() < uint64(n/200_000) || k.MembershipBytes.Load()/k.MembershipChunks.Load() > acspb.FeedChunkBytes {
		t.Fatalf("%d chunks of %d octets in all: not cut at %d", k.MembershipChunks.Load(), k.MembershipBytes.Load(), acspb.FeedChunkBytes)
	}

	// In force: sampled prefixes find their AS, and the pair's keys tag.
	tb := eng.Tables()
	for i := 0; i < n; i += 997 {
		p := scalePrefix(i)
		v, ok := tb.Prefixes.Lookup(p.Addr().Next())
		if !ok || int(v>>8) >= len(tb.Members) || tb.Members[v>>8].ASN != scaleASN(i) || int(v&0xff) != p.Bits() {
			t.Fatalf("%s: %x %v, want AS%d", p, v, ok, scaleASN(i))
		}
	}
	now := time.Now().Unix()
	var peer *engine.PeerKeys
	for i := range tb.Peers {
		if tb.Peers[i].ASN == 65002 {
			peer = &tb.Peers[i]
		}
	}
	if peer == nil {
		t.Fatal("no keys of AS65002")
	}
	if _, _, ok := peer.Key(engine.Epoch(now, 0, period)); !ok {
		t.Fatal("no key for the current epoch")
	}

	// Epochs pass: FeedKeys only.
	chunks, memVersion, prefixTable := k.MembershipChunks.Load(), c.MembershipVersion(), tb.Prefixes
	keys0, keyBytes0, wire0, e0 := k.KeysMessages.Load(), k.KeysBytes.Load(), wire.Load(), engine.Epoch(time.Now().Unix(), 0, period)
	const epochs = 3
	waitFor(t, "three epochs", func() bool { return engine.Epoch(time.Now().Unix(), 0, period) >= e0+epochs+1 })
	keys, keyBytes, wireBytes, e1 := k.KeysMessages.Load()-keys0, k.KeysBytes.Load()-keyBytes0, wire.Load()-wire0, engine.Epoch(time.Now().Unix(), 0, period)
	if keys < epochs {
		t.Fatalf("%d FeedKeys over %d epochs", keys, e1-e0)
	}
	if got := k.MembershipChunks.Load(); got != chunks || c.MembershipVersion() != memVersion || eng.Tables().Prefixes != prefixTable {
		t.Fatalf("membership sent again: %d chunks after %d, version %d after %d", got, chunks, c.MembershipVersion(), memVersion)
	}
	perEpoch := float64(wireBytes) / float64(e1-e0)
	t.Logf("per epoch with %d prefixes and 1 peer: %d FeedKeys of %.0f octets encoded; %.0f octets on the wire (TLS, HTTP/2, %d heartbeats a second included) against %d for the membership",
		n, keys, float64(keyBytes)/float64(keys), perEpoch, time.Second/l.hb, k.MembershipBytes.Load())
	if keyBytes/keys > 256 {
		t.Fatalf("FeedKeys of %d octets for one peer", keyBytes/keys)
	}
	if perEpoch*1000 > float64(k.MembershipBytes.Load()) && !testing.Short() {
		t.Fatalf("%.0f octets per epoch on the wire: more than 1/1000 of the membership", perEpoch)
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFeedEpoch1000Peers (issue 13, must-show 6): one op is one epoch
// boundary at an ACS with 1,000 live pairs (key_lead 10) and a membership
// of scaleBenchPrefixes prefixes, fed to one ABR. "split" is this feed,
// what a stream does at an epoch boundary (FeedCursor.Next: the
// membership part checked, the keys of every pair, the FeedKeys of what
// the stream has not sent, encoded); "whole" is the feed it replaces: the whole Tables
// every epoch, encoded. feed-B/epoch is what goes on the feed (protobuf,
// before TLS), cpu-ns/epoch the process's CPU time (getrusage: GC
// included). Ratios in docs/scale.md.
//
//	flock /tmp/psavd-netns.lock go test ./control/acs -run XXX -bench FeedEpoch -benchtime 20x
func BenchmarkFeedEpoch1000Peers(b *testing.B) {
	const peers = 1000
	l := newLab(b)
	scalePolicy(b, l, scaleBenchPrefixes)
	n, err := New(Config{ASN: 65001, Identity: l.identity(l.ca, 65001), T0: 0, Period: testPeriod, KeyLead: 10,
		MembershipPolicy: l.policy, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range scaleRecords(b, l, scaleBenchPrefixes) {
		if _, err := n.set.ApplyBytes(rec); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().Unix()
	e := uint64(engine.Epoch(now, 0, testPeriod))
	for i := range peers {
		asn := uint32(64512 + i)
		var s0 engine.State
		s0[0], s0[1] = byte(i), byte(i>>8)
		n.peers[asn] = &peerState{asn: asn, machine: pair.NewMachine(65001, asn, pair.Proposal{T0: 0, Period: testPeriod, E0: e - 2}, s0)}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	mem := n.feedMembership()
	memHeap := float64(heap()-before) / 1e6
	b.Logf("membership: %d members, %d prefixes, %d chunks, %.0f MB held", mem.members, mem.prefixes, len(mem.chunks), memHeap)

	// The clock only moves forward, across runs of the sub-benchmarks too:
	// a machine asked for a later time has erased the earlier states.
	at := now
	epoch := func(b *testing.B, step func(at time.Time) int) {
		// The stream's first epoch (every key of every pair) is not an
		// epoch's cost: sent once per stream.
		first := step(time.Unix(at, 0))
		var bytes int
		cpu := cpuTime()
		b.ResetTimer()
		for range b.N {
			at += testPeriod
			bytes += step(time.Unix(at, 0))
		}
		b.StopTimer()
		b.ReportMetric(float64(bytes)/float64(b.N), "feed-B/epoch")
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/epoch")
		b.ReportMetric(float64(first), "first-B")
		b.ReportMetric(memHeap, "membership-heap-MB")
	}
	b.Run("split", func(b *testing.B) {
		cur := n.NewFeedCursor()
		cur.memSent = mem.version // the stream has sent the membership
		epoch(b, func(at time.Time) int {
			n.mu.Lock()
			n.bump() // the epoch boundary, as deadLoop does
			n.mu.Unlock()
			size := 0
			msgs := cur.Next(at)
			for _, m := range msgs {
				if m.GetKeys() == nil {
					b.Fatal("membership sent again")
				}
				enc, err := proto.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				size += len(enc)
			}
			if len(msgs) != 1 {
				b.Fatalf("%d messages", len(msgs))
			}
			return size
		})
	})
	b.Run("whole", func(b *testing.B) {
		epoch(b, func(at time.Time) int {
			enc, err := proto.Marshal(n.Tables(at))
			if err != nil {
				b.Fatal(err)
			}
			return len(enc)
		})
	})
}

// scaleBenchPrefixes is the benchmark's membership: the million prefixes
// of docs/scale.md.
const scaleBenchPrefixes = 1_000_000
