package acs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
)

// stream is the common part of the client and server sides of Peer.
type stream interface {
	Send(*acspb.PeerMessage) error
	Recv() (*acspb.PeerMessage, error)
	Context() context.Context
}

// session is one Peer stream with an ACS whose Hello was accepted.
type session struct {
	n                *Node
	peer             uint32
	dialer, acceptor uint32
	initiator        bool // we propose (lower ASN)
	cs               tls.ConnectionState
	log              *zap.Logger

	out  chan *acspb.PeerMessage
	done chan struct{}

	mu       sync.Mutex
	closed   bool
	final    *acspb.PeerMessage // sent (best effort) when the session is killed
	seq      uint64
	recvSeq  uint64 // last heartbeat received: seq, its send time (t1), when (t2)
	recvSend int64
	recvAt   int64
	replied  bool // answered the peer's first heartbeat at once
	measured bool
	offset   time.Duration
	proposal *pair.Proposal  // initiator: outstanding
	pending  *acspb.Proposal // responder: waiting for a measurement
	upOnce   bool            // a proposal was accepted on this session
	rekey    bool            // initiator: propose a re-key (clock step, RekeyRequest)

	started time.Time // when the session was registered (the join grace)
	rates   peerRates // the peer's message rates (reader goroutine only)

	// Anti-entropy (reader goroutine only): since when the peer's
	// heartbeats have carried a membership digest other than ours, when we
	// last sent a Summary, and how long a difference must last before the
	// next one (doubled while Summaries do not heal it).
	digestDiffSince, lastSummary time.Time
	summaryWait                  time.Duration

	// Membership traffic goes around the heartbeats, both ways (docs/wire.md
	// §2.8): records to send wait in bulk and go out only when no control
	// message is queued, at the pace the transport takes them (a catch-up
	// of any size is streamed, never dropped); membership messages received
	// wait in work for the session's membership worker, so that applying
	// them (signature checks, fsyncs) never delays reading a heartbeat.
	bulk *wakeQueue[[]byte]
	work *wakeQueue[*acspb.PeerMessage]
}

// wakeQueue is a FIFO whose producers never block and whose one consumer
// waits on ready (capacity 1: the queue became non-empty since the last
// wake-up).
type wakeQueue[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{}
}

func newWakeQueue[T any]() *wakeQueue[T] { return &wakeQueue[T]{ready: make(chan struct{}, 1)} }

func (q *wakeQueue[T]) push(v ...T) {
	if len(v) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, v...)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the oldest item.
func (q *wakeQueue[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil // let the backing array go
	}
	return v, true
}

// drain takes every item.
func (q *wakeQueue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	v := q.items
	q.items = nil
	return v
}

func (n *Node) newSession(peerASN, dialer uint32, cs tls.ConnectionState) *session {
	acceptor := n.cfg.ASN
	if dialer == n.cfg.ASN {
		acceptor = peerASN
	}
	now := n.now()
	return &session{
		started: now, rates: newPeerRates(n.cfg.Limits.withDefaults(), now),
		lastSummary: now, summaryWait: antiEntropyAfter * n.hb,
		n: n, peer: peerASN, dialer: dialer, acceptor: acceptor,
		initiator: pair.Initiator(n.cfg.ASN, peerASN), cs: cs,
		log:  n.log.With(zap.Uint32("peer", peerASN)),
		out:  make(chan *acspb.PeerMessage, 1024),
		done: make(chan struct{}),

		bulk: newWakeQueue[[]byte](),
		work: newWakeQueue[*acspb.PeerMessage](),
	}
}

// sendRecords queues membership records behind the control messages.
func (s *session) sendRecords(recs ...[]byte) { s.bulk.push(recs...) }

// isMembership tells the messages the membership worker handles.
func isMembership(m *acspb.PeerMessage) bool {
	switch m.Body.(type) {
	case *acspb.PeerMessage_Record, *acspb.PeerMessage_Summary, *acspb.PeerMessage_Want:
		return true
	}
	return false
}

