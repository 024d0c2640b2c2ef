// Package abr is the ABR's side of the ACS feed (docs/wire.md §2.7, §3.1): a
// Client dials the AS Control Server of its own AS over mutually
// authenticated TLS 1.3 (gRPC, service psavd.acs.v1.ACS, rpc Feed, feed
// version 2), assembles the membership the ACS sends in chunks, merges the
// keys of every keys-only FeedKeys into those it holds (make before break),
// checks everything — the feed is peer input — and publishes an immutable
// engine.Tables built from the latest whole membership and the keys (atomic
// pointer swap; the prefix table is built once per membership version and
// shared). An Assembler is the same for a feed read in process.
//
// Fail-static: a refused update, a broken stream, an unreachable or silent
// ACS never clears the engine's tables; the last good snapshot stays in
// force (its keys reach e+key_lead) while the client reconnects with
// jittered exponential back-off. State, Version, LastUpdate, LastHeartbeat and Counters (plus a
// Prometheus Collector) say what is going on.
//
// Identity: the ABR presents an abr certificate of its own AS (URI SAN
// psav:as<ASN>:abr:<name>) issued by the alliance CA, and accepts only the
// acs certificate of that same AS (see TLSConfig).
package abr
