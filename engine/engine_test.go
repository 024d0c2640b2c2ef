package engine

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// Vectors from engine/testdata/vectors.py, an independent implementation of
// docs/wire.md §2.3–2.5 (reference SipHash-2-4, Python's HMAC, packets assembled
// field by field). S(e0) = 00 01 … 1f, e0 = 29000000, packets tagged in
// epoch e0+5 by AS 65001 for AS 65002.
const (
	vecE0     = 29000000
	vecEpoch  = vecE0 + 5
	vecKeyE5  = "7fd7fd395e6324237a09864232e2b831"
	vecKeyE0  = "3a961b7e8b9cf6199e1b69bb275b9fbb"
	v4In      = "020000000002020000000001080045000025123400004011024cc633640acb00710a1092003500110000707361762074657374"
	v4Out     = "020000000002020000000001080049000035123400004011496cc633640acb00710a9e0e7100c6abe194f26dc4f8451801011092003500110000707361762074657374"
	v4OptIn   = "0200000000020200000000010800460000241234000040016d58c633640acb00710a940400000800192d0001000170696e67"
	v4OptOut  = "02000000000202000000000108004a000034123400004001c041c633640acb00710a940400009e0e710028910f27c806541f451801010800192d0001000170696e67"
	v6In      = "02000000000202000000000186dd600000000011114020010db800010000000000000000001020010db80002000000000000000000101092003500110000707361762074657374"
	v6Out     = "02000000000202000000000186dd6000000000213c4020010db800010000000000000000001020010db800020000000000000000001011013b0c7100e50148a618b4dfcc45301092003500110000707361762074657374"
	v6HbhIn   = "02000000000202000000000186dd600000000019004020010db800010000000000000000001020010db800020000000000000000001011000502000001001092003500110000707361762074657374"
	v6HbhOut  = "02000000000202000000000186dd600000000029004020010db800010000000000000000001020010db80002000000000000000000103c0005020000010011013b0c7100e50148a618b4dfcc45301092003500110000707361762074657374"
	v6DoIn    = "02000000000202000000000186dd6000000000193c4020010db800010000000000000000001020010db800020000000000000000001011000104000000001092003500110000707361762074657374"
	v6DoOut   = "02000000000202000000000186dd6000000000293c4020010db800010000000000000000001020010db8000200000000000000000010110201040000000001003b0c7100e50148a618b4dfcc45301092003500110000707361762074657374"
	vecPeriod = 60
)

// vecNow is a time inside epoch vecEpoch (T0 = 0, P = 60).
const vecNow = vecEpoch*vecPeriod + 30

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vecState() State {
	var s State
	for i := range s {
		s[i] = byte(i)
	}
	return s
}

// testTables builds the tables of the ABR of AS local in the two-AS alliance
// of the vectors (65001: 198.51.100.0/24, 2001:db8:1::/48; 65002:
// 203.0.113.0/24, 2001:db8:2::/48), with keys for e−1 … e+2 around now.
func testTables(t testing.TB, local uint32, now int64) *Tables {
	t.Helper()
	b := NewPrefixTableBuilder()
	for _, e := range []struct {
		p string
		m int
	}{{"198.51.100.0/24", 0}, {"2001:db8:1::/48", 0}, {"203.0.113.0/24", 1}, {"2001:db8:2::/48", 1}} {
		if err := b.Add(netip.MustParsePrefix(e.p), e.m); err != nil {
			t.Fatal(err)
		}
	}
	tb := &Tables{T0: 0, Period: vecPeriod, Prefixes: b.Table(), Peers: make([]PeerKeys, 1)}
	remote := uint32(65002)
	if local == 65002 {
		remote = 65001
	}
	tb.Members = []Member{
		{ASN: 65001, Local: local == 65001, TagPeer: -1, ValidatePeer: -1},
		{ASN: 65002, Local: local == 65002, TagPeer: -1, ValidatePeer: -1},
	}
	tb.Members[remote-65001].TagPeer, tb.Members[remote-65001].ValidatePeer = 0, 0
	tb.Peers[0].ASN = remote
	e := Epoch(now, 0, vecPeriod)
	keys, ok := NewStateMachine(vecE0, vecState()).Window(uint64(e-1), KeyWindow)
	if !ok {
		t.Fatal("window")
	}
	for i, k := range keys {
		tb.Peers[0].SetKey(e-1+int64(i), k)
	}
	return tb
}

