package pair

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

const testT0 = 1_700_000_000

// at returns a time inside epoch e (10 s after its start) on the test clock.
func at(e int64, period uint32) time.Time {
	return time.Unix(testT0+e*int64(period)+10, 0)
}

func roundTrip[T interface{ MarshalBinary() ([]byte, error) }](t *testing.T, m T) any {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return d
}

// Test 3: propose/accept through the encoding, and refusals.
func TestNegotiation(t *testing.T) {
	pol := Policy{}
	now := at(1000, 60)
	p := NewProposal(42, testT0, DefaultPeriod, now)
	if p.E0 != 1002 {
		t.Fatalf("e0 = %d, want current+2", p.E0)
	}
	if err := pol.Check(p, now, 0); err != nil {
		t.Fatalf("initiator's own check: %v", err)
	}
	got := roundTrip(t, p).(Proposal)
	if got != p {
		t.Fatalf("proposal round trip %+v, want %+v", got, p)
	}
	r, err := pol.Evaluate(asB, asA, got, now, 3*time.Second)
	if err != nil || !r.Accepted() || r.ID != 42 {
		t.Fatalf("evaluate: %+v %v", r, err)
	}
	rr := roundTrip(t, r).(Response)
	if err := CheckResponse(p, rr); err != nil {
		t.Fatalf("initiator reads response: %v", err)
	}
	if err := CheckResponse(Proposal{ID: 43}, rr); !errors.Is(err, ErrWrongID) {
		t.Errorf("response to another proposal: %v", err)
	}

	cases := []struct {
		name   string
		p      Proposal
		from   uint32
		offset time.Duration
		pol    Policy
		want   Reason
	}{
		{"e0 in the past", Proposal{ID: 1, T0: testT0, Period: 60, E0: 999}, asA, 0, pol, BadStart},
		{"e0 is now", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1000}, asA, 0, pol, BadStart},
		{"e0 too far", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1000 + 1025}, asA, 0, pol, BadStart},
		{"P = 0", Proposal{ID: 1, T0: testT0, Period: 0, E0: 1002}, asA, 0, pol, BadPeriod},
		{"P too long", Proposal{ID: 1, T0: testT0, Period: 86401, E0: 1002}, asA, 0, pol, BadPeriod},
		{"P below policy", Proposal{ID: 1, T0: testT0, Period: 5, E0: 12002}, asA, 0, Policy{MinPeriod: 10}, BadPeriod},
		{"skew ahead", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1002}, asA, 15*time.Second + time.Millisecond, pol, ClockSkew},
		{"skew behind", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1002}, asA, -20 * time.Second, pol, ClockSkew},
		{"negative T0", Proposal{ID: 1, T0: -60, Period: 60, E0: 1 << 40}, asA, 0, pol, BadT0},
		{"overflow", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1 << 62}, asA, 0, pol, BadT0},
		{"clock differs", Proposal{ID: 1, T0: testT0 + 1, Period: 60, E0: 1002}, asA, 0, Policy{T0: testT0, Period: 60}, ClockChanged},
		{"from the higher AS", Proposal{ID: 1, T0: testT0, Period: 60, E0: 1002}, 65003, 0, pol, NotInitiator},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := c.pol.Evaluate(asB, c.from, c.p, now, c.offset)
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != c.want || r.Reason != c.want || r.ID != c.p.ID {
				t.Fatalf("got %+v %v, want refusal %s", r, err, c.want)
			}
			if c.want == ClockSkew {
				var se *SkewError
				if !errors.As(err, &se) || se.Limit != 15*time.Second || se.Offset != c.offset {
					t.Errorf("skew refusal without the alarm: %v", err)
				}
			}
			// The refusal travels back and the initiator reads it.
			back := roundTrip(t, r).(Response)
			if err := CheckResponse(c.p, back); !errors.As(err, &re) || re.Reason != c.want {
				t.Errorf("initiator reads %v", err)
			}
		})
	}
	// Skew exactly P/4 is still accepted.
	if _, err := pol.Evaluate(asB, asA, p, now, -15*time.Second); err != nil {
		t.Errorf("skew = P/4 refused: %v", err)
	}
	// The policy's own clock is accepted.
	if _, err := (Policy{T0: testT0, Period: 60}).Evaluate(asB, asA, p, now, 0); err != nil {
		t.Errorf("matching clock refused: %v", err)
	}
}

