package acs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/engine"
)

// Peer states reported by Status.
const (
	StateConnecting  = "connecting"
	StateNegotiating = "negotiating"
	StateUp          = "up"
	StateDead        = "dead"
)

// SchemaVersion is the Hello.schema_version this node speaks. 2: the
// negotiation ends with ProposalConfirm (a responder installs only on it),
// so an ACS of version 1, which never confirms, could never pair with this
// one: its Hello is refused with both versions named instead.
const SchemaVersion = 2

// PeerConfig is one [[acs.peer]]: a member ACS of the alliance.
type PeerConfig struct {
	ASN     uint32
	Address string // host:port
}

// Config configures a Node.
type Config struct {
	ASN      uint32        // local AS
	Identity pair.Identity // TLS identity (certificate naming ASN, alliance CA)
	Listen   string        // [acs] listen, e.g. "127.0.0.1:0"
	Listener net.Listener  // if set, used instead of Listen (tests, socket activation)
	Peers    []PeerConfig  // [[acs.peer]]: bootstrap peers, dialled at these addresses (peering.go)
	// JoinGrace is how long a session with an AS that holds no membership
	// record is kept for membership exchange (default DefaultJoinGrace).
	JoinGrace time.Duration

	Heartbeat time.Duration // default 1 s
	DeadAfter int           // missed heartbeats before a peer is dead; default 3
	// DeadHold is how long the machine of a peer declared dead keeps
	// running from the clock, its keys still pushed to the ABRs, before it
	// is removed and a forced exit sent (docs/wire.md §2.8: as BGP graceful
	// restart does, so a restart or a short partition costs nothing); a
	// peer heard again within it re-keys the running machine. Default: the
	// horizon, max(KeyLead, pair.MinKeyLead) epochs.
	DeadHold time.Duration
	// KeyLead is how many epochs ahead the ABRs get keys (e−1 … e+KeyLead);
	// default pair.MinKeyLead.
	KeyLead int

	// Epoch clock ([psav] t0, epoch_seconds); Period 0 → pair.DefaultPeriod.
	T0     int64
	Period uint32
	// PairPolicy bounds what this node accepts as responder; its T0/Period
	// are overwritten with the node's clock.
	PairPolicy pair.Policy

	// Membership: either a ready Set, or MembershipDir (OpenSet, durable)
	// with MembershipPolicy, or only MembershipPolicy (in memory).
	Membership       *membership.Set
	MembershipDir    string
	MembershipPolicy *membership.Policy

	// Tree is the community hierarchy (docs/wire.md §2.6) from which the tables
	// of this AS's ABRs are computed; nil: the flat alliance (every member
	// in community 0).
	Tree *membership.Tree

	Logger *zap.Logger      // default: no-op
	Now    func() time.Time // the wall clock; default time.Now
	// Monotonic, if set, is the monotonic clock beside Now (time since a
	// fixed origin): a test's fake clock, whose wall clock it can step.
	// Unset, the monotonic reading of Now's times is used (time.Now has
	// one). The node's time is the wall clock anchored to it (clock.go).
	Monotonic func() time.Duration

	// Limits bound what clients can hold of the listener (limits.go).
	Limits Limits

	// Re-dial back-off (jittered, doubling): default 100 ms … 30 s.
	BackoffMin, BackoffMax time.Duration
}

// Counters are cumulative event counts (for metrics and tests).
type Counters struct {
	DialAttempts, DialFailures uint64
	SessionsRefused            uint64 // bad Hello, wrong certificate ASN, collision loser
	Collisions                 uint64
	ProposalsRefused           uint64 // refused by us or by the peer
	SkewAlarms                 uint64 // measured |offset| > P/4
	DeadDeclared               uint64
	ForcedExitsSent            uint64
	ForcedExitsReceived        uint64
	RecordsFlooded             uint64
	RecordsRefused             uint64 // records from peers that Apply refused
	Established                uint64 // machines established or re-keyed
	ClockSteps                 uint64 // wall-clock steps beyond P/4 (alarms)
	ClockReanchors             uint64 // steps confirmed by a peer: re-anchored
	RekeysRequested            uint64 // re-keys asked for after a clock step
	AntiEntropySummaries       uint64 // Summaries sent because digests differed (anti-entropy)
}

