package abr

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gaissmai/bart"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// maxChunks bounds the chunks of one membership version: at
// acspb.FeedChunkBytes each, far more than 16 M members or prefixes need,
// and a bound on how long an ACS can keep an assembly open.
const maxChunks = 1 << 14

// membershipPart is one complete membership version: everything of the
// engine's tables except the keys and the peer indices, which depend on the
// keys held. The prefix table is built once per version and shared, read
// only, by every snapshot published with it.
type membershipPart struct {
	version    uint64
	t0, period int64
	prefixes   *bart.Fast[uint32]
	nPrefixes  int
	members    []engine.Member // TagPeer and ValidatePeer unset: see hops
	hops       [][2]uint32     // per member: tag and validate peer ASN, 0: none
	replace    []replaceASN
}

// replaceASN is a replace entry with members by index and peers by ASN.
type replaceASN struct {
	src, dst int
	in, out  uint32
}

// assembly is a membership version being received, chunk by chunk; its
// prefixes go into the table as they arrive, so that no chunk is kept.
type assembly struct {
	head    acspb.MembershipHead
	count   uint32
	next    uint32 // the index expected next
	part    *membershipPart
	b       *engine.PrefixTableBuilder
	index   map[uint32]int // member ASN → index
	local   int
	replace []*acspb.FeedReplace // checked when the version is whole
}

// feedState turns the two parts of the feed (docs/wire.md §3.1) into engine
// tables: it assembles membership chunks, holds every key received per
// (peer, epoch) until its epoch is past (make before break, §2.8, across
// streams and ACS restarts), and builds a new immutable snapshot from the
// latest whole membership and the keys at every FeedKeys. Everything is
// peer input: a chunk that breaks a rule refuses its whole version, a
// FeedKeys that breaks one is refused whole; what is in force stays. Not
// safe for concurrent use (the client's stream goroutine owns it).
type feedState struct {
	local uint32

	asm     *assembly       // the version being received, nil: none
	skip    uint64          // a refused version whose remaining chunks are ignored
	staged  *membershipPart // whole, waiting for its FeedKeys
	inForce *membershipPart // the membership of the last snapshot built

	keys       map[uint32]*engine.PeerKeys // every key held, by peer ASN
	keysClock  [2]int64                    // the (t0, period) the keys are of
	live       map[uint32]bool             // the pairs the last FeedKeys listed
	resolvedOf []uint32                    // the peers members and replace were resolved for
	resolved   *engine.Tables              // their members and replace (shared, read only)
}

func newFeedState(local uint32) *feedState {
	return &feedState{local: local, keys: map[uint32]*engine.PeerKeys{}, live: map[uint32]bool{}}
}

// newStream forgets what a stream had half sent: a membership version is
// never assembled from two streams. What is in force and the keys stay.
func (f *feedState) newStream() {
	f.asm, f.staged, f.skip = nil, nil, 0
}

// chunk takes one membership chunk. whole says the version is complete
// (staged: it goes in force with the next FeedKeys). An error refuses the
// chunk's whole version; its remaining chunks are then ignored.
func (f *feedState) chunk(c *acspb.MembershipChunk) (whole bool, err error) {
	if c == nil {
		return false, errors.New("abr: membership refused: empty chunk")
	}
	if c.GetIndex() != 0 && f.asm == nil && c.GetVersion() == f.skip {
		return false, nil // the rest of a refused version
	}
	if err := f.add(c); err != nil {
		f.asm, f.skip = nil, c.GetVersion()
		return false, err
	}
	if f.asm.next < f.asm.count {
		return false, nil
	}
	if err := f.finish(); err != nil {
		f.asm, f.skip = nil, c.GetVersion()
		return false, err
	}
	f.staged, f.asm = f.asm.part, nil
	return true, nil
}

func membershipRefused(c *acspb.MembershipChunk, field, format string, a ...any) error {
	return &ConvertError{Field: fmt.Sprintf("membership %d chunk %d: %s", c.GetVersion(), c.GetIndex(), field), Msg: fmt.Sprintf(format, a...)}
}

