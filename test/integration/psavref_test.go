package integration

import (
	"bytes"
	"fmt"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/psavref"
)

// The tests judge psavd's tags with internal/psavref, an independent reading
// of docs/wire.md §2.3–2.5 written from the document and not from the
// engine, so that a mistake made the same way on both sides of one
// implementation still shows. This file adapts it to the lab's terms.

// tagKey returns K(e) for the state machine the lab seeds with s0 (64 hex
// digits, as lab.Env carries it) at epoch e0.
func tagKey(s0 string, e0, e int64) ([16]byte, error) {
	s, err := psavref.ParseState(s0)
	if err != nil {
		return [16]byte{}, err
	}
	if e0 < 0 || e < e0 {
		return [16]byte{}, fmt.Errorf("epoch %d before the start epoch %d", e, e0)
	}
	return psavref.Key(s, uint64(e0), uint64(e))
}

// normalised returns a copy of p with the hop count set to hops and, for
// IPv4, the header checksum recomputed: what is left to compare once the
// router's legitimate edits are taken out.
func normalised(p []byte, hops uint8) []byte {
	q := bytes.Clone(p)
	if q[0]>>4 == 4 {
		h := header.IPv4(q)
		h.SetTTL(hops)
		h.UpdateChecksum()
	} else {
		header.IPv6(q).SetHopLimit(hops)
	}
	return q
}

func hopCount(p []byte) uint8 {
	if p[0]>>4 == 4 {
		return header.IPv4(p).TTL()
	}
	return header.IPv6(p).HopLimit()
}
