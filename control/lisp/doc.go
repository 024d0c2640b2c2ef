// Package lisp is the LISP control-plane message codec used by psavd's ABRs
// acting as xTRs and Map-Servers (docs/wire.md §3.3).
//
// It encodes and decodes the RFC 9301 control messages Map-Request,
// Map-Reply, Map-Register, Map-Notify, Map-Notify-Ack and the Encapsulated
// Control Message (ECM), their EID and locator records, and the RFC 8060
// LCAF types AFI-list (1), Instance-ID (2), AS Number (3), Multicast Info
// (9) and Replication List Entry (13). Other LCAF types are carried as
// opaque bodies; any other AFI is refused.
//
// Encoding: every message type implements Message, whose Append method
// appends the wire form to a buffer (Marshal allocates one). Counts and
// derived flags (IRC, Record Count, Locator Count, the Map-Request M bit, the
// Map-Register I bit) come from the Go values, never from separate fields,
// so an encoder cannot produce a count that disagrees with the contents.
//
// Decoding: Parse dispatches on the type nibble; ParseMapRequest and friends
// also check the type. Decoders are strict: every length and count is
// checked against the octets that remain before anything is allocated,
// LCAF nesting is capped at MaxAddressDepth, an LCAF body must be consumed
// exactly, and trailing octets are refused. Reserved bits are ignored on
// receipt and sent as zero (RFC 9301 §5). Decoders never panic; fuzz
// targets in the tests check this and that every accepted message
// re-encodes to an equivalent one.
//
// Authentication: Sign and Verify work on encoded Map-Register, Map-Notify
// and Map-Notify-Ack messages: the HMAC covers the whole message with the
// authentication data zeroed. Key id 1 is HMAC-SHA-1-96 and key id 2
// HMAC-SHA-256-128. Verify accepts the RFC lengths (12, 16) and the
// untruncated lengths other implementations send (20, 32); AuthConfig
// selects per peer which length we send.
//
// ECM inner headers: AppendInnerIPUDP and ParseInnerIPUDP build and check
// the inner IPv4/IPv6 and UDP headers with correct lengths and checksums.
package lisp
