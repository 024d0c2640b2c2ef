package abr

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// feedMessages is what an ACS feeds for the whole snapshot m (its version
// is also the membership version): m's membership cut into chunks of
// chunkBytes (0: acspb.FeedChunkBytes), each member's peer by ASN, then a
// FeedKeys with every peer's keys.
func feedMessages(m *acspb.Tables, chunkBytes int) []*acspb.FeedMessage {
	peerASN := func(i int32) uint32 {
		if i < 0 || int(i) >= len(m.GetPeers()) {
			return 0
		}
		return m.GetPeers()[i].GetAsn()
	}
	var members []*acspb.FeedMember
	for _, mm := range m.GetMembers() {
		members = append(members, &acspb.FeedMember{Asn: mm.GetAsn(), Local: mm.GetLocal(), Prefixes: mm.GetPrefixes(),
			TagPeer: peerASN(mm.GetTagPeer()), ValidatePeer: peerASN(mm.GetValidatePeer())})
	}
	var replace []*acspb.FeedReplace
	for _, r := range m.GetReplace() {
		replace = append(replace, &acspb.FeedReplace{SrcAsn: m.Members[r.GetSrcMember()].GetAsn(), DstAsn: m.Members[r.GetDstMember()].GetAsn(),
			InPeer: peerASN(r.GetInPeer()), OutPeer: peerASN(r.GetOutPeer())})
	}
	if chunkBytes == 0 {
		chunkBytes = acspb.FeedChunkBytes
	}
	var out []*acspb.FeedMessage
	head := acspb.MembershipHead{Version: m.GetVersion(), T0: m.GetT0(), PeriodSeconds: m.GetPeriodSeconds(), LocalASN: m.GetLocalAsn()}
	for _, c := range acspb.ChunkMembership(head, members, replace, chunkBytes) {
		out = append(out, &acspb.FeedMessage{Body: &acspb.FeedMessage_Membership{Membership: c}})
	}
	return append(out, keysMsg(m.GetVersion(), m.GetVersion(), m.GetPeers()...))
}

func keysMsg(version, membership uint64, peers ...*acspb.PeerKeys) *acspb.FeedMessage {
	return &acspb.FeedMessage{Body: &acspb.FeedMessage_Keys{Keys: &acspb.FeedKeys{Version: version, MembershipVersion: membership, Peers: peers}}}
}

