package pull

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

// MismatchError reports a Map-Register record whose EID, hashed with this
// node's configuration, belongs to an index this map-server does not own:
// the sender and this node disagree on the modulus, the hash mode, the hash
// mask or the DNS zone (or the zone is stale).
type MismatchError struct {
	From    netip.AddrPort // sender of the Map-Register
	EID     string         // the hash input, "[iid]prefix"
	Index   uint64         // its index under this node's configuration
	Owned   []uint64       // the indexes this map-server owns
	Mode    HashMode
	Mask    int
	Modulus uint64
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("decent: hash mismatch: %s from %v is index %d (%s, mask %d, modulus %d), this map-server owns %v; "+
		"members disagree on modulus/hash mode/mask or the zone", e.EID, e.From, e.Index, e.Mode, e.Mask, e.Modulus, e.Owned)
}

// CheckRegister parses pkt and, if it is a Map-Register, returns a
// *MismatchError for its first record that does not hash to one of owned.
// Other messages and unparsable input return nil (the map-server counts
// those itself).
func (p *Node) CheckRegister(pkt []byte, from netip.AddrPort, owned []uint64) error {
	if len(pkt) == 0 || lisp.Type(pkt[0]>>4) != lisp.TypeMapRegister {
		return nil
	}
	m, err := lisp.ParseMapRegister(pkt)
	if err != nil {
		return nil
	}
	for i := range m.Records {
		x, s, err := p.RecordIndex(&m.Records[i])
		if err != nil {
			continue // not hashable: left to the map-server
		}
		if !slices.Contains(owned, x) {
			return &MismatchError{From: from, EID: s, Index: x, Owned: slices.Clone(owned),
				Mode: p.cfg.Mode, Mask: p.cfg.Mask, Modulus: p.cfg.Modulus}
		}
	}
	return nil
}

// Guard runs a mapserver.Server for one or more LISP-Decent indexes and
// checks every Map-Register against them before the map-server sees it.
type Guard struct {
	Node   *Node
	Server *mapserver.Server
	// Owned are the indexes whose names list this map-server; set before
	// Serve, then change with SetOwned.
	Owned []uint64
	// Drop refuses mismatched Map-Registers; by default they are reported
	// and still handed to the map-server (members sharing the sender's
	// configuration can then still find them).
	Drop bool
	// OnMismatch, if set, is called for every mismatch (e.g. to log it).
	OnMismatch func(*MismatchError)
	// Tick is the interval of Server.Tick (default 100 ms); Now the clock.
	Tick time.Duration
	Now  func() time.Time

	mu         sync.Mutex
	mismatches uint64
	last       *MismatchError
}

// Mismatches returns the number of mismatched Map-Registers seen and the
// last one (nil if none).
func (g *Guard) Mismatches() (uint64, *MismatchError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mismatches, g.last
}

// SetOwned replaces the owned indexes (e.g. after a zone change).
func (g *Guard) SetOwned(owned []uint64) {
	g.mu.Lock()
	g.Owned = slices.Clone(owned)
	g.mu.Unlock()
}

// Handle checks pkt and passes it to the map-server unless it is a
// mismatch and Drop is set.
func (g *Guard) Handle(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	g.mu.Lock()
	owned := g.Owned
	g.mu.Unlock()
	if err := g.Node.CheckRegister(pkt, from, owned); err != nil {
		var me *MismatchError
		if errors.As(err, &me) {
			g.mu.Lock()
			g.mismatches++
			g.last = me
			g.mu.Unlock()
			if g.OnMismatch != nil {
				g.OnMismatch(me)
			}
			if g.Drop {
				return nil
			}
		}
	}
	return g.Server.Handle(pkt, from, now)
}

// Serve is mapserver.Server.Serve with the ownership check: it reads
// datagrams from conn until ctx is done (then returns nil) or reading
// fails. conn is not closed.
func (g *Guard) Serve(ctx context.Context, conn *net.UDPConn) error {
	now := g.Now
	if now == nil {
		now = time.Now
	}
	tick := g.Tick
	if tick <= 0 {
		tick = mapserver.DefaultTickInterval
	}
	return mapserver.ServeUDP(ctx, conn, g.Handle, g.Server.Tick, tick, now)
}
