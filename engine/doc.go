// Package engine is psavd's packet path: it judges each frame by the roles of
// the port it arrived on and the port it leaves by (docs/wire.md §2.2), adds,
// validates, replaces and strips PSAV tags (§2.3–2.4), and forwards by
// cross-connect or by a static routing table (§2.1), encapsulating in and
// decapsulating from LISP (RFC 9300) on ports configured for it (lisp.go).
//
// The engine knows nothing of TOML or of the control plane. It reads its
// tables from an immutable Tables snapshot that the control plane publishes
// through an atomic pointer (§2.7); a poll loop loads the pointer once per
// batch, so a table change never tears a batch in half and never needs a lock.
//
// Hot path rules, checked by the benchmarks in this package: no allocation,
// no lock, no interface call and no system call per packet. Frames are edited
// in place; a tag is inserted by moving the (short) headers backwards into the
// headroom every port leaves in front of a frame, never the payload.
package engine