// add checks one chunk and adds its members and prefixes to the assembly
// (a new one for index 0).
func (f *feedState) add(c *acspb.MembershipChunk) error {
	head := acspb.MembershipHead{Version: c.GetVersion(), T0: c.GetT0(), PeriodSeconds: c.GetPeriodSeconds(), LocalASN: c.GetLocalAsn()}
	if c.GetIndex() == 0 {
		switch {
		case head.Version == 0:
			return membershipRefused(c, "version", "must be > 0")
		case c.GetCount() == 0 || c.GetCount() > maxChunks:
			return membershipRefused(c, "count", "%d chunks, want 1 … %d", c.GetCount(), maxChunks)
		case head.T0 < 0:
			return membershipRefused(c, "t0", "%d is negative", head.T0)
		case head.PeriodSeconds <= 0:
			return membershipRefused(c, "period_seconds", "%d is not positive", head.PeriodSeconds)
		case head.LocalASN != f.local:
			return membershipRefused(c, "local_asn", "AS%d is not this ABR's AS%d", head.LocalASN, f.local)
		}
		// A new version replaces one half received (the ACS started over).
		f.asm = &assembly{head: head, count: c.GetCount(), b: engine.NewPrefixTableBuilder(), index: map[uint32]int{}, local: -1,
			part: &membershipPart{version: head.Version, t0: head.T0, period: head.PeriodSeconds}}
	}
	a := f.asm
	switch {
	case a == nil:
		return membershipRefused(c, "index", "chunk %d without chunk 0", c.GetIndex())
	case head != a.head || c.GetCount() != a.count:
		return membershipRefused(c, "", "does not match chunk 0 of version %d (%d chunks)", a.head.Version, a.count)
	case c.GetIndex() != a.next:
		return membershipRefused(c, "index", "chunk %d, want %d", c.GetIndex(), a.next)
	}
	a.next++
	p := a.part
	for i, fm := range c.GetMembers() {
		field := fmt.Sprintf("members[%d]", i)
		if fm == nil {
			return membershipRefused(c, field, "empty")
		}
		asn := fm.GetAsn()
		hop := [2]uint32{fm.GetTagPeer(), fm.GetValidatePeer()}
		mi := len(p.members) - 1
		if fm.GetContinued() {
			if mi < 0 || p.members[mi].ASN != asn || p.members[mi].Local != fm.GetLocal() || p.hops[mi] != hop {
				return membershipRefused(c, field+".continued", "does not continue the member before it")
			}
		} else {
			switch {
			case asn == 0:
				return membershipRefused(c, field+".asn", "is 0")
			case fm.GetLocal() && asn != head.LocalASN:
				return membershipRefused(c, field+".local", "AS%d is marked local but local_asn is %d", asn, head.LocalASN)
			case !fm.GetLocal() && asn == head.LocalASN:
				return membershipRefused(c, field+".local", "AS%d is local_asn but not marked local", asn)
			case hop[0] == head.LocalASN || hop[1] == head.LocalASN:
				return membershipRefused(c, field, "the local AS%d as a peer", head.LocalASN)
			case len(p.members) >= maxMembers-1:
				return membershipRefused(c, field, "more than %d members", maxMembers-1)
			}
			if j, dup := a.index[asn]; dup {
				return membershipRefused(c, field+".asn", "AS%d already is member %d", asn, j)
			}
			mi = len(p.members)
			a.index[asn] = mi
			if fm.GetLocal() {
				a.local = mi
			}
			p.members = append(p.members, engine.Member{ASN: asn, Local: fm.GetLocal(), TagPeer: -1, ValidatePeer: -1})
			p.hops = append(p.hops, hop)
		}
		for j, pp := range fm.GetPrefixes() {
			// Formatted only for an error: a version may hold a million.
			pf := func() string { return fmt.Sprintf("%s.prefixes[%d]", field, j) }
			q, err := prefix(pp)
			if err != nil {
				return membershipRefused(c, pf(), "%v", err)
			}
			if k, dup := a.b.Member(q); dup {
				return membershipRefused(c, pf(), "%s already belongs to member %d (AS%d)", q, k, p.members[k].ASN)
			}
			if err := a.b.Add(q, mi); err != nil {
				return membershipRefused(c, pf(), "%v", err)
			}
			p.nPrefixes++
		}
	}
	if len(a.replace)+len(c.GetReplace()) > maxMembers {
		return membershipRefused(c, "replace", "too many entries")
	}
	a.replace = append(a.replace, c.GetReplace()...)
	return nil
}

