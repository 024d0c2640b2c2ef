package acs

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/engine"
)

// Tables builds the snapshot pushed to this AS's ABRs at time now: the
// members and their prefixes from the membership set, the keys of every
// live pair for epochs e−1 … e+2 (keys only, never states), and the PSAV
// hops of docs/wire.md §2.6 from the community tree: a member's tag and validate
// peer is the neighbour on the tree path toward it (the member itself in
// the flat alliance or inside one community), −1 while the pair with that
// neighbour is not up; a border or parent peer also gets the replace
// entries of the paths that cross it. The local AS is always a member,
// even before its own record is known.
func (n *Node) Tables(now time.Time) *acspb.Tables {
	hops, recs := n.hops(true)
	version, asns, keys := n.feedKeys(now)
	t := &acspb.Tables{
		Version: version, T0: n.cfg.T0, PeriodSeconds: int64(n.cfg.Period), LocalAsn: n.cfg.ASN,
	}
	idx := make(map[uint32]int32, len(asns))
	for i, pk := range keys {
		m := &acspb.PeerKeys{Asn: asns[i]}
		for j := range pk.Keys {
			if k := &pk.Keys[j]; k.Valid {
				m.Keys = append(m.Keys, &acspb.EpochKey{Epoch: k.Epoch, Key: wireKey(k)})
			}
		}
		sort.Slice(m.Keys, func(a, b int) bool { return m.Keys[a].Epoch < m.Keys[b].Epoch })
		idx[asns[i]] = int32(len(t.Peers))
		t.Peers = append(t.Peers, m)
	}
	peerOf := func(asn uint32, ok bool) int32 {
		if i, up := idx[asn]; ok && up {
			return i
		}
		return -1
	}
	local := false
	memberIdx := make(map[uint32]uint32, len(recs)+1)
	for _, r := range recs {
		next, ok := hops.Next[r.ASN]
		p := peerOf(next, ok)
		mm := &acspb.Member{Asn: r.ASN, Local: r.ASN == n.cfg.ASN, TagPeer: p, ValidatePeer: p}
		local = local || mm.Local
		for _, p := range r.Prefixes {
			mm.Prefixes = append(mm.Prefixes, wirePrefix(p))
		}
		memberIdx[r.ASN] = uint32(len(t.Members))
		t.Members = append(t.Members, mm)
	}
	if !local {
		t.Members = append(t.Members, &acspb.Member{Asn: n.cfg.ASN, Local: true, TagPeer: -1, ValidatePeer: -1})
	}
	for _, e := range hops.replace {
		si, ok1 := memberIdx[e.src]
		di, ok2 := memberIdx[e.dst]
		if !ok1 || !ok2 {
			continue
		}
		// An out peer whose pair is down is −1, which the engine reads as
		// "strip": the packet then leaves untagged and the next hop drops
		// it (no-tag). An in peer that is down drops it here (no-key).
		t.Replace = append(t.Replace, &acspb.Replace{SrcMember: si, DstMember: di,
			InPeer: peerOf(e.in, true), OutPeer: peerOf(e.out, true)})
	}
	return t
}

// feedKeys returns the tables version and the keys of every live pair for
// e−1 … e+KeyLead at now, sorted by peer ASN, read together under n.mu so
// that the version names exactly these keys.
func (n *Node) feedKeys(now time.Time) (version uint64, asns []uint32, keys []engine.PeerKeys) {
	n.mu.Lock()
	defer n.mu.Unlock()
	asns = make([]uint32, 0, len(n.peers))
	for asn, ps := range n.peers {
		if ps.machine != nil && !ps.machine.Removed() {
			asns = append(asns, asn)
		}
	}
	sort.Slice(asns, func(i, j int) bool { return asns[i] < asns[j] })
	keys = make([]engine.PeerKeys, len(asns))
	for i, asn := range asns {
		keys[i] = n.peers[asn].machine.KeysAhead(now.Unix(), n.cfg.KeyLead)
	}
	return n.version, asns, keys
}

// wireKey is K(e) as the feed carries it (engine.Key.Halves, inverted).
func wireKey(k *engine.EpochKey) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:8], k.K0)
	binary.LittleEndian.PutUint64(b[8:16], k.K1)
	return b
}

// wirePrefix is a prefix as the feed carries it: 4 octets for IPv4, 16 for
// IPv6.
func wirePrefix(p netip.Prefix) *acspb.Prefix {
	return &acspb.Prefix{Addr: p.Addr().AsSlice(), Bits: uint32(p.Bits())}
}

// feedMembership is one version of the membership part of the feed
// (docs/wire.md §3.1): built once per change of the membership set, cut
// into chunks, and shared, read-only, by every ABR stream.
type feedMembership struct {
	version  uint64
	chunks   []*acspb.MembershipChunk
	members  int
	prefixes int
}

