package acs

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/psavd/psavd/control/membership"
)

// TestAntiEntropyHeals: a record that reaches one ACS without being
// flooded (applied to its set directly, as a store restored from a backup
// or a record received while every session was down would be) reaches its
// peer through the digests the heartbeats carry: after 10 intervals of
// differing digests a Summary is sent and its Diff heals the peer, with
// no session dropped. Without anti-entropy the peer would never learn it.
func TestAntiEntropyHeals(t *testing.T) {
	l := newLab(t)
	a := l.start(65001, []uint32{65001, 65002})
	b := l.start(65002, []uint32{65001, 65002})
	pairAgrees(t, a, b)
	rec := l.record(membership.KindJoin, 4200000001, 1, "10.99.0.0/24")
	if changed, err := a.Membership().ApplyBytes(rec); err != nil || !changed {
		t.Fatalf("apply at AS65001: %v %v", changed, err)
	}
	if a.Membership().Digest() == b.Membership().Digest() {
		t.Fatal("the digests agree before anti-entropy: the record was flooded")
	}
	for deadline := time.Now().Add(time.Minute); a.Membership().Digest() != b.Membership().Digest(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("AS65002 never learnt the record AS65001 holds: no anti-entropy")
		}
	}
	if _, ok := b.Membership().Get(4200000001); !ok {
		t.Fatal("digests agree but AS65002 lacks the record")
	}
	if n := a.Counters().AntiEntropySummaries + b.Counters().AntiEntropySummaries; n == 0 {
		t.Error("healed, but no anti-entropy summary was counted")
	}
	for _, n := range []*Node{a, b} {
		if c := n.Counters(); c.DeadDeclared != 0 || c.Established != 1 {
			t.Errorf("AS%d: %d dead declared, %d established (want 0 and 1)", n.cfg.ASN, c.DeadDeclared, c.Established)
		}
	}
}

// TestAntiEntropyBacksOff: while the digests keep differing (the peer
// refuses what we hold), summaries are spaced ever further apart instead
// of being sent every 10 intervals forever; equal digests reset the wait.
func TestAntiEntropyBacksOff(t *testing.T) {
	l := newLab(t)
	n := l.start(65001, []uint32{65001, 65002})
	s := n.newSession(65002, 65001, tls.ConnectionState{})
	base := antiEntropyAfter * n.hb
	other := make([]byte, 32)
	other[0] = 1
	t0 := s.lastSummary
	var sent []time.Duration
	for at := t0; at.Sub(t0) < 300*base; at = at.Add(n.hb) {
		before := len(s.out)
		s.antiEntropy(other, at)
		if len(s.out) > before {
			<-s.out
			sent = append(sent, at.Sub(t0))
		}
	}
	if last := sent[len(sent)-1] - sent[len(sent)-2]; last > antiEntropyMaxAfter*n.hb+n.hb {
		t.Fatalf("summaries %v apart: beyond the longest wait", last)
	}
	if len(sent) < 3 {
		t.Fatalf("%d summaries over 300 waits: %v", len(sent), sent)
	}
	for i := 2; i < len(sent); i++ {
		if gap, prev := sent[i]-sent[i-1], sent[i-1]-sent[i-2]; gap < min(2*prev, antiEntropyMaxAfter*n.hb)-n.hb {
			t.Fatalf("summary gaps %v then %v: not backing off (%v)", prev, gap, sent)
		}
	}
	d := n.Membership().Digest()
	s.antiEntropy(d[:], t0)
	if s.summaryWait != base || !s.digestDiffSince.IsZero() {
		t.Fatalf("equal digests left wait %v, differing since %v", s.summaryWait, s.digestDiffSince)
	}
}
