package membership

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Reason says why a record was refused. Values are stable names for
// counters and logs.
type Reason uint8

const (
	ReasonNone Reason = iota
	// ReasonMalformed: undecodable or structurally invalid.
	ReasonMalformed
	// ReasonUnknownCommunity: the record's ASCN has no configured keys.
	ReasonUnknownCommunity
	// ReasonBadSignature: missing, or not by the record's own key (forged).
	ReasonBadSignature
	// ReasonNoEndorsement: signed by the AS but not endorsed.
	ReasonNoEndorsement
	// ReasonBadEndorsement: endorsement present but by no key of the
	// community.
	ReasonBadEndorsement
	// ReasonStaleVersion: older than (or losing the tie-break against) the
	// record held for the AS.
	ReasonStaleVersion
	// ReasonReplay: the identical record is already held, or an exit for an
	// AS already exited at that version or later.
	ReasonReplay
	// ReasonConflictingPrefix: a prefix is held by another live member.
	ReasonConflictingPrefix
	// ReasonStorage: valid, but could not be persisted, so not applied.
	ReasonStorage
	// ReasonRPKIUncovered: a prefix is not covered by a validated ROA for
	// the record's ASN (docs/wire.md §3.2; only where RPKI data is available).
	ReasonRPKIUncovered
	// ReasonBadAuthority: an authority endorsement was requested but is
	// missing or by no key of the named community.
	ReasonBadAuthority
	// ReasonForeignCommunity: the record puts the AS in another community
	// than the one it belongs to, without the endorsement of that
	// community or of the root.
	ReasonForeignCommunity
	// ReasonWrongKey: not signed by the key held for the AS, and no valid
	// rotation signature by it (nor a root override).
	ReasonWrongKey
	// ReasonVersionJump: the version is more than MaxVersionStep above the
	// held one.
	ReasonVersionJump
	// ReasonMoreSpecific: a new prefix lies inside another member's
	// prefix, with neither that member's cover nor RPKI coverage.
	ReasonMoreSpecific
	// ReasonCommunityQuota: the community would exceed its members or
	// prefixes quota.
	ReasonCommunityQuota
	numReasons
)

