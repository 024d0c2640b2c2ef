package pair

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/psavd/psavd/engine"
)

// Machine is the PSAV state machine of one ACS pair (docs/wire.md §2.5): the
// current engine.StateMachine (holding only its current state, erased
// forward), and at most one pending re-key that takes over at a future epoch
// boundary e1. It runs from the clock alone: a dropped session does not stop
// it. It hands out keys, never states. Safe for concurrent use.
type Machine struct {
	local, peer uint32
	t0, period  int64

	mu      sync.Mutex
	e0      uint64               // start of cur
	cur     *engine.StateMachine // nil once removed
	e1      uint64               // start of next, when next != nil
	next    *engine.StateMachine
	removed bool
	// seen is the latest epoch trusted to be the present (Advance, or a
	// KeysAhead at most one epoch past it): only states before seen−1 are
	// erased and a re-key takes over only once seen−1 ≥ e1. A time further
	// ahead is answered from copies of the states, and a time behind seen
	// erases nothing, so that a wall-clock step, forward or back, never
	// destroys the keys of the present (docs/wire.md, "Clock steps").
	// Until the first call (seenSet false) the first time asked is trusted:
	// an ACS asks at its own present (Advance, or its feed) at once.
	seen    int64
	seenSet bool
}

// Establish derives S0 from the session cs for an accepted proposal p and
// starts the pair's machine. Both ends call it on their own side of the
// same session and obtain the same machine.
func Establish(cs tls.ConnectionState, local, peer uint32, p Proposal) (*Machine, error) {
	if p.Period == 0 {
		return nil, errors.New("pair: proposal with P = 0")
	}
	s0, err := DeriveS0(cs, local, peer, p.E0)
	if err != nil {
		return nil, err
	}
	m := NewMachine(local, peer, p, s0)
	s0 = engine.State{}
	return m, nil
}

// NewMachine starts a machine from a known S(e0) (Establish derives it from
// TLS; a static peer or a test supplies it). p.Period must be non-zero.
func NewMachine(local, peer uint32, p Proposal, s0 engine.State) *Machine {
	return &Machine{
		local: local, peer: peer,
		t0: p.T0, period: int64(p.Period),
		e0:  p.E0,
		cur: engine.NewStateMachine(p.E0, s0),
	}
}

// Peer is the peer's ASN.
func (m *Machine) Peer() uint32 { return m.peer }

// Clock is the pair's epoch clock (T0, P).
func (m *Machine) Clock() (t0, period int64) { return m.t0, m.period }

// Epoch is the epoch of time t on the pair's clock (−1 before T0).
func (m *Machine) Epoch(t time.Time) int64 { return engine.Epoch(t.Unix(), m.t0, m.period) }

// ErrRemoved: the machine was removed.
var ErrRemoved = errors.New("pair: state machine removed")

// CheckRekey is the responder's (and the initiator's) check of a re-key
// proposal against this machine, on top of Policy.Check: the clock must not
// change, and e1 must follow the current start.
func (m *Machine) CheckRekey(p Proposal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkRekey(p)
}

func (m *Machine) checkRekey(p Proposal) error {
	if m.removed {
		return ErrRemoved
	}
	if p.T0 != m.t0 || int64(p.Period) != m.period {
		return refuse(ClockChanged, "re-key changes the clock (T0=%d P=%d, running T0=%d P=%d)", p.T0, p.Period, m.t0, m.period)
	}
	if p.E1() <= m.e0 {
		return refuse(BadStart, "re-key epoch %d does not follow the running start %d", p.E1(), m.e0)
	}
	return nil
}

// E1 is the start epoch of a re-key proposal (the field E0).
func (p Proposal) E1() uint64 { return p.E0 }

// Rekey derives the new state S'(e1) from the session cs (a new or the
// current one) for an accepted re-key proposal p and schedules it: until
// e1 the current machine's keys are used, from e1 the new one's. now must be
// before the boundary e1 (otherwise the ABRs may already be past it, and
// packets would be lost): a re-key whose boundary has passed is refused and
// must be proposed again. A pending re-key not yet in force is replaced.
func (m *Machine) Rekey(cs tls.ConnectionState, p Proposal, now time.Time) error {
	if err := m.CheckRekey(p); err != nil {
		return err
	}
	s1, err := DeriveS0(cs, m.local, m.peer, p.E1())
	if err != nil {
		return err
	}
	err = m.InstallRekey(p, s1, now)
	s1 = engine.State{}
	return err
}

// InstallRekey schedules a re-key from a known S'(e1) (see Rekey).
func (m *Machine) InstallRekey(p Proposal, s1 engine.State, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkRekey(p); err != nil {
		return err
	}
	if cur := m.Epoch(now); int64(p.E1()) <= cur {
		return refuse(BadStart, "re-key epoch %d is not in the future (now epoch %d)", p.E1(), cur)
	}
	m.dropNext()
	m.e1, m.next = p.E1(), engine.NewStateMachine(p.E1(), s1)
	return nil
}

// InstallLate schedules a re-key whose boundary e1 may have passed: a
// responder's acceptance confirmed by the initiator only on a later session
// (the first one ended before the confirmation arrived; see Accepted). The
// initiator has used the new keys since e1, so from e1 on these are the
// pair's keys, late or not. It is refused only where CheckRekey refuses.
func (m *Machine) InstallLate(p Proposal, s1 engine.State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkRekey(p); err != nil {
		return err
	}
	m.dropNext()
	m.e1, m.next = p.E1(), engine.NewStateMachine(p.E1(), s1)
	m.promote()
	return nil
}

// Pending returns the boundary of the re-key not yet in force, if any.
func (m *Machine) Pending() (e1 uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.e1, m.next != nil
}

