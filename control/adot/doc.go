// Package adot implements Authoritative DNS over TLS (RFC 7858 transport,
// draft-hal-adot-operational-considerations) for psavd's pull-based
// LISP-Decent mapping system (docs/wire.md §3.5).
//
// Client: Lookup(ctx, name, qtype) resolves A/AAAA through persistent,
// verified TLS 1.3 connections (TLS 1.2 only if Config.AllowTLS12), one
// query in flight per connection, TLS session resumption, bounded dial,
// handshake and query timeouts, retries across servers and a TTL cache
// clamped to [MinTTL, MaxTTL]. Exchange is the raw form. Failures are *Error
// values carrying a Cause. Nothing is ever sent in clear text unless
// Config.Fallback is "plaintext", and never for the first query of a name.
//
// Server: an authoritative DoT server for one Zone (ParseZone / ZoneFromMap,
// replaced atomically with SetZone), TLS 1.3, rotating session ticket keys,
// limits on connections in total, per client address and queries per
// connection, idle and handshake timeouts.
//
// Both expose counters and an RTT histogram in a Metrics struct.
// See README.md for the design decisions and the first-query stall fix.
package adot
