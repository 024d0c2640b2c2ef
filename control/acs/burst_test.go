package acs

import (
	"fmt"
	"testing"

	"github.com/psavd/psavd/control/membership"
)

// TestMembershipBurstKeepsPeering is issue 13's "2,000 membership records
// arriving in a burst while heartbeats run: no peer declared dead" over real
// mutual TLS with durable stores (two fsyncs a record): AS65002 starts with
// an empty store and catches up with AS65001's 2,000 records. The records
// stream behind the heartbeats and are applied off the session's reader, so
// neither side misses a heartbeat and the session is never dropped (a
// catch-up larger than a send queue used to close it, and the pair flapped).
func TestMembershipBurstKeepsPeering(t *testing.T) {
	const members = 2000
	l := newLab(t)
	l.dead = 3 // 3 × 100 ms: a reader stuck on fsyncs for 300 ms is a dead peer
	a := l.start(65001, []uint32{65001, 65002})
	for i := range members {
		asn := uint32(4200000000 + i)
		rec := l.record(membership.KindJoin, asn, 1, fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256))
		if _, err := a.Publish(rec); err != nil {
			t.Fatal(err)
		}
	}
	b := l.start(65002, []uint32{65001, 65002})
	waitFor(t, "AS65002 holds the 2,000 records", func() bool {
		return b.Membership().Digest() == a.Membership().Digest()
	})
	pairAgrees(t, a, b)
	for _, n := range []*Node{a, b} {
		c := n.Counters()
		if c.DeadDeclared != 0 || c.Established != 1 {
			t.Errorf("AS%d: %d dead declared, %d pairs established (want 0 and 1): the session did not survive the burst", n.cfg.ASN, c.DeadDeclared, c.Established)
		}
	}
	if got := len(b.Membership().Records()); got != members+2 {
		t.Fatalf("AS65002 holds %d records, want %d", got, members+2)
	}
}
