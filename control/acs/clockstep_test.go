package acs

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/engine"
)

// stepPeriod is P in the clock tests: short, so that a re-key at a future
// boundary takes effect within seconds; a 10-minute step is 300 epochs.
const stepPeriod = 2

// fakeClock is a wall clock that can be stepped, beside the real monotonic
// clock: real time plus an offset the test moves.
type fakeClock struct {
	base time.Time
	mu   sync.Mutex
	off  time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{base: time.Now()} }

func (c *fakeClock) wall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Round(0).Add(c.off)
}

func (c *fakeClock) mono() time.Duration { return time.Since(c.base) }

func (c *fakeClock) step(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// keyWatch samples, until stopped, what each of two paired nodes would
// hand its ABRs at its own present (the feed's keys), and records every
// instant at which a packet tagged with one side's key of its current
// epoch would not validate with the other side's keys — including any
// instant at which a side has no keys for the pair at all.
type keyWatch struct {
	a, b    *Node
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples int
	bad     []string
}

func watchKeys(a, b *Node) *keyWatch {
	w := &keyWatch{a: a, b: b, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			w.sample()
		}
	}()
	return w
}

// present is the epoch of n's time and the keys n's feed carries for peer.
func present(n *Node, peer uint32) (int64, engine.PeerKeys, bool) {
	now := n.now()
	_, asns, keys := n.feedKeys(now)
	e := engine.Epoch(now.Unix(), n.cfg.T0, int64(n.cfg.Period))
	for i, asn := range asns {
		if asn == peer {
			return e, keys[i], true
		}
	}
	return e, engine.PeerKeys{}, false
}

func (w *keyWatch) sample() {
	eA, kA, okA := present(w.a, w.b.cfg.ASN)
	eB, kB, okB := present(w.b, w.a.cfg.ASN)
	var bad string
	switch {
	case !okA || !okB:
		bad = fmt.Sprintf("no keys for the pair (AS%d %v, AS%d %v)", w.a.cfg.ASN, okA, w.b.cfg.ASN, okB)
	case eA-eB > 1 || eB-eA > 1:
		bad = fmt.Sprintf("epochs %d and %d more than one apart", eA, eB)
	default:
		// A packet tagged by A in eA validates at B (B's key of eA, which
		// B accepts as eA is within one of eB), and the other way round.
		for _, c := range []struct {
			e        int64
			tag, val engine.PeerKeys
			who      string
		}{{eA, kA, kB, "A→B"}, {eB, kB, kA, "B→A"}} {
			t0, t1, ok := c.tag.Key(c.e)
			v0, v1, okV := c.val.Key(c.e)
			if !ok || !okV || t0 != v0 || t1 != v1 {
				bad = fmt.Sprintf("%s: epoch %d (tagger has %v, validator has %v, equal %v)", c.who, c.e, ok, okV, t0 == v0 && t1 == v1)
				break
			}
		}
	}
	w.mu.Lock()
	w.samples++
	if bad != "" && len(w.bad) < 10 {
		w.bad = append(w.bad, time.Now().Format("15:04:05.000")+" "+bad)
	}
	w.mu.Unlock()
}

// end stops the watch and fails t for every bad instant seen.
func (w *keyWatch) end(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.samples == 0 {
		t.Fatal("no sample taken")
	}
	for _, b := range w.bad {
		t.Errorf("loss: %s", b)
	}
	t.Logf("%d instants checked", w.samples)
}

func epochOf(n *Node) int64 {
	return engine.Epoch(n.now().Unix(), n.cfg.T0, int64(n.cfg.Period))
}

// pairUp waits until the pair is up on both sides with the same start
// later than after, and returns that start.
func pairUp(t *testing.T, a, b *Node, after uint64) uint64 {
	t.Helper()
	var start uint64
	waitFor(t, fmt.Sprintf("the pair up with a start after %d", after), func() bool {
		pa, pb := peerStatus(a, b.cfg.ASN), peerStatus(b, a.cfg.ASN)
		if pa == nil || pb == nil || pa.State != StateUp || pb.State != StateUp || pa.StartEpoch != pb.StartEpoch || pa.StartEpoch <= after {
			return false
		}
		start = pa.StartEpoch
		return true
	})
	return start
}

