// Package abr is the ABR's side of the ACS feed (docs/wire.md §2.7, §3.1): a
// Client dials the AS Control Server of its own AS over mutually
// authenticated TLS 1.3 (gRPC, service psavd.acs.v1.ACS, rpc Feed), turns
// every pushed acspb.Tables into an immutable engine.Tables with Convert —
// which validates everything, as pushed tables are peer input — and
// publishes it into the engine (atomic pointer swap).
//
// Fail-static: a refused snapshot, a broken stream, an unreachable or silent
// ACS never clears the engine's tables; the last good snapshot stays in
// force (its keys reach e+2, so tagging and validation keep working for up
// to two more epochs) while the client reconnects with jittered exponential
// back-off. State, Version, LastUpdate, LastHeartbeat and Counters (plus a
// Prometheus Collector) say what is going on.
//
// Identity: the ABR presents an abr certificate of its own AS (URI SAN
// psav:as<ASN>:abr:<name>) issued by the alliance CA, and accepts only the
// acs certificate of that same AS (see TLSConfig).
package abr
