package acs

import (
	"crypto/tls"
	"encoding/binary"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
)

// encodeSequence is the fuzz input format: each message as a 2-octet
// length and its protobuf encoding.
func encodeSequence(msgs ...*acspb.PeerMessage) []byte {
	var out []byte
	for _, m := range msgs {
		b, _ := proto.Marshal(m)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

// FuzzSessionSequence feeds sequences of peer messages, valid, odd and
// malformed, to one registered session of a real Node (its handlers, its
// membership set, its state machine bookkeeping) — sequences, not single
// messages, because the session's bugs live in its states: a response
// before a proposal, a second Hello, a Want before a Summary, a heartbeat
// echoing what was never sent. It must never panic; an error ends the
// sequence as it would end the session.
func FuzzSessionSequence(f *testing.F) {
	l := newLab(f)
	now := time.Now()
	hb := &acspb.PeerMessage{Body: &acspb.PeerMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{Seq: 1, SendUnixNano: now.UnixNano()}}}
	echo := &acspb.PeerMessage{Body: &acspb.PeerMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{Seq: 2, SendUnixNano: now.UnixNano(), EchoSeq: 1, EchoSendUnixNano: now.UnixNano(), EchoRecvUnixNano: now.UnixNano()}}}
	prop := &acspb.PeerMessage{Body: &acspb.PeerMessage_Proposal{Proposal: &acspb.Proposal{Id: 1, T0: 0, PeriodSeconds: 60, StartEpoch: uint64(now.Unix()/60 + 2)}}}
	resp := &acspb.PeerMessage{Body: &acspb.PeerMessage_ProposalResponse{ProposalResponse: &acspb.ProposalResponse{Id: 1}}}
	rec := &acspb.PeerMessage{Body: &acspb.PeerMessage_Record{Record: &acspb.MembershipRecord{Record: l.record(membership.KindJoin, 65002, 1, "10.2.0.0/16")}}}
	sum := &acspb.PeerMessage{Body: &acspb.PeerMessage_Summary{Summary: &acspb.MembershipSummary{Entries: []*acspb.MembershipEntry{{Asn: 65002, Version: 9}}}}}
	want := &acspb.PeerMessage{Body: &acspb.PeerMessage_Want{Want: &acspb.MembershipWant{Asns: []uint32{65001, 65002, 4294967295}}}}
	exit := &acspb.PeerMessage{Body: &acspb.PeerMessage_ForcedExit{ForcedExit: &acspb.ForcedExit{Asn: 65001, Reason: "x"}}}
	hello := &acspb.PeerMessage{Body: &acspb.PeerMessage_Hello{Hello: &acspb.Hello{SchemaVersion: SchemaVersion, Asn: 65002}}}
	f.Add(encodeSequence(hb, echo, prop, resp, rec, sum, want))
	f.Add(encodeSequence(resp, prop, prop, echo, hb))
	f.Add(encodeSequence(hello, rec, rec, want, sum, exit))
	f.Add(encodeSequence(&acspb.PeerMessage{}, hb))
	f.Add([]byte{0, 3, 0xff, 0xff, 0xff})
	// The confirm step, a re-key request, heartbeats carrying membership
	// digests (anti-entropy: ours, another, a short one).
	confirm := &acspb.PeerMessage{Body: &acspb.PeerMessage_Confirm{Confirm: &acspb.ProposalConfirm{Id: 1, StartEpoch: uint64(now.Unix()/60 + 2)}}}
	rekey := &acspb.PeerMessage{Body: &acspb.PeerMessage_RekeyRequest{RekeyRequest: &acspb.RekeyRequest{Reason: "clock step"}}}
	digestHB := func(seq uint64, d []byte) *acspb.PeerMessage {
		return &acspb.PeerMessage{Body: &acspb.PeerMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{Seq: seq, SendUnixNano: now.UnixNano(), EchoSeq: 1,
			EchoSendUnixNano: now.UnixNano(), EchoRecvUnixNano: now.UnixNano(), MembershipDigest: d}}}
	}
	f.Add(encodeSequence(hb, echo, prop, confirm, confirm, rekey, resp, confirm))
	f.Add(encodeSequence(rekey, hb, rekey, echo, prop, rekey))
	f.Add(encodeSequence(digestHB(1, make([]byte, 32)), digestHB(2, []byte{1, 2, 3}), rec, digestHB(3, make([]byte, 64)), sum))

	cfg := Config{ASN: 65001, Identity: l.identity(l.ca, 65001), Listen: "127.0.0.1:0", Heartbeat: time.Second, Period: testPeriod,
		MembershipPolicy: l.policy, Logger: zap.NewNop()}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := New(cfg) // a fresh node each time: no state carried between inputs
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		s := n.newSession(65002, 65002, tls.ConnectionState{})
		if err := n.register(s); err != nil {
			t.Fatal(err)
		}
		defer s.kill(nil)
		for len(data) >= 2 {
			size := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			if size > len(data) {
				return
			}
			var m acspb.PeerMessage
			chunk := data[:size]
			data = data[size:]
			if proto.Unmarshal(chunk, &m) != nil {
				continue
			}
			if err := s.handle(&m); err != nil {
				return
			}
		}
	})
}