type counters struct {
	dialAttempts, dialFailures, sessionsRefused, collisions, proposalsRefused,
	skewAlarms, deadDeclared, forcedSent, forcedRecv, flooded, recRefused,
	established, clockSteps, reanchors, rekeysRequested, antiEntropy atomic.Uint64

	feedMsgs, feedBytes [numFeedParts]atomic.Uint64 // what ABR feeds sent (feed.go)
}

// peerState is what the node knows about one peer AS; guarded by Node.mu.
type peerState struct {
	asn     uint32
	addr    string // configured address, "" for an unconfigured member
	sess    *session
	machine *pair.Machine
	state   string
	lastHB  time.Time
	rtt     time.Duration
	offset  time.Duration
	group   string
	start   uint64
	missed  uint32
	heard   bool // a heartbeat came on the current session
	// deadSince is when the peer was first declared dead since it was last
	// heard: its machine is held until DeadHold after it (zero: not dead).
	deadSince time.Time

	// The confirm step (docs/wire.md, "Confirm"): the responder's
	// acceptance waiting for the initiator's ProposalConfirm (kept across
	// sessions: the state was derived on the one it was accepted on), and
	// the initiator's confirmation of what it installed last, sent again
	// at the start of every later session.
	held    *pair.Acceptance
	confirm *acspb.ProposalConfirm

	// Dialling (peering.go): the addresses the peer's record carries, the
	// dialer's stop, and since when it has had no session.
	recAddrs   []netip.AddrPort
	stopDial   context.CancelFunc
	quietSince time.Time
	reached    bool // a session from the peer was accepted (it knows us)
}

// Node is one AS Control Server: it peers with the other ACS of the
// alliance over gRPC/mTLS, negotiates one PSAV state machine per pair,
// detects dead peers from heartbeats and floods membership records.
type Node struct {
	cfg   Config
	log   *zap.Logger
	now   func() time.Time // clock.Now: the node's time, anchored to the monotonic clock
	clock *epochClock
	set   *membership.Set
	ppol  pair.Policy
	hb    time.Duration
	dead  int

	failed chan error // the gRPC server's error, if it stops before Close

	mu      sync.Mutex
	peers   map[uint32]*peerState
	version uint64         // tables version: bumped on every change of keys or membership and at every epoch boundary
	changed chan struct{}  // closed and replaced by bump
	abrs    map[string]int // ABR feeds open, by name
	propID  uint64
	started bool
	closed  bool

	lis    net.Listener
	srv    *grpc.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	c       counters
	refused refusals

	hopsMu    sync.Mutex
	hopsCache *treeHops

	dialPace      dialPacer                                      // peering.go
	reconcileKick chan struct{}                                  // capacity 1: membership changed (peering.go)
	standings     atomic.Pointer[map[uint32]membership.Standing] // peering.go

	// pauseHB stops sending heartbeats (tests: a peer that is alive on TCP
	// but silent, to see a ForcedExit arrive).
	pauseHB atomic.Bool
	// testDropBeforeInstall makes the initiator end the session when an
	// accepted response arrives, before installing it, and refuse every
	// session until testPartitioned is cleared (tests: the confirm step's
	// two-generals case, with a partition that outlasts the boundary).
	testDropBeforeInstall, testPartitioned atomic.Bool
}