// Start is the first epoch of the keys in force (e0, or the last e1 that
// took over).
func (m *Machine) Start() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.e0
}

// Removed reports whether Remove was called.
func (m *Machine) Removed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removed
}

// Remove erases the machine (dead peer): its states are overwritten and it
// hands out no more keys.
func (m *Machine) Remove() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		*m.cur = engine.StateMachine{}
		m.cur = nil
	}
	m.dropNext()
	m.removed = true
}

func (m *Machine) dropNext() {
	if m.next != nil {
		*m.next = engine.StateMachine{}
		m.next = nil
	}
}

// KeysAt returns the peer's keys for the epochs e−1 … e+2 around time unix
// (docs/wire.md §2.4, as control/static publishes them): what an ACS hands its
// ABRs. Each epoch's key comes from the machine in force in that epoch: the
// current one before a pending boundary e1, the re-keyed one from e1 on.
// Epochs before the start, or before the trusted present (see Advance), are
// absent (Valid false). A removed machine returns no keys.
//
// The first time asked (Advance or KeysAt) is the present; after it, a
// time at most one epoch past the trusted present moves the present to it
// (states before its e−1 are erased; a re-key in force for the whole window
// erases the old machine). A time further ahead — a wall-clock step, or a
// look ahead — is answered from transient copies of the states and erases
// nothing; a time behind the present erases nothing either. So KeysAt(t+600)
// followed by KeysAt(t) still gives the keys of t.
func (m *Machine) KeysAt(unix int64) engine.PeerKeys { return m.KeysAhead(unix, MinKeyLead) }

// Key lead bounds: how many epochs past the current one an ACS hands its
// ABRs keys for. The window is e−1 … e+lead, and must fit the engine's.
const (
	MinKeyLead = 2
	MaxKeyLead = engine.KeyWindow - 2
)

// KeysAhead is KeysAt for the epochs e−1 … e+lead (lead clamped to
// MinKeyLead … MaxKeyLead): the fail-static horizon of an ABR is lead
// epochs. Keys ahead are derived from copies of the state, never advancing it.
func (m *Machine) KeysAhead(unix int64, lead int) engine.PeerKeys {
	lead = min(max(lead, MinKeyLead), MaxKeyLead)
	pk := engine.PeerKeys{ASN: m.peer}
	e := engine.Epoch(unix, m.t0, m.period)
	if e < 0 {
		return pk
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.removed {
		return pk
	}
	if !m.seenSet || e <= m.seen+1 {
		m.advance(e)
	}
	from, to := e-1, e+int64(lead)+1 // [from, to)
	curEnd := to
	if m.next != nil {
		curEnd = min(to, int64(m.e1))
	}
	fill(&pk, m.cur, from, curEnd)
	if m.next != nil {
		fill(&pk, m.next, max(from, int64(m.e1)), to)
	}
	return pk
}

// Advance tells the machine that time unix is the present, from a clock
// its owner trusts (an ACS's epoch clock, anchored to the monotonic clock):
// the states before its epoch e−1 are erased (forward secrecy), and a
// re-key whose boundary e1 ≤ e−1 takes over. A time behind the present
// already trusted does nothing. The owner calls it at least once an epoch.
func (m *Machine) Advance(unix int64) {
	e := engine.Epoch(unix, m.t0, m.period)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.removed && e >= 0 {
		m.advance(e)
	}
}

// advance moves the trusted present forward to e; m.mu held.
func (m *Machine) advance(e int64) {
	if m.seenSet && e <= m.seen {
		return
	}
	m.seen, m.seenSet = e, true
	m.promote()
	if floor := e - 1; floor > int64(m.cur.Epoch()) {
		m.cur.Key(uint64(floor)) // erases the states before floor
	}
}

// promote puts a pending re-key in force once the whole trusted window
// e−1 … is at or after its boundary, erasing the old machine; m.mu held.
func (m *Machine) promote() {
	if m.next != nil && m.seenSet && m.seen-1 >= int64(m.e1) {
		*m.cur = engine.StateMachine{}
		m.cur, m.e0, m.next = m.next, m.e1, nil
	}
}

// fill sets the keys of epochs [from, to) that sm can still produce,
// deriving them from a copy: sm itself is not advanced.
func fill(pk *engine.PeerKeys, sm *engine.StateMachine, from, to int64) {
	from = max(from, int64(sm.Epoch()))
	if to <= from {
		return
	}
	c := new(engine.StateMachine)
	*c = *sm
	keys, ok := c.Window(uint64(from), int(to-from))
	*c = engine.StateMachine{}
	if !ok {
		return
	}
	for i := range keys {
		pk.SetKey(from+int64(i), keys[i])
		keys[i] = engine.Key{}
	}
}

// Info is a machine's state for psavctl (no secrets).
type Info struct {
	Local, Peer uint32
	T0, Period  int64
	Epoch       int64  // current epoch at the time asked
	Start       uint64 // first epoch of the keys in force
	PendingE1   uint64 // boundary of a pending re-key, when Pending
	Pending     bool
	Removed     bool
}

// Info returns the machine's state at time t.
func (m *Machine) Info(t time.Time) Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Info{
		Local: m.local, Peer: m.peer, T0: m.t0, Period: m.period,
		Epoch: m.Epoch(t), Start: m.e0, PendingE1: m.e1, Pending: m.next != nil, Removed: m.removed,
	}
}

func (i Info) String() string {
	s := fmt.Sprintf("AS%d–AS%d T0=%d P=%ds epoch=%d start=%d", i.Local, i.Peer, i.T0, i.Period, i.Epoch, i.Start)
	if i.Pending {
		s += fmt.Sprintf(" rekey-at=%d", i.PendingE1)
	}
	if i.Removed {
		s += " removed"
	}
	return s
}
