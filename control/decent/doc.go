// Package decent implements the LISP-Decent mapping system
// (draft-farinacci-lisp-decent-07, DESIGN §3.4), in which the xTRs are
// themselves the Map-Servers and Map-Resolvers.
//
// Pull mode (hash.go, pull*.go; PULL.md): an EID string hashes to an index
// whose DNS name, <index>.<suffix>, lists the EID's map-servers; names are
// resolved over ADoT, registrations go to every map-server of the name,
// Map-Requests round robin, and a Guard reports registrations for indexes a
// map-server does not own.
//
// Push mode (push*.go; PUSH.md): the members of a registration group G run
// a Map-Server and Map-Resolver each and send every Map-Register to G, by IP
// multicast or by LISP-encapsulated unicast replication (instance-ID
// 0xffffff) to every RLOC of G's RLE; each member registers (0/0, G) with
// itself as an RLE entry, so a look-up of G answers the membership. A core
// seed-group holds the memberships of the other groups (layers), through
// which a new node finds its group. PushNode.Digest compares members'
// registration sets; registrations refused for configuration reasons are
// reported as PushMismatch.
package decent
