package lisp

import "net/netip"

// Datagram is a LISP datagram a control-plane component (Map-Server,
// Map-Resolver, xTR, LISP-Decent push node) wants sent over UDP: Data to
// To. Components return Datagrams rather than writing to sockets
// themselves, so that they can be driven and checked without a network.
//
// A control message (Encapsulated false) is sent from the control socket,
// UDP 4342. Encapsulated marks a LISP-encapsulated packet (the RFC 9300
// data-plane header in front of an inner IP/UDP packet), sent from
// the data socket, UDP 4341; only the push node sends those.
type Datagram struct {
	To           netip.AddrPort
	Data         []byte
	Encapsulated bool
}
