package acs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
)

// Peering follows membership (docs/wire.md §3.1, "Who peers"):
//
//   - Keys only with members. A pair's state machine is negotiated only
//     once both ends hold a join or update of the other AS (the initiator
//     does not propose, the responder keeps a proposal pending until then).
//     An AS that never joined gets a session for membership exchange only —
//     that is how a new member's join reaches the alliance through its one
//     bootstrap peer — and the session ends, counted not-member, if no
//     record of it is held after Config.JoinGrace.
//   - An exit ends peering. When an exit of AS X is accepted, X's machine is
//     removed (its keys leave the ABRs' tables at the next publication) and
//     X's session is closed with the exit record as its final message, so
//     that X learns of its own exit even when the exit was published
//     elsewhere. An exited AS is refused at Hello and never dialled.
//   - The ACS dials its members. Every live member whose record carries ACS
//     addresses (and that the community tree makes adjacent, when there is
//     a tree) is dialled; [[acs.peer]] entries are dialled too, at their
//     configured address, whatever the member records say: they are the
//     bootstrap. A new member configures one peer and reaches the others
//     once their records (and its own) have been flooded.
//   - Who dials: the lower ASN at once; the higher ASN only when no session
//     has come from the lower for a few heartbeats and none ever has, so
//     that a node that knows a peer the peer does not know (a bootstrap
//     peer with a lower ASN) still reaches it, and two nodes that know each
//     other do not both dial at every reconnection (a collision would be
//     resolved by pair.KeepIncoming, at the cost of a session). Once the
//     lower has reached us, we dial it only after twice its longest
//     back-off: a safety net.

// Refusal reasons of the peering service beyond authorize's (authz.go).
const (
	reasonExited      = "exited"       // the peer's held record is an exit
	reasonNotMember   = "not-member"   // no record of the peer after JoinGrace
	reasonMessageRate = "message-rate" // the peer exceeded its message rate (Limits.PeerMessages*)
)

// DefaultJoinGrace is how long a session with an AS that has no record is
// kept for membership exchange.
const DefaultJoinGrace = 30 * time.Second

// standing is what the membership says of asn, as of the last reconcile.
// The session paths (Hello, every heartbeat) read this snapshot rather
// than the set: the set's lock is held while a record is written to disk,
// and a heartbeat must never wait for an fsync.
func (n *Node) standing(asn uint32) membership.Standing {
	if m := n.standings.Load(); m != nil {
		return (*m)[asn]
	}
	return membership.Unknown
}

// loadStandings snapshots what the membership says of every AS it holds
// (exits, members in force and members held aside), and the encoded exits
// (the last message of an exited peer's session); taken without n.mu.
func (n *Node) loadStandings() (map[uint32]membership.Standing, map[uint32][]byte) {
	st := map[uint32]membership.Standing{}
	exits := map[uint32][]byte{}
	for _, r := range n.set.Aside() {
		st[r.ASN] = membership.Member
	}
	for _, r := range n.set.All() {
		if r.Kind == membership.KindExit {
			st[r.ASN] = membership.Exited
			if b, ok := n.set.Encoded(r.ASN); ok {
				exits[r.ASN] = b
			}
		} else {
			st[r.ASN] = membership.Member
		}
	}
	return st, exits
}

// membershipChanged is the membership set's change hook: peering and the
// ABRs' tables follow every change, whoever made it.
// The re-derivation walks the whole membership, so it runs on its own
// goroutine (reconcileLoop), coalesced: a catch-up of thousands of records
// costs a few walks, not one per record, and never holds up the session
// that applies them.
func (n *Node) membershipChanged() {
	n.mu.Lock()
	n.bump()
	n.mu.Unlock()
	select {
	case n.reconcileKick <- struct{}{}:
	default: // one is pending already: it will see this change too
	}
}

// reconcileLoop runs reconcile after membership changes until the node stops.
func (n *Node) reconcileLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.reconcileKick:
			n.reconcile()
		}
	}
}