// clockLab starts AS65001 (the initiator) and AS65002 peered, with P =
// stepPeriod, the one of them named stepped on the fake clock fc.
func clockLab(t *testing.T, stepped uint32, fc *fakeClock, dead int) (a, b *Node) {
	l := newLab(t)
	l.dead = dead // the tests are about clocks, not about dead peers
	asns := []uint32{65001, 65002}
	for _, asn := range asns {
		l.addr(asn)
	}
	for _, asn := range asns {
		l.start(asn, asns, func(c *Config) {
			c.Period = stepPeriod
			if asn == stepped {
				c.Now, c.Monotonic = fc.wall, fc.mono
			}
		})
	}
	return l.nodes[65001], l.nodes[65002]
}

// Issue 13, must-show 3: a wall-clock step of +10 min and of −10 min on one
// ACS (the initiator, then the responder). The step is alarmed (counter,
// gauge), every pair is re-keyed at a future boundary, and at no instant —
// before, across and after the re-key — does a packet tagged by either
// side with its current key fail to validate at the other. Before, the
// stepped ACS's epochs jumped with its wall clock: its keys were those of
// an epoch 300 away (+) or none (−, and the states erased), and its dead
// timers declared the peer dead at once.
func TestClockStepNoLoss(t *testing.T) {
	for _, tc := range []struct {
		name    string
		step    time.Duration
		stepped uint32
	}{
		{"initiator+10min", 10 * time.Minute, 65001},
		{"initiator-10min", -10 * time.Minute, 65001},
		{"responder+10min", 10 * time.Minute, 65002},
		{"responder-10min", -10 * time.Minute, 65002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeClock()
			a, b := clockLab(t, tc.stepped, fc, 30)
			s, other := a, b
			if tc.stepped == 65002 {
				s, other = b, a
			}
			start := pairUp(t, a, b, 0)
			waitFor(t, "the first machine in force", func() bool { return epochOf(a) > int64(start) && epochOf(b) > int64(start) })

			w := watchKeys(a, b)
			fc.step(tc.step)
			waitFor(t, "the clock step alarm", func() bool { return s.Counters().ClockSteps == 1 })
			if got := s.ClockStep(); got < tc.step-time.Second || got > tc.step+time.Second {
				t.Errorf("clock step gauge %v, want about %v", got, tc.step)
			}
			rekeyed := pairUp(t, a, b, start)
			waitFor(t, "the re-key in force", func() bool {
				return epochOf(a) > int64(rekeyed)+1 && epochOf(b) > int64(rekeyed)+1
			})
			w.end(t)

			if c := s.Counters(); c.RekeysRequested == 0 || c.ClockReanchors != 0 {
				t.Errorf("stepped side: %d re-keys requested, %d re-anchors (want ≥1, 0)", c.RekeysRequested, c.ClockReanchors)
			}
			if c := other.Counters(); c.ClockSteps != 0 || c.SkewAlarms != 0 || c.DeadDeclared != 0 {
				t.Errorf("other side: %+v", c)
			}
			if c := s.Counters(); c.SkewAlarms != 0 || c.DeadDeclared != 0 {
				t.Errorf("stepped side: %d skew alarms, %d dead peers", c.SkewAlarms, c.DeadDeclared)
			}
			if st := s.Status().Epoch; st != epochOf(other) && st != epochOf(other)-1 && st != epochOf(other)+1 {
				t.Errorf("stepped side's epoch %d, the other's %d", st, epochOf(other))
			}
		})
	}
}

// The wall clock comes back: the alarm clears, nothing re-anchors.
func TestClockStepClears(t *testing.T) {
	fc := newFakeClock()
	a, b := clockLab(t, 65001, fc, 30)
	pairUp(t, a, b, 0)
	fc.step(10 * time.Minute)
	waitFor(t, "the alarm", func() bool { return a.ClockStep() != 0 })
	fc.step(-10 * time.Minute)
	waitFor(t, "the alarm cleared", func() bool { return a.ClockStep() == 0 })
	if c := a.Counters(); c.ClockSteps != 1 || c.ClockReanchors != 0 {
		t.Errorf("%d steps, %d re-anchors", c.ClockSteps, c.ClockReanchors)
	}
}

