package acs

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	recs := n.set.Records()
	hops := n.hops(recs)
	n.mu.Lock()
	t := &acspb.Tables{
		Version: n.version, T0: n.cfg.T0, PeriodSeconds: int64(n.cfg.Period), LocalAsn: n.cfg.ASN,
	}
	asns := make([]uint32, 0, len(n.peers))
	for asn, ps := range n.peers {
		if ps.machine != nil && !ps.machine.Removed() {
			asns = append(asns, asn)
		}
	}
	sort.Slice(asns, func(i, j int) bool { return asns[i] < asns[j] })
	keys := make([]engine.PeerKeys, len(asns))
	for i, asn := range asns {
		keys[i] = n.peers[asn].machine.KeysAhead(now.Unix(), n.cfg.KeyLead)
	}
	n.mu.Unlock()

	idx := make(map[uint32]int32, len(asns))
	for i, pk := range keys {
		m := &acspb.PeerKeys{Asn: asns[i]}
		for _, k := range pk.Keys {
			if !k.Valid {
				continue
			}
			var b [16]byte
			binary.LittleEndian.PutUint64(b[0:8], k.K0) // engine.Key.Halves, inverted
			binary.LittleEndian.PutUint64(b[8:16], k.K1)
			m.Keys = append(m.Keys, &acspb.EpochKey{Epoch: k.Epoch, Key: b[:]})
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
			a := p.Addr()
			var raw []byte
			if a.Is4() {
				b := a.As4()
				raw = b[:]
			} else {
				b := a.As16()
				raw = b[:]
			}
			mm.Prefixes = append(mm.Prefixes, &acspb.Prefix{Addr: raw, Bits: uint32(p.Bits())})
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

// treeHops is the tree's verdict for one membership set, kept until the
// set changes: replace entries cost O(members²) at a border.
type treeHops struct {
	digest  [32]byte
	Next    map[uint32]uint32
	replace []replaceHop // sorted by (src, dst): snapshots are deterministic
}

type replaceHop struct{ src, dst, in, out uint32 }

// hops returns the tree's hops for the held membership, recomputed only
// when the membership digest changes.
func (n *Node) hops(recs []membership.Record) *treeHops {
	d := n.set.Digest()
	n.hopsMu.Lock()
	defer n.hopsMu.Unlock()
	if n.hopsCache != nil && n.hopsCache.digest == d {
		return n.hopsCache
	}
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
	th := &treeHops{digest: d, Next: h.Next}
	for k, v := range h.Replace {
		th.replace = append(th.replace, replaceHop{src: k[0], dst: k[1], in: v[0], out: v[1]})
	}
	sort.Slice(th.replace, func(i, j int) bool {
		a, b := th.replace[i], th.replace[j]
		return a.src < b.src || a.src == b.src && a.dst < b.dst
	})
	n.hopsCache = th
	return th
}

// Feed streams snapshots to an ABR of this AS: one at once, then one on
// every change (keys, membership) and at every epoch boundary, with a
// heartbeat every interval. Only a client whose certificate names this AS
// (an ABR of ours) is served: the keys are this AS's secrets.
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
	var sent, seq uint64
	heartbeat := func() error {
		seq++
		return st.Send(&acspb.FeedMessage{Body: &acspb.FeedMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{
			Seq: seq, SendUnixNano: n.now().UnixNano(), IntervalNanos: int64(n.hb)}}})
	}
	for {
		n.mu.Lock()
		ch, ver := n.changed, n.version
		n.mu.Unlock()
		if ver != sent {
			t := n.Tables(n.now())
			if err := st.Send(&acspb.FeedMessage{Body: &acspb.FeedMessage_Tables{Tables: t}}); err != nil {
				return err
			}
			if sent == 0 {
				if err := heartbeat(); err != nil {
					return err
				}
			}
			sent = t.Version
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
