package acs

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	// 5 × 100 ms (the lab's): applying the burst takes seconds, so a
	// reader stuck on it would be a dead peer many times over.
	a := l.start(65001, []uint32{65001, 65002})
	for i := range members {
		asn := uint32(4200000000 + i)
		rec := l.record(membership.KindJoin, asn, 1, fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256))
		if _, err := a.Publish(rec); err != nil {
			t.Fatal(err)
		}
	}
	b := l.start(65002, []uint32{65001, 65002})
	// Applying 2,000 records (signatures, fsyncs) takes a while under
	// -race on two cores: a deadline of its own, only loss is judged.
	for deadline := time.Now().Add(5 * time.Minute); b.Membership().Digest() != a.Membership().Digest(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("AS65002 holds %d of the %d records after 5 minutes", len(b.Membership().Records()), members+2)
		}
	}
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

// TestDialPacer: dials reserve slots 1/rate apart, in order; an idle pacer
// lets the next dial go at once; a caller whose context ends stops waiting.
func TestDialPacer(t *testing.T) {
	p := dialPacer{gap: time.Second / dialRate}
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if got, want := p.reserve(t0), t0.Add(time.Duration(i)*p.gap); !got.Equal(want) {
			t.Fatalf("reservation %d at %v, want %v", i, got, want)
		}
	}
	later := t0.Add(time.Minute)
	if got := p.reserve(later); !got.Equal(later) {
		t.Fatalf("an idle pacer's next slot is %v, want now (%v)", got, later)
	}
	q := dialPacer{gap: time.Hour}
	q.reserve(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if q.wait(ctx) {
		t.Fatal("wait went on after its context ended")
	}
}
