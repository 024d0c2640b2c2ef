package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// Key is a 16-octet tag key K(e) (docs/wire.md §2.5: the draft's "signature").
type Key [16]byte

// Halves returns the SipHash key words: k0 = octets 0–7 and k1 = octets 8–15,
// little-endian, as in the SipHash paper and github.com/dchest/siphash.
func (k Key) Halves() (k0, k1 uint64) {
	return binary.LittleEndian.Uint64(k[0:8]), binary.LittleEndian.Uint64(k[8:16])
}

// State is S(e), the 32-octet state of a peer pair's state machine.
type State [32]byte

// Next returns S(e+1) = HMAC-SHA256(key = S(e), message = "psav state").
func (s State) Next() State {
	m := hmac.New(sha256.New, s[:])
	m.Write([]byte("psav state"))
	var n State
	m.Sum(n[:0])
	return n
}

// TagKey returns K(e) = first 16 octets of HMAC-SHA256(key = S(e), "psav tag key").
func (s State) TagKey() Key {
	m := hmac.New(sha256.New, s[:])
	m.Write([]byte("psav tag key"))
	var sum [32]byte
	m.Sum(sum[:0])
	return Key(sum[:16])
}

// StateMachine runs one peer pair's states forward from S(e0). It keeps only
// the current state: older states are overwritten as it advances (forward
// secrecy), so it can only move forward.
type StateMachine struct {
	epoch uint64
	state State
}

// NewStateMachine starts a state machine at epoch e0 with state s0.
func NewStateMachine(e0 uint64, s0 State) *StateMachine {
	return &StateMachine{epoch: e0, state: s0}
}

// Epoch is the epoch of the state held.
func (m *StateMachine) Epoch() uint64 { return m.epoch }

// Key returns K(e) for e >= the machine's epoch, advancing the machine to e
// (and erasing the states before it). ok is false for an epoch already
// erased, or before e0.
func (m *StateMachine) Key(e uint64) (k Key, ok bool) {
	if e < m.epoch {
		return Key{}, false
	}
	for m.epoch < e {
		m.state = m.state.Next()
		m.epoch++
	}
	return m.state.TagKey(), true
}

// Epoch returns e = floor((unix − t0) / period) (docs/wire.md §2.5), or -1 before t0.
func Epoch(unix, t0, period int64) int64 {
	if period <= 0 || unix < t0 {
		return -1
	}
	return (unix - t0) / period
}

// Window advances the machine to epoch from (erasing older states) and
// returns the keys of epochs from … from+n−1, deriving the later ones from
// transient copies of the state, which are erased on return.
func (m *StateMachine) Window(from uint64, n int) ([]Key, bool) {
	if _, ok := m.Key(from); !ok {
		return nil, false
	}
	keys := make([]Key, n)
	s := m.state
	for i := range keys {
		keys[i] = s.TagKey()
		s = s.Next()
	}
	s = State{}
	return keys, true
}