// membershipWorker applies the membership messages received, in order;
// when the session ends it applies what was received before the end (the
// last message may be the peer's news of our own exit) and returns.
func (s *session) membershipWorker() {
	for {
		ended := false
		select {
		case <-s.done:
			ended = true
		case <-s.work.ready:
		}
		for {
			batch := s.work.drain()
			if len(batch) == 0 {
				break
			}
			for i := 0; i < len(batch); {
				// A run of records is applied as one batch: one disk sync
				// for the run (membership.Set.ApplyBatch), so a catch-up of
				// thousands of records is not thousands of fsyncs.
				j := i
				for j < len(batch) && j-i < maxRecordBatch {
					if _, ok := batch[j].Body.(*acspb.PeerMessage_Record); !ok {
						break
					}
					j++
				}
				if j > i {
					recs := make([][]byte, 0, j-i)
					for _, m := range batch[i:j] {
						recs = append(recs, m.GetRecord().GetRecord())
					}
					s.applyRecords(recs)
					i = j
					continue
				}
				_ = s.handle(batch[i]) // membership messages end no session: refusals are counted
				i++
			}
		}
		if ended {
			return
		}
	}
}

func (s *session) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill ends the session; final, if set, is sent first (best effort). It
// reports whether final will be attempted (the session was still open).
func (s *session) kill(final *acspb.PeerMessage) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	s.final = final
	close(s.done)
	return true
}

// send queues a message; a peer too slow to drain 1024 messages is dropped.
func (s *session) send(m *acspb.PeerMessage) {
	select {
	case <-s.done:
	case s.out <- m:
	default:
		s.log.Warn("send queue full, closing session")
		s.kill(nil)
	}
}

// tlsState returns the TLS state of the connection a stream runs on. On
// both sides grpc puts the transport's peer (AuthInfo = credentials.TLSInfo)
// into the stream's context: server side for the handler, client side in
// http2Client.NewStream (grpc v1.85), so it is the very TLS session the Peer
// stream uses, and ExportKeyingMaterial matches on both ends.
func tlsState(ctx context.Context) (tls.ConnectionState, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, errors.New("acs: no peer in stream context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, fmt.Errorf("acs: peer auth is %T, not TLS", p.AuthInfo)
	}
	return info.State, nil
}

func (n *Node) hello() *acspb.PeerMessage {
	d := n.set.Digest()
	return &acspb.PeerMessage{Body: &acspb.PeerMessage_Hello{Hello: &acspb.Hello{
		SchemaVersion: SchemaVersion, Asn: n.cfg.ASN, MembershipDigest: d[:]}}}
}

// checkHello verifies a Hello against the certificate's ASN.
func checkHello(m *acspb.PeerMessage, certASN uint32) error {
	h := m.GetHello()
	if h == nil {
		return errors.New("first message is not a Hello")
	}
	if h.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schema version %d, want %d (every ACS of an alliance runs a psavd of the same schema version: upgrade the older)", h.SchemaVersion, SchemaVersion)
	}
	if h.Asn != certASN {
		return fmt.Errorf("hello says AS%d, certificate says AS%d", h.Asn, certASN)
	}
	return nil
}

// server implements acspb.ACSServer.
type server struct {
	acspb.UnimplementedACSServer
	n *Node
}

func (sv *server) Status(ctx context.Context, _ *acspb.StatusRequest) (*acspb.StatusReply, error) {
	if _, _, err := sv.n.authorize(ctx, svcStatus); err != nil {
		return nil, err
	}
	return sv.n.Status(), nil
}

// OperatorTables answers an operator of this AS with the tables the ABRs
// are fed, keys replaced by their fingerprints.
func (sv *server) OperatorTables(ctx context.Context, _ *acspb.TablesRequest) (*acspb.Tables, error) {
	if _, _, err := sv.n.authorize(ctx, svcStatus); err != nil {
		return nil, err
	}
	return acspb.Redacted(sv.n.Tables(sv.n.now())), nil
}

