// Package acs is an AS Control Server node (docs/wire.md §2.5–2.7, §3.1–3.2): it
// serves the gRPC service psavd.acs.v1.ACS over mutual TLS 1.3 and peers
// with the other ACS of the alliance.
//
//   - Peering: the lower ASN dials (pair.Initiator), with a jittered
//     exponential back-off; any member whose certificate verifies against
//     the alliance CA may dial in; two sessions for one peer are resolved
//     with pair.KeepIncoming.
//   - Session: Hello (schema 1, ASN = certificate's ASN), heartbeats every
//     interval carrying their send time and echoing the last received one
//     (RTT and offset with pair.ClockOffset), then negotiation: once the
//     first heartbeat round trip has measured the offset, the initiator
//     proposes (pair.NewProposal with the node's T0/P), the responder
//     answers with pair.Policy.Evaluate, and both derive the machine from
//     the TLS exporter of the very connection the Peer stream runs on
//     (pair.Establish, or Machine.Rekey when a machine is still running).
//   - Liveness: a peer that misses DeadAfter heartbeats is dead: its machine
//     is removed, a ForcedExit is sent if its stream is still open, and it
//     is re-admitted (new negotiation) when it comes back.
//   - Membership: summaries are exchanged on every new session, missing
//     records pushed (Set.Diff) and requested (MembershipWant); every record
//     that changes the set is flooded to the other peers.
//   - Feed: the ABRs of this AS (client certificate naming this AS) get
//     the membership in chunks at once and whenever it changes, and a
//     keys-only FeedKeys (the keys of e−1 … e+KeyLead they do not hold
//     yet) at once, on every change of keys and at every epoch boundary.
//   - Status: peers, epochs, RTT/offset, TLS group, membership digest.
//
// See README.md for the life cycle and the decisions.
package acs
