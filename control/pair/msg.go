package pair

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Negotiation messages (docs/wire.md §2.5, §3.1). They are transport-agnostic and
// encoded compactly, big-endian, with a version and a type octet; the
// decoder is strict (exact length, known version, type and values) so that
// every accepted encoding is canonical. The schema will move into the
// project's protobuf; the field set is meant to carry over unchanged.
//
//	Proposal (30 octets): version=1 | type=1 | id u64 | t0 i64 | period u32 | e0 u64
//	Response (11 octets): version=1 | type=2 | id u64 | reason u8 (0 = accepted)
const (
	WireVersion  = 1
	typeProposal = 1
	typeResponse = 2

	proposalLen = 30
	responseLen = 11
)

// Proposal is the initiator's offer of a state machine (or of a re-key): the
// epoch clock (T0, Period) and the start epoch E0 whose state is derived from
// the session the proposal travels on.
type Proposal struct {
	ID     uint64 // chosen by the initiator, echoed in the Response
	T0     int64  // unix seconds
	Period uint32 // seconds (P)
	E0     uint64 // start epoch (e0, or e1 for a re-key)
}

// Response accepts (Reason == Accepted) or refuses a Proposal.
type Response struct {
	ID     uint64
	Reason Reason
}

// Accepted reports whether the response accepts the proposal.
func (r Response) Accepted() bool { return r.Reason == Accepted }

// Reason is why a proposal was refused.
type Reason uint8

// Reasons (wire values; never renumber).
const (
	Accepted     Reason = 0
	BadPeriod    Reason = 1 // P out of range
	BadStart     Reason = 2 // e0 not in the future, or too far ahead
	ClockSkew    Reason = 3 // measured skew over P/4
	ClockChanged Reason = 4 // T0/P differ from ours or from the running machine's
	BadT0        Reason = 5 // T0 negative, or e0's start not representable
	NotInitiator Reason = 6 // proposal from the higher ASN
	maxReason           = NotInitiator
)

var reasonNames = [...]string{"accepted", "bad-period", "bad-start-epoch", "clock-skew", "clock-changed", "bad-t0", "not-initiator"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// AppendBinary appends the encoding of p.
func (p Proposal) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, WireVersion, typeProposal)
	b = binary.BigEndian.AppendUint64(b, p.ID)
	b = binary.BigEndian.AppendUint64(b, uint64(p.T0))
	b = binary.BigEndian.AppendUint32(b, p.Period)
	b = binary.BigEndian.AppendUint64(b, p.E0)
	return b, nil
}

// MarshalBinary encodes p.
func (p Proposal) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, proposalLen))
}

// AppendBinary appends the encoding of r.
func (r Response) AppendBinary(b []byte) ([]byte, error) {
	if r.Reason > maxReason {
		return b, fmt.Errorf("pair: unknown reason %d", r.Reason)
	}
	b = append(b, WireVersion, typeResponse)
	b = binary.BigEndian.AppendUint64(b, r.ID)
	return append(b, byte(r.Reason)), nil
}

// MarshalBinary encodes r.
func (r Response) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, responseLen))
}

// Decode errors.
var (
	ErrShort   = errors.New("pair: message too short")
	ErrVersion = errors.New("pair: unsupported message version")
	ErrType    = errors.New("pair: unknown message type")
	ErrLength  = errors.New("pair: bad message length")
	ErrValue   = errors.New("pair: bad field value")
)

// Decode decodes one message: a Proposal or a Response.
func Decode(b []byte) (any, error) {
	if len(b) < 2 {
		return nil, ErrShort
	}
	if b[0] != WireVersion {
		return nil, ErrVersion
	}
	switch b[1] {
	case typeProposal:
		if len(b) != proposalLen {
			return nil, ErrLength
		}
		return Proposal{
			ID:     binary.BigEndian.Uint64(b[2:10]),
			T0:     int64(binary.BigEndian.Uint64(b[10:18])),
			Period: binary.BigEndian.Uint32(b[18:22]),
			E0:     binary.BigEndian.Uint64(b[22:30]),
		}, nil
	case typeResponse:
		if len(b) != responseLen {
			return nil, ErrLength
		}
		r := Response{ID: binary.BigEndian.Uint64(b[2:10]), Reason: Reason(b[10])}
		if r.Reason > maxReason {
			return nil, ErrValue
		}
		return r, nil
	}
	return nil, ErrType
}

// DecodeProposal decodes a message that must be a Proposal.
func DecodeProposal(b []byte) (Proposal, error) {
	m, err := Decode(b)
	if err != nil {
		return Proposal{}, err
	}
	p, ok := m.(Proposal)
	if !ok {
		return Proposal{}, ErrType
	}
	return p, nil
}

// DecodeResponse decodes a message that must be a Response.
func DecodeResponse(b []byte) (Response, error) {
	m, err := Decode(b)
	if err != nil {
		return Response{}, err
	}
	r, ok := m.(Response)
	if !ok {
		return Response{}, ErrType
	}
	return r, nil
}