// Peer accepts a session from the ACS of any other alliance member
// (ServerConfig verified the chain; authorize the role and AS).
func (sv *server) Peer(st acspb.ACS_PeerServer) error {
	n := sv.n
	id, cs, err := n.authorize(st.Context(), svcPeer)
	if err != nil {
		return err
	}
	asn := id.ASN
	m, err := recvHello(st, n.cfg.Limits.withDefaults().HelloTimeout)
	if errors.Is(err, errHelloTimeout) {
		n.refuse(svcPeer, reasonHelloTime, err)
		return status.Error(codes.DeadlineExceeded, "no Hello in time")
	}
	if err != nil {
		return err
	}
	if err := checkHello(m, asn); err != nil {
		n.refuse(svcPeer, reasonBadHello, err)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	if err := n.admitPeer(asn); err != nil {
		n.refuse(svcPeer, reasonExited, err)
		return status.Error(codes.PermissionDenied, err.Error())
	}
	s := n.newSession(asn, asn, cs)
	if err := n.register(s); err != nil {
		n.refuse(svcPeer, reasonLiveSession, err)
		return status.Error(codes.AlreadyExists, err.Error())
	}
	if err := st.Send(n.hello()); err != nil {
		n.unregister(s)
		return err
	}
	return s.run(st)
}

// dialOnce opens one session to p over a fresh grpc.ClientConn (one TLS
// connection) and runs it until it ends. It reports whether a proposal was
// accepted on it (a peer that refuses keeps the back-off growing).
func (n *Node) dialOnce(p PeerConfig) bool {
	n.c.dialAttempts.Add(1)
	fail := func(err error) bool {
		n.c.dialFailures.Add(1)
		n.log.Debug("dial failed", zap.Uint32("peer", p.ASN), zap.Error(err))
		return false
	}
	ccfg, err := pair.ClientConfig(n.cfg.Identity, p.ASN)
	if err != nil {
		return fail(err)
	}
	cc, err := grpc.NewClient("passthrough:///"+p.Address, grpc.WithTransportCredentials(credentials.NewTLS(ccfg)))
	if err != nil {
		return fail(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	// Without WaitForReady the call fails at once if the connection fails.
	st, err := acspb.NewACSClient(cc).Peer(ctx)
	if err != nil {
		return fail(err)
	}
	cs, err := tlsState(st.Context())
	if err != nil {
		return fail(err)
	}
	asn, err := pair.CheckPeer(cs, p.ASN)
	if err != nil {
		return fail(err)
	}
	if err := st.Send(n.hello()); err != nil {
		return fail(err)
	}
	timer := time.AfterFunc(time.Duration(n.dead)*n.hb+time.Second, cancel)
	m, err := st.Recv()
	timer.Stop()
	if err != nil {
		return fail(err)
	}
	if err := checkHello(m, asn); err != nil {
		n.c.sessionsRefused.Add(1)
		return fail(err)
	}
	if err := n.admitPeer(asn); err != nil {
		return fail(err)
	}
	s := n.newSession(asn, n.cfg.ASN, cs)
	if err := n.register(s); err != nil {
		n.c.sessionsRefused.Add(1)
		return fail(err)
	}
	err = s.run(st)
	n.log.Debug("session ended", zap.Uint32("peer", asn), zap.Error(err))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upOnce // back-off resets only after a negotiated session
}

// run drives a registered session: the caller's goroutine writes (heartbeats
// and queued messages), another reads. It returns when the session ends.
func (s *session) run(st stream) error {
	n := s.n
	defer n.unregister(s)
	if c := n.lastConfirm(s.peer); c != nil && s.initiator {
		// The confirmation of what we installed last, before anything
		// else: the session it was sent on may have ended before the
		// responder read it (docs/wire.md, "Confirm").
		s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Confirm{Confirm: c}})
	}
	s.send(summaryMsg(n.set))
	rerr := make(chan error, 1)
	go s.membershipWorker()
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				rerr <- err
				s.kill(nil)
				return
			}
			if err := s.rates.admit(m, n.now()); err != nil {
				err = fmt.Errorf("AS%d: %w", s.peer, err)
				n.refuse(svcPeer, reasonMessageRate, err)
				rerr <- err
				s.kill(nil)
				return
			}
			if isMembership(m) {
				s.work.push(m)
				continue
			}
			if err := s.handle(m); err != nil {
				s.log.Warn("session error", zap.Error(err))
				rerr <- err
				s.kill(nil)
				return
			}
		}
	}()
	t := time.NewTicker(n.hb)
	defer t.Stop()
	s.heartbeat(st) // at once: the first round trip measures the offset
	var err error
	for err == nil {
		// Control messages and heartbeats first; a queued record only
		// when none is waiting (and the session is not ending).
		select {
		case m := <-s.out:
			err = st.Send(m)
			continue
		case now := <-t.C:
			err = s.tick(st, now)
			continue
		case <-s.done:
		default:
			if rec, ok := s.bulk.pop(); ok {
				err = st.Send(recordMsg(rec))
				continue
			}
		}
		select {
		case <-s.bulk.ready:
		case <-s.done:
			s.mu.Lock()
			final := s.final
			s.mu.Unlock()
			if final != nil {
				_ = st.Send(final)
			}
			select {
			case err = <-rerr:
			default:
				err = errors.New("session closed")
			}
			return err
		case <-st.Context().Done():
			s.kill(nil)
		case m := <-s.out:
			err = st.Send(m)
		case now := <-t.C:
			err = s.tick(st, now)
		}
	}
	s.kill(nil)
	return err
}