// membershipVersions numbers feedMemberships: unique and increasing in
// this process, which is all an ABR needs (a new stream always starts with
// a whole membership).
var membershipVersions atomic.Uint64

// feedMembership returns the membership part for the held membership,
// built the first time a stream asks for this membership set.
func (n *Node) feedMembership() *feedMembership {
	h, recs := n.hops(false)
	h.memOnce.Do(func() {
		h.mem = n.buildMembership(recs, h)
		// The chunks hold what the feed needs: the records' copy goes.
		n.hopsMu.Lock()
		h.recs = nil
		n.hopsMu.Unlock()
	})
	return h.mem
}

// buildMembership is the membership part for recs: each member's PSAV hop
// by ASN (the tree's next hop; the ABR uses it while it holds that peer's
// keys, so a pair going down or up changes only FeedKeys), the local AS
// always a member, the replace entries of the paths that cross this AS.
func (n *Node) buildMembership(recs []membership.Record, h *treeHops) *feedMembership {
	fm := &feedMembership{version: membershipVersions.Add(1)}
	members := make([]*acspb.FeedMember, 0, len(recs)+1)
	isMember := make(map[uint32]bool, len(recs)+1)
	local := false
	for _, r := range recs {
		m := &acspb.FeedMember{Asn: r.ASN, Local: r.ASN == n.cfg.ASN}
		if next, ok := h.Next[r.ASN]; ok && !m.Local && next != n.cfg.ASN {
			m.TagPeer, m.ValidatePeer = next, next
		}
		m.Prefixes = make([]*acspb.Prefix, len(r.Prefixes))
		for i, p := range r.Prefixes {
			m.Prefixes[i] = wirePrefix(p)
		}
		local = local || m.Local
		isMember[r.ASN] = true
		fm.prefixes += len(r.Prefixes)
		members = append(members, m)
	}
	if !local {
		members = append(members, &acspb.FeedMember{Asn: n.cfg.ASN, Local: true})
		isMember[n.cfg.ASN] = true
	}
	var replace []*acspb.FeedReplace
	for _, e := range h.replace {
		if isMember[e.src] && isMember[e.dst] {
			replace = append(replace, &acspb.FeedReplace{SrcAsn: e.src, DstAsn: e.dst, InPeer: e.in, OutPeer: e.out})
		}
	}
	fm.members = len(members)
	fm.chunks = acspb.ChunkMembership(acspb.MembershipHead{Version: fm.version, T0: n.cfg.T0, PeriodSeconds: int64(n.cfg.Period), LocalASN: n.cfg.ASN},
		members, replace, acspb.FeedChunkBytes)
	return fm
}

// keyDelta is what one feed stream has sent of each live pair's keys, so
// that FeedKeys carries only keys the ABR does not hold from this stream:
// per epoch, one new key per peer instead of the whole window.
type keyDelta struct {
	sent map[uint32]*[engine.KeyWindow]engine.EpochKey
}

// next returns the FeedKeys peers for the live pairs asns with keys: every
// live pair, each with the keys it has not sent (new epochs, or a re-key's
// other key for an epoch), and remembers them. A pair no longer live is
// forgotten: if it comes back its keys go again.
func (d *keyDelta) next(asns []uint32, keys []engine.PeerKeys) []*acspb.PeerKeys {
	if d.sent == nil {
		d.sent = map[uint32]*[engine.KeyWindow]engine.EpochKey{}
	}
	live := make(map[uint32]bool, len(asns))
	out := make([]*acspb.PeerKeys, 0, len(asns))
	for i, asn := range asns {
		live[asn] = true
		s := d.sent[asn]
		if s == nil {
			s = new([engine.KeyWindow]engine.EpochKey)
			d.sent[asn] = s
		}
		m := &acspb.PeerKeys{Asn: asn}
		for j := range keys[i].Keys {
			k := &keys[i].Keys[j]
			if !k.Valid || k.Epoch < 0 {
				continue
			}
			slot := &s[k.Epoch%engine.KeyWindow]
			if *slot == *k {
				continue
			}
			*slot = *k
			m.Keys = append(m.Keys, &acspb.EpochKey{Epoch: k.Epoch, Key: wireKey(k)})
		}
		sort.Slice(m.Keys, func(a, b int) bool { return m.Keys[a].Epoch < m.Keys[b].Epoch })
		out = append(out, m)
	}
	for asn := range d.sent {
		if !live[asn] {
			delete(d.sent, asn)
		}
	}
	return out
}