// The confirm step (issue 13): the session ends after the responder
// accepted a re-key and before the initiator installed it, and the two ACS
// stay apart until the re-key's boundary has passed. Before, the responder
// installed on accepting, and from that boundary on the two sides held
// different keys. Now it installs only on the initiator's confirmation:
// both keep the keys they had, at every instant, and the re-key negotiated
// after the reconnection is in force on both with the same keys.
func TestConfirmClosesRekeyRace(t *testing.T) {
	a, b := clockLab(t, 0, nil, 150) // 15 s: longer than the partition
	start := pairUp(t, a, b, 0)
	waitFor(t, "the first machine in force", func() bool { return epochOf(a) > int64(start) && epochOf(b) > int64(start) })

	w := watchKeys(a, b)
	a.testDropBeforeInstall.Store(true)
	first := epochOf(a) + 2 // the boundary of the first re-key proposed
	a.requestRekeys("test")
	waitFor(t, "the responder holding an acceptance", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		ps := b.peers[65001]
		return ps != nil && ps.held != nil
	})
	waitFor(t, "the partition", func() bool { return a.testPartitioned.Load() })
	waitFor(t, "the first re-key's boundary past", func() bool { return epochOf(a) > first+1 && epochOf(b) > first+1 })
	if pa, pb := peerStatus(a, 65002), peerStatus(b, 65001); pa.StartEpoch != start || pb.StartEpoch != start {
		t.Errorf("starts %d, %d: something was installed (want %d)", pa.StartEpoch, pb.StartEpoch, start)
	}
	a.testDropBeforeInstall.Store(false)
	a.testPartitioned.Store(false)
	rekeyed := pairUp(t, a, b, start)
	waitFor(t, "the re-key in force", func() bool { return epochOf(a) > int64(rekeyed)+1 && epochOf(b) > int64(rekeyed)+1 })
	w.end(t)

	// The same keys on both sides, for the whole window.
	now := a.now().Unix()
	ka, kb := a.Keys(now)[65002], b.Keys(now)[65001]
	e := engine.Epoch(now, 0, stepPeriod)
	for x := e; x <= e+2; x++ {
		a0, a1, okA := ka.Key(x)
		b0, b1, okB := kb.Key(x)
		if !okA || !okB || a0 != b0 || a1 != b1 {
			t.Errorf("epoch %d: keys differ (%v %v)", x, okA, okB)
		}
	}
}

// The epoch clock alone: a divergence within P/4 is followed, a step beyond
// it is alarmed and kept off the node's time, a peer agreeing with the
// monotonic time does not confirm it, one agreeing with the wall clock does
// (re-anchored).
func TestEpochClock(t *testing.T) {
	wall := time.Unix(1_000_000, 0)
	var mono time.Duration
	c := newEpochClock(func() time.Time { return wall }, func() time.Duration { return mono }, 60*time.Second)
	tick := func(d time.Duration) { wall, mono = wall.Add(d), mono+d }
	tick(time.Second)
	if ev, _ := c.check(); ev != clockSteady || !c.Now().Equal(wall) {
		t.Fatalf("steady: %v %v", ev, c.Now())
	}
	wall = wall.Add(10 * time.Second) // within P/4 = 15 s: followed
	if ev, _ := c.check(); ev != clockFollowed || !c.Now().Equal(wall) {
		t.Fatalf("small step: %v", ev)
	}
	before := c.Now()
	wall = wall.Add(-10 * time.Minute)
	if ev, div := c.check(); ev != clockStepped || div != -10*time.Minute {
		t.Fatalf("step: %v %v", ev, div)
	}
	tick(time.Second)
	if ev, _ := c.check(); ev != clockSteady || c.Step() != -10*time.Minute || !c.Now().Equal(before.Add(time.Second)) {
		t.Fatalf("step in alarm: %v %v %v", ev, c.Step(), c.Now())
	}
	if _, ok := c.confirm(time.Second); ok {
		t.Fatal("a peer on the monotonic time confirmed the step")
	}
	if jump, ok := c.confirm(-10*time.Minute + time.Second); !ok || jump != -10*time.Minute || !c.Now().Equal(wall) || c.Step() != 0 {
		t.Fatalf("confirmed: %v %v %v", jump, ok, c.Now())
	}
}