// tick is the heartbeat interval's work: the peer's standing, then a
// heartbeat.
func (s *session) tick(st stream, now time.Time) error {
	if err := s.checkStanding(now); err != nil {
		return err
	}
	return s.heartbeat(st)
}

// heartbeat sends one heartbeat echoing the last one received.
func (s *session) heartbeat(st stream) error {
	if s.n.pauseHB.Load() {
		return nil
	}
	return st.Send(s.heartbeatMsg())
}

func (s *session) heartbeatMsg() *acspb.PeerMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	d := s.n.set.Digest()
	return &acspb.PeerMessage{Body: &acspb.PeerMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{
		Seq: s.seq, SendUnixNano: s.n.now().UnixNano(),
		EchoSeq: s.recvSeq, EchoSendUnixNano: s.recvSend, EchoRecvUnixNano: s.recvAt,
		MembershipDigest: d[:],
	}}}
}

// antiEntropyAfter is how many heartbeat intervals two membership digests
// may differ before a Summary is sent: flooding converges well within it,
// so only a divergence flooding missed (a record that arrived while a
// session was down, one a peer refused for a while, a store restored from
// an old backup) costs a Summary, whose Diff then heals both sides. While
// Summaries do not heal it (the peer refuses what we hold, for instance)
// the wait doubles, up to antiEntropyMaxAfter intervals.
const (
	antiEntropyAfter    = 10
	antiEntropyMaxAfter = 640
)

// antiEntropy compares the digest a peer's heartbeat carries with ours and
// sends our Summary when they have differed for long enough.
func (s *session) antiEntropy(peer []byte, now time.Time) {
	n := s.n
	if d := n.set.Digest(); bytes.Equal(d[:], peer) {
		s.digestDiffSince = time.Time{}
		s.summaryWait = antiEntropyAfter * n.hb
		return
	}
	if s.digestDiffSince.IsZero() {
		s.digestDiffSince = now
	}
	if now.Sub(s.digestDiffSince) < s.summaryWait || now.Sub(s.lastSummary) < s.summaryWait {
		return
	}
	s.lastSummary = now
	s.summaryWait = min(2*s.summaryWait, antiEntropyMaxAfter*n.hb)
	n.c.antiEntropy.Add(1)
	s.log.Info("membership digests differ: sending our summary (anti-entropy)", zap.Duration("for", now.Sub(s.digestDiffSince)))
	s.send(summaryMsg(n.set))
}

// maxRecordBatch bounds one ApplyBatch, so records of a long catch-up are
// flooded onward in runs rather than all at its end.
const maxRecordBatch = 256

// applyRecords applies records received from the peer, durably as one
// batch, and floods onward those that changed the set.
func (s *session) applyRecords(recs [][]byte) {
	n := s.n
	for i, r := range n.set.ApplyBatch(recs) {
		if r.Err != nil {
			n.c.recRefused.Add(1)
			s.log.Debug("record refused", zap.Stringer("reason", membership.ReasonOf(r.Err)), zap.Error(r.Err))
		}
		if r.Changed {
			n.flood(recs[i], s.peer)
		}
	}
}