// run feeds msgs to f at now and returns the last snapshot built and the
// errors, in order.
func run(f *feedState, now int64, msgs ...*acspb.FeedMessage) (last *engine.Tables, errs []error) {
	for _, m := range msgs {
		var err error
		switch b := m.GetBody().(type) {
		case *acspb.FeedMessage_Membership:
			_, err = f.chunk(b.Membership)
		case *acspb.FeedMessage_Keys:
			var t *engine.Tables
			if t, err = f.feedKeys(b.Keys, now); t != nil {
				last = t
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return last, errs
}

// sameTables fails unless got (from the feed) holds what want (Convert of
// the same snapshot) holds: members, peers and their keys, replace, and the
// same member for every prefix of m.
func sameTables(t *testing.T, m *acspb.Tables, got, want *engine.Tables) {
	t.Helper()
	if got.Version != want.Version || got.T0 != want.T0 || got.Period != want.Period {
		t.Fatalf("version/clock %d %d %d, want %d %d %d", got.Version, got.T0, got.Period, want.Version, want.T0, want.Period)
	}
	if !slices.Equal(got.Members, want.Members) {
		t.Fatalf("members differ:\n got %v\nwant %v", got.Members[:min(4, len(got.Members))], want.Members[:min(4, len(want.Members))])
	}
	if !slices.Equal(got.Peers, want.Peers) {
		t.Fatalf("peers differ: %d, want %d", len(got.Peers), len(want.Peers))
	}
	if len(got.Replace) != len(want.Replace) {
		t.Fatalf("replace %v, want %v", got.Replace, want.Replace)
	}
	for k, v := range want.Replace {
		if got.Replace[k] != v {
			t.Fatalf("replace %x = %v, want %v", k, got.Replace[k], v)
		}
	}
	if got.Prefixes.Size() != want.Prefixes.Size() {
		t.Fatalf("%d prefixes, want %d", got.Prefixes.Size(), want.Prefixes.Size())
	}
	for _, mm := range m.Members {
		for _, pp := range mm.Prefixes {
			p, _ := prefix(pp)
			g, _ := got.Prefixes.Lookup(p.Addr())
			w, _ := want.Prefixes.Lookup(p.Addr())
			if g != w {
				t.Fatalf("%s → %x, want %x", p, g, w)
			}
		}
	}
}

// TestFeedBuildsWhatConvertBuilds: a snapshot of 20,000 prefixes over
// 75,000 members and 1,000 peers, cut into 4 KiB chunks (members cut
// across chunks), gives the tables Convert gives for the same snapshot
// whole; only its FeedKeys puts it in force.
func TestFeedBuildsWhatConvertBuilds(t *testing.T) {
	m := scaleSnapshot(t, 20_000)
	m.Replace = []*acspb.Replace{{SrcMember: 1, DstMember: 0, InPeer: 0, OutPeer: -1}, {SrcMember: 2, DstMember: 1, InPeer: 3, OutPeer: 0}}
	want, err := Convert(m)
	if err != nil {
		t.Fatal(err)
	}
	msgs := feedMessages(m, 4<<10)
	continued := 0
	for _, fm := range msgs[:len(msgs)-1] {
		c := fm.GetMembership()
		if n := proto.Size(c); n > 4<<10 {
			t.Fatalf("chunk %d: %d octets", c.GetIndex(), n)
		}
		for _, mm := range c.GetMembers() {
			if mm.GetContinued() {
				continued++
			}
		}
	}
	if len(msgs) < 100 || continued == 0 {
		t.Fatalf("%d messages, %d continued members: the test does not cut members", len(msgs), continued)
	}
	f := newFeedState(localASN)
	got, errs := run(f, vecNow, msgs[:len(msgs)-1]...)
	if got != nil || errs != nil || f.inForce != nil || f.staged == nil {
		t.Fatalf("in force before its keys: %v %v", got, errs)
	}
	got, errs = run(f, vecNow, msgs[len(msgs)-1])
	if errs != nil || got == nil {
		t.Fatal(errs)
	}
	sameTables(t, m, got, want)
	for addr, member := range map[string]uint32{"198.51.100.7": 0, "2001:db8:1::5": 0, "203.0.113.200": 1, "2001:db8:2:ffff::1": 1} {
		if v, ok := got.Prefixes.Lookup(netip.MustParseAddr(addr)); !ok || v>>8 != member {
			t.Errorf("%s → %x %v, want member %d", addr, v, ok, member)
		}
	}

	// The next epoch's keys: the prefix table and the members are the ones
	// in force (shared, not rebuilt), only the keys change.
	e := engine.Epoch(vecNow, 0, vecPeriod)
	k := &acspb.PeerKeys{Asn: 65002, Keys: []*acspb.EpochKey{{Epoch: e + 3, Key: bytes.Repeat([]byte{7}, 16)}}}
	next, errs := run(f, vecNow+vecPeriod, keysMsg(2, m.Version, k))
	if errs != nil || next == nil {
		t.Fatal(errs)
	}
	if next.Prefixes != got.Prefixes || &next.Members[0] != &got.Members[0] || next.Version != 2 {
		t.Fatal("the membership part was rebuilt for keys")
	}
	if _, _, ok := next.Peers[0].Key(e + 3); !ok {
		t.Fatal("new key missing")
	}
	if _, _, ok := next.Peers[0].Key(e); !ok {
		t.Fatal("a key of the first message was lost")
	}
}

// TestFeedMakeBeforeBreak (docs/wire.md §2.8): a FeedKeys that omits a
// peer (declared dead, or a restarted ACS that has not negotiated yet)
// takes none of its keys away before their epochs are past, and members
// keep using it meanwhile; a key given for an epoch held wins (a re-key);
// a new stream keeps every key held.
func TestFeedMakeBeforeBreak(t *testing.T) {
	m := snapshot(t, 1, localASN, vecNow)
	e := engine.Epoch(vecNow, 0, vecPeriod)
	f := newFeedState(localASN)
	if _, errs := run(f, vecNow, feedMessages(m, 0)...); errs != nil {
		t.Fatal(errs)
	}
	// A restarted ACS: a new stream, the same membership, no peers yet.
	f.newStream()
	msgs := feedMessages(m, 0)
	msgs[len(msgs)-1] = keysMsg(2, 1)
	got, errs := run(f, vecNow, msgs...)
	if errs != nil || got == nil {
		t.Fatal(errs)
	}
	if len(got.Peers) != 1 || got.Members[1].TagPeer != 0 || got.Members[1].ValidatePeer != 0 {
		t.Fatalf("peer lost: %+v %+v", got.Peers, got.Members)
	}
	for ep := e - 1; ep <= e+2; ep++ {
		if _, _, ok := got.Peers[0].Key(ep); !ok {
			t.Fatalf("key of epoch %d lost", ep)
		}
	}
	// A re-key: the ACS gives another key for e+2.
	rekey := bytes.Repeat([]byte{0xee}, 16)
	got, errs = run(f, vecNow, keysMsg(3, 1, &acspb.PeerKeys{Asn: 65002, Keys: []*acspb.EpochKey{{Epoch: e + 2, Key: rekey}}}))
	if errs != nil {
		t.Fatal(errs)
	}
	k0, k1, _ := got.Peers[0].Key(e + 2)
	if w0, w1 := engine.Key(rekey).Halves(); k0 != w0 || k1 != w1 {
		t.Fatal("the re-key's key did not win")
	}
	// Once the last key's epoch (e+30) is past, at e+32, the peer has no
	// usable key left and is gone; its member has no peer.
	got, errs = run(f, vecNow+31*vecPeriod, keysMsg(4, 1))
	if errs != nil || len(got.Peers) != 1 {
		t.Fatalf("%v: peer dropped with a key left (e+30 at e+31)", errs)
	}
	got, errs = run(f, vecNow+32*vecPeriod, keysMsg(4, 1))
	if errs != nil {
		t.Fatal(errs)
	}
	if len(got.Peers) != 0 || got.Members[1].TagPeer != -1 {
		t.Fatalf("expired peer kept: %+v %+v", got.Peers, got.Members)
	}
}

// TestFeedMembershipSwap: a new membership version is assembled beside the
// one in force, which stays in every snapshot until the FeedKeys naming the
// new version; a chunk that breaks a rule refuses its whole version (its
// other chunks ignored) and the one in force stays.
func TestFeedMembershipSwap(t *testing.T) {
	m1 := snapshot(t, 1, localASN, vecNow)
	f := newFeedState(localASN)
	first, errs := run(f, vecNow, feedMessages(m1, 0)...)
	if errs != nil {
		t.Fatal(errs)
	}
	m2 := snapshot(t, 2, localASN, vecNow)
	m2.Members = append(m2.Members, &acspb.Member{Asn: 65003, Prefixes: []*acspb.Prefix{pfx("192.0.2.0/24")}, TagPeer: -1, ValidatePeer: -1})
	for i := range 300 {
		m2.Members[2].Prefixes = append(m2.Members[2].Prefixes, pfx(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24).String()))
	}
	msgs := feedMessages(m2, minChunk)
	if len(msgs) < 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	// Keys for the old version while the new one is half received.
	got, errs := run(f, vecNow, append(msgs[:1:1], keysMsg(5, 1, m1.Peers...))...)
	if errs != nil || got.Prefixes != first.Prefixes || len(got.Members) != 2 {
		t.Fatalf("%v: the membership in force changed", errs)
	}
	got, errs = run(f, vecNow, msgs[1:]...)
	if errs != nil || len(got.Members) != 3 || f.inForce.version != 2 {
		t.Fatalf("%v: new membership not in force", errs)
	}
	if v, ok := got.Prefixes.Lookup(netip.MustParseAddr("192.0.2.9")); !ok || v>>8 != 2 {
		t.Fatal("new member's prefix not found")
	}

	// A refused version: a prefix of member 0 given again to 65003 in a
	// later chunk.
	m3 := snapshot(t, 3, localASN, vecNow)
	m3.Members = append(m3.Members, &acspb.Member{Asn: 65003, Prefixes: []*acspb.Prefix{pfx("192.0.2.0/24"), pfx("198.51.100.0/24")}, TagPeer: -1, ValidatePeer: -1})
	before := got
	got, errs = run(f, vecNow, feedMessages(m3, minChunk)...)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "already belongs to member 0") {
		t.Fatalf("errors %v", errs)
	}
	if f.inForce.version != 2 || got.Prefixes != before.Prefixes {
		t.Fatal("refused membership in force")
	}
}

// minChunk is the smallest chunk limit ChunkMembership honours: one member
// per chunk in these small snapshots.
const minChunk = 1 << 10

func TestFeedRefusals(t *testing.T) {
	chunk := func(mut func(c *acspb.MembershipChunk)) *acspb.FeedMessage {
		c := feedMessages(snapshot(t, 1, localASN, vecNow), 0)[0].GetMembership()
		c = proto.Clone(c).(*acspb.MembershipChunk)
		mut(c)
		return &acspb.FeedMessage{Body: &acspb.FeedMessage_Membership{Membership: c}}
	}
	key := func(e int64) *acspb.EpochKey { return &acspb.EpochKey{Epoch: e, Key: make([]byte, 16)} }
	for _, tc := range []struct {
		name, want string
		msg        *acspb.FeedMessage
	}{
		{"version 0", "version", chunk(func(c *acspb.MembershipChunk) { c.Version = 0 })},
		{"count 0", "count", chunk(func(c *acspb.MembershipChunk) { c.Count = 0 })},
		{"too many chunks", "count", chunk(func(c *acspb.MembershipChunk) { c.Count = maxChunks + 1 })},
		{"without chunk 0", "without chunk 0", chunk(func(c *acspb.MembershipChunk) { c.Index = 1; c.Count = 2 })},
		{"negative t0", "t0", chunk(func(c *acspb.MembershipChunk) { c.T0 = -1 })},
		{"zero period", "period_seconds", chunk(func(c *acspb.MembershipChunk) { c.PeriodSeconds = 0 })},
		{"another AS", "local_asn", chunk(func(c *acspb.MembershipChunk) {
			c.LocalAsn = 65002
			c.Members[0].Local = false
			c.Members[1].Local = true
		})},
		{"member asn 0", "members[1].asn", chunk(func(c *acspb.MembershipChunk) { c.Members[1].Asn = 0 })},
		{"duplicate member", "already is member 0", chunk(func(c *acspb.MembershipChunk) { c.Members[1].Asn = 65001; c.Members[1].Local = true })},
		{"local flag missing", "not marked local", chunk(func(c *acspb.MembershipChunk) { c.Members[0].Local = false })},
		{"two local", "members[1].local", chunk(func(c *acspb.MembershipChunk) { c.Members[1].Local = true })},
		{"no local member", "no member is the local", chunk(func(c *acspb.MembershipChunk) { c.Members = c.Members[1:] })},
		{"local as peer", "the local AS65001 as a peer", chunk(func(c *acspb.MembershipChunk) { c.Members[1].TagPeer = localASN })},
		{"continued first", "continued", chunk(func(c *acspb.MembershipChunk) { c.Members[0].Continued = true })},
		{"continued other", "continued", chunk(func(c *acspb.MembershipChunk) { c.Members[1].Continued = true })},
		{"nil member", "members[0]: empty", chunk(func(c *acspb.MembershipChunk) { c.Members[0] = nil })},
		{"bad prefix", "host bits", chunk(func(c *acspb.MembershipChunk) { c.Members[0].Prefixes[0] = pfx("198.51.100.1/24") })},
		{"prefix twice", "already belongs", chunk(func(c *acspb.MembershipChunk) { c.Members[1].Prefixes[0] = pfx("198.51.100.0/24") })},
		{"replace non-member", "not a member", chunk(func(c *acspb.MembershipChunk) {
			c.Replace = []*acspb.FeedReplace{{SrcAsn: 65009, DstAsn: 65001}}
		})},
		{"replace twice", "given twice", chunk(func(c *acspb.MembershipChunk) {
			c.Replace = []*acspb.FeedReplace{{SrcAsn: 65002, DstAsn: 65001}, {SrcAsn: 65002, DstAsn: 65001, InPeer: 65002}}
		})},
		{"nil replace", "replace[0]: empty", chunk(func(c *acspb.MembershipChunk) { c.Replace = []*acspb.FeedReplace{nil} })},
		{"keys version 0", "keys.version", keysMsg(0, 1)},
		{"keys of local", "local AS", keysMsg(2, 1, &acspb.PeerKeys{Asn: localASN})},
		{"keys twice", "already is peers[0]", keysMsg(2, 1, &acspb.PeerKeys{Asn: 65002}, &acspb.PeerKeys{Asn: 65002})},
		{"short key", "15 octets", keysMsg(2, 1, &acspb.PeerKeys{Asn: 65002, Keys: []*acspb.EpochKey{{Epoch: 1, Key: make([]byte, 15)}}})},
		{"keys beyond window", "one window", keysMsg(2, 1, &acspb.PeerKeys{Asn: 65002, Keys: []*acspb.EpochKey{key(1), key(1 + engine.KeyWindow)}})},
		{"nil peer", "keys.peers[0]: empty", keysMsg(2, 1, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeedState(localASN)
			first, errs := run(f, vecNow, feedMessages(snapshot(t, 1, localASN, vecNow), 0)...)
			if errs != nil {
				t.Fatal(errs)
			}
			msgs := []*acspb.FeedMessage{tc.msg}
			if tc.msg.GetMembership() != nil {
				msgs = append(msgs, keysMsg(2, tc.msg.GetMembership().GetVersion()))
			}
			got, errs := run(f, vecNow, msgs...)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("errors %v, want one with %q", errs, tc.want)
			}
			if f.inForce.version != 1 || got != nil && got.Prefixes != first.Prefixes {
				t.Fatal("a refused membership went in force")
			}
		})
	}
}

