package pair

import (
	"testing"

	"github.com/psavd/psavd/engine"
)

// sameKeys reports whether two windows hold the same valid keys for the
// epochs from … to, all of them present in both.
func sameKeys(a, b engine.PeerKeys, from, to int64) bool {
	for e := from; e <= to; e++ {
		a0, a1, okA := a.Key(e)
		b0, b1, okB := b.Key(e)
		if !okA || !okB || a0 != b0 || a1 != b1 {
			return false
		}
	}
	return true
}

func hasKey(pk engine.PeerKeys, e int64) bool {
	_, _, ok := pk.Key(e)
	return ok
}

// A wall-clock step of ±10 min reaching KeysAt (issue 13): the keys of the
// present survive it. Before, KeysAt(now+600) erased the states of now for
// good, and KeysAt(now) then gave no key at all.
func TestKeysSurviveClockStep(t *testing.T) {
	var s0 engine.State
	s0[3] = 7
	const e = 1000
	p := Proposal{ID: 1, T0: testT0, Period: 60, E0: e - 5}
	for _, step := range []int64{+600, -600} {
		m := NewMachine(asA, asB, p, s0)
		ref := NewMachine(asA, asB, p, s0) // never stepped
		for x := int64(e - 7); x <= e; x++ {
			m.Advance(start(x))
		}
		now := start(e) + 10
		want := ref.KeysAt(now)
		if !sameKeys(m.KeysAt(now), want, e-1, e+2) {
			t.Fatalf("step %+d: keys before the step differ", step)
		}
		stepped := m.KeysAt(now + step)
		if step > 0 {
			// Ahead: derived without advancing, and right.
			if !sameKeys(stepped, ref.KeysAt(now+step), e+9, e+12) {
				t.Errorf("step %+d: keys of the stepped time wrong", step)
			}
		}
		got := m.KeysAt(now)
		n := 0
		for _, k := range got.Keys {
			if k.Valid {
				n++
			}
		}
		if n != 4 || !sameKeys(got, want, e-1, e+2) {
			t.Errorf("step %+d: KeysAt(now) after KeysAt(now%+d): %d keys, want the 4 of now", step, step, n)
		}
		// Normal progress still erases (forward secrecy).
		m.Advance(start(e + 1))
		if pk := m.KeysAt(start(e - 1)); hasKey(pk, e-1) {
			t.Errorf("step %+d: epoch e−1 not erased after the present moved to e+1", step)
		}
	}
}

// A machine asked often enough follows the time by itself (KeysAt one epoch
// at a time, no Advance), erasing as it goes.
func TestKeysAtFollowsTime(t *testing.T) {
	var s0 engine.State
	p := Proposal{ID: 1, T0: testT0, Period: 60, E0: 1002}
	m := NewMachine(asA, asB, p, s0)
	for e := int64(1000); e <= 1010; e++ {
		m.KeysAt(start(e))
	}
	if pk := m.KeysAt(start(1009)); hasKey(pk, 1008) {
		t.Error("epoch 1008 not erased at 1010")
	}
	if pk := m.KeysAt(start(1010)); !hasKey(pk, 1009) {
		t.Error("epoch 1009 missing at 1010")
	}
}

// The confirm step (issue 13): a responder's acceptance is installed only
// when the initiator confirms. A session that ends after the responder
// accepted a re-key but before the initiator installed it leaves both on
// the keys they had; a confirmation that arrives on a later session, after
// e1 passed, installs the state derived on the first, and both sides hold
// the same keys.
func TestAcceptanceConfirm(t *testing.T) {
	f := newFixture(t)
	now := at(1000, 60)
	p := NewProposal(1, testT0, 60, now)
	cs1, ss1 := session(t, f)
	mA, _ := Establish(cs1, asA, asB, p)
	mB, _ := Establish(ss1, asB, asA, p)

	// Session 2: a re-key accepted by B; the session ends before A reads
	// the response. B keeps its acceptance, unconfirmed, and installs
	// nothing; A installs nothing either.
	now = at(1010, 60)
	rk := NewProposal(2, testT0, 60, now)
	cs2, ss2 := session(t, f)
	accB, err := Accept(ss2, asB, asA, rk)
	if err != nil {
		t.Fatal(err)
	}
	_ = cs2
	for e := int64(1010); e <= 1016; e++ {
		mA.Advance(start(e))
		mB.Advance(start(e))
		if !sameKeys(mA.KeysAt(start(e)), mB.KeysAt(start(e)), e-1, e+2) {
			t.Fatalf("epoch %d: keys differ after an unconfirmed acceptance", e)
		}
	}

	// Session 3: a re-key; A installs on the response and confirms, but the
	// confirmation is lost with the session. B still holds it.
	now = at(1016, 60)
	rk3 := NewProposal(3, testT0, 60, now)
	cs3, ss3 := session(t, f)
	accB3, err := Accept(ss3, asB, asA, rk3)
	if err != nil {
		t.Fatal(err)
	}
	accB.Drop() // replaced by the newer acceptance
	accA3, err := Accept(cs3, asA, asB, rk3)
	if err != nil {
		t.Fatal(err)
	}
	if m, rekeyed, err := accA3.Install(mA, now, false); err != nil || !rekeyed || m != mA {
		t.Fatalf("initiator install: %v %v", rekeyed, err)
	}
	// Session 4, after e1: the confirmation (sent again) installs late.
	e1 := int64(rk3.E1())
	for e := int64(1016); e <= e1+2; e++ {
		mA.Advance(start(e))
		mB.Advance(start(e))
	}
	if !accB3.Matches(rk3.ID, rk3.E0) || accB.Matches(rk.ID, rk.E0) {
		t.Fatal("Matches")
	}
	if m, rekeyed, err := accB3.Install(mB, at(e1+2, 60), true); err != nil || !rekeyed || m != mB {
		t.Fatalf("late install: %v %v", rekeyed, err)
	}
	if accB3.Matches(rk3.ID, rk3.E0) {
		t.Error("an installed acceptance still matches")
	}
	for e := e1 + 2; e <= e1+5; e++ {
		mA.Advance(start(e))
		mB.Advance(start(e))
		if !sameKeys(mA.KeysAt(start(e)), mB.KeysAt(start(e)), e-1, e+2) {
			t.Errorf("epoch %d: keys differ after the late confirmation", e)
		}
	}
	if mB.Start() != uint64(e1) {
		t.Errorf("B's start %d, want %d", mB.Start(), e1)
	}

	// A side without a machine (restarted) starts one from e0 that gives
	// the keys the re-keying side gives from e0 on.
	now = at(e1+5, 60)
	rk5 := NewProposal(5, testT0, 60, now)
	cs5, ss5 := session(t, f)
	a5, _ := Accept(cs5, asA, asB, rk5)
	b5, _ := Accept(ss5, asB, asA, rk5)
	if _, rekeyed, err := a5.Install(mA, now, false); err != nil || !rekeyed {
		t.Fatal(err)
	}
	fresh, rekeyed, err := b5.Install(nil, now, false)
	if err != nil || rekeyed {
		t.Fatal(err)
	}
	e0 := int64(rk5.E0)
	if !sameKeys(mA.KeysAt(start(e0+1)), fresh.KeysAt(start(e0+1)), e0, e0+3) {
		t.Error("fresh machine and re-keyed machine differ from e0")
	}
}