func TestDecodeStrict(t *testing.T) {
	pb, _ := Proposal{ID: 1, T0: 2, Period: 3, E0: 4}.MarshalBinary()
	rb, _ := Response{ID: 1, Reason: ClockSkew}.MarshalBinary()
	if len(pb) != proposalLen || len(rb) != responseLen {
		t.Fatalf("lengths %d %d", len(pb), len(rb))
	}
	want := []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4}
	if !bytes.Equal(pb, want) {
		t.Errorf("proposal encoding %x", pb)
	}
	mod := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	for name, c := range map[string]struct {
		b   []byte
		err error
	}{
		"empty":          {nil, ErrShort},
		"one octet":      {[]byte{1}, ErrShort},
		"version 0":      {mod(pb, 0, 0), ErrVersion},
		"version 2":      {mod(pb, 0, 2), ErrVersion},
		"type 0":         {mod(pb, 1, 0), ErrType},
		"type 3":         {mod(pb, 1, 3), ErrType},
		"proposal short": {pb[:proposalLen-1], ErrLength},
		"proposal long":  {append(bytes.Clone(pb), 0), ErrLength},
		"response long":  {append(bytes.Clone(rb), 0), ErrLength},
		"unknown reason": {mod(rb, 10, byte(maxReason)+1), ErrValue},
	} {
		if _, err := Decode(c.b); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
	if _, err := DecodeProposal(rb); !errors.Is(err, ErrType) {
		t.Errorf("response as proposal: %v", err)
	}
	if _, err := DecodeResponse(pb); !errors.Is(err, ErrType) {
		t.Errorf("proposal as response: %v", err)
	}
	if _, err := (Response{Reason: maxReason + 1}).MarshalBinary(); err == nil {
		t.Error("encoded an unknown reason")
	}
}

func TestClockOffset(t *testing.T) {
	t1 := time.Unix(1_700_000_000, 0)
	// Peer 5 s ahead, 100 ms each way, 10 ms to answer.
	t2 := t1.Add(5*time.Second + 100*time.Millisecond)
	t3 := t2.Add(10 * time.Millisecond)
	t4 := t3.Add(-5*time.Second + 100*time.Millisecond)
	off, rtt := ClockOffset(t1, t2, t3, t4)
	if off != 5*time.Second || rtt != 200*time.Millisecond {
		t.Errorf("offset %v rtt %v", off, rtt)
	}
	// Peer 3 s behind, asymmetric path: the error is half the asymmetry.
	t2 = t1.Add(-3*time.Second + 300*time.Millisecond)
	t3 = t2
	t4 = t3.Add(3*time.Second + 100*time.Millisecond)
	off, rtt = ClockOffset(t1, t2, t3, t4)
	if off != -3*time.Second+100*time.Millisecond || rtt != 400*time.Millisecond {
		t.Errorf("offset %v rtt %v", off, rtt)
	}
	for _, c := range []struct {
		off  time.Duration
		fail bool
	}{{0, false}, {15 * time.Second, false}, {-15 * time.Second, false}, {15*time.Second + 1, true}, {-16 * time.Second, true}} {
		err := CheckSkew(c.off, time.Minute)
		var se *SkewError
		if c.fail != errors.As(err, &se) {
			t.Errorf("CheckSkew(%v) = %v", c.off, err)
		}
	}
}

func TestCollision(t *testing.T) {
	lowDials := Session{Dialer: asA, Acceptor: asB}
	highDials := Session{Dialer: asB, Acceptor: asA}
	for _, c := range []struct {
		name               string
		existing, incoming Session
		keepIncoming       bool
	}{
		{"existing dialled by low", lowDials, highDials, false},
		{"incoming dialled by low", highDials, lowDials, true},
		{"both by low: reconnection", lowDials, lowDials, true},
		{"both by high: reconnection", highDials, highDials, true},
	} {
		got, err := KeepIncoming(c.existing, c.incoming)
		if err != nil || got != c.keepIncoming {
			t.Errorf("%s: %v %v", c.name, got, err)
		}
	}
	// Both sides decide alike: each sees the other's dial as incoming.
	a, _ := KeepIncoming(lowDials, highDials) // at AS65001: own dial exists, 65002's arrives
	b, _ := KeepIncoming(highDials, lowDials) // at AS65002: own dial exists, 65001's arrives
	if a || !b {
		t.Errorf("sides disagree: %v %v", a, b)
	}
	if _, err := KeepIncoming(lowDials, Session{Dialer: asA, Acceptor: 65003}); !errors.Is(err, ErrNotSamePair) {
		t.Errorf("different pairs: %v", err)
	}
	if _, err := KeepIncoming(Session{asA, asA}, Session{asA, asA}); !errors.Is(err, ErrNotSamePair) {
		t.Errorf("self pair: %v", err)
	}
	if !Initiator(asA, asB) || Initiator(asB, asA) {
		t.Error("Initiator")
	}
}

// Test 6: the decoder never panics, and what it accepts re-encodes to the
// same octets (the encoding is canonical).
func FuzzDecode(f *testing.F) {
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{
		Proposal{ID: 1, T0: testT0, Period: 60, E0: 29000000},
		Proposal{ID: ^uint64(0), T0: -1, Period: ^uint32(0), E0: ^uint64(0)},
		Response{ID: 7},
		Response{ID: 8, Reason: ClockSkew},
	} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		var out []byte
		switch v := m.(type) {
		case Proposal:
			out, err = v.MarshalBinary()
		case Response:
			out, err = v.MarshalBinary()
		default:
			t.Fatalf("decoded %T", m)
		}
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("%x decoded to %+v, re-encodes to %x (%v)", b, m, out, err)
		}
	})
}
