package engine

import (
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
func (s State) Next() State { return State(hmacState(&s, "psav state")) }

// TagKey returns K(e) = first 16 octets of HMAC-SHA256(key = S(e), "psav tag key").
func (s State) TagKey() Key {
	sum := hmacState(&s, "psav tag key")
	k := Key(sum[:16])
	clear(sum[:])
	return k
}

// hmacSHA256 block size and the RFC 2104 pads.
const (
	hmacBlock = 64
	hmacIpad  = 0x36
	hmacOpad  = 0x5c
)

// hmacState is HMAC-SHA256 (RFC 2104) keyed by a state, written out so
// that every buffer derived from the key is a local array cleared before
// returning: crypto/hmac keeps its padded keys in heap state it cannot
// wipe, and a state left in memory would give away every later key of the
// pair (forward secrecy is the point of erasing old states).
func hmacState(key *State, msg string) [32]byte {
	var inner [hmacBlock + 32]byte // (K ⊕ ipad) ‖ msg, msg ≤ 32 octets
	var outer [hmacBlock + 32]byte // (K ⊕ opad) ‖ H(inner)
	if len(msg) > 32 {
		panic("engine: hmacState message too long")
	}
	for i := range hmacBlock {
		var b byte
		if i < len(key) {
			b = key[i]
		}
		inner[i] = b ^ hmacIpad
		outer[i] = b ^ hmacOpad
	}
	copy(inner[hmacBlock:], msg)
	ih := sha256.Sum256(inner[:hmacBlock+len(msg)])
	copy(outer[hmacBlock:], ih[:])
	sum := sha256.Sum256(outer[:])
	clear(inner[:])
	clear(outer[:])
	clear(ih[:])
	return sum
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