// New checks the configuration and opens the membership set; Start runs it.
func New(cfg Config) (*Node, error) {
	if cfg.ASN == 0 {
		return nil, errors.New("acs: no local ASN")
	}
	if cfg.Identity.ASN != cfg.ASN {
		return nil, fmt.Errorf("acs: identity is AS%d, node is AS%d", cfg.Identity.ASN, cfg.ASN)
	}
	if cfg.Identity.Role != pki.RoleACS {
		return nil, fmt.Errorf("acs: the node needs an acs identity, not %q", cfg.Identity.Role)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3
	}
	if cfg.Period == 0 {
		cfg.Period = pair.DefaultPeriod
	}
	if cfg.DeadHold <= 0 {
		cfg.DeadHold = time.Duration(max(cfg.KeyLead, pair.MinKeyLead)) * time.Duration(cfg.Period) * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(30*time.Second, cfg.BackoffMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	clock := newEpochClock(cfg.Now, cfg.Monotonic, time.Duration(cfg.Period)*time.Second)
	n := &Node{
		cfg: cfg, log: cfg.Logger.With(zap.Uint32("as", cfg.ASN)), now: clock.Now, clock: clock,
		// Proposal ids start from the clock so that a restarted initiator
		// never confirms an id an older process proposed.
		propID: uint64(clock.Now().UnixNano()),
		hb:     cfg.Heartbeat, dead: cfg.DeadAfter,
		peers:   map[uint32]*peerState{},
		version: 1, changed: make(chan struct{}), abrs: map[string]int{},
		failed: make(chan error, 1), reconcileKick: make(chan struct{}, 1),
		dialPace: dialPacer{gap: time.Second / dialRate},
	}
	n.ppol = cfg.PairPolicy
	n.ppol.T0, n.ppol.Period = cfg.T0, cfg.Period
	switch {
	case cfg.Membership != nil:
		n.set = cfg.Membership
	case cfg.MembershipPolicy == nil:
		return nil, errors.New("acs: no membership set or policy")
	case cfg.MembershipDir != "":
		s, err := membership.OpenSet(cfg.MembershipDir, cfg.MembershipPolicy)
		if err != nil {
			return nil, err
		}
		n.set = s
	default:
		n.set = membership.NewSet(cfg.MembershipPolicy)
	}
	for _, p := range cfg.Peers {
		if p.ASN == cfg.ASN || p.ASN == 0 {
			return nil, fmt.Errorf("acs: bad peer AS%d", p.ASN)
		}
		if _, dup := n.peers[p.ASN]; dup {
			return nil, fmt.Errorf("acs: peer AS%d configured twice", p.ASN)
		}
		n.peers[p.ASN] = &peerState{asn: p.ASN, addr: p.Address, state: StateConnecting}
	}
	n.set.SetOnChange(n.membershipChanged)
	return n, nil
}

// Start listens, serves the ACS gRPC service and dials the peers with a
// higher ASN. It returns once the listener is open.
func (n *Node) Start(ctx context.Context) error {
	// Checked before the node counts as started: a Start that fails here
	// leaves nothing for Close to stop.
	scfg, err := pair.ServerConfig(n.cfg.Identity)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return errors.New("acs: node already started or closed")
	}
	n.started = true
	n.mu.Unlock()
	// The handshake verifies the client's chain; each RPC checks its role
	// and AS (authorize: Peer an ACS of another AS, Feed an ABR of ours,
	// Status an operator of ours).
	lis := n.cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", n.cfg.Listen); err != nil {
			n.mu.Lock()
			n.started = false
			n.mu.Unlock()
			return err
		}
	}
	lim := n.cfg.Limits.withDefaults()
	listenerRefused := func(reason string, err error) { n.refuse(svcListener, reason, err) }
	lis = newLimitListener(lis, lim, time.Now, listenerRefused)
	n.lis = lis
	n.ctx, n.cancel = context.WithCancel(ctx)
	// Keepalive pings find a peer or ABR whose link was cut: without them
	// its stream (and an ABR's feed) would count as open until TCP gives
	// up, minutes later.
	n.srv = grpc.NewServer(
		grpc.Creds(handshakeLimited{TransportCredentials: credentials.NewTLS(scfg), timeout: lim.HandshakeTimeout, refuse: listenerRefused}),
		grpc.ConnectionTimeout(lim.HandshakeTimeout),
		grpc.MaxConcurrentStreams(lim.MaxStreams),
		grpc.MaxRecvMsgSize(lim.MaxRecvMessage),
		// Feed snapshots carry the whole AS-Prefix table (see
		// abr.MaxFeedMessage, the ABR's receive limit).
		grpc.MaxSendMsgSize(abr.MaxFeedMessage),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: max(n.hb, time.Second), Timeout: time.Duration(n.dead) * max(n.hb, time.Second)}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 500 * time.Millisecond, PermitWithoutStream: true}))
	acspb.RegisterACSServer(n.srv, &server{n: n})
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Warn("serve", zap.Error(err))
			select {
			case n.failed <- err:
			default:
			}
		}
	}()
	go func() { defer n.wg.Done(); n.deadLoop() }()
	n.reconcile() // the dialers: configured peers and members
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.reconcileLoop() }()
	n.log.Info("acs started", zap.String("listen", lis.Addr().String()))
	return nil
}