// FuzzFeed: any sequence of feed messages (length-prefixed encodings)
// leaves the feed state consistent and never panics; what it builds holds
// member indices within bounds.
func FuzzFeed(f *testing.F) {
	seed := func(msgs []*acspb.FeedMessage) []byte {
		var b []byte
		for _, m := range msgs {
			enc, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			b = binary.AppendUvarint(b, uint64(len(enc)))
			b = append(b, enc...)
		}
		return b
	}
	m := snapshot(f, 1, localASN, vecNow)
	m.Replace = []*acspb.Replace{{SrcMember: 1, DstMember: 0, InPeer: 0, OutPeer: -1}}
	f.Add(seed(feedMessages(m, 0)))
	f.Add(seed(feedMessages(m, minChunk)))
	f.Add(seed(append(feedMessages(snapshot(f, 2, localASN, vecNow), minChunk), keysMsg(3, 9))))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := newFeedState(localASN)
		for len(b) > 0 {
			n, k := binary.Uvarint(b)
			if k <= 0 || n > uint64(len(b)-k) {
				return
			}
			var msg acspb.FeedMessage
			enc := b[k : k+int(n)]
			b = b[k+int(n):]
			if proto.Unmarshal(enc, &msg) != nil {
				continue
			}
			tb, _ := run(st, vecNow, &msg)
			if tb == nil {
				continue
			}
			for _, mm := range tb.Members {
				if int(mm.TagPeer) >= len(tb.Peers) || int(mm.ValidatePeer) >= len(tb.Peers) {
					t.Fatalf("peer index out of range: %+v", mm)
				}
			}
			for _, re := range tb.Replace {
				if int(re.In) >= len(tb.Peers) || int(re.Out) >= len(tb.Peers) {
					t.Fatalf("replace out of range: %+v", re)
				}
			}
		}
	})
}

// TestFeedNewClock: a membership of another epoch clock (T0 or P changed)
// takes none of the keys held, which are of the old clock's epochs.
func TestFeedNewClock(t *testing.T) {
	f := newFeedState(localASN)
	if _, errs := run(f, vecNow, feedMessages(snapshot(t, 1, localASN, vecNow), 0)...); errs != nil {
		t.Fatal(errs)
	}
	m := snapshot(t, 2, localASN, vecNow)
	m.PeriodSeconds = 30
	msgs := feedMessages(m, 0)
	msgs[len(msgs)-1] = keysMsg(2, 2)
	got, errs := run(f, vecNow, msgs...)
	if errs != nil || got == nil || got.Period != 30 {
		t.Fatal(errs)
	}
	if len(got.Peers) != 0 || got.Members[1].TagPeer != -1 {
		t.Fatalf("keys of another clock carried over: %+v", got.Peers)
	}
}
