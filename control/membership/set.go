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

	// writeMu serialises every change (Apply, ApplyBatch, Revalidate,
	// Load), so what a record was checked against cannot change while it
	// is written to disk. mu guards the state itself and is never held
	// across disk I/O: readers (Standing, Get, Summary, Digest, the feed)
	// never wait behind an fsync. Lock order: writeMu, then mu.
	writeMu  sync.Mutex
	mu       sync.Mutex
	entries  map[uint32]*entry
	owners   map[netip.Prefix]uint32 // prefixes of live members only
	accepted uint64
	refused  [numReasons]uint64
	// digest caches Digest until the entries change (digestOK cleared):
	// every heartbeat carries it (anti-entropy), so it must cost nothing.
	digest   [32]byte
	digestOK bool

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
	s.writeMu.Lock()
	s.mu.Lock()
	p, reason, err := s.check(r, false)
	st := s.store
	s.mu.Unlock()
	// Persist before acknowledging: once Apply says changed, a restart
	// must not lose the record. The file is written without s.mu.
	if reason == ReasonNone && st != nil {
		if err = st.put(p.rec.ASN, p.enc); err != nil {
			reason = ReasonStorage
		}
	}
	s.mu.Lock()
	if reason != ReasonNone {
		s.refused[reason]++
		s.mu.Unlock()
		s.writeMu.Unlock()
		return false, &RefusedError{Reason: reason, ASN: r.ASN, Err: err}
	}
	s.commit(p)
	s.accepted++
	s.mu.Unlock()
	s.writeMu.Unlock()
	s.changed()
	return true, nil
}

// ApplyResult is what ApplyBatch says of one record, as Apply would.
type ApplyResult struct {
	Changed bool
	Err     error
}

// ApplyBatch decodes and applies encoded records in order, as that many
// ApplyBytes calls would, but makes them durable together: every accepted
// record's file is written, the file system is synced once (syncfs), the
// files are renamed into place and the directory is synced once: two
// syncs for the batch instead of two per record, which is what lets a
// catch-up of thousands of records finish in moments. Each record is
// checked against the ones before it in the batch; an accepted record is
// in force (visible to readers) as soon as it is checked, but reported
// Changed (so flooded onward) only once the batch is durable. A failing
// sync refuses every record of the batch with ReasonStorage; those stay
// in memory until a later record replaces them or the ACS restarts, when
// peers give them back.
func (s *Set) ApplyBatch(encs [][]byte) []ApplyResult {
	res := make([]ApplyResult, len(encs))
	if len(encs) == 0 {
		return res
	}
	s.writeMu.Lock()
	s.mu.Lock()
	st := s.store
	s.mu.Unlock()
	var files []staged
	var accepted []int
	for i, b := range encs {
		r, err := Decode(b)
		s.mu.Lock()
		if err != nil {
			s.refused[ReasonMalformed]++
			s.mu.Unlock()
			res[i].Err = &RefusedError{Reason: ReasonMalformed, Err: err}
			continue
		}
		p, reason, err := s.check(r, false)
		if reason == ReasonNone && st != nil {
			var f staged
			if f, err = st.stage(p.rec.ASN, p.enc); err != nil {
				reason = ReasonStorage
			} else {
				files = append(files, f)
			}
		}
		if reason != ReasonNone {
			s.refused[reason]++
			s.mu.Unlock()
			res[i].Err = &RefusedError{Reason: reason, ASN: r.ASN, Err: err}
			continue
		}
		s.commit(p)
		s.mu.Unlock()
		accepted = append(accepted, i)
	}
	if st != nil && len(files) > 0 {
		if err := st.install(files); err != nil {
			s.mu.Lock()
			s.refused[ReasonStorage] += uint64(len(accepted))
			s.mu.Unlock()
			for _, i := range accepted {
				res[i].Err = &RefusedError{Reason: ReasonStorage, Err: err}
			}
			accepted = nil
		}
	}
	s.mu.Lock()
	s.accepted += uint64(len(accepted))
	s.mu.Unlock()
	for _, i := range accepted {
		res[i].Changed = true
	}
	s.writeMu.Unlock()
	if len(accepted) > 0 {
		s.changed()
	}
	return res
}

