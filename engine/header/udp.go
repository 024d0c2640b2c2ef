package header

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// UDP is a view of a UDP header (RFC 768).
type UDP []byte

// UDPHeaderLen is the length of a UDP header.
const UDPHeaderLen = 8

// SourcePort is the source port.
func (u UDP) SourcePort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DestinationPort is the destination port.
func (u UDP) DestinationPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length is the Length field (header and data).
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[4:6])) }

// Checksum is the checksum field.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// SetSourcePort sets the source port.
func (u UDP) SetSourcePort(p uint16) { binary.BigEndian.PutUint16(u[0:2], p) }

// SetDestinationPort sets the destination port.
func (u UDP) SetDestinationPort(p uint16) { binary.BigEndian.PutUint16(u[2:4], p) }

// SetLength sets the Length field.
func (u UDP) SetLength(n int) { binary.BigEndian.PutUint16(u[4:6], uint16(n)) }

// SetChecksum sets the checksum field.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[6:8], c) }

// UDPChecksum returns the checksum field value for a datagram whose
// checksum field is zero, given the sum of its pseudo-header. A computed
// zero is sent as all ones (RFC 768, RFC 8200 §8.1): zero means "no
// checksum".
func UDPChecksum(datagram []byte, pseudo uint16) uint16 {
	c := ^Checksum(datagram, pseudo)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// AppendUDP appends a UDP datagram from src to dst carrying data, with its
// length and checksum (over the pseudo-header of src and dst) filled in.
func AppendUDP(b []byte, src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	n := UDPHeaderLen + len(data)
	if n > 0xffff {
		panic(fmt.Sprintf("header: UDP datagram of %d octets", n))
	}
	start := len(b)
	b = append(b, make([]byte, UDPHeaderLen)...)
	b = append(b, data...)
	u := UDP(b[start:])
	u.SetSourcePort(sport)
	u.SetDestinationPort(dport)
	u.SetLength(n)
	u.SetChecksum(UDPChecksum(u, PseudoHeaderChecksum(ProtoUDP, src, dst, n)))
	return b
}
