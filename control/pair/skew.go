package pair

import (
	"fmt"
	"time"
)

// ClockOffset computes the peer's clock offset and the round-trip time from
// one heartbeat exchange (NTP's on-wire calculation): t1 = request sent
// (our clock), t2 = request received (peer's clock), t3 = reply sent (peer's
// clock), t4 = reply received (our clock).
//
//	offset = ((t2−t1) + (t3−t4)) / 2     (peer clock − our clock)
//	rtt    = (t4−t1) − (t3−t2)
func ClockOffset(t1, t2, t3, t4 time.Time) (offset, rtt time.Duration) {
	offset = (t2.Sub(t1) + t3.Sub(t4)) / 2
	rtt = t4.Sub(t1) - t3.Sub(t2)
	return offset, rtt
}

// SkewError is the alarm raised when the measured clock offset to a peer
// exceeds P/4 (docs/wire.md §2.5): the proposal is refused and the operator must
// be told.
type SkewError struct {
	Offset time.Duration // measured (peer − us)
	Limit  time.Duration // P/4
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("pair: clock skew %v exceeds P/4 = %v", e.Offset, e.Limit)
}

// CheckSkew returns a *SkewError when |offset| > period/4.
func CheckSkew(offset time.Duration, period time.Duration) error {
	limit := period / 4
	abs := offset
	if abs < 0 {
		abs = -abs
	}
	if abs > limit {
		return &SkewError{Offset: offset, Limit: limit}
	}
	return nil
}