// Failed yields the error of the gRPC server if it stops serving before
// Close (its listener failed): the node's supervisor then stops the node.
func (n *Node) Failed() <-chan error { return n.failed }

// Addr is the listening address (after Start).
func (n *Node) Addr() net.Addr { return n.lis.Addr() }

// Close stops the node: sessions are closed (no ForcedExit), the server
// and the dialers stop. The machines are dropped with the node.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	started := n.started
	var sess []*session
	for _, ps := range n.peers {
		if ps.sess != nil {
			sess = append(sess, ps.sess)
		}
	}
	n.mu.Unlock()
	if !started {
		return nil
	}
	n.cancel()
	for _, s := range sess {
		s.kill(nil)
	}
	n.srv.Stop()
	n.wg.Wait()
	n.mu.Lock()
	for _, ps := range n.peers {
		if ps.machine != nil {
			ps.machine.Remove()
		}
		ps.held.Drop()
	}
	n.mu.Unlock()
	return nil
}

// Membership is the node's membership set.
func (n *Node) Membership() *membership.Set { return n.set }

// Publish applies a membership record originated here (a join, update or
// exit signed and endorsed off-line) and floods it when it changes the set.
func (n *Node) Publish(rec []byte) (bool, error) {
	changed, err := n.set.ApplyBytes(rec)
	if changed {
		n.flood(rec, 0)
	}
	return changed, err
}

// Keys returns the tag keys of every live pair for epochs e−1 … e+KeyLead of the
// time unix, by peer ASN (Machine.KeysAt: asking for a later time erases
// the earlier states for good).
func (n *Node) Keys(unix int64) map[uint32]engine.PeerKeys {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[uint32]engine.PeerKeys{}
	for asn, ps := range n.peers {
		if ps.machine != nil && !ps.machine.Removed() {
			out[asn] = ps.machine.KeysAhead(unix, n.cfg.KeyLead)
		}
	}
	return out
}

// Counters returns a snapshot of the event counters.
func (n *Node) Counters() Counters {
	c := &n.c
	return Counters{
		DialAttempts: c.dialAttempts.Load(), DialFailures: c.dialFailures.Load(),
		SessionsRefused: c.sessionsRefused.Load(), Collisions: c.collisions.Load(),
		ProposalsRefused: c.proposalsRefused.Load(), SkewAlarms: c.skewAlarms.Load(),
		DeadDeclared: c.deadDeclared.Load(), ForcedExitsSent: c.forcedSent.Load(),
		ForcedExitsReceived: c.forcedRecv.Load(), RecordsFlooded: c.flooded.Load(),
		RecordsRefused: c.recRefused.Load(), Established: c.established.Load(),
		ClockSteps: c.clockSteps.Load(), ClockReanchors: c.reanchors.Load(), RekeysRequested: c.rekeysRequested.Load(),
		AntiEntropySummaries: c.antiEntropy.Load(),
	}
}