// treeHops is the tree's verdict for one membership set, kept until the
// set changes: replace entries cost O(members²) at a border. The feed's
// membership part for the set is built from it once (mem).
type treeHops struct {
	digest  [32]byte
	Next    map[uint32]uint32
	replace []replaceHop // sorted by (src, dst): snapshots are deterministic

	// The records the hops are of (read only; dropped once mem is built),
	// and the feed's membership part built from them once (feedMembership).
	recs    []membership.Record
	memOnce sync.Once
	mem     *feedMembership
}

type replaceHop struct{ src, dst, in, out uint32 }

// hops returns the tree's hops for the held membership, recomputed only
// when the membership digest changes, and the live records (fresh ones if
// fresh is set, else the cached hops' own, shared: not to be modified).
// The digest is read before the records, so hops are never cached under a
// digest newer than the records they were computed from: a record applied
// meanwhile changes the digest, and the next call recomputes.
func (n *Node) hops(fresh bool) (*treeHops, []membership.Record) {
	d := n.set.Digest()
	n.hopsMu.Lock()
	defer n.hopsMu.Unlock()
	if n.hopsCache != nil && n.hopsCache.digest == d {
		if fresh {
			return n.hopsCache, n.set.Records()
		}
		return n.hopsCache, n.hopsCache.recs
	}
	recs := n.set.Records()
	ascn := make(map[uint32]uint32, len(recs)+1)
	members := make([]uint32, 0, len(recs)+1)
	for _, r := range recs {
		ascn[r.ASN] = r.ASCN
		members = append(members, r.ASN)
	}
	if _, ok := ascn[n.cfg.ASN]; !ok && len(n.cfg.Tree.Communities()) == 0 {
		// Flat alliance: the local AS is in community 0 even before its
		// own record is known.
		ascn[n.cfg.ASN] = 0
		members = append(members, n.cfg.ASN)
	}
	of := func(asn uint32) (uint32, bool) { c, ok := ascn[asn]; return c, ok }
	h := n.cfg.Tree.HopsFor(n.cfg.ASN, members, of)
	th := &treeHops{digest: d, Next: h.Next, recs: recs}
	for k, v := range h.Replace {
		th.replace = append(th.replace, replaceHop{src: k[0], dst: k[1], in: v[0], out: v[1]})
	}
	sort.Slice(th.replace, func(i, j int) bool {
		a, b := th.replace[i], th.replace[j]
		return a.src < b.src || a.src == b.src && a.dst < b.dst
	})
	n.hopsCache = th
	return th, recs
}

// NewFeedCursor starts a feed of this node's tables: a Feed stream's, or
// an ABR's in the same process (control/node).
func (n *Node) NewFeedCursor() *FeedCursor { return &FeedCursor{n: n} }

// ASN is this node's AS.
func (n *Node) ASN() uint32 { return n.cfg.ASN }

// FeedCursor is one feed's progress through the node's tables: what it has
// sent of the membership and of the keys. Not safe for concurrent use.
type FeedCursor struct {
	n       *Node
	sent    uint64 // tables version last sent, 0: none
	memSent uint64 // membership version last sent, 0: none
	delta   keyDelta
}

// Next returns the messages that bring the feed up to the node's tables
// at now: none if they have not changed since the last call; otherwise the
// membership chunks, whole, if this feed has not sent the membership held,
// then a FeedKeys (which puts them in force at the ABR).
func (c *FeedCursor) Next(now time.Time) []*acspb.FeedMessage {
	n := c.n
	n.mu.Lock()
	ver := n.version
	n.mu.Unlock()
	if ver == c.sent {
		return nil
	}
	var out []*acspb.FeedMessage
	if m := n.feedMembership(); m.version != c.memSent {
		out = make([]*acspb.FeedMessage, 0, len(m.chunks)+1)
		for _, ch := range m.chunks {
			out = append(out, &acspb.FeedMessage{Body: &acspb.FeedMessage_Membership{Membership: ch}})
		}
		c.memSent = m.version
	}
	v, asns, keys := n.feedKeys(now)
	out = append(out, &acspb.FeedMessage{Body: &acspb.FeedMessage_Keys{Keys: &acspb.FeedKeys{Version: v, MembershipVersion: c.memSent, Peers: c.delta.next(asns, keys)}}})
	c.sent = v
	return out
}

