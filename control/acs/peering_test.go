package acs

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
)

// TestPeeringFollowsMembership is peering.go over real mutual TLS: a new
// member that configures one bootstrap peer reaches every member (they
// dial the address its record carries), an AS that never joined gets a
// session for membership exchange only — no keys — that ends after the
// join grace, and an exited AS is cut off: its keys go, it learns of its
// own exit, and it is refused at Hello.
func TestPeeringFollowsMembership(t *testing.T) {
	l := newLab(t)
	grace := func(c *Config) { c.JoinGrace = time.Second }
	for _, a := range []uint32{65001, 65002, 65003} {
		l.addr(a)
	}
	for _, a := range []uint32{65001, 65002, 65003} {
		l.start(a, []uint32{65001, 65002, 65003}, grace)
	}
	// AS65009 knows only AS65001, and nobody has it configured.
	n9 := l.start(65009, []uint32{65001}, grace)
	for _, a := range []uint32{65001, 65002, 65003} {
		pairAgrees(t, l.nodes[a], n9)
	}
	if c := n9.Counters(); c.DialAttempts == 0 {
		t.Fatal("AS65009 never dialled its bootstrap peer")
	}
	for _, a := range []uint32{65002, 65003} {
		if l.nodes[a].Counters().DialAttempts == 0 {
			t.Fatalf("AS%d did not dial AS65009", a)
		}
	}

	// AS65066 has a valid ACS certificate but no record (and no node): a
	// session for membership exchange, no keys, closed at the join grace
	// and counted.
	stranger := l.identity(l.ca, 65066)
	cc := l.conn(t, 65001, stranger.Cert)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := acspb.NewACSClient(cc).Peer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Hello{Hello: &acspb.Hello{SchemaVersion: SchemaVersion, Asn: 65066}}}); err != nil {
		t.Fatal(err)
	}
	gotSummary := false
	for {
		m, err := st.Recv()
		if err != nil {
			break // the session ends at the join grace
		}
		if _, ok := m.Body.(*acspb.PeerMessage_Summary); ok {
			gotSummary = true
		}
		if p, ok := m.Body.(*acspb.PeerMessage_Proposal); ok {
			t.Fatalf("a proposal to an AS that never joined: %v", p)
		}
		// Answer heartbeats so that the session is not dead for silence.
		if h, ok := m.Body.(*acspb.PeerMessage_Heartbeat); ok {
			_ = st.Send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{
				Seq: h.Heartbeat.Seq, SendUnixNano: time.Now().UnixNano(), EchoSeq: h.Heartbeat.Seq,
				EchoSendUnixNano: h.Heartbeat.SendUnixNano, EchoRecvUnixNano: time.Now().UnixNano()}}})
		}
	}
	if !gotSummary {
		t.Fatal("no membership summary for a joining AS")
	}
	if _, keyed := l.nodes[65001].Keys(time.Now().Unix())[65066]; keyed {
		t.Fatal("keys for an AS that never joined")
	}
	if v := l.nodes[65001].Refusals()[[2]string{"peer", reasonNotMember}]; v == 0 {
		t.Fatal("not-member refusal not counted")
	}

	// AS65009 exits (published at AS65003): every pair with it goes, it
	// holds its own exit, and a new session from it is refused.
	exit := l.record(membership.KindExit, 65009, 2)
	if changed, err := l.nodes[65003].Publish(exit); err != nil || !changed {
		t.Fatalf("exit: %v %v", changed, err)
	}
	waitFor(t, "AS65009 told of its own exit", func() bool {
		return n9.Membership().Standing(65009) == membership.Exited
	})
	waitFor(t, "no keys for AS65009 anywhere", func() bool {
		for _, a := range []uint32{65001, 65002, 65003} {
			if _, keyed := l.nodes[a].Keys(time.Now().Unix())[65009]; keyed {
				return false
			}
			if st := peerStatus(l.nodes[a], 65009); st != nil {
				return false // not configured anywhere: forgotten
			}
		}
		return true
	})
	// The pairs among the others are untouched.
	pairAgrees(t, l.nodes[65001], l.nodes[65002])
	pairAgrees(t, l.nodes[65002], l.nodes[65003])
	if err := peerCall(t, l.conn(t, 65002, l.identity(l.ca, 65009).Cert), &acspb.Hello{SchemaVersion: SchemaVersion, Asn: 65009}); err == nil {
		t.Fatal("an exited AS was given a session")
	}
	if v := l.nodes[65002].Refusals()[[2]string{"peer", reasonExited}]; v == 0 {
		t.Fatal("exited refusal not counted")
	}
}

// TestPeerMessageRate: a member's session that floods summaries (each one
// a walk of the whole membership) is ended and counted message-rate; the
// other pairs do not notice.
func TestPeerMessageRate(t *testing.T) {
	l := newLab(t)
	l.mesh(65001, 65002)
	pairAgrees(t, l.nodes[65001], l.nodes[65002])
	// AS65005 is a member (its record is held) but floods.
	if _, err := l.nodes[65001].Publish(l.record(membership.KindJoin, 65005, 1, "10.5.0.0/16")); err != nil {
		t.Fatal(err)
	}
	cc := l.conn(t, 65001, l.identity(l.ca, 65005).Cert)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := acspb.NewACSClient(cc).Peer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Hello{Hello: &acspb.Hello{SchemaVersion: SchemaVersion, Asn: 65005}}}); err != nil {
		t.Fatal(err)
	}
	sum := summaryMsg(l.nodes[65001].Membership())
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	for i := 0; i < 10*DefaultLimits.PeerControlBurst; i++ {
		if err := st.Send(sum); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Log(err)
			}
			break
		}
	}
	select {
	case err := <-ended:
		t.Logf("session ended: %v", err)
	case <-ctx.Done():
		t.Fatal("a flooding peer's session was not ended")
	}
	if v := l.nodes[65001].Refusals()[[2]string{"peer", reasonMessageRate}]; v != 1 {
		t.Fatalf("message-rate refusals = %d, want 1", v)
	}
	pairAgrees(t, l.nodes[65001], l.nodes[65002])
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newTokenBucket(2, 3, t0)
	for i := 0; i < 3; i++ {
		if !b.take(t0) {
			t.Fatalf("burst: token %d refused", i)
		}
	}
	if b.take(t0) {
		t.Fatal("a fourth token in the same instant")
	}
	if !b.take(t0.Add(500*time.Millisecond)) || b.take(t0.Add(500*time.Millisecond)) {
		t.Fatal("2 a second: one token after 500 ms, not two")
	}
	if !b.full(t0.Add(time.Hour)) || b.full(t0.Add(500*time.Millisecond)) {
		t.Fatal("full")
	}
}