// Status is what the Status RPC answers.
func (n *Node) Status() *acspb.StatusReply {
	now := n.now()
	d := n.set.Digest()
	r := &acspb.StatusReply{
		Asn:              n.cfg.ASN,
		Epoch:            engine.Epoch(now.Unix(), n.cfg.T0, int64(n.cfg.Period)),
		MembershipDigest: d[:],
	}
	for _, rec := range n.set.Records() {
		r.Members = append(r.Members, rec.ASN)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r.TablesVersion = n.version
	for name := range n.abrs {
		r.Abrs = append(r.Abrs, name)
	}
	sort.Strings(r.Abrs)
	asns := make([]uint32, 0, len(n.peers))
	for asn := range n.peers {
		asns = append(asns, asn)
	}
	sort.Slice(asns, func(i, j int) bool { return asns[i] < asns[j] })
	for _, asn := range asns {
		ps := n.peers[asn]
		st := &acspb.PeerStatus{
			Asn: asn, State: ps.state, RttNanos: int64(ps.rtt), OffsetNanos: int64(ps.offset),
			TlsGroup: ps.group, StartEpoch: ps.start, MissedHeartbeats: ps.missed,
		}
		if !ps.lastHB.IsZero() {
			st.LastHeartbeatUnixNano = ps.lastHB.UnixNano()
		}
		r.Peers = append(r.Peers, st)
	}
	return r
}

// peer returns (creating) the state of a peer; n.mu held.
func (n *Node) peer(asn uint32) *peerState {
	ps := n.peers[asn]
	if ps == nil {
		ps = &peerState{asn: asn, state: StateConnecting}
		n.peers[asn] = ps
	}
	return ps
}

// register makes s the session of its peer, resolving a collision with
// pair.KeepIncoming.
func (n *Node) register(s *session) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("acs: node closed")
	}
	if n.testPartitioned.Load() {
		return errors.New("acs: test partition")
	}
	ps := n.peer(s.peer)
	if old := ps.sess; old != nil && !old.isDone() {
		n.c.collisions.Add(1)
		// docs/wire.md §3.1: a session that still heartbeats is never
		// displaced, whichever AS dialled it: a duplicate connection (a
		// retry, a second process with a valid certificate) must not
		// cost a working pair its session.
		if ps.heard && n.now().Sub(ps.lastHB) < 2*n.hb {
			return fmt.Errorf("acs: the session with AS%d is up and heartbeating; a second one is refused", s.peer)
		}
		keepNew, err := pair.KeepIncoming(
			pair.Session{Dialer: old.dialer, Acceptor: old.acceptor},
			pair.Session{Dialer: s.dialer, Acceptor: s.acceptor})
		if err != nil {
			return err
		}
		if !keepNew {
			return fmt.Errorf("acs: collision with AS%d: existing session kept", s.peer)
		}
		old.kill(nil)
	}
	ps.sess = s
	if s.dialer == s.peer {
		ps.reached = true
	}
	ps.state = StateNegotiating
	ps.lastHB = n.now() // a session silent from the start is dead too
	ps.heard = false
	ps.missed = 0
	ps.group = pair.GroupName(s.cs)
	return nil
}

// current returns the state of s's peer if s is still its session, else
// nil (a superseded or ended session must change nothing); n.mu held.
func (n *Node) current(s *session) *peerState {
	if ps := n.peers[s.peer]; ps != nil && ps.sess == s {
		return ps
	}
	return nil
}

// unregister detaches s from its peer when the session ends.
func (n *Node) unregister(s *session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.current(s)
	if ps == nil {
		return
	}
	ps.sess = nil
	if ps.state == StateNegotiating && (ps.machine == nil || ps.machine.Removed()) {
		ps.state = StateConnecting
	}
	// A machine that is up keeps running from the clock (docs/wire.md §2.5) until
	// the peer is declared dead from missing heartbeats.
}

// deadLoop declares dead the peers that missed DeadAfter heartbeats.
func (n *Node) deadLoop() {
	t := time.NewTicker(n.hb / 2)
	defer t.Stop()
	lastEpoch := engine.Epoch(n.now().Unix(), n.cfg.T0, int64(n.cfg.Period))
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.checkClock()
		// The time is read under the lock: read before it, a heartbeat
		// recorded while we waited for the lock would lie in our future
		// and a negative silence would count as a huge number missed.
		n.mu.Lock()
		now := n.now()
		if e := engine.Epoch(now.Unix(), n.cfg.T0, int64(n.cfg.Period)); e != lastEpoch {
			lastEpoch = e
			n.bump() // new key window for the ABRs
		}
		for _, ps := range n.peers {
			if ps.machine != nil {
				// The present, from the anchored clock: only this erases
				// states (a KeysAhead at a stepped time never does).
				ps.machine.Advance(now.Unix())
			}
		}
		for _, ps := range n.peers {
			if !ps.deadSince.IsZero() && ps.machine != nil && now.Sub(ps.deadSince) >= n.cfg.DeadHold {
				n.endDeadPair(ps, fmt.Sprintf("dead for %v (the hold time)", now.Sub(ps.deadSince).Round(time.Second)))
			}
			if ps.state == StateDead || ps.lastHB.IsZero() {
				continue
			}
			if ps.state == StateConnecting && ps.machine == nil {
				continue
			}
			ps.missed = uint32(max(0, now.Sub(ps.lastHB)) / n.hb)
			if int(ps.missed) >= n.dead {
				n.declareDead(ps, fmt.Sprintf("missed %d heartbeats", ps.missed), now)
			}
		}
		n.mu.Unlock()
	}
}

