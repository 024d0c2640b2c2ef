// Package header holds zero-copy views of the packet headers psavd reads and
// writes (Ethernet, IPv4, IPv6, UDP, TCP, ICMP), the Internet checksum and
// builders of whole packets for tests and the control plane.
//
// A view is the header's bytes themselves: IPv4(b) costs nothing, its
// accessors decode on demand and its setters write in place. Views do not
// check lengths; the caller makes a view only of as many octets as the
// header has (the engine's parser checks them before it makes one). Every
// accessor is small enough to be inlined: the engine's hot path uses them
// per packet.
//
// There is one Internet checksum here (RFC 1071, [Checksum]), with the
// pseudo-headers of UDP, TCP and ICMPv6 over IPv4 and IPv6
// ([PseudoHeaderChecksum], [IPv4.PseudoHeaderChecksum],
// [IPv6.PseudoHeaderChecksum]), and one incremental update (RFC 1624,
// [ChecksumUpdate]). Nothing else in the module computes a checksum.
//
// The builders (AppendIPv4, AppendIPv6, AppendUDP, AppendTCP,
// AppendICMPEcho, AppendEthernet) append a packet with its lengths and
// checksums filled in to a slice. They are for packets the caller composes
// — test frames, forged lab traffic, the inner header of a LISP
// Encapsulated Control Message — not for the data path, and they panic on
// inconsistent fields (an IPv6 source for an IPv4 header, options that are
// not a multiple of four octets, a packet longer than 65535 octets): their
// input is the caller's, never wire data.
//
// The package knows nothing of PSAV: the tag option (docs/wire.md §2.3) is
// the engine's (engine/tag.go) and, independently, internal/psavref's.
package header
