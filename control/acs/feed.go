package acs

import (
	"encoding/binary"
	"sort"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// Tables builds the snapshot pushed to this AS's ABRs at time now: the
// members and their prefixes from the membership set, and the keys of every
// live pair for epochs e−1 … e+2 (keys only, never states). Flat alliance:
// a member's tag and validate peer is the member itself when a pair with
// it is up, otherwise −1. The local AS is always a member, even before its
// own record is known.
func (n *Node) Tables(now time.Time) *acspb.Tables {
	recs := n.set.Records()
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
		keys[i] = n.peers[asn].machine.KeysAt(now.Unix())
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
	local := false
	for _, r := range recs {
		mm := &acspb.Member{Asn: r.ASN, Local: r.ASN == n.cfg.ASN, TagPeer: -1, ValidatePeer: -1}
		if i, ok := idx[r.ASN]; ok {
			mm.TagPeer, mm.ValidatePeer = i, i
		}
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
		t.Members = append(t.Members, mm)
	}
	if !local {
		t.Members = append(t.Members, &acspb.Member{Asn: n.cfg.ASN, Local: true, TagPeer: -1, ValidatePeer: -1})
	}
	return t
}

// Feed streams snapshots to an ABR of this AS: one at once, then one on
// every change (keys, membership) and at every epoch boundary, with a
// heartbeat every interval. Only a client whose certificate names this AS
// (an ABR of ours) is served: the keys are this AS's secrets.
func (sv *server) Feed(req *acspb.FeedRequest, st acspb.ACS_FeedServer) error {
	n := sv.n
	cs, err := tlsState(st.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	if asn, err := peerASN(cs); err != nil || asn != n.cfg.ASN || req.GetAsn() != n.cfg.ASN {
		n.c.sessionsRefused.Add(1)
		return status.Errorf(codes.PermissionDenied, "feed is for ABRs of AS%d", n.cfg.ASN)
	}
	name := req.GetAbr()
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
			Seq: seq, SendUnixNano: n.now().UnixNano()}}})
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
			if err := heartbeat(); err != nil {
				return err
			}
		}
	}
}
