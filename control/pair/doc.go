// Package pair runs one PSAV state machine per ACS pair, seeded from the
// mutually authenticated TLS 1.3 session between the two ACS (docs/wire.md §2.5,
// §3.1).
//
//   - TLS: ServerConfig and ClientConfig build TLS-1.3-only configurations
//     with mutual certificate authentication against the alliance CA pool,
//     leaving Go's default key exchange (hybrid post-quantum X25519MLKEM768)
//     untouched. A certificate names its AS and role in one URI SAN
//     (psav:as<N>:acs, psav:as<N>:abr:<name>, psav:as<N>:op:<name>;
//     CertIdentity, PeerIdentity, RequirePeer, CheckPeer). GroupName reports the negotiated group.
//   - Seed: DeriveS0 computes S(e0) = TLS-Exporter("EXPORTER-psav-state-machine",
//     lowASN(4) ‖ highASN(4) ‖ e0(8), 32) on the session; both ends get the
//     same value and it never crosses the wire.
//   - Negotiation: the lower ASN (Initiator) sends a Proposal {ID, T0, P, e0};
//     the responder answers with a Response from Policy.Evaluate, refusing a
//     P out of range, an e0 not in the future, or a clock skew over P/4
//     (ClockOffset, CheckSkew; *SkewError is the alarm). Messages have a
//     compact versioned encoding with a strict decoder (Decode).
//   - Machine: Establish starts the pair's machine; KeysAt hands out the keys
//     of e−1 … e+2 (engine.PeerKeys) for the ABRs, erasing states only for
//     the present its owner vouches for (Advance), so a clock step never
//     costs the present's keys; Rekey schedules a new state for a future
//     boundary e1, the old keys serving until e1−1; Remove erases a dead
//     peer's machine.
//   - Confirm: Accept derives an accepted proposal's state and holds it
//     (Acceptance) until Install: the initiator on the response, the
//     responder on the initiator's confirmation, so that a session lost in
//     between leaves both sides with the same keys.
//   - Collisions: KeepIncoming keeps the session dialled by the lower ASN.
//
// Transport, the heartbeat loop and the feed to the ABRs are not here; see
// README.md.
package pair