// handle processes one message from the peer (reader goroutine).
func (s *session) handle(m *acspb.PeerMessage) error {
	n := s.n
	switch b := m.Body.(type) {
	case *acspb.PeerMessage_Heartbeat:
		return s.onHeartbeat(b.Heartbeat)
	case *acspb.PeerMessage_Proposal:
		return s.onProposal(b.Proposal)
	case *acspb.PeerMessage_ProposalResponse:
		return s.onResponse(b.ProposalResponse)
	case *acspb.PeerMessage_Confirm:
		return s.onConfirm(b.Confirm)
	case *acspb.PeerMessage_RekeyRequest:
		return s.onRekeyRequest(b.RekeyRequest)
	case *acspb.PeerMessage_Record:
		s.applyRecords([][]byte{b.Record.GetRecord()})
	case *acspb.PeerMessage_Summary:
		entries := make([]membership.SummaryEntry, 0, len(b.Summary.GetEntries()))
		for _, e := range b.Summary.GetEntries() {
			se := membership.SummaryEntry{ASN: e.Asn, Version: e.Version}
			copy(se.Hash[:], e.Hash)
			entries = append(entries, se)
		}
		need, send := n.set.Diff(entries)
		s.sendRecords(send...)
		if len(need) > 0 {
			s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Want{Want: &acspb.MembershipWant{Asns: need}}})
		}
	case *acspb.PeerMessage_Want:
		var recs [][]byte
		for _, asn := range b.Want.GetAsns() {
			if r, ok := n.set.Encoded(asn); ok {
				recs = append(recs, r)
			}
		}
		s.sendRecords(recs...)
	case *acspb.PeerMessage_ForcedExit:
		s.log.Warn("forced exit received", zap.String("reason", b.ForcedExit.GetReason()))
		n.forcedExit(s)
	case *acspb.PeerMessage_Hello:
		return errors.New("second Hello")
	default:
		return fmt.Errorf("unknown message %T", m.Body)
	}
	return nil
}

func (s *session) onHeartbeat(h *acspb.Heartbeat) error {
	n := s.n
	now := n.now()
	s.mu.Lock()
	s.recvSeq, s.recvSend, s.recvAt = h.Seq, h.SendUnixNano, now.UnixNano()
	var offset, rtt time.Duration
	measured := false
	if h.EchoSeq != 0 {
		offset, rtt = pair.ClockOffset(time.Unix(0, h.EchoSendUnixNano), time.Unix(0, h.EchoRecvUnixNano),
			time.Unix(0, h.SendUnixNano), now)
		measured = true
		s.measured, s.offset = true, offset
	}
	replyNow := !s.replied
	s.replied = true
	member := n.mayPair(s.peer) // keys only with members (peering.go)
	propose := s.initiator && s.measured && s.proposal == nil && (!s.upOnce || s.rekey) && member
	pending := s.pending
	if !s.initiator && s.measured && pending != nil && member {
		s.pending = nil
	} else {
		pending = nil
	}
	up := s.upOnce
	s.mu.Unlock()

	n.heartbeatSeen(s, now, offset, rtt, measured)
	if len(h.MembershipDigest) != 0 {
		s.antiEntropy(h.MembershipDigest, now)
	}
	if measured {
		n.confirmClock(s.peer, offset) // a step of our wall clock this peer agrees with
	}
	if replyNow && !n.pauseHB.Load() {
		s.send(s.heartbeatMsg()) // lets the peer measure after one round trip
	}
	if measured && up {
		if err := pair.CheckSkew(offset, time.Duration(n.cfg.Period)*time.Second); err != nil {
			n.c.skewAlarms.Add(1)
			s.log.Error("clock skew alarm", zap.Error(err))
		}
	}
	if propose {
		return s.propose(now)
	}
	if pending != nil {
		return s.evaluate(pending, now)
	}
	return nil
}

// propose sends the initiator's proposal, once the first heartbeat round
// trip has measured the offset (checked first with our own policy).
func (s *session) propose(now time.Time) error {
	n := s.n
	p := pair.NewProposal(n.nextProposalID(), n.cfg.T0, n.cfg.Period, now)
	s.mu.Lock()
	offset := s.offset
	s.mu.Unlock()
	if err := n.ppol.Check(p, now, offset); err != nil {
		n.c.proposalsRefused.Add(1)
		return fmt.Errorf("own proposal: %w", err)
	}
	s.mu.Lock()
	s.proposal = &p
	rekey := s.upOnce
	s.rekey = false
	s.mu.Unlock()
	s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Proposal{Proposal: &acspb.Proposal{
		Id: p.ID, T0: p.T0, PeriodSeconds: int64(p.Period), StartEpoch: p.E0, Rekey: rekey}}})
	return nil
}

