package pair

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/psavd/psavd/engine"
)

// ExporterLabel is the TLS exporter label of S0 (docs/wire.md §2.5).
const ExporterLabel = "EXPORTER-psav-state-machine"

// ExporterContext is the exporter context lowASN(4) ‖ highASN(4) ‖ e0(8),
// integers big-endian: the same 16 octets on both sides whichever of the two
// ASNs is ours.
func ExporterContext(a, b uint32, e0 uint64) [16]byte {
	lo, hi := a, b
	if lo > hi {
		lo, hi = hi, lo
	}
	var c [16]byte
	binary.BigEndian.PutUint32(c[0:4], lo)
	binary.BigEndian.PutUint32(c[4:8], hi)
	binary.BigEndian.PutUint64(c[8:16], e0)
	return c
}

// DeriveS0 returns S(e0) = TLS-Exporter(ExporterLabel, ExporterContext(local,
// peer, e0), 32) of the session cs (RFC 8446 §7.5). Both ends of one session
// obtain the same value; it never crosses the wire. The session must be a
// completed TLS 1.3 session whose peer certificate names peer.
func DeriveS0(cs tls.ConnectionState, local, peer uint32, e0 uint64) (engine.State, error) {
	if local == peer {
		return engine.State{}, errors.New("pair: local and peer AS are the same")
	}
	if _, err := CheckPeer(cs, peer); err != nil {
		return engine.State{}, err
	}
	ctx := ExporterContext(local, peer, e0)
	b, err := cs.ExportKeyingMaterial(ExporterLabel, ctx[:], len(engine.State{}))
	if err != nil {
		return engine.State{}, fmt.Errorf("pair: TLS exporter: %w", err)
	}
	s := engine.State(b)
	clear(b)
	return s, nil
}
