// Package decent is the LISP-Decent mapping system
// (draft-farinacci-lisp-decent-07, docs/wire.md §3.4), in which the xTRs
// are themselves the Map-Servers and Map-Resolvers. It holds no code: the
// two modes share no wire format or state and live in the sub-packages.
//
//   - control/decent/push: registration groups. The members of a group G
//     each run a Map-Server and Map-Resolver and send every Map-Register to
//     G (IP multicast or LISP-encapsulated unicast replication); a core
//     seed-group holds the memberships of the other groups.
//   - control/decent/pull: hash-to-DNS-name look-ups. An EID string hashes
//     to an index whose DNS name, <index>.<suffix>, lists the EID's
//     map-servers (resolved over ADoT); it also builds that zone from a
//     membership (pull.ZoneFeed, e.g. fed by a push.Node's Members).
package decent