var reasonNames = [numReasons]string{
	"none", "malformed", "unknown-community", "bad-signature", "no-endorsement",
	"bad-endorsement", "stale-version", "replay", "conflicting-prefix", "storage", "rpki-uncovered",
	"bad-authority", "foreign-community", "wrong-key", "version-jump", "more-specific", "community-quota",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Reasons lists every refusal reason, for exporting counters with zeros.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := ReasonMalformed; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// RefusedError is returned by Apply for every refused record.
type RefusedError struct {
	Reason Reason
	ASN    uint32
	Err    error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("membership: AS%d refused (%s): %v", e.ASN, e.Reason, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// ReasonOf extracts the refusal reason from an error returned by Apply, or
// ReasonNone if err is nil or not a refusal.
func ReasonOf(err error) Reason {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ReasonNone
}

// Counters is a snapshot of Set's counters.
type Counters struct {
	Accepted uint64
	Refused  map[Reason]uint64 // every reason present, zero or not
}

type entry struct {
	rec  Record
	enc  []byte
	hash [32]byte
}

// beats reports whether (version, hash) a wins over b: higher version, or
// equal version and lexicographically lower hash. Lower rather than higher
// is arbitrary but fixed; it is part of the protocol (README, "Merge").
func beats(av uint64, ah [32]byte, bv uint64, bh [32]byte) bool {
	if av != bv {
		return av > bv
	}
	return bytes.Compare(ah[:], bh[:]) < 0
}

// Set is one ACS's view of the membership: the winning record per ASN,
// including exits, which stay as tombstones so an older join cannot bring
// a departed AS back and a replayed exit is recognised. Safe for concurrent
// use.
type Set struct {
	quarantined []Quarantined // record files Load moved aside
	policy      *Policy
	store       *Store

	mu       sync.Mutex
	entries  map[uint32]*entry
	owners   map[netip.Prefix]uint32 // prefixes of live members only
	accepted uint64
	refused  [numReasons]uint64

	// prefixCheck, if set, vets the prefixes of joins and updates against
	// an outside source (RPKI): an error refuses the record.
	prefixCheck func(asn uint32, prefixes []netip.Prefix) error
	// coverCheck, if set, tells whether validated RPKI data covers one
	// prefix for an AS; it lets a more-specific in without a cover.
	coverCheck func(asn uint32, p netip.Prefix) bool
	rv         revalidation // records held aside by Revalidate (revalidate.go)

	// onChange, if set, is called (without s.mu) after every change of
	// what is in force: an accepted record, or a Revalidate that set
	// records aside or put them back.
	onChange func()
}

// SetOnChange installs f, called after every change of the records in
// force, whoever made it (a peer's record, an operator's, an RPKI
// re-validation): the ACS re-derives its peers and tables from it. f runs
// on the goroutine that made the change and must not block for long.
func (s *Set) SetOnChange(f func()) {
	s.mu.Lock()
	s.onChange = f
	s.mu.Unlock()
}

// changed calls the onChange hook; s.mu not held.
func (s *Set) changed() {
	s.mu.Lock()
	f := s.onChange
	s.mu.Unlock()
	if f != nil {
		f()
	}
}

// Standing is what the set says of one AS.
type Standing int

const (
	// Unknown: no record held (never joined, or not yet heard of).
	Unknown Standing = iota
	// Member: a join or update is held, in force or held aside by an RPKI
	// re-validation (a member whose prefixes are in doubt is still the
	// AS its record names: its prefixes leave the tables, its peering
	// stays so that it costs nothing once RPKI covers it again).
	Member
	// Exited: the held record is an exit (a tombstone).
	Exited
)

func (st Standing) String() string {
	switch st {
	case Member:
		return "member"
	case Exited:
		return "exited"
	}
	return "unknown"
}

// Standing tells whether asn is a member, has exited, or is unknown.
func (s *Set) Standing(asn uint32) Standing {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.heldFor(asn)
	switch {
	case e == nil:
		return Unknown
	case e.rec.Kind == KindExit:
		return Exited
	}
	return Member
}

// SetPrefixCheck installs a check of every join's and update's prefixes,
// e.g. against validated ROA payloads (control/rpki). The check depends on
// this node's own view of that source, so nodes can briefly disagree while
// their views converge (it shows as a digest mismatch).
func (s *Set) SetPrefixCheck(check func(asn uint32, prefixes []netip.Prefix) error) {
	s.mu.Lock()
	s.prefixCheck = check
	s.mu.Unlock()
}

// SetCoverCheck installs the test that lets a new prefix inside another
// member's prefix in without that member's cover: covered must be true only
// when validated RPKI data (a ROA) covers p for asn — never merely because
// data is missing (fail open), or anyone could take a more-specific of
// anyone's space.
func (s *Set) SetCoverCheck(covered func(asn uint32, p netip.Prefix) bool) {
	s.mu.Lock()
	s.coverCheck = covered
	s.mu.Unlock()
}

// NewSet returns an empty set that verifies records with policy. A nil
// policy trusts no community, so every record is refused.
func NewSet(policy *Policy) *Set {
	if policy == nil {
		policy = &Policy{}
	}
	return &Set{policy: policy, entries: map[uint32]*entry{}, owners: map[netip.Prefix]uint32{}}
}

// ApplyBytes decodes peer input and applies it; a decode failure is
// refused as malformed and counted like any other refusal.
func (s *Set) ApplyBytes(b []byte) (bool, error) {
	r, err := Decode(b)
	if err != nil {
		s.mu.Lock()
		s.refused[ReasonMalformed]++
		s.mu.Unlock()
		return false, &RefusedError{Reason: ReasonMalformed, Err: err}
	}
	return s.Apply(r)
}

// Apply verifies r and merges it. changed is true only when r became the
// held record for its AS: the caller floods r onward exactly then, which is
// what makes flooding terminate. Every refusal is a *RefusedError and is
// counted.
func (s *Set) Apply(r Record) (changed bool, err error) {
	s.mu.Lock()
	reason, err := s.apply(r, s.store, false)
	if reason != ReasonNone {
		s.refused[reason]++
		s.mu.Unlock()
		return false, &RefusedError{Reason: reason, ASN: r.ASN, Err: err}
	}
	s.accepted++
	s.mu.Unlock()
	s.changed()
	return true, nil
}

// apply verifies and merges one record; s.mu held. loading is true for
// records read back from the store at start: each was judged against the
// held set when it arrived, and the checks that depend on other records or
// on the version held before (version jump, more-specific, quota) would
// depend on the order files are read, so they are not repeated.
func (s *Set) apply(in Record, st *Store, loading bool) (Reason, error) {
	enc, err := in.Encode()
	if err != nil {
		return ReasonMalformed, err
	}
	// Work on a private copy so the caller's slices never alias ours.
	r, err := decode(enc)
	if err != nil {
		return ReasonMalformed, err
	}
	h := sha256.Sum256(enc)
	held := s.heldFor(r.ASN) // in force or held aside (revalidate.go)
	// Identical bytes were verified when first accepted: answer duplicates
	// from flooding without spending a signature check.
	if held != nil && held.hash == h {
		return ReasonReplay, errors.New("identical record already held")
	}
	if reason, err := s.policy.Verify(&r); reason != ReasonNone {
		return reason, err
	}
	if held != nil && !beats(r.Version, h, held.rec.Version, held.hash) {
		if r.Kind == KindExit && held.rec.Kind == KindExit {
			return ReasonReplay, fmt.Errorf("already exited at version %d", held.rec.Version)
		}
		if r.Version == held.rec.Version {
			return ReasonStaleVersion, fmt.Errorf("version %d equals held and loses the hash tie-break", r.Version)
		}
		return ReasonStaleVersion, fmt.Errorf("version %d not above held %d", r.Version, held.rec.Version)
	}
	var heldRec *Record
	if held != nil {
		heldRec = &held.rec
	}
	if reason, err := checkAuthority(&r, heldRec); reason != ReasonNone {
		return reason, err
	}
	if r.Kind != KindExit {
		for _, p := range r.Prefixes {
			if o, ok := s.owners[p]; ok && o != r.ASN {
				return ReasonConflictingPrefix, fmt.Errorf("prefix %v is held by AS%d", p, o)
			}
		}
		if !loading {
			if reason, err := s.checkMoreSpecific(&r, heldRec); reason != ReasonNone {
				return reason, err
			}
			if reason, err := s.checkQuota(&r); reason != ReasonNone {
				return reason, err
			}
		}
		if s.prefixCheck != nil {
			if err := s.prefixCheck(r.ASN, r.Prefixes); err != nil {
				return ReasonRPKIUncovered, err
			}
		}
	}
	// Persist before acknowledging: once Apply says changed, a restart
	// must not lose the record.
	if st != nil {
		if err := st.put(r.ASN, enc); err != nil {
			return ReasonStorage, err
		}
	}
	if held != nil && held.rec.Kind != KindExit {
		for _, p := range held.rec.Prefixes {
			delete(s.owners, p)
		}
	}
	if r.Kind != KindExit {
		for _, p := range r.Prefixes {
			s.owners[p] = r.ASN
		}
	}
	s.entries[r.ASN] = &entry{rec: r, enc: enc, hash: h}
	s.replaced(r.ASN)
	return ReasonNone, nil
}

// sorted returns the held entries in ascending ASN order.
func (s *Set) sorted() []*entry {
	out := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int {
		switch {
		case a.rec.ASN < b.rec.ASN:
			return -1
		case a.rec.ASN > b.rec.ASN:
			return 1
		}
		return 0
	})
	return out
}

// Records returns the live members (no exits), sorted by ASN. The records
// are copies.
func (s *Set) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, e := range s.sorted() {
		if e.rec.Kind != KindExit {
			out = append(out, copyRecord(e))
		}
	}
	return out
}

// All returns every held record including exit tombstones, sorted by ASN:
// what a node sends a peer that knows nothing, and what Store writes.
func (s *Set) All() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.entries))
	for _, e := range s.sorted() {
		out = append(out, copyRecord(e))
	}
	return out
}

