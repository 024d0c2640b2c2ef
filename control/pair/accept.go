package pair

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/psavd/psavd/engine"
)

// Acceptance is one side's share of an accepted proposal (a first machine or
// a re-key): the state S(e0) derived from the session the proposal
// travelled on, held until it is installed or dropped. It closes the
// re-key's two-generals case with a confirmation (docs/wire.md, "Confirm"):
// the initiator installs when the response accepts and then confirms; the
// responder derives its Acceptance when it accepts but installs it only when
// the confirmation arrives — on the same session, or on a later one, since
// the state was derived on the first and is kept. A responder whose session
// ends before the response reached the initiator thus installs nothing, as
// the initiator, and both keep the keys they had.
type Acceptance struct {
	local, peer uint32
	p           Proposal
	s0          engine.State
	dropped     bool
}

// Accept derives the state of the accepted proposal p on session cs.
func Accept(cs tls.ConnectionState, local, peer uint32, p Proposal) (*Acceptance, error) {
	if p.Period == 0 {
		return nil, errors.New("pair: proposal with P = 0")
	}
	s0, err := DeriveS0(cs, local, peer, p.E0)
	if err != nil {
		return nil, err
	}
	return &Acceptance{local: local, peer: peer, p: p, s0: s0}, nil
}

// Proposal is the accepted proposal.
func (a *Acceptance) Proposal() Proposal { return a.p }

// Matches reports whether a confirmation of (id, e0) names this acceptance.
func (a *Acceptance) Matches(id, e0 uint64) bool {
	return a != nil && !a.dropped && a.p.ID == id && a.p.E0 == e0
}

// ErrDropped: the acceptance was installed or dropped already.
var ErrDropped = errors.New("pair: acceptance already installed or dropped")

// Install puts the acceptance in force and erases its copy of the state.
// With a running machine m (not removed) whose clock it keeps, it re-keys
// m at e0 (late: even if e0 has passed, see Machine.InstallLate) and
// returns m; otherwise — no machine, or one it cannot re-key (another
// clock, e0 not after its start) — it starts a new machine from e0, which
// is what the other side, re-keying or starting afresh, holds from e0 on.
// rekeyed tells which. A first install (not late) must be before e0:
// late is false for the initiator, which installs at once.
func (a *Acceptance) Install(m *Machine, now time.Time, late bool) (out *Machine, rekeyed bool, err error) {
	if a.dropped {
		return nil, false, ErrDropped
	}
	defer a.Drop()
	if m != nil && !m.Removed() {
		if late {
			err = m.InstallLate(a.p, a.s0)
		} else {
			err = m.InstallRekey(a.p, a.s0, now)
		}
		if err == nil {
			return m, true, nil
		}
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != BadStart && re.Reason != ClockChanged {
			return nil, false, err
		}
		if !late && m.Epoch(now) >= int64(a.p.E0) {
			return nil, false, err // the boundary passed: propose again
		}
	}
	return NewMachine(a.local, a.peer, a.p, a.s0), false, nil
}

// Drop erases the held state; the acceptance can no longer be installed.
func (a *Acceptance) Drop() {
	if a != nil {
		a.s0 = engine.State{}
		a.dropped = true
	}
}