// reconcile brings the peers in line with the membership: exited peers
// lose their machine and session, and a dialer runs for every dial target
// (configured peers and adjacent members with ACS addresses).
func (n *Node) reconcile() {
	standings, exits := n.loadStandings()
	n.standings.Store(&standings)
	recs := n.set.Records()
	adjacent := func(asn uint32) bool { return true }
	if n.cfg.Tree != nil {
		ascn := make(map[uint32]uint32, len(recs))
		for _, r := range recs {
			ascn[r.ASN] = r.ASCN
		}
		of := func(asn uint32) (uint32, bool) { c, ok := ascn[asn]; return c, ok }
		adjacent = func(asn uint32) bool { return n.cfg.Tree.Adjacent(n.cfg.ASN, asn, of) }
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started || n.closed {
		return
	}
	// Every peer's record addresses are re-derived: an update that drops
	// an address (or a member no longer adjacent) stops its dialling.
	for _, ps := range n.peers {
		ps.recAddrs = nil
	}
	for _, r := range recs {
		if r.ASN == n.cfg.ASN || len(r.ACS) == 0 || !adjacent(r.ASN) {
			continue
		}
		var addrs []netip.AddrPort
		for _, a := range r.ACS {
			// An unspecified address (a record made from a listen of
			// 0.0.0.0) names no host to dial.
			if a.IsValid() && !a.Addr().IsUnspecified() && a.Port() != 0 {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		n.peer(r.ASN).recAddrs = addrs
	}
	for asn, ps := range n.peers {
		if standings[asn] == membership.Exited {
			n.endExited(ps, exits[asn])
			if ps.addr == "" {
				delete(n.peers, asn)
			}
			continue
		}
		if (ps.addr != "" || len(ps.recAddrs) > 0) && ps.stopDial == nil {
			ctx, cancel := context.WithCancel(n.ctx)
			ps.stopDial = cancel
			n.wg.Add(1)
			go func() { defer n.wg.Done(); n.dialLoop(ctx, asn) }()
		}
	}
}

// endExited removes an exited peer's machine and closes its session, the
// exit record as the last message; n.mu held.
func (n *Node) endExited(ps *peerState, exit []byte) {
	if ps.stopDial != nil {
		ps.stopDial()
		ps.stopDial = nil
	}
	ps.recAddrs = nil
	if ps.machine != nil {
		ps.machine.Remove()
		ps.machine = nil
		n.bump()
		n.log.Info("pair removed: the peer exited the alliance", zap.Uint32("peer", ps.asn))
	}
	ps.state, ps.start = StateConnecting, 0
	if s := ps.sess; s != nil {
		ps.sess = nil
		var final *acspb.PeerMessage
		if exit != nil {
			final = recordMsg(exit)
		}
		s.kill(final)
	}
}

// dialRate is how many dials a second the ACS starts to peers it holds no
// running pair with (member-record addresses and configured peers alike):
// a joining or restarted ACS of a large alliance, or one whose members are
// unreachable, would otherwise open thousands of TLS handshakes at once and
// starve its own heartbeats (DESIGN §2.8). A pair whose machine is running
// is re-dialled at once: its dead timer is running.
const dialRate = 50

// dialPacer spaces dials 1/rate apart: each caller reserves the next free
// slot and sleeps until it.
type dialPacer struct {
	mu   sync.Mutex
	next time.Time
	gap  time.Duration
}

// reserve takes the next free slot at or after now.
func (p *dialPacer) reserve(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.gap)
	return at
}

// wait blocks until the caller's slot, or until ctx ends (false).
func (p *dialPacer) wait(ctx context.Context) bool {
	now := time.Now()
	d := p.reserve(now).Sub(now)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dialTarget says what the dialer of asn should do now: dial addr (paced:
// after its turn at the pacer), wait, or stop (the peer exited, or is no
// longer a target).
func (n *Node) dialTarget(asn uint32, attempt int) (addr string, paced, stop bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.peers[asn]
	if ps == nil || n.closed {
		return "", false, true
	}
	if ps.addr == "" && len(ps.recAddrs) == 0 {
		ps.stopDial = nil
		return "", false, true
	}
	if ps.sess != nil && !ps.sess.isDone() {
		ps.quietSince = time.Time{}
		return "", false, false
	}
	paced = ps.machine == nil
	if !pair.Initiator(n.cfg.ASN, asn) {
		// The lower ASN dials. We dial it only when it has been silent
		// for a few heartbeats and has never reached us (it may not know
		// us yet: a bootstrap peer), or for longer than its longest
		// back-off (a safety net): dialling at once would make every
		// reconnection a collision.
		now := n.now()
		if ps.quietSince.IsZero() {
			ps.quietSince = now
		}
		wait := 3 * n.hb
		if ps.reached {
			wait = 2*n.cfg.BackoffMax + time.Duration(n.dead)*n.hb
		}
		if now.Sub(ps.quietSince) < wait {
			return "", false, false
		}
	}
	if ps.addr != "" {
		return ps.addr, paced, false
	}
	return ps.recAddrs[attempt%len(ps.recAddrs)].String(), paced, false
}

// dialLoop keeps a session with asn, re-dialling with a jittered
// exponential back-off while there is none.
func (n *Node) dialLoop(ctx context.Context, asn uint32) {
	backoff := n.cfg.BackoffMin
	for attempt := 0; ctx.Err() == nil; {
		addr, paced, stop := n.dialTarget(asn, attempt)
		if stop {
			return
		}
		if addr != "" && paced {
			if !n.dialPace.wait(ctx) {
				return
			}
			// Things may have changed while we waited (a session came).
			if addr, _, stop = n.dialTarget(asn, attempt); stop {
				return
			}
		}
		wait := n.hb / 2
		if addr != "" {
			attempt++
			if n.dialOnce(PeerConfig{ASN: asn, Address: addr}) {
				backoff = n.cfg.BackoffMin
			} else {
				backoff = min(2*backoff, n.cfg.BackoffMax)
			}
			wait = backoff/2 + rand.N(backoff/2+1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// admitPeer decides, at Hello, whether AS asn may hold a session.
func (n *Node) admitPeer(asn uint32) error {
	if n.standing(asn) == membership.Exited {
		return fmt.Errorf("AS%d has exited the alliance (its exit record is held)", asn)
	}
	return nil
}

// mayPair reports whether the pair's machine may be negotiated: the peer
// is a member.
func (n *Node) mayPair(asn uint32) bool { return n.standing(asn) == membership.Member }

// checkStanding ends a session whose peer is not (or no longer) entitled
// to one: an exit (handled by reconcile, which closes the session), or no
// record after the join grace.
func (s *session) checkStanding(now time.Time) error {
	n := s.n
	switch n.standing(s.peer) {
	case membership.Member:
		return nil
	case membership.Exited:
		return errors.New("peer exited the alliance")
	}
	grace := n.cfg.JoinGrace
	if grace <= 0 {
		grace = DefaultJoinGrace
	}
	if now.Sub(s.started) < grace {
		return nil
	}
	err := fmt.Errorf("AS%d holds no membership record after %v: not a member", s.peer, grace)
	n.refuse(svcPeer, reasonNotMember, err)
	return err
}

// tokenBucket is a rate with bursts: the one implementation behind the
// listener's per-source connection rate and the per-peer message rates.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// refill adds what accrued since the last call.
func (b *tokenBucket) refill(now time.Time) {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// take takes one token if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket would be full at now (nothing to remember).
func (b *tokenBucket) full(now time.Time) bool {
	return b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst
}

// peerRates are the message rates one peer session is held to: every
// message, and the control messages that cost a walk of the whole
// membership (Summary, Want) or a key negotiation (Proposal).
type peerRates struct {
	all, control tokenBucket
}

func newPeerRates(lim Limits, now time.Time) peerRates {
	return peerRates{
		all:     newTokenBucket(lim.PeerMessagesPerSecond, lim.PeerMessageBurst, now),
		control: newTokenBucket(lim.PeerControlPerSecond, lim.PeerControlBurst, now),
	}
}

// admit charges one message; an error ends the session.
func (r *peerRates) admit(m *acspb.PeerMessage, now time.Time) error {
	if !r.all.take(now) {
		return fmt.Errorf("more than %g messages a second (bursts of %g)", r.all.rate, r.all.burst)
	}
	switch m.Body.(type) {
	case *acspb.PeerMessage_Summary, *acspb.PeerMessage_Want, *acspb.PeerMessage_Proposal:
		if !r.control.take(now) {
			return fmt.Errorf("more than %g summaries, wants and proposals a second (bursts of %g)", r.control.rate, r.control.burst)
		}
	}
	return nil
}
