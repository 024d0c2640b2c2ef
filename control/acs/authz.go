package acs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
)

// The services of the ACS listener and the identities each accepts
// (docs/wire.md §3.1). One TLS listener serves them all, so the handshake
// only verifies the chain; each RPC then checks the role and AS of the
// client's certificate and refuses with a reason the client sees.
const (
	svcPeer     = iota // ACS↔ACS peering: acs certificates of other ASes
	svcFeed            // the ABR feed: abr certificates of this AS
	svcStatus          // operator calls: op certificates of this AS
	svcListener        // before any call: connection limits and the TLS handshake (limits.go)
	nServices
)

var serviceNames = [nServices]string{"peer", "feed", "status", "listener"}

// Refusal reasons beyond pair's identity reasons and the listener's.
const (
	reasonLiveSession = "live-session" // a new session for a pair whose session still heartbeats
	reasonBadHello    = "bad-hello"
)

// refusalReasons are the reasons each service can give, for metrics that
// show every series from the start.
var refusalReasons = [nServices][]string{
	svcPeer: {pair.ReasonNoIdentity, pair.ReasonRoleless, pair.ReasonWrongRole, pair.ReasonWrongAS, reasonLiveSession, reasonBadHello, reasonHelloTime,
		reasonExited, reasonNotMember, reasonMessageRate},
	svcFeed:     {pair.ReasonNoIdentity, pair.ReasonRoleless, pair.ReasonWrongRole, pair.ReasonWrongAS},
	svcStatus:   {pair.ReasonNoIdentity, pair.ReasonRoleless, pair.ReasonWrongRole, pair.ReasonWrongAS},
	svcListener: {reasonConnLimit, reasonSourceLimit, reasonSourceRate, reasonHandshake},
}

// refusals counts refused clients by service and reason.
type refusals struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (r *refusals) add(svc int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[[2]string]uint64{}
	}
	r.n[[2]string{serviceNames[svc], reason}]++
}

// Refusals returns the refused clients by service and reason (every
// known pair, zeros included, for the metrics).
func (n *Node) Refusals() map[[2]string]uint64 {
	out := map[[2]string]uint64{}
	for svc, reasons := range refusalReasons {
		for _, reason := range reasons {
			out[[2]string{serviceNames[svc], reason}] = 0
		}
	}
	n.refused.mu.Lock()
	defer n.refused.mu.Unlock()
	for k, v := range n.refused.n {
		out[k] = v
	}
	return out
}

// authorize checks the client of an RPC against what service svc accepts.
// A refusal is counted, logged and returned as a PermissionDenied status
// naming the reason.
func (n *Node) authorize(ctx context.Context, svc int) (pki.Identity, tls.ConnectionState, error) {
	cs, err := tlsState(ctx)
	if err != nil {
		n.refuse(svc, pair.ReasonNoIdentity, err)
		return pki.Identity{}, cs, status.Error(codes.Unauthenticated, err.Error())
	}
	var id pki.Identity
	switch svc {
	case svcPeer:
		id, err = pair.RequirePeer(cs, pki.RoleACS, 0, "ACS peering")
		if err == nil && id.ASN == n.cfg.ASN {
			err = &pair.IdentityError{Reason: pair.ReasonWrongAS, Msg: fmt.Sprintf("ACS peering: %s is our own AS's", id)}
		}
	case svcFeed:
		id, err = pair.RequirePeer(cs, pki.RoleABR, n.cfg.ASN, fmt.Sprintf("the ABR feed of AS%d", n.cfg.ASN))
	case svcStatus:
		id, err = pair.RequirePeer(cs, pki.RoleOp, n.cfg.ASN, fmt.Sprintf("the operator calls of AS%d", n.cfg.ASN))
	}
	if err != nil {
		n.refuse(svc, pair.ReasonOf(err), err)
		return id, cs, status.Error(codes.PermissionDenied, err.Error())
	}
	return id, cs, nil
}

func (n *Node) refuse(svc int, reason string, err error) {
	n.refused.add(svc, reason)
	if svc == svcListener {
		// A flood of these is what the limits are for: a log line each
		// would be a second flood.
		n.log.Debug("connection refused", zap.String("reason", reason), zap.Error(err))
		return
	}
	n.c.sessionsRefused.Add(1)
	n.log.Warn("client refused", zap.String("service", serviceNames[svc]), zap.String("reason", reason), zap.Error(err))
}

// CloseRevoked closes the sessions of peers whose certificate the
// revocations now in force (a reload's CRLs) revoke, and returns how many;
// their redials are refused at the handshake. ABR feeds of a revoked
// certificate end at their next heartbeat.
func (n *Node) CloseRevoked() int {
	n.mu.Lock()
	var revoked []*session
	for _, ps := range n.peers {
		if s := ps.sess; s != nil && n.cfg.Identity.Revoked(s.cs) != nil {
			revoked = append(revoked, s)
		}
	}
	n.mu.Unlock()
	for _, s := range revoked {
		n.log.Warn("session closed: the peer's certificate is revoked", zap.Uint32("peer", s.peer))
		s.kill(nil)
	}
	return len(revoked)
}
