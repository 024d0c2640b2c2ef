// Package push is push-based LISP-Decent (docs/wire.md §3.4,
// draft-farinacci-lisp-decent-07 §4): registration groups.
//
// The members of a registration group G run a Map-Server and Map-Resolver
// each (a push.Node) and send every Map-Register to G, by IP multicast or by
// LISP-encapsulated unicast replication (instance-ID 0xffffff) to every RLOC
// of G's RLE; each member registers (0/0, G) with itself as an RLE entry, so
// a look-up of G answers the membership. A core seed-group holds the
// memberships of the other groups (layers), through which a new node finds
// its group. Node.Digest compares members' registration sets; registrations
// refused for configuration reasons are reported as Mismatch.
//
// Files: config.go (Config and its validation), push.go (the node's core),
// group.go (the group-address table), net.go (sockets, run loop, external
// look-up). README.md describes the API and the tests.
package push
