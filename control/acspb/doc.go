// Package acspb is the Go code generated from acs.proto, the wire schema of
// the PSAV control plane (docs/wire.md §3.1): the ACS gRPC service (Peer
// between the AS Control Servers of the alliance, Feed from an ACS to the
// ABRs of its AS, Status for psavctl) and its messages. It exists so that
// control/acs, control/abr and psavctl share one definition of what is sent.
//
// Do not edit the .pb.go files: change acs.proto and run `make proto`. The
// schema is versioned by its package name (psavd.acs.v1): an incompatible
// change is a new package, never a reuse of field numbers.
package acspb