// abr is a two-port cross-connected ABR: port 0 "inside" (ingress), port 1
// "outside" (egress).
func abr(t testing.TB, local uint32, now int64) *Engine {
	t.Helper()
	e, err := New(Spec{Ports: []PortSpec{{Name: "inside", Role: RoleIngress, Peer: 1}, {Name: "outside", Role: RoleEgress, Peer: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(testTables(t, local, now))
	return e
}

// run puts one frame through the engine arriving on port in, and returns
// the frame that leaves (nil if dropped) and the processor's counters.
func run(t testing.TB, e *Engine, in int, frame []byte, now int64) ([]byte, *Processor) {
	t.Helper()
	pr := e.NewProcessor(in)
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	pr.Process(b, e.Tables(), now)
	p := b.Pkts[0]
	if p.Out == ports.Drop {
		return nil, pr
	}
	if int(p.Out) != e.spec.Ports[in].Peer {
		t.Fatalf("out port %d, want %d", p.Out, e.spec.Ports[in].Peer)
	}
	return append([]byte(nil), p.Frame()...), pr
}

func TestKeyScheduleVectors(t *testing.T) {
	m := NewStateMachine(vecE0, vecState())
	k0, _ := m.Key(vecE0)
	if hex.EncodeToString(k0[:]) != vecKeyE0 {
		t.Fatalf("K(e0) = %x, want %s", k0, vecKeyE0)
	}
	k5, _ := m.Key(vecE0 + 5)
	if hex.EncodeToString(k5[:]) != vecKeyE5 {
		t.Fatalf("K(e0+5) = %x, want %s", k5, vecKeyE5)
	}
	if _, ok := m.Key(vecE0 + 4); ok {
		t.Fatal("state of an earlier epoch still available: old states must be erased")
	}
}

func TestTagVectors(t *testing.T) {
	for _, v := range []struct{ name, in, out string }{
		{"ipv4-udp", v4In, v4Out},
		{"ipv4-with-option-icmp", v4OptIn, v4OptOut},
		{"ipv6-udp", v6In, v6Out},
		{"ipv6-hop-by-hop", v6HbhIn, v6HbhOut},
		{"ipv6-existing-destopts", v6DoIn, v6DoOut},
	} {
		t.Run(v.name, func(t *testing.T) {
			in, want := mustHex(t, v.in), mustHex(t, v.out)
			// AS 65001's ABR tags on the way out …
			got, pr := run(t, abr(t, 65001, vecNow), 0, in, vecNow)
			if !bytes.Equal(got, want) {
				t.Fatalf("tagged:\n got %x\nwant %x", got, want)
			}
			if pr.Counters.Actions[ActTagged].Load() != 1 {
				t.Fatal("not counted as tagged")
			}
			// … AS 65002's ABR validates, strips, and restores it octet for octet,
			// in the same epoch and one epoch later.
			for _, now := range []int64{vecNow, vecNow + vecPeriod} {
				back, pr := run(t, abr(t, 65002, now), 1, want, now)
				if !bytes.Equal(back, in) {
					t.Fatalf("stripped at %d:\n got %x\nwant %x (drops %v)", now, back, in, drops(pr))
				}
			}
		})
	}
}

func drops(pr *Processor) map[string]uint64 {
	m := map[string]uint64{}
	for _, r := range Reasons() {
		if n := pr.Counters.Drops[r].Load(); n > 0 {
			m[r.String()] = n
		}
	}
	return m
}

func TestValidationFailures(t *testing.T) {
	tagged := mustHex(t, v4Out)
	plain := mustHex(t, v4In)
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), tagged...)
		f(b)
		if b[17] != 0xff { // keep the header checksum right unless testing a bad length
			header.IPv4(b[14:]).UpdateChecksum()
		}
		return b
	}
	spoofLocal := append([]byte(nil), plain...)
	copy(spoofLocal[26:30], []byte{203, 0, 113, 99}) // source in AS 65002, arriving from outside
	header.IPv4(spoofLocal[14:]).UpdateChecksum()
	unverifiable := append([]byte(nil), plain...)
	copy(unverifiable[26:30], []byte{192, 0, 2, 66})
	header.IPv4(unverifiable[14:]).UpdateChecksum()
	badChecksum := append([]byte(nil), tagged...)
	badChecksum[22] ^= 1 // TTL changed, checksum not updated
	for _, c := range []struct {
		name  string
		frame []byte
		now   int64
		want  Reason
		act   Action
	}{
		{"no-tag", plain, vecNow, DropNoTag, 0},
		{"bad-tag (tag bit flipped)", mutate(func(b []byte) { b[40] ^= 1 }), vecNow, DropBadTag, 0},
		{"bad-tag (first payload octet changed)", mutate(func(b []byte) { b[50] ^= 0x80 }), vecNow, DropBadTag, 0},
		{"bad-tag (destination changed)", mutate(func(b []byte) { b[33] = 11 }), vecNow, DropBadTag, 0},
		{"bad-tag (wrong TagLen/AI)", mutate(func(b []byte) { b[36] = 0x72 }), vecNow, DropBadTag, 0},
		{"stale-epoch (two epochs late)", tagged, vecNow + 2*vecPeriod, DropStaleEpoch, 0},
		{"stale-epoch (two epochs early)", tagged, vecNow - 2*vecPeriod, DropStaleEpoch, 0},
		{"spoofed-local", spoofLocal, vecNow, DropSpoofedLocal, 0},
		{"unverifiable", unverifiable, vecNow, 0, ActUnverifiable},
		{"malformed (total length too long)", mutate(func(b []byte) { b[17] = 0xff }), vecNow, DropMalformed, 0},
		{"malformed (header checksum)", badChecksum, vecNow, DropMalformed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Validation is at AS 65002's ABR, arriving on its EGRESS port.
			out, pr := run(t, abr(t, 65002, vecNow), 1, c.frame, c.now)
			if c.act != 0 {
				if out == nil || pr.Counters.Actions[c.act].Load() != 1 {
					t.Fatalf("want forwarded as %s, drops %v", c.act, drops(pr))
				}
				return
			}
			if out != nil {
				t.Fatalf("forwarded, want drop %s", c.want)
			}
			if pr.Counters.Drops[c.want].Load() != 1 {
				t.Fatalf("drops %v, want %s", drops(pr), c.want)
			}
		})
	}
}