// declareDead declares the peer dead (counted, logged) and ends its
// session, so that it is re-dialled. Its machine keeps running, its keys
// pushed, until DeadHold after it was first declared dead (docs/wire.md
// §2.8); past the hold, the machine is removed and a ForcedExit sent on the
// session if it is still open (endDeadPair). n.mu held.
func (n *Node) declareDead(ps *peerState, reason string, now time.Time) {
	n.c.deadDeclared.Add(1)
	if ps.deadSince.IsZero() {
		ps.deadSince = now
	}
	ps.state = StateDead
	if ps.machine != nil && now.Sub(ps.deadSince) < n.cfg.DeadHold {
		n.log.Warn("peer dead: its keys are held until the hold time ends or it is heard again",
			zap.Uint32("peer", ps.asn), zap.String("reason", reason),
			zap.Duration("hold_left", n.cfg.DeadHold-now.Sub(ps.deadSince)))
		if s := ps.sess; s != nil {
			ps.sess = nil
			s.kill(nil)
		}
		return
	}
	n.log.Warn("peer dead", zap.Uint32("peer", ps.asn), zap.String("reason", reason))
	n.endDeadPair(ps, reason)
}

// endDeadPair removes a dead peer's machine and sends it a ForcedExit if
// its session is still open; n.mu held.
func (n *Node) endDeadPair(ps *peerState, reason string) {
	if ps.machine != nil {
		n.log.Warn("pair removed: the peer stayed dead for the hold time", zap.Uint32("peer", ps.asn), zap.String("reason", reason))
		ps.machine.Remove()
		ps.machine = nil
		n.bump()
	}
	ps.held.Drop()
	ps.held, ps.confirm = nil, nil
	ps.state = StateDead
	ps.start = 0
	if s := ps.sess; s != nil {
		ps.sess = nil
		if s.kill(&acspb.PeerMessage{Body: &acspb.PeerMessage_ForcedExit{ForcedExit: &acspb.ForcedExit{Asn: ps.asn, Reason: reason}}}) {
			n.c.forcedSent.Add(1)
		}
	}
}

// install puts an acceptance on session s in force: it re-keys the pair's
// running machine at e0, or starts a new one (pair.Acceptance.Install).
// late: a responder's install on a confirmation that may come after e0.
func (n *Node) install(s *session, a *pair.Acceptance, late bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.current(s)
	if ps == nil {
		a.Drop()
		return errors.New("acs: session superseded")
	}
	p := a.Proposal()
	old := ps.machine
	m, rekeyed, err := a.Install(old, n.now(), late)
	if err != nil {
		return err
	}
	if !rekeyed && old != nil {
		// The running machine keeps nothing the new one needs; its keys
		// stay with the ABRs until their epochs are past (make before
		// break, docs/wire.md §2.8).
		old.Remove()
	}
	ps.machine, ps.state, ps.start = m, StateUp, p.E0
	n.bump()
	n.c.established.Add(1)
	if rekeyed {
		n.log.Info("pair re-keyed", zap.Uint32("peer", s.peer), zap.Uint64("e1", p.E0), zap.Bool("late", late))
	} else {
		n.log.Info("pair established", zap.Uint32("peer", s.peer), zap.Uint64("e0", p.E0), zap.String("group", ps.group))
	}
	return nil
}

// hold keeps the responder's acceptance until the initiator confirms it,
// replacing (and erasing) an older one never confirmed.
func (n *Node) hold(s *session, a *pair.Acceptance) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.current(s)
	if ps == nil {
		a.Drop()
		return errors.New("acs: session superseded")
	}
	ps.held.Drop()
	ps.held = a
	return nil
}

// takeHeld returns the held acceptance that a confirmation (id, e0) on s
// names, removing it; nil if none does.
func (n *Node) takeHeld(s *session, id, e0 uint64) *pair.Acceptance {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.current(s)
	if ps == nil || !ps.held.Matches(id, e0) {
		return nil
	}
	a := ps.held
	ps.held = nil
	return a
}

// setConfirm records the initiator's confirmation of what it installed
// last, and lastConfirm returns it (to send again on a new session).
func (n *Node) setConfirm(peer uint32, c *acspb.ProposalConfirm) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ps := n.peers[peer]; ps != nil {
		ps.confirm = c
	}
}

