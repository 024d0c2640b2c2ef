package pair

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/psavd/psavd/engine"
)

// session runs a handshake between AS65001 (client) and AS65002 (server).
func session(t *testing.T, f *fixture) (a, b tls.ConnectionState) {
	t.Helper()
	cs, ss, cerr, serr := handshake(t, mustClient(t, f.idA, asB), mustServer(t, f.idB))
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: %v %v", cerr, serr)
	}
	return cs, ss
}

func mustKey(t *testing.T, sm *engine.StateMachine, e uint64) (k0, k1 uint64) {
	t.Helper()
	k, ok := sm.Key(e)
	if !ok {
		t.Fatalf("no key for epoch %d", e)
	}
	return k.Halves()
}

var (
	src = [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: 7}
	dst = [16]byte{10: 0xff, 11: 0xff, 12: 203, 13: 0, 14: 113, 15: 9}
)

// validates reports whether a packet tagged with tag in epoch e is accepted
// with the window pk (the validator recomputes with the key of e).
func validates(pk engine.PeerKeys, e int64, tag uint64) bool {
	k0, k1, ok := pk.Key(e)
	return ok && engine.ComputeTag(k0, k1, &src, &dst, 6, 24) == tag
}

func start(e int64) int64 { return testT0 + e*60 }