// finish checks what needs the whole version (the local member, the
// replace entries) and completes the part.
func (f *feedState) finish() error {
	a := f.asm
	p := a.part
	last := &acspb.MembershipChunk{Version: a.head.Version, Index: a.count - 1}
	if a.local < 0 {
		return membershipRefused(last, "members", "no member is the local AS%d", a.head.LocalASN)
	}
	seen := make(map[uint64]bool, len(a.replace))
	for i, r := range a.replace {
		field := fmt.Sprintf("replace[%d]", i)
		if r == nil {
			return membershipRefused(last, field, "empty")
		}
		src, ok1 := a.index[r.GetSrcAsn()]
		dst, ok2 := a.index[r.GetDstAsn()]
		switch {
		case !ok1:
			return membershipRefused(last, field+".src_asn", "AS%d is not a member", r.GetSrcAsn())
		case !ok2:
			return membershipRefused(last, field+".dst_asn", "AS%d is not a member", r.GetDstAsn())
		case r.GetInPeer() == a.head.LocalASN || r.GetOutPeer() == a.head.LocalASN:
			return membershipRefused(last, field, "the local AS%d as a peer", a.head.LocalASN)
		}
		k := engine.ReplaceKey(src, dst)
		if seen[k] {
			return membershipRefused(last, field, "pair (AS%d, AS%d) given twice", r.GetSrcAsn(), r.GetDstAsn())
		}
		seen[k] = true
		p.replace = append(p.replace, replaceASN{src: src, dst: dst, in: r.GetInPeer(), out: r.GetOutPeer()})
	}
	p.prefixes = a.b.Table()
	return nil
}

// feedKeys takes one FeedKeys at unix time now: a staged membership it
// names goes in force, its keys are merged into those held, and the
// snapshot to publish is returned (nil while no membership is whole). An
// error refuses the message whole: nothing changes.
func (f *feedState) feedKeys(k *acspb.FeedKeys, now int64) (*engine.Tables, error) {
	if k == nil {
		return nil, errors.New("abr: keys refused: empty")
	}
	if k.GetVersion() == 0 {
		return nil, refuse("keys.version", "must be > 0")
	}
	given := make([]engine.PeerKeys, len(k.GetPeers()))
	seen := make(map[uint32]int, len(given))
	for i, p := range k.GetPeers() {
		field := fmt.Sprintf("keys.peers[%d]", i)
		pk, err := peerKeys(field, p, f.local, func(asn uint32) error {
			if j, dup := seen[asn]; dup {
				return refuse(field+".asn", "AS%d already is peers[%d]", asn, j)
			}
			seen[asn] = i
			return nil
		})
		if err != nil {
			return nil, err
		}
		given[i] = pk
	}
	if f.staged != nil && f.staged.version == k.GetMembershipVersion() {
		f.inForce, f.staged = f.staged, nil
		f.resolved, f.resolvedOf = nil, nil
	}
	m := f.inForce
	if m != nil && f.keysClock != [2]int64{m.t0, m.period} {
		// A new epoch clock: the keys held are of other epochs.
		clear(f.keys)
		f.keysClock = [2]int64{m.t0, m.period}
	}
	clear(f.live)
	for i := range given {
		g := &given[i]
		f.live[g.ASN] = true
		h := f.keys[g.ASN]
		if h == nil {
			h = &engine.PeerKeys{ASN: g.ASN}
			f.keys[g.ASN] = h
		}
		for s := range g.Keys {
			if g.Keys[s].Valid {
				h.Keys[s] = g.Keys[s] // a key given wins its slot (a re-key)
			}
		}
	}
	if m == nil {
		return nil, nil
	}
	return f.build(k.GetVersion(), now), nil
}