func (n *Node) lastConfirm(peer uint32) *acspb.ProposalConfirm {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ps := n.peers[peer]; ps != nil {
		return ps.confirm
	}
	return nil
}

// forcedExit handles a ForcedExit from the peer of s.
func (n *Node) forcedExit(s *session) {
	n.c.forcedRecv.Add(1)
	n.mu.Lock()
	if ps := n.current(s); ps != nil {
		if ps.machine != nil {
			ps.machine.Remove()
			ps.machine = nil
			n.bump()
		}
		ps.held.Drop()
		ps.held, ps.confirm = nil, nil
		ps.state, ps.start = StateConnecting, 0
	}
	n.mu.Unlock()
	s.kill(nil)
}

// heartbeatSeen records a heartbeat (and a measurement) from a peer.
func (n *Node) heartbeatSeen(s *session, at time.Time, offset, rtt time.Duration, measured bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.current(s)
	if ps == nil {
		return
	}
	ps.lastHB, ps.missed, ps.heard = at, 0, true
	ps.deadSince = time.Time{} // heard again: a held machine goes on (the session re-keys it)
	if measured {
		ps.offset, ps.rtt = offset, rtt
	}
}

// ClockStep is the wall clock's divergence from the node's time while a
// clock step is in alarm (0: none): the psavd_acs_clock_step_seconds gauge.
func (n *Node) ClockStep() time.Duration { return n.clock.Step() }

// checkClock compares the wall clock with the node's time (clock.go): a
// step beyond P/4 is alarmed and every pair re-keyed at a future boundary.
func (n *Node) checkClock() {
	ev, div := n.clock.check()
	switch ev {
	case clockStepped:
		n.c.clockSteps.Add(1)
		n.log.Error("clock step alarm: the wall clock diverged from the monotonic clock beyond P/4; epochs keep the monotonic time, re-keying every pair",
			zap.Duration("step", div), zap.Duration("limit", n.clock.limit))
		n.requestRekeys("clock step")
	case clockCleared:
		n.log.Warn("clock step cleared: the wall clock is back within P/4 of the node's time", zap.Duration("divergence", div))
	}
}

// confirmClock offers a peer's measured offset to the clock; a step it
// confirms re-anchors the node's time to the wall clock, and every pair is
// re-keyed at a future boundary of the new time.
func (n *Node) confirmClock(peer uint32, offset time.Duration) {
	jump, ok := n.clock.confirm(offset)
	if !ok {
		return
	}
	n.c.reanchors.Add(1)
	n.log.Error("clock step confirmed by a peer: the node's time re-anchored to the wall clock, re-keying every pair",
		zap.Uint32("peer", peer), zap.Duration("jump", jump), zap.Duration("peer_offset", offset))
	n.mu.Lock()
	n.bump()
	n.mu.Unlock()
	n.requestRekeys("clock re-anchored")
}

// requestRekeys re-keys every pair with a session at a future boundary:
// the initiator proposes, a responder asks it to (RekeyRequest).
func (n *Node) requestRekeys(reason string) {
	n.mu.Lock()
	var out []*session
	for _, ps := range n.peers {
		if ps.sess != nil && ps.machine != nil {
			out = append(out, ps.sess)
		}
	}
	n.mu.Unlock()
	for _, s := range out {
		n.c.rekeysRequested.Add(1)
		if s.initiator {
			s.mu.Lock()
			s.rekey = true
			s.mu.Unlock()
		} else {
			s.send(&acspb.PeerMessage{Body: &acspb.PeerMessage_RekeyRequest{RekeyRequest: &acspb.RekeyRequest{Reason: reason}}})
		}
	}
}

// flood sends an accepted record to every peer with an open session except
// the one it came from.
func (n *Node) flood(rec []byte, except uint32) {
	n.mu.Lock()
	n.bump()
	var out []*session
	for asn, ps := range n.peers {
		if asn != except && ps.sess != nil {
			out = append(out, ps.sess)
		}
	}
	n.mu.Unlock()
	for _, s := range out {
		s.sendRecords(rec)
		n.c.flooded.Add(1)
	}
}

func (n *Node) nextProposalID() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.propID++
	return n.propID
}

// bump records a change of the tables and wakes the feeds; n.mu held.
func (n *Node) bump() {
	n.version++
	close(n.changed)
	n.changed = make(chan struct{})
}
