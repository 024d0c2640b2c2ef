package acs

import (
	"sync"
	"time"
)

// epochClock is the node's time (docs/wire.md, "Clock steps"): the wall
// clock sampled once, advanced by the monotonic clock. The epochs of every
// pair, the heartbeat timestamps (and so the offsets the peers measure) and
// the dead-peer timers read it, so a step of the wall clock (NTP, an
// operator's date, a VM restored) moves none of them: the pair's epochs stay
// those its peer and the ABRs (with their own clocks) use.
//
// check compares the wall clock with it: a divergence within P/4 is
// followed (re-anchored at once: it is within what the engine tolerates,
// and keeps the node on NTP's time), one beyond P/4 is a step: alarmed, and
// the epochs stay on the monotonic time until the step is confirmed by a
// peer — a heartbeat measuring that the peer's clock agrees with our wall
// clock, not with the monotonic time (our clock was wrong, the step set it
// right). Then the clock re-anchors to the wall clock.
type epochClock struct {
	wall  func() time.Time     // the wall clock
	mono  func() time.Duration // monotonic time since some fixed origin
	limit time.Duration        // P/4

	mu         sync.Mutex
	anchorWall time.Time
	anchorMono time.Duration
	step       time.Duration // wall − epoch time of the step in alarm; 0: none
}

// clockEvent is what check or confirm found.
type clockEvent int

const (
	clockSteady     clockEvent = iota
	clockFollowed              // a divergence within P/4, followed
	clockStepped               // a step beyond P/4 (a new one): alarm
	clockCleared               // a step in alarm went away (the wall clock came back)
	clockReanchored            // a step confirmed by a peer: re-anchored to the wall clock
)

// newEpochClock anchors a clock on wall and mono; with mono nil the
// monotonic reading of wall's own times is used (time.Now carries one;
// times without it, as a test's, then follow the wall clock as they are).
func newEpochClock(wall func() time.Time, mono func() time.Duration, period time.Duration) *epochClock {
	if mono == nil {
		origin := wall()
		mono = func() time.Duration { return wall().Sub(origin) }
		// wall().Sub(origin) is the monotonic elapsed time when both carry
		// a monotonic reading (time.Now), the wall one otherwise.
	}
	c := &epochClock{wall: wall, mono: mono, limit: period / 4}
	c.anchorWall, c.anchorMono = wall().Round(0), mono()
	return c
}

// Now is the node's time: the anchor advanced by the monotonic clock. It
// carries no monotonic reading of its own (Round(0)): differences between
// two readings are the anchored clock's.
func (c *epochClock) Now() time.Time {
	m := c.mono()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.anchorWall.Add(m - c.anchorMono)
}

// Step is the divergence of the wall clock from the node's time while a
// step is in alarm (wall − node time), 0 otherwise.
func (c *epochClock) Step() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.step
}

// check samples both clocks and returns what changed, with the divergence
// wall − node time.
func (c *epochClock) check() (clockEvent, time.Duration) {
	w, m := c.wall().Round(0), c.mono()
	c.mu.Lock()
	defer c.mu.Unlock()
	div := w.Sub(c.anchorWall.Add(m - c.anchorMono))
	switch {
	case absDur(div) <= c.limit:
		ev := clockSteady
		if c.step != 0 {
			ev = clockCleared
		} else if div != 0 {
			ev = clockFollowed
		}
		c.anchorWall, c.anchorMono, c.step = w, m, 0
		return ev, div
	case c.step != 0 && absDur(div-c.step) <= c.limit:
		return clockSteady, div // the step already in alarm
	default:
		c.step = div
		return clockStepped, div
	}
}

// confirm reads a heartbeat measurement of a peer's offset (peer − node
// time): while a step is in alarm, a peer whose clock agrees with our wall
// clock (|offset − step| ≤ P/4) but not with the node's time confirms the
// step, and the clock re-anchors to the wall clock. It returns the
// re-anchoring's jump, when it happened.
func (c *epochClock) confirm(offset time.Duration) (time.Duration, bool) {
	w, m := c.wall().Round(0), c.mono()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step == 0 || absDur(offset) <= c.limit || absDur(offset-c.step) > c.limit {
		return 0, false
	}
	jump := w.Sub(c.anchorWall.Add(m - c.anchorMono))
	c.anchorWall, c.anchorMono, c.step = w, m, 0
	return jump, true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