// Feed streams this AS's tables to one of its ABRs (docs/wire.md §3.1,
// feed version 2): the membership in chunks at once and again whenever it
// changes, then a keys-only FeedKeys at once, at every epoch boundary and
// on every change of keys, with a heartbeat every interval. Only a client
// whose certificate names this AS (an ABR of ours) is served: the keys are
// this AS's secrets.
func (sv *server) Feed(req *acspb.FeedRequest, st acspb.ACS_FeedServer) error {
	n := sv.n
	id, cs, err := n.authorize(st.Context(), svcFeed)
	if err != nil {
		return err
	}
	if req.GetAsn() != n.cfg.ASN {
		n.refuse(svcFeed, pair.ReasonWrongAS, fmt.Errorf("request for AS%d", req.GetAsn()))
		return status.Errorf(codes.PermissionDenied, "feed is for ABRs of AS%d, not AS%d", n.cfg.ASN, req.GetAsn())
	}
	// The certificate names the ABR; the name in the request is only
	// what it calls itself, logged if it differs.
	name := id.Name
	if req.GetAbr() != name {
		n.log.Info("abr feed: request names another ABR than its certificate", zap.String("cert", id.Name), zap.String("request", req.GetAbr()))
	}
	if v := req.GetFeedVersion(); v != acspb.FeedVersion {
		// An ABR from before the split would wait for whole snapshots
		// that never come: say so instead of feeding it what it ignores.
		n.log.Warn("abr feed refused: the ABR speaks another feed version (upgrade it)", zap.String("abr", name), zap.Uint32("abr_feed_version", v), zap.Int("feed_version", acspb.FeedVersion))
		return status.Errorf(codes.FailedPrecondition, "this ACS speaks feed version %d, the ABR %d: upgrade the ABR", acspb.FeedVersion, v)
	}
	n.mu.Lock()
	n.abrs[name]++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.abrs[name]--; n.abrs[name] <= 0 {
			delete(n.abrs, name)
		}
		n.mu.Unlock()
	}()
	n.log.Info("abr feed", zap.String("abr", name), zap.Uint64("have", req.GetHaveVersion()))
	hb := time.NewTicker(n.hb)
	defer hb.Stop()
	var seq uint64
	cur := n.NewFeedCursor()
	heartbeat := func() error {
		seq++
		return n.sendFeed(st, &acspb.FeedMessage{Body: &acspb.FeedMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{
			Seq: seq, SendUnixNano: n.now().UnixNano(), IntervalNanos: int64(n.hb)}}})
	}
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		first := cur.sent == 0
		msgs := cur.Next(n.now())
		for _, m := range msgs {
			if err := n.sendFeed(st, m); err != nil {
				return err
			}
		}
		if len(msgs) > 1 {
			n.log.Debug("abr feed: membership sent", zap.String("abr", name), zap.Uint64("membership_version", cur.memSent), zap.Int("chunks", len(msgs)-1))
		}
		if first && len(msgs) > 0 {
			if err := heartbeat(); err != nil {
				return err
			}
		}
		select {
		case <-st.Context().Done():
			return nil
		case <-n.ctx.Done():
			return status.Error(codes.Unavailable, "acs stopping")
		case <-ch:
		case <-hb.C:
			// A certificate revoked by a reload loses its feed within a
			// heartbeat (CloseRevoked closes peer sessions at once).
			if err := n.cfg.Identity.Revoked(cs); err != nil {
				n.log.Warn("abr feed closed: certificate revoked", zap.String("abr", name), zap.Error(err))
				return status.Error(codes.PermissionDenied, err.Error())
			}
			if err := heartbeat(); err != nil {
				return err
			}
		}
	}
}

// Feed parts, as psavd_acs_feed_bytes_total and psavd_acs_feed_messages_total
// name them.
const (
	partMembership = iota
	partKeys
	partHeartbeat
	numFeedParts
)

var feedPartNames = [numFeedParts]string{"membership", "keys", "heartbeat"}

// FeedTotals counts what the ACS sent its ABRs, by feed part (membership
// chunks, keys-only messages, heartbeats): messages and protobuf octets.
type FeedTotals struct {
	Messages, Bytes [numFeedParts]uint64
}

// FeedSent returns the totals of every ABR feed so far.
func (n *Node) FeedSent() FeedTotals {
	var t FeedTotals
	for i := range numFeedParts {
		t.Messages[i], t.Bytes[i] = n.c.feedMsgs[i].Load(), n.c.feedBytes[i].Load()
	}
	return t
}

// sendFeed sends one feed message, counted by part: what an ABR costs the
// ACS per epoch is then measured, not estimated (docs/scale.md).
func (n *Node) sendFeed(st acspb.ACS_FeedServer, m *acspb.FeedMessage) error {
	part := partHeartbeat
	switch m.Body.(type) {
	case *acspb.FeedMessage_Membership:
		part = partMembership
	case *acspb.FeedMessage_Keys:
		part = partKeys
	}
	if err := st.Send(m); err != nil {
		return err
	}
	n.c.feedMsgs[part].Add(1)
	n.c.feedBytes[part].Add(uint64(proto.Size(m)))
	return nil
}