// Get returns the held record for asn (possibly an exit).
func (s *Set) Get(asn uint32) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[asn]
	if !ok {
		return Record{}, false
	}
	return copyRecord(e), true
}

// Encoded returns the held canonical encoding for asn, ready to send.
func (s *Set) Encoded(asn uint32) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[asn]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), e.enc...), true
}

func copyRecord(e *entry) Record {
	r, _ := decode(e.enc) // e.enc was produced by Encode and decodes
	return r
}

// Digest is SHA-256 over a context string and the hashes of all held
// records (tombstones included) in ascending ASN order. Two ACS hold the
// same set if and only if (barring hash collisions) their digests match.
func (s *Set) Digest() [32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	h.Write([]byte(ctxDigest))
	for _, e := range s.sorted() {
		h.Write(e.hash[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// SummaryEntry names one held record without its body.
type SummaryEntry struct {
	ASN     uint32
	Version uint64
	Hash    [32]byte
}

// Summary lists every held record's (ASN, version, hash), sorted by ASN,
// for anti-entropy: a peer whose Digest differs sends its Summary and the
// other side answers with Diff.
func (s *Set) Summary() []SummaryEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SummaryEntry, 0, len(s.entries))
	for _, e := range s.sorted() {
		out = append(out, SummaryEntry{ASN: e.rec.ASN, Version: e.rec.Version, Hash: e.hash})
	}
	return out
}

// Diff compares a peer's Summary with ours. need lists ASNs whose peer
// record would win here (request them); send lists our encoded records that
// would win at the peer (push them). Applying both directions makes the two
// digests equal, provided both sides accept the records.
func (s *Set) Diff(peer []SummaryEntry) (need []uint32, send [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[uint32]bool, len(peer))
	for _, p := range peer {
		if seen[p.ASN] {
			continue // a peer listing an ASN twice gets one answer
		}
		seen[p.ASN] = true
		e, ok := s.entries[p.ASN]
		switch {
		case !ok || beats(p.Version, p.Hash, e.rec.Version, e.hash):
			need = append(need, p.ASN)
		case e.hash != p.Hash:
			send = append(send, append([]byte(nil), e.enc...))
		}
	}
	for _, e := range s.sorted() {
		if !seen[e.rec.ASN] {
			send = append(send, append([]byte(nil), e.enc...))
		}
	}
	return need, send
}

// Counters returns a snapshot of accepted and per-reason refused counts.
func (s *Set) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counters{Accepted: s.accepted, Refused: make(map[Reason]uint64, numReasons)}
	for _, r := range Reasons() {
		c.Refused[r] = s.refused[r]
	}
	return c
}
