package abr

import (
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// KeyLen is the length of a tag key K(e) on the wire (docs/wire.md §2.5).
const KeyLen = len(engine.Key{})

// maxMembers is the largest member index the prefix table can carry
// (engine.PrefixTableBuilder packs it in 24 bits).
const maxMembers = 1 << 24

// ConvertError says why a pushed snapshot was refused. Field names the
// offending part of the message (e.g. "members[2].prefixes[0]").
type ConvertError struct {
	Field string
	Msg   string
}

func (e *ConvertError) Error() string {
	if e.Field == "" {
		return "abr: tables refused: " + e.Msg
	}
	return "abr: tables refused: " + e.Field + ": " + e.Msg
}

func refuse(field, format string, a ...any) error {
	return &ConvertError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Convert validates a snapshot pushed by the ACS and builds the engine's
// tables from it. Everything pushed is treated as peer input: any
// inconsistency refuses the whole snapshot (the caller keeps its last good
// one). Rules:
//
//   - version > 0, t0 ≥ 0, period_seconds > 0, local_asn ≠ 0;
//   - members: ASN ≠ 0 and unique; exactly one member is local, and it is
//     the one whose ASN is local_asn; tag_peer and validate_peer are −1 or
//     an index into peers;
//   - prefixes: 4 octets (IPv4, bits 0–32) or 16 octets (IPv6, bits 0–128,
//     not IPv4-mapped: IPv4 goes as 4 octets); no host bits set (a prefix
//     with host bits is refused, not masked: it means the sender is wrong);
//     the same prefix may not be listed twice, by one member or two
//     (nested prefixes of different lengths are fine: longest match);
//   - peers: ASN ≠ 0, unique, not local_asn; at most engine.KeyWindow keys,
//     each 16 octets, epochs ≥ 0, distinct, and all within one window
//     (max − min < KeyWindow) so that no two share a slot;
//   - replace: src_member and dst_member index members, in_peer and
//     out_peer are −1 or index peers, and each (src, dst) pair appears once.
//
// The result has no routes: the caller adds its own (routed forwarding).
func Convert(m *acspb.Tables) (*engine.Tables, error) {
	if m == nil {
		return nil, errors.New("abr: tables refused: no tables")
	}
	if m.GetVersion() == 0 {
		return nil, refuse("version", "must be > 0")
	}
	if m.GetT0() < 0 {
		return nil, refuse("t0", "%d is negative", m.GetT0())
	}
	if m.GetPeriodSeconds() <= 0 {
		return nil, refuse("period_seconds", "%d is not positive", m.GetPeriodSeconds())
	}
	if m.GetLocalAsn() == 0 {
		return nil, refuse("local_asn", "is 0")
	}
	members, peers := m.GetMembers(), m.GetPeers()
	if len(members) >= maxMembers {
		return nil, refuse("members", "%d members, at most %d", len(members), maxMembers-1)
	}
	if len(peers) > math.MaxInt32 {
		return nil, refuse("peers", "too many")
	}
	t := &engine.Tables{
		Version: m.GetVersion(),
		T0:      m.GetT0(),
		Period:  m.GetPeriodSeconds(),
		Members: make([]engine.Member, len(members)),
		Peers:   make([]engine.PeerKeys, len(peers)),
	}

	// Peers and their keys.
	peerSeen := make(map[uint32]int, len(peers))
	for i, p := range peers {
		f := fmt.Sprintf("peers[%d]", i)
		pk, err := peerKeys(f, p, m.GetLocalAsn(), func(asn uint32) error {
			if j, dup := peerSeen[asn]; dup {
				return refuse(f+".asn", "AS%d already is peers[%d]", asn, j)
			}
			peerSeen[asn] = i
			return nil
		})
		if err != nil {
			return nil, err
		}
		t.Peers[i] = pk
	}
	checkPeer := func(field string, v int32) error {
		if v < -1 || int64(v) >= int64(len(peers)) {
			return refuse(field, "peer index %d not in [-1, %d)", v, len(peers))
		}
		return nil
	}

	// Members and the AS-Prefix table.
	b := engine.NewPrefixTableBuilder()
	memberSeen := make(map[uint32]int, len(members))
	local := -1
	for i, mm := range members {
		f := fmt.Sprintf("members[%d]", i)
		if mm == nil {
			return nil, refuse(f, "empty")
		}
		asn := mm.GetAsn()
		if asn == 0 {
			return nil, refuse(f+".asn", "is 0")
		}
		if j, dup := memberSeen[asn]; dup {
			return nil, refuse(f+".asn", "AS%d already is members[%d]", asn, j)
		}
		memberSeen[asn] = i
		switch {
		case mm.GetLocal() && asn != m.GetLocalAsn():
			return nil, refuse(f+".local", "AS%d is marked local but local_asn is %d", asn, m.GetLocalAsn())
		case !mm.GetLocal() && asn == m.GetLocalAsn():
			return nil, refuse(f+".local", "AS%d is local_asn but not marked local", asn)
		case mm.GetLocal():
			local = i
		}
		if err := checkPeer(f+".tag_peer", mm.GetTagPeer()); err != nil {
			return nil, err
		}
		if err := checkPeer(f+".validate_peer", mm.GetValidatePeer()); err != nil {
			return nil, err
		}
		t.Members[i] = engine.Member{ASN: asn, Local: mm.GetLocal(), TagPeer: mm.GetTagPeer(), ValidatePeer: mm.GetValidatePeer()}
		for j, pp := range mm.GetPrefixes() {
			// The field's name is formatted only for an error: a snapshot
			// may hold a million prefixes.
			pf := func() string { return fmt.Sprintf("%s.prefixes[%d]", f, j) }
			p, err := prefix(pp)
			if err != nil {
				return nil, refuse(pf(), "%v", err)
			}
			if k, dup := b.Member(p); dup {
				return nil, refuse(pf(), "%s already belongs to members[%d]", p, k)
			}
			if err := b.Add(p, i); err != nil {
				return nil, refuse(pf(), "%v", err)
			}
		}
	}
	if local < 0 {
		return nil, refuse("members", "no member is the local AS%d", m.GetLocalAsn())
	}
	t.Prefixes = b.Table()

	// Community-border replace table.
	if rs := m.GetReplace(); len(rs) > 0 {
		t.Replace = make(map[uint64]engine.ReplaceEntry, len(rs))
		for i, r := range rs {
			f := fmt.Sprintf("replace[%d]", i)
			if r == nil {
				return nil, refuse(f, "empty")
			}
			if uint64(r.GetSrcMember()) >= uint64(len(members)) {
				return nil, refuse(f+".src_member", "member index %d not in [0, %d)", r.GetSrcMember(), len(members))
			}
			if uint64(r.GetDstMember()) >= uint64(len(members)) {
				return nil, refuse(f+".dst_member", "member index %d not in [0, %d)", r.GetDstMember(), len(members))
			}
			if err := checkPeer(f+".in_peer", r.GetInPeer()); err != nil {
				return nil, err
			}
			if err := checkPeer(f+".out_peer", r.GetOutPeer()); err != nil {
				return nil, err
			}
			k := engine.ReplaceKey(int(r.GetSrcMember()), int(r.GetDstMember()))
			if _, dup := t.Replace[k]; dup {
				return nil, refuse(f, "pair (%d, %d) given twice", r.GetSrcMember(), r.GetDstMember())
			}
			t.Replace[k] = engine.ReplaceEntry{In: r.GetInPeer(), Out: r.GetOutPeer()}
		}
	}
	return t, nil
}

// peerKeys checks one peer's keys — ASN ≠ 0 and not local, dup(ASN)
// passes; at most engine.KeyWindow keys, each 16 octets, epochs ≥ 0,
// distinct, within one window — and returns them in the engine's form.
// field names p in errors.
func peerKeys(field string, p *acspb.PeerKeys, local uint32, dup func(asn uint32) error) (engine.PeerKeys, error) {
	var pk engine.PeerKeys
	if p == nil {
		return pk, refuse(field, "empty")
	}
	switch {
	case p.GetAsn() == 0:
		return pk, refuse(field+".asn", "is 0")
	case p.GetAsn() == local:
		return pk, refuse(field+".asn", "AS%d is the local AS", p.GetAsn())
	}
	if err := dup(p.GetAsn()); err != nil {
		return pk, err
	}
	pk.ASN = p.GetAsn()
	keys := p.GetKeys()
	if len(keys) > engine.KeyWindow {
		return pk, refuse(field+".keys", "%d keys, at most %d", len(keys), engine.KeyWindow)
	}
	var lo, hi int64
	for j, k := range keys {
		kf := fmt.Sprintf("%s.keys[%d]", field, j)
		if k == nil {
			return pk, refuse(kf, "empty")
		}
		e := k.GetEpoch()
		if e < 0 {
			return pk, refuse(kf+".epoch", "%d is negative", e)
		}
		if len(k.GetKey()) != KeyLen {
			return pk, refuse(kf+".key", "%d octets, want %d", len(k.GetKey()), KeyLen)
		}
		if j == 0 || e < lo {
			lo = e
		}
		if j == 0 || e > hi {
			hi = e
		}
		if hi-lo >= engine.KeyWindow {
			return pk, refuse(field+".keys", "epochs %d … %d do not fit one window of %d", lo, hi, engine.KeyWindow)
		}
		if _, _, ok := pk.Key(e); ok {
			return pk, refuse(kf+".epoch", "epoch %d given twice", e)
		}
		pk.SetKey(e, engine.Key(k.GetKey()))
	}
	return pk, nil
}

// prefix reads a wire prefix: 4 octets for IPv4, 16 for IPv6 (IPv4-mapped
// refused), bits within the family, no host bits.
func prefix(pp *acspb.Prefix) (netip.Prefix, error) {
	if pp == nil {
		return netip.Prefix{}, errors.New("empty")
	}
	var a netip.Addr
	switch raw := pp.GetAddr(); len(raw) {
	case 4:
		a = netip.AddrFrom4([4]byte(raw))
	case 16:
		a = netip.AddrFrom16([16]byte(raw))
		if a.Is4In6() {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped address %s: send IPv4 as 4 octets", a)
		}
	default:
		return netip.Prefix{}, fmt.Errorf("address of %d octets, want 4 or 16", len(raw))
	}
	if pp.GetBits() > uint32(a.BitLen()) {
		return netip.Prefix{}, fmt.Errorf("%d bits for a %d-bit address", pp.GetBits(), a.BitLen())
	}
	p := netip.PrefixFrom(a, int(pp.GetBits()))
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (want %s)", p, p.Masked())
	}
	return p, nil
}