func TestSpoofedInside(t *testing.T) {
	f := mustHex(t, v4In)
	copy(f[26:30], []byte{203, 0, 113, 50}) // another AS's address, from inside AS 65001
	header.IPv4(f[14:]).UpdateChecksum()
	out, pr := run(t, abr(t, 65001, vecNow), 0, f, vecNow)
	if out != nil || pr.Counters.Drops[DropSpoofedInside].Load() != 1 {
		t.Fatalf("want drop spoofed-inside, got out=%v drops=%v", out != nil, drops(pr))
	}
}

func TestPassthroughARP(t *testing.T) {
	arp := mustHex(t, "ffffffffffff0200000000010806000108000604000102000000000100000000000000000000c0000201")
	out, pr := run(t, abr(t, 65001, vecNow), 0, arp, vecNow)
	if !bytes.Equal(out, arp) || pr.Counters.Actions[ActPassthrough].Load() != 1 {
		t.Fatal("ARP not carried across unchanged")
	}
}

func TestTagRoomIPv4(t *testing.T) {
	// 40 octets of options already: no room, forwarded untagged by default.
	in := mustHex(t, v4In)
	opts := bytes.Repeat([]byte{1}, 40)
	f := append(append(append([]byte(nil), in[:34]...), opts...), in[34:]...)
	f[14] = 0x4f
	f[17] += 40
	header.IPv4(f[14:]).UpdateChecksum()
	out, pr := run(t, abr(t, 65001, vecNow), 0, f, vecNow)
	if !bytes.Equal(out, f) || pr.Counters.Actions[ActUntagged].Load() != 1 {
		t.Fatalf("want untagged forward, drops %v", drops(pr))
	}
}

func TestReplaceAtCommunityBorder(t *testing.T) {
	// AS 65002 as a community border (replaceEngine): packets 65001 → 65003
	// arrive tagged with K(65001,65002) and leave with the key of 65003's
	// peer (00 … 2a).
	e, in := replaceEngine(t)
	out, pr := run(t, e, 0, in, vecNow)
	if out == nil || pr.Counters.Actions[ActReplaced].Load() != 1 {
		t.Fatalf("not replaced: drops %v", drops(pr))
	}
	var p parsed
	if !p.parse(out) || p.optOff < 0 {
		t.Fatal("replaced packet does not parse or lost its tag")
	}
	var k Key
	k[0] = 42
	k0, k1 := k.Halves()
	if got := ComputeTag(k0, k1, &p.src, &p.dst, p.firstOctet, 24); got != beUint64(out[p.optOff+4:]) {
		t.Fatalf("replaced tag %x does not verify with the next hop's key (want %x)", beUint64(out[p.optOff+4:]), got)
	}
	if !header.IPv4(out[14:]).ChecksumValid() {
		t.Fatal("IPv4 checksum not updated")
	}
	// The same packet with a tag of the wrong key is dropped, not replaced.
	bad := append([]byte(nil), in...)
	bad[p.optOff+4] ^= 1
	header.IPv4(bad[14:]).UpdateChecksum()
	if out, pr := run(t, e, 0, bad, vecNow); out != nil || pr.Counters.Drops[DropBadTag].Load() != 1 {
		t.Fatalf("bad tag at the border not dropped: %v", drops(pr))
	}
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}

// A snapshot whose indexes point nowhere (it may come from the network) is
// never followed out of bounds: packets are judged as if the entry were
// missing.
func TestInconsistentTablesDoNotPanic(t *testing.T) {
	e := abr(t, 65001, vecNow)
	tb := *e.Tables()
	b := NewPrefixTableBuilder()
	_ = b.Add(netip.MustParsePrefix("198.51.100.0/24"), 0)
	_ = b.Add(netip.MustParsePrefix("203.0.113.0/24"), 7) // member 7 of 2
	tb.Prefixes = b.Table()
	tb.Members = []Member{{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1}, {ASN: 65002, TagPeer: 9, ValidatePeer: 9}}
	tb.Replace = map[uint64]ReplaceEntry{ReplaceKey(0, 1): {In: 5, Out: 6}}
	e.Publish(&tb)
	for _, c := range []struct {
		in    int
		frame string
	}{{0, v4In}, {1, v4Out}, {0, v6In}, {1, v6Out}} {
		run(t, e, c.in, mustHex(t, c.frame), vecNow) // must not panic
	}
	// Member index out of range: the destination is "not a member".
	if out, pr := run(t, e, 0, mustHex(t, v4In), vecNow); out == nil || pr.Counters.Actions[ActForwarded].Load() != 1 {
		t.Fatalf("want forwarded untagged, drops %v", drops(pr))
	}
}
