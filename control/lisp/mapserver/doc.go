// Package mapserver is psavd's LISP Map-Server and Map-Resolver
// (docs/wire.md §3.3, the LISP Map Server draft, RFC 9301).
//
// Map-Server: sites (Site) have a shared key, a key id and the EID prefixes
// their ETRs may register (optionally more specifics). A Map-Register is
// accepted only when its key id and HMAC verify with the key of a site that
// claims the first record, every record is configured for that site
// (hijack protection) and the nonce passes the replay check; refusals are
// counted by Reason. Registrations expire three minutes after the last
// refresh. With the M bit the Map-Server answers with a Map-Notify carrying
// the same records, signed with the site key, retransmitted until a
// Map-Notify-Ack arrives for sites configured with NotifyAck.
//
// Map-Resolver: an Encapsulated Map-Request is answered by a proxy
// Map-Reply when the matching registration had the P bit, forwarded
// unaltered to the registering ETR otherwise, and answered with a negative
// Map-Reply (no locators, Natively-Forward, short TTL) carrying the
// least-specific prefix that covers the EID and no known EID prefix when
// nothing matches.
//
// Server.Handle and Server.Tick are the socket-free core (explicit clock);
// Server.Serve runs them on a UDP socket. See README.md for the decisions.
package mapserver
