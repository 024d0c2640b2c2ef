package abr

import (
	"github.com/psavd/psavd/engine"
)

// Merge is make-before-break for tag keys (docs/wire.md §2.8): the tables
// next, as a new snapshot from an ACS, with every key of prev that next
// does not replace and that is still usable at epoch now (now−1 or later)
// carried over. A snapshot that omits a peer (a restarted ACS that has not
// negotiated yet, a peer declared dead) or an epoch therefore never takes a
// key away from the data plane before its epoch is past; a key next does
// give for an epoch wins (a re-key). A member whose tag or validate peer
// next leaves unset (-1) keeps the peer prev named, while that peer's keys
// last. next is modified and returned; prev is not (it may be in use).
//
// The community replace table is next's: it is recomputed from membership,
// which a snapshot always carries whole.
func Merge(prev, next *engine.Tables, now int64) *engine.Tables {
	if prev == nil || next == nil || prev.T0 != next.T0 || prev.Period != next.Period {
		// A new epoch clock: the old keys are of other epochs.
		return next
	}
	idx := make(map[uint32]int, len(next.Peers))
	for i := range next.Peers {
		idx[next.Peers[i].ASN] = i
	}
	usable := func(k *engine.EpochKey) bool { return k.Valid && k.Epoch >= now-1 }
	for _, op := range prev.Peers {
		var keep []engine.EpochKey
		for s := range op.Keys {
			if k := op.Keys[s]; usable(&k) {
				keep = append(keep, k)
			}
		}
		if len(keep) == 0 {
			continue
		}
		i, ok := idx[op.ASN]
		if !ok {
			i = len(next.Peers)
			next.Peers = append(next.Peers, engine.PeerKeys{ASN: op.ASN})
			idx[op.ASN] = i
		}
		np := &next.Peers[i]
		for _, k := range keep {
			slot := &np.Keys[k.Epoch%engine.KeyWindow]
			if usable(slot) {
				continue // next holds a usable key there: its own (a re-key wins)
			}
			*slot = k
		}
	}
	// Members whose peer next does not name yet keep prev's.
	prevPeer := func(asn uint32, tag bool) (uint32, bool) {
		for _, m := range prev.Members {
			if m.ASN != asn {
				continue
			}
			p := m.ValidatePeer
			if tag {
				p = m.TagPeer
			}
			if p < 0 || int(p) >= len(prev.Peers) {
				return 0, false
			}
			return prev.Peers[p].ASN, true
		}
		return 0, false
	}
	for i := range next.Members {
		m := &next.Members[i]
		if m.Local {
			continue
		}
		if m.TagPeer < 0 {
			if asn, ok := prevPeer(m.ASN, true); ok {
				if j, ok := idx[asn]; ok {
					m.TagPeer = int32(j)
				}
			}
		}
		if m.ValidatePeer < 0 {
			if asn, ok := prevPeer(m.ASN, false); ok {
				if j, ok := idx[asn]; ok {
					m.ValidatePeer = int32(j)
				}
			}
		}
	}
	return next
}
