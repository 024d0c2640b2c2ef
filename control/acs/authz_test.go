package acs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
)

// peerCall opens Peer on cc, sends h and returns the status of the first
// answer (nil: the server answered with its Hello).
func peerCall(t *testing.T, cc *grpc.ClientConn, h *acspb.Hello) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	st, err := acspb.NewACSClient(cc).Peer(ctx)
	if err != nil {
		return err
	}
	// Send may see io.EOF when the server has already refused; the
	// status comes from Recv.
	if err := st.Send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Hello{Hello: h}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = st.Recv()
	return err
}

func feedCall(t *testing.T, cc *grpc.ClientConn, asn uint32) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	fs, err := acspb.NewACSClient(cc).Feed(ctx, &acspb.FeedRequest{Asn: asn, Abr: "x", FeedVersion: acspb.FeedVersion})
	if err == nil {
		_, err = fs.Recv()
	}
	return err
}

func statusCall(cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := acspb.NewACSClient(cc).Status(ctx, &acspb.StatusRequest{})
	return err
}

// TestCertificateRoles is docs/wire.md §3.1 over real mutual TLS: each
// service of the ACS listener accepts only its role (peering an acs
// certificate of another AS, the feed an abr certificate of its own AS,
// Status an op certificate of its own AS), a role-less psav:as<N> is
// refused everywhere with a reason that says so, and a live session is
// never displaced — not even by another valid ACS certificate of the
// peer's AS. Every refusal is counted by service and reason.
func TestCertificateRoles(t *testing.T) {
	l := newLab(t)
	l.mesh(65001, 65002)
	a, b := l.nodes[65001], l.nodes[65002]
	pairAgrees(t, a, b)
	keysBefore := a.Keys(time.Now().Unix())[65002]
	estA, estB := a.Counters().Established, b.Counters().Established

	issue := func(c tls.Certificate, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	abr1 := issue(l.ca.IssueABR(65001, "edge-1", time.Time{}, time.Time{}))
	op1 := issue(l.ca.IssueOp(65001, "noc", time.Time{}, time.Time{}))
	acs1 := issue(l.ca.IssueACS(65001, time.Time{}, time.Time{})) // a second, valid ACS certificate of AS 65001
	acs2 := issue(l.ca.IssueACS(65002, time.Time{}, time.Time{}))
	bare1 := issue(l.ca.IssueURI("psav:as65001", time.Time{}, time.Time{}))
	hello1 := &acspb.Hello{SchemaVersion: SchemaVersion, Asn: 65001}

	want := func(what string, err error, code codes.Code, reason string) {
		t.Helper()
		if status.Code(err) != code {
			t.Fatalf("%s: %v, want %s", what, err, code)
		}
		if reason != "" && !strings.Contains(err.Error(), reason) {
			t.Fatalf("%s: %v, want it to say %q", what, err, reason)
		}
	}
	// At AS 65002 (the peer of 65001).
	want("an ABR certificate of AS65001 peering as its ACS", peerCall(t, l.conn(t, 65002, abr1), hello1),
		codes.PermissionDenied, "accepts only acs certificates")
	want("an operator certificate peering", peerCall(t, l.conn(t, 65002, op1), hello1), codes.PermissionDenied, "accepts only acs")
	want("a role-less certificate peering", peerCall(t, l.conn(t, 65002, bare1), hello1), codes.PermissionDenied, "has no role")
	want("a second ACS certificate of AS65001 displacing the live session", peerCall(t, l.conn(t, 65002, acs1), hello1),
		codes.AlreadyExists, "heartbeating")
	want("an ACS certificate of AS65001 at AS65002's feed", feedCall(t, l.conn(t, 65002, acs1), 65002), codes.PermissionDenied, "accepts only abr")
	want("an ABR certificate of AS65001 at AS65002's feed", feedCall(t, l.conn(t, 65002, abr1), 65002), codes.PermissionDenied, "accepts only AS65002")
	want("an operator of AS65001 reading AS65002's status", statusCall(l.conn(t, 65002, op1)), codes.PermissionDenied, "accepts only AS65002")
	// At AS 65001 itself.
	want("AS65001's own ABR reading Status", statusCall(l.conn(t, 65001, abr1)), codes.PermissionDenied, "accepts only op")
	want("AS65002's ACS reading AS65001's Status", statusCall(l.conn(t, 65001, acs2)), codes.PermissionDenied, "accepts only op")
	want("a role-less certificate reading Status", statusCall(l.conn(t, 65001, bare1)), codes.PermissionDenied, "has no role")
	want("a role-less certificate at the feed", feedCall(t, l.conn(t, 65001, bare1), 65001), codes.PermissionDenied, "has no role")
	want("AS65001's own ACS certificate peering with itself", peerCall(t, l.conn(t, 65001, acs1), hello1), codes.PermissionDenied, "our own AS")
	if err := statusCall(l.conn(t, 65001, op1)); err != nil {
		t.Fatalf("AS65001's operator reading Status: %v", err)
	}

	// The pair was never disturbed: same keys, no new machine.
	if got := a.Keys(time.Now().Unix())[65002]; got.ASN != keysBefore.ASN || a.Counters().Established != estA || b.Counters().Established != estB {
		t.Fatalf("the pair was re-established (%d→%d, %d→%d)", estA, a.Counters().Established, estB, b.Counters().Established)
	}
	if p := peerStatus(a, 65002); p == nil || p.State != StateUp {
		t.Fatalf("pair at 65001: %v", p)
	}
	for _, c := range []struct {
		n           *Node
		svc, reason string
		atLeast     uint64
	}{
		{b, "peer", pair.ReasonWrongRole, 2}, {b, "peer", pair.ReasonRoleless, 1}, {b, "peer", reasonLiveSession, 1},
		{b, "feed", pair.ReasonWrongRole, 1}, {b, "feed", pair.ReasonWrongAS, 1}, {b, "status", pair.ReasonWrongAS, 1},
		{a, "status", pair.ReasonWrongRole, 2}, {a, "status", pair.ReasonRoleless, 1}, {a, "feed", pair.ReasonRoleless, 1},
		{a, "peer", pair.ReasonWrongAS, 1},
	} {
		if got := c.n.Refusals()[[2]string{c.svc, c.reason}]; got < c.atLeast {
			t.Errorf("AS%d: refused %s/%s = %d, want ≥ %d", c.n.cfg.ASN, c.svc, c.reason, got, c.atLeast)
		}
	}
}

// A node refuses to start on a certificate of another role than acs.
func TestACSNeedsACSCertificate(t *testing.T) {
	l := newLab(t)
	abr, err := l.ca.IssueABR(65001, "edge-1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	id := l.identity(l.ca, 65001)
	id.Cert = abr
	n, err := New(Config{ASN: 65001, Listen: "127.0.0.1:0", Identity: id, MembershipPolicy: l.policy, MembershipDir: t.TempDir()})
	if err == nil {
		err = n.Start(context.Background())
		n.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "needs an acs certificate") {
		t.Fatalf("an ABR certificate as the ACS's: %v", err)
	}
}