func (s *session) onProposal(m *acspb.Proposal) error {
	s.mu.Lock()
	if !s.measured && !s.initiator {
		// Decision: the responder evaluates only with a measured offset;
		// the proposal waits for the first heartbeat round trip.
		s.pending = m
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return s.evaluate(m, s.n.now())
}

// evaluate is the responder's answer to a proposal.
func (s *session) evaluate(m *acspb.Proposal, now time.Time) error {
	n := s.n
	if m.PeriodSeconds <= 0 || m.PeriodSeconds > 1<<32-1 {
		m.PeriodSeconds = 0 // refused below as bad-period
	}
	p := pair.Proposal{ID: m.Id, T0: m.T0, Period: uint32(m.PeriodSeconds), E0: m.StartEpoch}
	s.mu.Lock()
	offset := s.offset
	s.mu.Unlock()
	resp, err := n.ppol.Evaluate(n.cfg.ASN, s.peer, p, now, offset)
	if err == nil {
		// Derived now, on the session the proposal came on, but installed
		// only when the initiator confirms (onConfirm).
		a, err := pair.Accept(s.cs, n.cfg.ASN, s.peer, p)
		if err != nil {
			return err
		}
		if err := n.hold(s, a); err != nil {
			return err
		}
	} else {
		n.c.proposalsRefused.Add(1)
		s.log.Warn("proposal refused", zap.Error(err))
		var se *pair.SkewError
		if errors.As(err, &se) {
			n.c.skewAlarms.Add(1)
		}
	}
	s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_ProposalResponse{ProposalResponse: &acspb.ProposalResponse{
		Id: resp.ID, Reason: uint32(resp.Reason)}}})
	return nil
}

func (s *session) onResponse(m *acspb.ProposalResponse) error {
	n := s.n
	s.mu.Lock()
	p := s.proposal
	s.mu.Unlock()
	if p == nil || !s.initiator {
		return errors.New("unexpected proposal response")
	}
	if m.Reason > 255 {
		return fmt.Errorf("bad refusal reason %d", m.Reason)
	}
	if err := pair.CheckResponse(*p, pair.Response{ID: m.Id, Reason: pair.Reason(m.Reason)}); err != nil {
		n.c.proposalsRefused.Add(1)
		return err // the session ends; the dialer retries with back-off
	}
	if n.testDropBeforeInstall.Load() {
		n.testPartitioned.Store(true)
		return errors.New("test: session dropped before the initiator installs")
	}
	a, err := pair.Accept(s.cs, n.cfg.ASN, s.peer, *p)
	if err != nil {
		return err
	}
	if err := n.install(s, a, false); err != nil {
		return err
	}
	c := &acspb.ProposalConfirm{Id: p.ID, StartEpoch: p.E0}
	n.setConfirm(s.peer, c)
	s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_Confirm{Confirm: c}})
	s.mu.Lock()
	s.upOnce = true
	s.proposal = nil
	s.mu.Unlock()
	return nil
}

// onConfirm is the responder's install of the acceptance the initiator
// confirms, on this session or (sent again) on a later one. A confirmation
// of nothing held — installed already, replaced by a newer acceptance, or
// from before a restart — is ignored.
func (s *session) onConfirm(m *acspb.ProposalConfirm) error {
	if s.initiator {
		return errors.New("confirmation from the responder")
	}
	a := s.n.takeHeld(s, m.Id, m.StartEpoch)
	if a == nil {
		return nil
	}
	if err := s.n.install(s, a, true); err != nil {
		s.log.Warn("confirmed proposal not installed", zap.Error(err))
		return nil
	}
	s.mu.Lock()
	s.upOnce = true
	s.mu.Unlock()
	return nil
}

// onRekeyRequest: the responder asks for a re-key (its clock stepped).
func (s *session) onRekeyRequest(m *acspb.RekeyRequest) error {
	if !s.initiator {
		return nil // only the lower ASN proposes; nothing to do
	}
	s.log.Info("re-key requested by the peer", zap.String("reason", m.GetReason()))
	s.mu.Lock()
	s.rekey = true
	s.mu.Unlock()
	return nil
}

func recordMsg(rec []byte) *acspb.PeerMessage {
	return &acspb.PeerMessage{Body: &acspb.PeerMessage_Record{Record: &acspb.MembershipRecord{Record: rec}}}
}

func summaryMsg(set *membership.Set) *acspb.PeerMessage {
	d := set.Digest()
	sum := &acspb.MembershipSummary{Digest: d[:]}
	for _, e := range set.Summary() {
		sum.Entries = append(sum.Entries, &acspb.MembershipEntry{Asn: e.ASN, Version: e.Version, Hash: append([]byte(nil), e.Hash[:]...)})
	}
	return &acspb.PeerMessage{Body: &acspb.PeerMessage_Summary{Summary: &acspb.MembershipSummary{Digest: sum.Digest, Entries: sum.Entries}}}
}
