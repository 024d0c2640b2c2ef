package acs

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
)

// abrConn dials the ACS of the lab's node asn as its ABR name does, with
// an abr certificate of that AS.
func abrConn(t *testing.T, l *lab, asn uint32, name string) *grpc.ClientConn {
	t.Helper()
	cert, err := l.ca.IssueABR(asn, name, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return l.conn(t, asn, cert)
}

func TestFeed(t *testing.T) {
	l := newLab(t)
	l.manual = true
	l.mesh(65001, 65002)
	a, b := l.nodes[65001], l.nodes[65002]
	if _, err := a.Publish(l.record(membership.KindJoin, 65001, 1, "10.1.0.0/16", "2001:db8:1::/48")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(l.record(membership.KindJoin, 65002, 1, "10.2.0.0/16")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pair up", func() bool { return isUp(a, 65002) && isUp(b, 65001) })
	waitFor(t, "membership", func() bool { return len(a.Membership().Records()) == 2 })

	cc := abrConn(t, l, 65001, "abr1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs, err := acspb.NewACSClient(cc).Feed(ctx, &acspb.FeedRequest{Asn: 65001, Abr: "abr1", FeedVersion: acspb.FeedVersion})
	if err != nil {
		t.Fatal(err)
	}
	// The feed's two parts, put together as a Tables for the checks below.
	var mem *acspb.MembershipChunk
	var keys *acspb.FeedKeys
	held := map[uint32]map[int64][]byte{}
	heartbeats := 0
	deadline := time.Now().Add(waitLong)
	for mem == nil || len(mem.Members) != 2 || keys == nil || len(keys.Peers) != 1 || len(held[65002]) == 0 || heartbeats == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no complete feed: %v %v", mem, keys)
		}
		m, err := fs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.GetMembership() != nil:
			c := m.GetMembership()
			if mem != nil && c.Version <= mem.Version || c.Index != 0 || c.Count != 1 {
				t.Fatalf("chunk %d/%d of version %d after %v", c.Index, c.Count, c.Version, mem)
			}
			mem = c
		case m.GetKeys() != nil:
			k := m.GetKeys()
			if keys != nil && k.Version <= keys.Version || mem == nil || k.MembershipVersion != mem.Version {
				t.Fatalf("keys %d for membership %d after %v", k.Version, k.MembershipVersion, keys)
			}
			keys = k
			for _, p := range k.Peers {
				if held[p.Asn] == nil {
					held[p.Asn] = map[int64][]byte{}
				}
				for _, e := range p.Keys {
					if _, dup := held[p.Asn][e.Epoch]; dup {
						t.Fatalf("key of epoch %d sent twice on one stream", e.Epoch)
					}
					held[p.Asn][e.Epoch] = e.Key
				}
			}
		case m.GetHeartbeat() != nil:
			heartbeats++
		}
	}
	last := &acspb.Tables{LocalAsn: mem.LocalAsn, PeriodSeconds: mem.PeriodSeconds}
	for _, m := range mem.Members {
		tp := int32(-1)
		if m.TagPeer == 65002 {
			tp = 0
		}
		last.Members = append(last.Members, &acspb.Member{Asn: m.Asn, Local: m.Local, Prefixes: m.Prefixes, TagPeer: tp, ValidatePeer: tp})
		if m.TagPeer != m.ValidatePeer {
			t.Fatalf("member %v", m)
		}
	}
	pk := &acspb.PeerKeys{Asn: keys.Peers[0].Asn}
	for e, k := range held[pk.Asn] {
		pk.Keys = append(pk.Keys, &acspb.EpochKey{Epoch: e, Key: k})
	}
	last.Peers = []*acspb.PeerKeys{pk}
	if last.LocalAsn != 65001 || last.PeriodSeconds != testPeriod {
		t.Fatalf("tables %v", last)
	}
	for _, m := range last.Members {
		switch m.Asn {
		case 65001:
			if !m.Local || m.TagPeer != -1 || len(m.Prefixes) != 2 {
				t.Fatalf("local member %v", m)
			}
		case 65002:
			if m.Local || m.TagPeer != 0 || m.ValidatePeer != 0 || len(m.Prefixes) != 1 || len(m.Prefixes[0].Addr) != 4 {
				t.Fatalf("member %v", m)
			}
		}
	}
	// The keys pushed to AS65001's ABR are the ones AS65002's ACS holds.
	other := b.Tables(time.Now()).Peers[0]
	if pk.Asn != 65002 || other.Asn != 65001 || len(pk.Keys) == 0 {
		t.Fatalf("peers %v %v", pk, other)
	}
	matched := 0
	for _, k := range pk.Keys {
		for _, o := range other.Keys {
			if o.Epoch == k.Epoch {
				if string(o.Key) != string(k.Key) || len(k.Key) != 16 {
					t.Fatalf("epoch %d: keys differ", k.Epoch)
				}
				matched++
			}
		}
	}
	if matched == 0 {
		t.Fatal("no common epoch")
	}
	// What was received was counted by part, in protobuf octets.
	ft := a.FeedSent()
	if ft.Messages[partMembership] == 0 || ft.Messages[partKeys] == 0 || ft.Messages[partHeartbeat] == 0 ||
		ft.Bytes[partMembership] < uint64(proto.Size(&acspb.FeedMessage{Body: &acspb.FeedMessage_Membership{Membership: mem}})) ||
		ft.Bytes[partKeys] < uint64(proto.Size(&acspb.FeedMessage{Body: &acspb.FeedMessage_Keys{Keys: keys}})) {
		t.Fatalf("feed totals %+v do not cover what was received (membership %d octets, keys %d)", ft, proto.Size(mem), proto.Size(keys))
	}
	waitFor(t, "abr in status", func() bool {
		abrs := a.Status().Abrs
		return len(abrs) == 1 && abrs[0] == "abr1"
	})

	// Refusals: an ABR of another AS, or a request naming another AS; an
	// ABR of a feed version before the split.
	for _, req := range []*acspb.FeedRequest{{Asn: 65002, FeedVersion: acspb.FeedVersion}, {Asn: 0}, {Asn: 65001}, {Asn: 65001, FeedVersion: 3}} {
		s, err := acspb.NewACSClient(cc).Feed(context.Background(), req)
		if err == nil {
			_, err = s.Recv()
		}
		want := codes.PermissionDenied
		if req.Asn == 65001 {
			want = codes.FailedPrecondition
		}
		if status.Code(err) != want {
			t.Fatalf("feed %v: %v", req, err)
		}
	}
}
