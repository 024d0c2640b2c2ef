// Package pull is pull-based LISP-Decent (docs/wire.md §3.4,
// draft-farinacci-lisp-decent-07 §5): hash-to-DNS-name look-ups.
//
// An EID string hashes (hash.go) to an index whose DNS name,
// <index>.<suffix>, lists the EID's map-servers in its A and AAAA records.
// A Node resolves those names over ADoT, sends registrations to every
// map-server of a name and Map-Requests round robin; a Guard (guard.go)
// reports, or drops, registrations for indexes a map-server does not own.
// zone.go builds the zone of those names from a membership (IndexZone,
// ZoneFeed), so that a DoT server can follow, e.g., a push registration
// group. README.md describes the API and the tests.
package pull
