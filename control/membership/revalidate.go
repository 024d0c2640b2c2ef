package membership

import (
	"net/netip"
	"slices"
)

// Re-validation against an outside source (RPKI, docs/wire.md §3.2). The
// prefix check of SetPrefixCheck gates records when they arrive; Revalidate
// judges the records already held whenever that source changes (a new VRP
// set, its expiry). A held record it refuses is either kept in force and
// reported (fail open) or held aside: out of Records, All, Summary, Digest
// and Get — so out of the tables the ACS feeds to its ABRs and of what it
// floods — but kept in memory and on disk, still owning its prefixes (no
// other AS can take them meanwhile) and still the version a newer record
// must beat. A later pass that finds it covered again puts it back in
// force; a newer record of the AS that passes the check replaces it.

// revalidation is the Set's re-validation state; guarded by Set.mu.
type revalidation struct {
	aside map[uint32]*entry // held aside by the last passes, by ASN
}

// RevalidateResult is what one Revalidate pass did.
type RevalidateResult struct {
	// SetAside: records this pass took out of force (drop), by ASN.
	SetAside []uint32
	// Readmitted: records held aside that this pass put back in force.
	Readmitted []uint32
	// Uncovered: records in force that the check refuses (only without
	// drop: fail open keeps them and alarms).
	Uncovered []uint32
	// Aside: how many records are held aside after the pass.
	Aside int
}

// Revalidate runs check over every held live record (exits are not
// checked). A record check refuses is held aside when drop is true
// (fail closed) and listed as Uncovered otherwise (fail open); a record
// held aside that check accepts again is put back in force, as is every
// record held aside when drop is false. check is called with the set
// locked and must not call back into it.
func (s *Set) Revalidate(check func(asn uint32, prefixes []netip.Prefix) error, drop bool) RevalidateResult {
	res := s.revalidate(check, drop)
	if len(res.SetAside) > 0 || len(res.Readmitted) > 0 {
		s.changed()
	}
	return res
}

func (s *Set) revalidate(check func(asn uint32, prefixes []netip.Prefix) error, drop bool) RevalidateResult {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var res RevalidateResult
	justAside := map[uint32]bool{}
	for _, e := range s.sorted() {
		if e.rec.Kind == KindExit || check(e.rec.ASN, e.rec.Prefixes) == nil {
			continue
		}
		if !drop {
			res.Uncovered = append(res.Uncovered, e.rec.ASN)
			continue
		}
		if s.rv.aside == nil {
			s.rv.aside = map[uint32]*entry{}
		}
		s.rv.aside[e.rec.ASN] = e
		delete(s.entries, e.rec.ASN)
		s.digestOK = false
		res.SetAside = append(res.SetAside, e.rec.ASN)
		justAside[e.rec.ASN] = true
	}
	for asn, e := range s.rv.aside {
		if justAside[asn] {
			continue
		}
		if !drop || check(asn, e.rec.Prefixes) == nil {
			s.entries[asn] = e
			s.digestOK = false
			delete(s.rv.aside, asn)
			res.Readmitted = append(res.Readmitted, asn)
		}
	}
	slices.Sort(res.Readmitted)
	res.Aside = len(s.rv.aside)
	return res
}

// Aside returns the records held aside by Revalidate, sorted by ASN.
func (s *Set) Aside() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.rv.aside))
	for _, e := range s.rv.aside {
		out = append(out, copyRecord(e))
	}
	slices.SortFunc(out, func(a, b Record) int {
		switch {
		case a.ASN < b.ASN:
			return -1
		case a.ASN > b.ASN:
			return 1
		}
		return 0
	})
	return out
}

// heldFor is the record a new one for asn must beat: the one in force, or
// the one held aside. s.mu held.
func (s *Set) heldFor(asn uint32) *entry {
	if e := s.entries[asn]; e != nil {
		return e
	}
	return s.rv.aside[asn]
}

// replaced forgets the record held aside for asn once a newer record of
// that AS is in force. s.mu held.
func (s *Set) replaced(asn uint32) { delete(s.rv.aside, asn) }
