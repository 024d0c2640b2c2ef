package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
)

// PSAV is [psav] (docs/wire.md §4.1).
type PSAV struct {
	ASN          uint32
	EpochSeconds int64 // P: 1 … 86400, default 60
	T0           int64 // unix seconds, 0 … MaxUnix
	Members      []Member
	StaticPeers  []StaticPeer
}

// Member is one [[psav.member]]: an AS-Prefix table entry. The member whose
// ASN is PSAV.ASN holds this AS's own prefixes.
type Member struct {
	ASN      uint32
	Prefixes []netip.Prefix // masked, each given once in the whole table
}

// StaticPeer is one [[psav.static_peer]]: a state machine run from a
// configured S(e0) by the clock alone (docs/wire.md §2.5).
type StaticPeer struct {
	ASN        uint32
	StartEpoch uint64       // e0
	S0         engine.State // S(e0)
}

// Bounds of [psav].
const (
	MaxEpochSeconds = 86400      // a day: longer epochs would keep a key for days
	MaxUnix         = 4102444800 // 2100-01-01: the bound of t0, and of an epoch number
)

func (c *Config) checkPSAV(k *checker, f *schema.File) {
	p := f.PSAV
	c.PSAV = PSAV{ASN: p.ASN, T0: p.T0, EpochSeconds: orDefault(k.set("psav.epoch_seconds"), p.EpochSeconds, 60)}
	// [psav] asn is needed where a PSAV role runs: a data plane, an ACS or
	// an ABR fed by one. A Map-Server, Map-Resolver, DoT server or
	// LISP-Decent member without ports runs without it (an ETR then
	// registers its EIDs without the AS Number LCAF).
	if p.ASN == 0 && (len(f.Ports) > 0 || f.ACS != nil || f.ABR != nil) {
		k.add("psav.asn", "missing (this AS's number)")
	}
	switch e := c.PSAV.EpochSeconds; {
	case e < 1:
		k.add("psav.epoch_seconds", "must be at least 1, is %d", e)
	case e > MaxEpochSeconds:
		k.add("psav.epoch_seconds", "must be at most %d (a day), is %d", MaxEpochSeconds, e)
	}
	if p.T0 < 0 {
		k.add("psav.t0", "must not be negative")
	} else if p.T0 > MaxUnix {
		k.add("psav.t0", "must be at most %d (2100-01-01), is %d", int64(MaxUnix), p.T0)
	}
	asns := map[uint32]int{}
	seenPfx := map[netip.Prefix]string{}
	for i, m := range p.Members {
		key := fmt.Sprintf("psav.member[%d]", i)
		if m.ASN == 0 {
			k.add(key+".asn", "missing")
		} else if j, dup := asns[m.ASN]; dup {
			k.add(key+".asn", "AS%d is already psav.member[%d]", m.ASN, j)
		} else {
			asns[m.ASN] = i
		}
		tm := Member{ASN: m.ASN, Prefixes: make([]netip.Prefix, 0, len(m.Prefixes))}
		for j, s := range m.Prefixes {
			pk := fmt.Sprintf("%s.prefixes[%d]", key, j)
			if pf, ok := k.prefix(pk, s); ok {
				if other, dup := seenPfx[pf]; dup {
					k.add(pk, "%s is already given at %s", pf, other)
				}
				seenPfx[pf] = pk
				tm.Prefixes = append(tm.Prefixes, pf)
			}
		}
		c.PSAV.Members = append(c.PSAV.Members, tm)
	}
	if p.ASN != 0 {
		if _, ok := asns[p.ASN]; !ok && len(p.Members) > 0 {
			k.add("psav.member", "no entry for this AS (asn = %d): its prefixes are needed to tell local sources", p.ASN)
		}
	}
	peers := map[uint32]bool{}
	for i, sp := range p.StaticPeers {
		key := fmt.Sprintf("psav.static_peer[%d]", i)
		if sp.ASN == 0 {
			k.add(key+".asn", "missing")
		} else if sp.ASN == p.ASN {
			k.add(key+".asn", "is this AS itself")
		} else if peers[sp.ASN] {
			k.add(key+".asn", "AS%d has two static peers", sp.ASN)
		}
		peers[sp.ASN] = true
		tp := StaticPeer{ASN: sp.ASN}
		if sp.StartEpoch < 0 {
			k.add(key+".start_epoch", "must not be negative")
		} else if sp.StartEpoch > MaxUnix {
			k.add(key+".start_epoch", "must be at most %d (no epoch before 2100 has a higher number), is %d", int64(MaxUnix), sp.StartEpoch)
		} else {
			tp.StartEpoch = uint64(sp.StartEpoch)
		}
		if b, err := hex.DecodeString(sp.S0); err != nil || len(b) != len(tp.S0) {
			k.add(key+".s0", "must be 64 hex digits (32 octets)")
		} else {
			copy(tp.S0[:], b)
		}
		c.PSAV.StaticPeers = append(c.PSAV.StaticPeers, tp)
	}
}