// pending is a record check accepted, ready for commit.
type pending struct {
	rec  Record
	enc  []byte
	hash [32]byte
	held *entry
}

// apply checks and commits one record without a store (Load's path);
// s.mu held.
func (s *Set) apply(in Record, loading bool) (Reason, error) {
	p, reason, err := s.check(in, loading)
	if reason == ReasonNone {
		s.commit(p)
	}
	return reason, err
}

// check verifies one record against the held set and returns what commit
// needs; s.mu held. loading is true for records read back from the store
// at start: each was judged against the held set when it arrived, and the
// checks that depend on other records or on the version held before
// (version jump, more-specific, quota) would depend on the order files are
// read, so they are not repeated.
func (s *Set) check(in Record, loading bool) (pending, Reason, error) {
	enc, err := in.Encode()
	if err != nil {
		return pending{}, ReasonMalformed, err
	}
	// Work on a private copy so the caller's slices never alias ours.
	r, err := decode(enc)
	if err != nil {
		return pending{}, ReasonMalformed, err
	}
	h := sha256.Sum256(enc)
	held := s.heldFor(r.ASN) // in force or held aside (revalidate.go)
	// Identical bytes were verified when first accepted: answer duplicates
	// from flooding without spending a signature check.
	if held != nil && held.hash == h {
		return pending{}, ReasonReplay, errors.New("identical record already held")
	}
	if reason, err := s.policy.Verify(&r); reason != ReasonNone {
		return pending{}, reason, err
	}
	if held != nil && !beats(r.Version, h, held.rec.Version, held.hash) {
		if r.Kind == KindExit && held.rec.Kind == KindExit {
			return pending{}, ReasonReplay, fmt.Errorf("already exited at version %d", held.rec.Version)
		}
		if r.Version == held.rec.Version {
			return pending{}, ReasonStaleVersion, fmt.Errorf("version %d equals held and loses the hash tie-break", r.Version)
		}
		return pending{}, ReasonStaleVersion, fmt.Errorf("version %d not above held %d", r.Version, held.rec.Version)
	}
	var heldRec *Record
	if held != nil {
		heldRec = &held.rec
	}
	if reason, err := checkAuthority(&r, heldRec); reason != ReasonNone {
		return pending{}, reason, err
	}
	if r.Kind != KindExit {
		for _, p := range r.Prefixes {
			if o, ok := s.owners[p]; ok && o != r.ASN {
				return pending{}, ReasonConflictingPrefix, fmt.Errorf("prefix %v is held by AS%d", p, o)
			}
		}
		if !loading {
			if reason, err := s.checkMoreSpecific(&r, heldRec); reason != ReasonNone {
				return pending{}, reason, err
			}
			if reason, err := s.checkQuota(&r); reason != ReasonNone {
				return pending{}, reason, err
			}
		}
		if s.prefixCheck != nil {
			if err := s.prefixCheck(r.ASN, r.Prefixes); err != nil {
				return pending{}, ReasonRPKIUncovered, err
			}
		}
	}
	return pending{rec: r, enc: enc, hash: h, held: held}, ReasonNone, nil
}

// commit puts a checked record in force; s.mu held, and nothing changed
// since check (s.writeMu held throughout).
func (s *Set) commit(p pending) {
	if p.held != nil && p.held.rec.Kind != KindExit {
		for _, pfx := range p.held.rec.Prefixes {
			delete(s.owners, pfx)
		}
	}
	if p.rec.Kind != KindExit {
		for _, pfx := range p.rec.Prefixes {
			s.owners[pfx] = p.rec.ASN
		}
	}
	s.entries[p.rec.ASN] = &entry{rec: p.rec, enc: p.enc, hash: p.hash}
	s.digestOK = false
	s.replaced(p.rec.ASN)
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
	if s.digestOK {
		return s.digest
	}
	h := sha256.New()
	h.Write([]byte(ctxDigest))
	for _, e := range s.sorted() {
		h.Write(e.hash[:])
	}
	h.Sum(s.digest[:0])
	s.digestOK = true
	return s.digest
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
