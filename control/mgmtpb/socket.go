package mgmtpb

// DefaultSocket is the local management socket of a node when [control]
// socket is not given, where psavctl looks by default (docs/wire.md §4.2).
const DefaultSocket = "/run/psavd/psavd.sock"
