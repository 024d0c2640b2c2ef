package pair

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/psavd/psavd/engine"
)

// DefaultPeriod is P when none is configured (docs/wire.md §2.5).
const DefaultPeriod = 60

// DefaultLead is how many epochs ahead of the current one a proposal starts
// (e0 = current + 2): far enough that both sides, and the snapshots their
// ABRs hold (which carry keys up to e+2), have the new keys before e0 begins.
const DefaultLead = 2

// Policy is what a responder accepts. The zero value accepts P in
// [1 s, 1 day], e0 up to 1024 epochs ahead, any T0 ≥ 0.
type Policy struct {
	MinPeriod, MaxPeriod uint32 // seconds; 0 → 1 and 86400
	MaxLead              uint64 // epochs e0 may be ahead of now; 0 → 1024
	// T0 and Period, when Period is non-zero, are this AS's own epoch clock
	// ([psav] t0, epoch_seconds): engine.Tables carries one clock for all
	// peers, so a proposal must use it.
	T0     int64
	Period uint32
}

// RefusedError says why a proposal was (or would be) refused. Err, if set,
// is the cause; a *SkewError there is an alarm for the operator.
type RefusedError struct {
	Reason Reason
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pair: proposal refused (%s): %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("pair: proposal refused (%s)", e.Reason)
}

func (e *RefusedError) Unwrap() error { return e.Err }

func refuse(r Reason, format string, a ...any) error {
	return &RefusedError{Reason: r, Err: fmt.Errorf(format, a...)}
}

// NewProposal is the initiator's proposal for the clock (t0, period),
// starting DefaultLead epochs after the one of now.
func NewProposal(id uint64, t0 int64, period uint32, now time.Time) Proposal {
	e := engine.Epoch(now.Unix(), t0, int64(period))
	if e < 0 {
		e = -1
	}
	return Proposal{ID: id, T0: t0, Period: period, E0: uint64(e + DefaultLead)}
}

// Check applies the policy to a proposal at time now (our clock) with the
// measured clock offset to the peer; both sides use it, the initiator before
// sending its proposal and the responder before accepting. It returns nil
// or a *RefusedError.
func (pol Policy) Check(p Proposal, now time.Time, offset time.Duration) error {
	minP, maxP, maxLead := pol.MinPeriod, pol.MaxPeriod, pol.MaxLead
	if minP == 0 {
		minP = 1
	}
	if maxP == 0 {
		maxP = 86400
	}
	if maxLead == 0 {
		maxLead = 1024
	}
	if p.Period < minP || p.Period > maxP {
		return refuse(BadPeriod, "P = %d s, accepted %d … %d s", p.Period, minP, maxP)
	}
	if pol.Period != 0 && (p.T0 != pol.T0 || p.Period != pol.Period) {
		return refuse(ClockChanged, "clock T0=%d P=%d, ours T0=%d P=%d", p.T0, p.Period, pol.T0, pol.Period)
	}
	if p.T0 < 0 {
		return refuse(BadT0, "T0 = %d is negative", p.T0)
	}
	if p.E0 >= uint64(math.MaxInt64-p.T0)/uint64(p.Period) {
		return refuse(BadT0, "e0 = %d does not start at a representable time", p.E0)
	}
	cur := engine.Epoch(now.Unix(), p.T0, int64(p.Period))
	if int64(p.E0) <= cur {
		return refuse(BadStart, "e0 = %d is not in the future (now epoch %d)", p.E0, cur)
	}
	if p.E0-uint64(max(cur, 0)) > maxLead {
		return refuse(BadStart, "e0 = %d is more than %d epochs ahead of %d", p.E0, maxLead, cur)
	}
	if err := CheckSkew(offset, time.Duration(p.Period)*time.Second); err != nil {
		return &RefusedError{Reason: ClockSkew, Err: err}
	}
	return nil
}

// Evaluate is the responder's decision on a proposal received from peer:
// the Response to send, and a *RefusedError when it refuses (to log, and to
// raise an alarm when it wraps a *SkewError). Only the lower ASN proposes.
func (pol Policy) Evaluate(local, peer uint32, p Proposal, now time.Time, offset time.Duration) (Response, error) {
	err := pol.Check(p, now, offset)
	if err == nil && !Initiator(peer, local) {
		err = refuse(NotInitiator, "AS%d is not the initiator towards AS%d", peer, local)
	}
	if err != nil {
		var re *RefusedError
		errors.As(err, &re)
		return Response{ID: p.ID, Reason: re.Reason}, err
	}
	return Response{ID: p.ID, Reason: Accepted}, nil
}

// ErrWrongID: a response does not answer the outstanding proposal.
var ErrWrongID = errors.New("pair: response does not answer the proposal")

// CheckResponse is the initiator's reading of the response to p: nil when
// accepted, a *RefusedError when refused.
func CheckResponse(p Proposal, r Response) error {
	if r.ID != p.ID {
		return ErrWrongID
	}
	if !r.Accepted() {
		return &RefusedError{Reason: r.Reason}
	}
	return nil
}
