package engine

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// Tables is one immutable snapshot of everything the packet path looks up:
// the AS-Prefix table, the members, the tag keys by epoch, the community
// replace table and the routes. The control plane builds a new Tables and
// publishes it with Engine.Publish; it must never modify one it published.
// Parts that change rarely (the prefix table) are shared between snapshots.
type Tables struct {
	Version uint64

	// Epoch clock (docs/wire.md §2.5): e = floor((unix − T0) / Period).
	T0     int64
	Period int64

	// Prefixes maps a prefix to its member: value = member index << 8 | prefix
	// length, so one look-up gives both the AS and the length of the match.
	Prefixes *bart.Fast[uint32]
	Members  []Member

	// Peers hold the tag keys of this AS's PSAV neighbours (one state machine
	// each), for a window of epochs around now.
	Peers []PeerKeys

	// Replace is consulted only for EGRESS→EGRESS transit at a community
	// border: (src member, dst member) → (peer to validate with, peer to tag
	// for). A pair not in it is carried through unchanged.
	Replace map[uint64]ReplaceEntry

	// Routes (routed forwarding only): prefix → index into Hops. Published
	// on their own (Engine.PublishRoutes) and composed into the snapshot.
	Routes *bart.Fast[uint32]
	Hops   []NextHop

	// MapCache (LISP ITR, lisp.go): EID prefix → index into Mappings; built
	// with a MapCacheBuilder.
	MapCache *bart.Fast[uint32]
	Mappings []Mapping
}

// Routes is the routed-forwarding part of the tables: prefix → index into
// Hops. Immutable once published.
type Routes struct {
	Table *bart.Fast[uint32]
	Hops  []NextHop
}

// Member is one AS (or AS community) of the alliance.
type Member struct {
	ASN   uint32
	Local bool
	// TagPeer is the peer whose key tags packets to this member (the next
	// PSAV hop towards it), ValidatePeer the one whose key validates packets
	// from it; -1 when there is none (no state machine yet).
	TagPeer      int32
	ValidatePeer int32
}

// KeyWindow is how many epochs of keys a snapshot can hold per peer: e−1
// and up to 30 epochs ahead — the ACS's key lead ([acs] key_lead), the
// fail-static horizon an ABR cut from its ACS lives on (docs/wire.md §2.8).
// Keys are indexed by epoch mod KeyWindow.
const KeyWindow = 32

// PeerKeys holds a peer's keys for a window of epochs, indexed by epoch mod
// KeyWindow.
type PeerKeys struct {
	ASN  uint32
	Keys [KeyWindow]EpochKey
}

// EpochKey is K(e) in SipHash form.
type EpochKey struct {
	Epoch  int64
	K0, K1 uint64
	Valid  bool
}

// Key returns the key for epoch e, if the window holds it.
func (p *PeerKeys) Key(e int64) (k0, k1 uint64, ok bool) {
	if e < 0 {
		return 0, 0, false
	}
	k := &p.Keys[e%KeyWindow]
	return k.K0, k.K1, k.Valid && k.Epoch == e
}

// SetKey stores K(e) in the window.
func (p *PeerKeys) SetKey(e int64, k Key) {
	k0, k1 := k.Halves()
	p.Keys[e%KeyWindow] = EpochKey{Epoch: e, K0: k0, K1: k1, Valid: true}
}

// ReplaceEntry names the peers of a replace at a community border.
type ReplaceEntry struct{ In, Out int32 }

// ReplaceKey is the key of Tables.Replace.
func ReplaceKey(srcMember, dstMember int) uint64 {
	return uint64(uint32(srcMember))<<32 | uint64(uint32(dstMember))
}

// NextHop is where a route sends packets.
type NextHop struct {
	Port   int16 // engine port index
	DstMAC [6]byte
	SrcMAC [6]byte
}

// lookup returns the member index and the prefix length of addr's longest
// match, or -1.
func (t *Tables) lookup(addr *[16]byte) (member int, bits byte) {
	if t.Prefixes == nil {
		return -1, 0
	}
	v, ok := t.Prefixes.Lookup(addrFrom16(addr))
	// A snapshot may come from the network (an ACS feed): an index it gets
	// wrong must never take the packet path out of bounds.
	if !ok || int(v>>8) >= len(t.Members) {
		return -1, 0
	}
	return int(v >> 8), byte(v)
}

// PrefixTableBuilder collects prefix → member entries and refuses overlaps
// of the same prefix by two members.
type PrefixTableBuilder struct {
	t *bart.Fast[uint32]
}

// NewPrefixTableBuilder returns an empty builder.
func NewPrefixTableBuilder() *PrefixTableBuilder {
	return &PrefixTableBuilder{t: new(bart.Fast[uint32])}
}

// Add maps prefix to the member index.
func (b *PrefixTableBuilder) Add(p netip.Prefix, member int) error {
	p = p.Masked()
	if member < 0 || member >= 1<<24 {
		return fmt.Errorf("member index %d out of range", member)
	}
	if v, ok := b.t.Get(p); ok && int(v>>8) != member {
		return fmt.Errorf("prefix %s belongs to two members", p)
	}
	// IPv4 prefixes keep their IPv4 length (0–32), as the tag carries it.
	b.t.Insert(p, uint32(member)<<8|uint32(p.Bits()))
	return nil
}

// Member returns the member a prefix was added for, if it was.
func (b *PrefixTableBuilder) Member(p netip.Prefix) (int, bool) {
	v, ok := b.t.Get(p.Masked())
	return int(v >> 8), ok
}

// Table returns the built table.
func (b *PrefixTableBuilder) Table() *bart.Fast[uint32] { return b.t }

// addrFrom16 turns a 16-octet address (IPv4-mapped for IPv4) into the
// netip.Addr the tables are keyed by.
//
// It reads the address as two words: the parser writes an IPv4-mapped
// address as two words, and a 16-octet load over them could not be
// forwarded from those stores (a stall on every IPv4 look-up).
func addrFrom16(a *[16]byte) netip.Addr {
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	if hi == 0 && lo>>32 == 0xffff {
		return netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)})
	}
	return netip.AddrFrom16(*a)
}

// KeyHorizon is how long from unix the data plane can still tag and
// validate with every peer a member uses: the end of the last epoch up to
// which each such peer holds a key for every epoch from now on (the
// fail-static horizon of an ABR cut from its ACS). It is 0 when a peer in
// use holds no key for the current epoch, and -1 when no member uses a peer.
func (t *Tables) KeyHorizon(unix int64) int64 {
	if t.Period <= 0 {
		return -1
	}
	e := Epoch(unix, t.T0, t.Period)
	horizon := int64(-1)
	seen := map[int32]bool{}
	for _, m := range t.Members {
		for _, p := range [2]int32{m.TagPeer, m.ValidatePeer} {
			if m.Local || p < 0 || int(p) >= len(t.Peers) || seen[p] {
				continue
			}
			seen[p] = true
			last := e - 1
			for ; last < e+KeyWindow; last++ {
				if _, _, ok := t.Peers[p].Key(last + 1); !ok {
					break
				}
			}
			h := max(t.T0+(last+1)*t.Period-unix, 0)
			if horizon < 0 || h < horizon {
				horizon = h
			}
		}
	}
	return horizon
}