// Test 4: re-key across an epoch boundary loses no packet.
func TestRekeyAcrossBoundary(t *testing.T) {
	f := newFixture(t)
	pol := Policy{T0: testT0, Period: 60}

	// Session 1: agree e0 and start both machines.
	now := at(1000, 60)
	p := NewProposal(1, testT0, 60, now)
	if _, err := pol.Evaluate(asB, asA, p, now, 0); err != nil {
		t.Fatal(err)
	}
	cs1, ss1 := session(t, f)
	mA, err := Establish(cs1, asA, asB, p)
	if err != nil {
		t.Fatal(err)
	}
	mB, err := Establish(ss1, asB, asA, p)
	if err != nil {
		t.Fatal(err)
	}
	s0, _ := DeriveS0(cs1, asA, asB, p.E0)
	oldRef := engine.NewStateMachine(p.E0, s0)

	// Later, on a new session (the first dropped: the machines kept
	// running from the clock), a re-key for e1 = current + 2.
	now = at(1010, 60)
	rk := NewProposal(2, testT0, 60, now)
	e1 := int64(rk.E1())
	if e1 != 1012 {
		t.Fatalf("e1 = %d", e1)
	}
	for _, m := range []*Machine{mA, mB} {
		if err := m.CheckRekey(rk); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := pol.Evaluate(asB, asA, rk, now, 0); err != nil || CheckResponse(rk, r) != nil {
		t.Fatal(err)
	}
	cs2, ss2 := session(t, f)
	if err := mA.Rekey(cs2, rk, now); err != nil {
		t.Fatal(err)
	}
	if err := mB.Rekey(ss2, rk, now); err != nil {
		t.Fatal(err)
	}
	s1, _ := DeriveS0(cs2, asA, asB, rk.E1())
	newRef := engine.NewStateMachine(rk.E1(), s1)
	if e, ok := mA.Pending(); !ok || e != uint64(e1) {
		t.Fatalf("pending %d %v", e, ok)
	}

	// Packets: one tagged in e1−1 with the old machine's key, one in e1
	// with the new one's.
	o0, o1 := mustKey(t, oldRef, uint64(e1-1))
	n0, n1 := mustKey(t, newRef, uint64(e1))
	oldTag := engine.ComputeTag(o0, o1, &src, &dst, 6, 24)
	newTag := engine.ComputeTag(n0, n1, &src, &dst, 6, 24)
	if x0, x1 := mustKey(t, oldRef, uint64(e1)); x0 == n0 && x1 == n1 {
		t.Fatal("the re-key did not change the key")
	}

	for _, tc := range []struct {
		name string
		unix int64
	}{
		{"just before the boundary", start(e1) - 1},
		{"at the boundary", start(e1)},
		{"just after the boundary", start(e1) + 1},
	} {
		for side, m := range []*Machine{mA, mB} {
			pk := m.KeysAt(tc.unix)
			if !validates(pk, e1-1, oldTag) {
				t.Errorf("%s, side %d: packet of e1−1 (old key) refused", tc.name, side)
			}
			if !validates(pk, e1, newTag) {
				t.Errorf("%s, side %d: packet of e1 (new key) refused", tc.name, side)
			}
			if validates(pk, e1, engine.ComputeTag(o0, o1, &src, &dst, 6, 24)) {
				t.Errorf("%s, side %d: e1 accepts the old machine's e1−1 key", tc.name, side)
			}
		}
	}
	// After the boundary the window is e1−1 (old), e1, e1+1, e1+2 (new).
	pk := mA.KeysAt(start(e1) + 1)
	for e := e1 - 1; e <= e1+2; e++ {
		r0, r1 := o0, o1 // the old machine's e1−1 (computed above; erased since)
		if e >= e1 {
			r0, r1 = mustKey(t, newRef, uint64(e))
		}
		if k0, k1, ok := pk.Key(e); !ok || k0 != r0 || k1 != r1 {
			t.Errorf("epoch %d: wrong key (ok=%v)", e, ok)
		}
	}
	// One epoch later (the owner's clock says so: Advance) the old machine
	// is erased and the re-key in force.
	mA.Advance(start(e1 + 1))
	pk = mA.KeysAt(start(e1 + 1))
	if _, ok := mA.Pending(); ok || mA.Start() != uint64(e1) {
		t.Errorf("re-key not promoted: %s", mA.Info(time.Unix(start(e1+1), 0)))
	}
	if validates(pk, e1-1, oldTag) {
		t.Error("epoch e1−1 still accepted two epochs later")
	}
	if !validates(pk, e1, newTag) {
		t.Error("e1 refused one epoch later")
	}
	// The machine runs from the clock alone, long after both sessions.
	far := e1 + 500
	pk = mB.KeysAt(start(far))
	r0, r1 := mustKey(t, newRef, uint64(far+2))
	if k0, k1, ok := pk.Key(far + 2); !ok || k0 != r0 || k1 != r1 {
		t.Error("keys do not follow the clock after the sessions")
	}
}

func TestRekeyRefusals(t *testing.T) {
	var s0, s1 engine.State
	s0[0], s1[0] = 1, 2
	m := NewMachine(asA, asB, Proposal{ID: 1, T0: testT0, Period: 60, E0: 1000}, s0)
	now := at(1010, 60)
	var re *RefusedError
	for name, p := range map[string]Proposal{
		"boundary passed": {ID: 2, T0: testT0, Period: 60, E0: 1010},
		"boundary past":   {ID: 2, T0: testT0, Period: 60, E0: 1005},
		"before start":    {ID: 2, T0: testT0, Period: 60, E0: 999},
		"P changes":       {ID: 2, T0: testT0, Period: 30, E0: 2030},
		"T0 changes":      {ID: 2, T0: testT0 + 60, Period: 60, E0: 1012},
	} {
		if err := m.InstallRekey(p, s1, now); !errors.As(err, &re) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, ok := m.Pending(); ok {
		t.Fatal("a refused re-key is pending")
	}
	// A second re-key before the first takes over replaces it.
	if err := m.InstallRekey(Proposal{ID: 3, T0: testT0, Period: 60, E0: 1015}, s1, now); err != nil {
		t.Fatal(err)
	}
	if err := m.InstallRekey(Proposal{ID: 4, T0: testT0, Period: 60, E0: 1012}, s1, now); err != nil {
		t.Fatal(err)
	}
	if e, _ := m.Pending(); e != 1012 {
		t.Errorf("pending %d", e)
	}
}

func TestKeysAtEdges(t *testing.T) {
	var s0 engine.State
	s0[5] = 9
	p := Proposal{ID: 1, T0: testT0, Period: 60, E0: 1000}
	m := NewMachine(asA, asB, p, s0)
	ref := engine.NewStateMachine(1000, s0)

	if pk := m.KeysAt(testT0 - 1); pk.ASN != asB || pk.Keys != (engine.PeerKeys{}).Keys {
		t.Error("keys before T0")
	}
	// In epoch 999: only e0 and e0+1 exist.
	pk := m.KeysAt(start(999))
	if _, _, ok := pk.Key(998); ok {
		t.Error("key before e0")
	}
	if _, _, ok := pk.Key(999); ok {
		t.Error("key before e0")
	}
	for e := int64(1000); e <= 1001; e++ {
		r0, r1 := mustKey(t, ref, uint64(e))
		if k0, k1, ok := pk.Key(e); !ok || k0 != r0 || k1 != r1 {
			t.Errorf("epoch %d", e)
		}
	}
	// Asking for an earlier time after the present moved on: erased epochs
	// are absent, the rest still there.
	m.Advance(start(1010))
	pk = m.KeysAt(start(1008))
	if _, _, ok := pk.Key(1008); ok {
		t.Error("erased state produced a key")
	}
	if _, _, ok := pk.Key(1009); !ok {
		t.Error("epoch 1009 missing")
	}

	m.Remove()
	if !m.Removed() {
		t.Error("not removed")
	}
	if pk := m.KeysAt(start(1010)); pk.Keys != (engine.PeerKeys{}).Keys {
		t.Error("keys after Remove")
	}
	if err := m.InstallRekey(Proposal{ID: 2, T0: testT0, Period: 60, E0: 1020}, s0, at(1010, 60)); !errors.Is(err, ErrRemoved) {
		t.Errorf("re-key after Remove: %v", err)
	}
	if s := m.Info(at(1010, 60)).String(); s == "" {
		t.Error("empty Info")
	}
}
