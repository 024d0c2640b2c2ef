// Package rpki is psavd's RPKI cross-check (docs/wire.md §3.2): an RPKI-to-Router
// client (RTR, RFC 8210 version 1 with fallback to RFC 6810 version 0) that
// keeps the validated ROA payloads (VRPs) of an RPKI cache, and a Validator
// that tells whether a membership record's prefixes are covered by VRPs for
// its ASN, with RFC 6811 origin-validation semantics.
//
// Client.Run holds one session at a time: Reset Query on connect, the
// cache's answer collected into a working set, published at End of Data as
// an immutable *Validator swapped atomically; then Serial Query on the
// Refresh Interval or on Serial Notify, Cache Reset answered with a Reset
// Query, withdrawals applied, protocol errors reported with an Error Report
// and the session dropped, retried after the Retry Interval; data older
// than the Expire Interval is no longer served (Client.Validator returns
// nil). The PDU decoder (Decode, ReadPDU) is strict and fuzzed.
//
// Transports are plain TCP, SSH and TLS (RFC 8210 §9.1–§9.3). See README.md; control/rpki/rpkitest runs a real StayRTR
// for tests.
package rpki