// build is the snapshot of the membership in force with the keys held at
// unix time now: the peers are the live pairs and every pair still holding a usable
// key (epoch now−1 or later), sorted by ASN; a member's or replace entry's
// peer is used while it is among them. Members and replace are resolved
// again only when that list of peers changes.
func (f *feedState) build(version uint64, now int64) *engine.Tables {
	m := f.inForce
	e := engine.Epoch(now, m.t0, m.period)
	usable := func(k *engine.EpochKey) bool { return k.Valid && k.Epoch >= e-1 }
	asns := make([]uint32, 0, len(f.keys))
	for asn, h := range f.keys {
		keep := f.live[asn]
		for s := range h.Keys {
			if usable(&h.Keys[s]) {
				keep = true
			} else {
				h.Keys[s] = engine.EpochKey{}
			}
		}
		if !keep {
			delete(f.keys, asn)
			continue
		}
		asns = append(asns, asn)
	}
	slices.Sort(asns)
	t := &engine.Tables{Version: version, T0: m.t0, Period: m.period, Prefixes: m.prefixes, Peers: make([]engine.PeerKeys, len(asns))}
	for i, asn := range asns {
		t.Peers[i] = *f.keys[asn]
	}
	if f.resolved == nil || !slices.Equal(asns, f.resolvedOf) {
		f.resolved, f.resolvedOf = resolve(m, asns), asns
	}
	t.Members, t.Replace = f.resolved.Members, f.resolved.Replace
	return t
}

// resolve gives m's members and replace entries their peer indices into
// the sorted peers asns (−1: not among them).
func resolve(m *membershipPart, asns []uint32) *engine.Tables {
	idx := func(asn uint32) int32 {
		if asn == 0 {
			return -1
		}
		if i, ok := slices.BinarySearch(asns, asn); ok {
			return int32(i)
		}
		return -1
	}
	r := &engine.Tables{Members: make([]engine.Member, len(m.members))}
	for i, mm := range m.members {
		mm.TagPeer, mm.ValidatePeer = idx(m.hops[i][0]), idx(m.hops[i][1])
		r.Members[i] = mm
	}
	if len(m.replace) > 0 {
		r.Replace = make(map[uint64]engine.ReplaceEntry, len(m.replace))
		for _, e := range m.replace {
			r.Replace[engine.ReplaceKey(e.src, e.dst)] = engine.ReplaceEntry{In: idx(e.in), Out: idx(e.out)}
		}
	}
	return r
}

// Assembler is the ABR's side of the feed for a feed read in process (an
// ACS and an ABR in one node, control/node): the checks, the membership
// swap and make before break of a Client, without the stream.
type Assembler struct{ st *feedState }

// NewAssembler returns the feed state of an ABR of AS localASN.
func NewAssembler(localASN uint32) *Assembler { return &Assembler{st: newFeedState(localASN)} }

// Apply takes one feed message at now and returns the snapshot to publish,
// if it completes one (nil otherwise); an error refuses the message (a
// chunk: its whole membership version) and what is in force stays.
func (a *Assembler) Apply(m *acspb.FeedMessage, now time.Time) (*engine.Tables, error) {
	switch b := m.GetBody().(type) {
	case *acspb.FeedMessage_Membership:
		_, err := a.st.chunk(b.Membership)
		return nil, err
	case *acspb.FeedMessage_Keys:
		return a.st.feedKeys(b.Keys, now.Unix())
	}
	return nil, nil
}
