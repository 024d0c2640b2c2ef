package pair

import "errors"

// Initiator reports whether local initiates the pair with peer: the lower
// ASN proposes (docs/wire.md §2.5).
func Initiator(local, peer uint32) bool { return local < peer }

// Session names the two ends of one ACS↔ACS session: the AS that dialled it
// and the AS that accepted it.
type Session struct {
	Dialer, Acceptor uint32
}

// ErrNotSamePair: the two sessions do not join the same two ASes.
var ErrNotSamePair = errors.New("pair: sessions are not between the same two ASes")

// KeepIncoming resolves a collision between an existing session and an
// incoming one for the same pair, as BGP does: the session dialled by the
// lower ASN is kept. If both (or neither) were dialled by the lower ASN,
// the incoming one is kept, being a reconnection that supersedes the old.
// It returns true to keep incoming and close existing, false for the
// opposite.
func KeepIncoming(existing, incoming Session) (bool, error) {
	lo, hi := min(existing.Dialer, existing.Acceptor), max(existing.Dialer, existing.Acceptor)
	if lo == hi || min(incoming.Dialer, incoming.Acceptor) != lo || max(incoming.Dialer, incoming.Acceptor) != hi {
		return false, ErrNotSamePair
	}
	exLow, inLow := existing.Dialer == lo, incoming.Dialer == lo
	if exLow && !inLow {
		return false, nil
	}
	return true, nil
}
