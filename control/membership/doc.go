// Package membership holds the PSAV trust-alliance membership (docs/wire.md §3.2):
// one signed, community-endorsed record per AS, merged by every ACS with a
// deterministic rule (highest version wins, ties by lowest hash) so that
// flooding the same records in any order, with duplicates, leaves every ACS
// with the same set and the same Digest.
//
// The package is a pure library: it does no networking. A caller feeds peer
// bytes to Set.ApplyBytes (or decoded records to Set.Apply), floods a record
// onward only when Apply reports it changed the set, and repairs losses with
// anti-entropy (Summary on one side, Diff on the other). Store keeps the set
// on disk, one atomically replaced file per AS, so a restart loses nothing.
//
// Every refusal carries a Reason and is counted, so operators can tell a
// forged record from a stale or replayed one.
//
// The wire encoding, signature formats and merge rules are specified in
// README.md in this directory; that file is normative for other
// implementations.
package membership
