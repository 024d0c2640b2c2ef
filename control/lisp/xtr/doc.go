// Package xtr is the control plane of a LISP xTR (docs/wire.md §3.3, RFC
// 9301): the ETR registers this node's database mappings with its
// Map-Servers and answers Map-Requests for its EIDs; the ITR takes the
// destinations the engine missed in its map-cache, asks the Map-Resolvers
// (Encapsulated Map-Request), checks the reply's nonce, keeps the answers
// until their TTL runs out and publishes the map-cache to the poll loops as
// part of the engine's next snapshot.
//
// Like control/lisp/mapserver, the core is Handle (one datagram in, the
// datagrams to send out) and Tick (timers), with an injected clock; Serve
// runs them on a UDP socket.
//
// The parts, one file each, share the XTR and its lock:
//   - xtr.go: Config, Stats, New, and Tick and Handle, which call the others;
//   - directory.go: the Directory (where to register, where to ask) and
//     Static, the one of static configuration;
//   - etr.go: the database, the registration schedule and its retries,
//     Map-Notify checks and acks, Map-Replies for our EIDs;
//   - itr.go: misses, Map-Requests with their nonces, retries, hold-down and
//     rate limit, accepting Map-Replies, publishing into the engine;
//   - cache.go: the map-cache: longest match per instance, TTLs, negative
//     entries, expiry.
package xtr
