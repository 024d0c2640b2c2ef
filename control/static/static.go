// Package static builds the engine's tables from the typed configuration
// (control/config) for nodes whose keys are configured rather than negotiated:
// the AS-Prefix table from [[psav.member]], and one state machine per
// [[psav.static_peer]] run from its configured S(e0) by the clock alone
// (docs/wire.md §2.5). A Schedule publishes a fresh snapshot at every epoch
// boundary, with keys for e−1 … e+2, so a validator can always take a
// packet tagged one epoch early or late.
package static

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/engine"
)

// staticKeys is how many epochs of keys a static schedule publishes per
// peer: e−1 … e+2, republished at every epoch boundary.
const staticKeys = 4

// Schedule turns the static configuration into table snapshots over time.
type Schedule struct {
	t0, period int64
	prefixes   *engine.Tables // members and prefix table, shared by all snapshots
	mu         sync.Mutex
	machines   []*engine.StateMachine // by peer index
	peerASN    []uint32
	version    uint64
}

// New builds the schedule from [psav]: the AS-Prefix table and the state
// machines.
func New(p config.PSAV) (*Schedule, error) {
	s := &Schedule{t0: p.T0, period: p.EpochSeconds}
	b := engine.NewPrefixTableBuilder()
	peerIdx := map[uint32]int32{}
	for _, sp := range p.StaticPeers {
		peerIdx[sp.ASN] = int32(len(s.machines))
		s.machines = append(s.machines, engine.NewStateMachine(sp.StartEpoch, sp.S0))
		s.peerASN = append(s.peerASN, sp.ASN)
	}
	t := &engine.Tables{T0: p.T0, Period: p.EpochSeconds}
	for i, m := range p.Members {
		// A flat alliance (§2.6, one community): the tag and validate peer
		// of a member is the member itself, when we share a state machine.
		peer, ok := peerIdx[m.ASN]
		if !ok {
			peer = -1
		}
		t.Members = append(t.Members, engine.Member{ASN: m.ASN, Local: m.ASN == p.ASN, TagPeer: peer, ValidatePeer: peer})
		for _, pf := range m.Prefixes {
			if err := b.Add(pf, i); err != nil {
				return nil, err
			}
		}
	}
	t.Prefixes = b.Table()
	s.prefixes = t
	return s, nil
}

// At returns the snapshot for time unix: keys for epochs e−1 … e+2.
func (s *Schedule) At(unix int64) *engine.Tables {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	t := *s.prefixes
	t.Version = s.version
	t.Peers = make([]engine.PeerKeys, len(s.machines))
	e := engine.Epoch(unix, s.t0, s.period)
	for i, m := range s.machines {
		t.Peers[i].ASN = s.peerASN[i]
		from := e - 1
		n := staticKeys
		if from < int64(m.Epoch()) {
			// Keys before e0 do not exist; start the window at e0.
			n -= int(int64(m.Epoch()) - from)
			from = int64(m.Epoch())
		}
		if n <= 0 || from < 0 {
			continue
		}
		keys, ok := m.Window(uint64(from), n)
		if !ok {
			continue
		}
		for j, k := range keys {
			t.Peers[i].SetKey(from+int64(j), k)
		}
	}
	return &t
}

// Publisher publishes the current schedule's snapshots: now, shortly after
// every epoch boundary, and at once when a reload swaps the schedule.
type Publisher struct {
	eng  *engine.Engine
	cur  atomic.Pointer[Schedule]
	kick chan struct{}
}

// NewPublisher starts with schedule s.
func NewPublisher(e *engine.Engine, s *Schedule) *Publisher {
	p := &Publisher{eng: e, kick: make(chan struct{}, 1)}
	p.cur.Store(s)
	return p
}

// Swap replaces the schedule (a configuration reload): snapshot versions go
// on increasing, and the new tables are published at once.
func (p *Publisher) Swap(s *Schedule) {
	old := p.cur.Load()
	old.mu.Lock()
	v := old.version
	old.mu.Unlock()
	s.mu.Lock()
	if s.version < v {
		s.version = v
	}
	s.mu.Unlock()
	p.cur.Store(s)
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is done. Keys for e+1 are always published an
// epoch ahead, so the moment of the swap does not matter to packets in
// flight.
func (p *Publisher) Run(ctx context.Context, now func() time.Time) {
	for {
		s := p.cur.Load()
		t := now()
		p.eng.Publish(s.At(t.Unix()))
		next := s.t0 + (engine.Epoch(t.Unix(), s.t0, s.period)+1)*s.period
		wait := time.Until(time.Unix(next, 0)) + 10*time.Millisecond
		if wait < 10*time.Millisecond {
			wait = 10 * time.Millisecond
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-p.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// Routes builds the routed-forwarding table from [[route]]. mac returns
// the MAC of a port's interface, and neighbour the kernel's neighbour
// entry for a next hop on a port (ports are indexes of Config.Ports).
func Routes(routes []config.Route, mac func(port int) (net.HardwareAddr, error), neighbour func(port int, ip netip.Addr) (net.HardwareAddr, error)) (*engine.Routes, error) {
	t := &engine.Routes{Table: new(bart.Fast[uint32])}
	for i, r := range routes {
		src, err := mac(r.Port)
		if err != nil {
			return nil, fmt.Errorf("route[%d].port: %w", i, err)
		}
		dst := r.NextHopMAC
		if dst == nil {
			dst, err = neighbour(r.Port, r.NextHop)
			if err != nil {
				return nil, fmt.Errorf("route[%d].next_hop: %w", i, err)
			}
		}
		hop := engine.NextHop{Port: int16(r.Port)}
		copy(hop.SrcMAC[:], src)
		copy(hop.DstMAC[:], dst)
		t.Table.Insert(r.Prefix, uint32(len(t.Hops)))
		t.Hops = append(t.Hops, hop)
	}
	return t, nil
}
