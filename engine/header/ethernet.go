package header

import (
	"encoding/binary"
	"net"
)

// Ethernet is a view of an Ethernet II header (no VLAN tag).
type Ethernet []byte

// EthernetHeaderLen is the length of an Ethernet II header.
const EthernetHeaderLen = 14

// EtherTypes.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86DD
	EtherTypeARP  = 0x0806
)

// Destination is the destination MAC address.
func (e Ethernet) Destination() [6]byte { return [6]byte(e[0:6]) }

// Source is the source MAC address.
func (e Ethernet) Source() [6]byte { return [6]byte(e[6:12]) }

// Type is the EtherType.
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetDestination sets the destination MAC address.
func (e Ethernet) SetDestination(a [6]byte) { copy(e[0:6], a[:]) }

// SetSource sets the source MAC address.
func (e Ethernet) SetSource(a [6]byte) { copy(e[6:12], a[:]) }

// SetType sets the EtherType.
func (e Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(e[12:14], t) }

// AppendEthernet appends an Ethernet frame from src to dst carrying the IP
// packet ip; the EtherType follows the packet's version (IPv6 for 6, IPv4
// otherwise). MAC addresses shorter than 6 octets are padded with zeros.
func AppendEthernet(b []byte, dst, src net.HardwareAddr, ip []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, EthernetHeaderLen)...)
	copy(b[start:start+6], dst)
	copy(b[start+6:start+12], src)
	t := uint16(EtherTypeIPv4)
	if len(ip) > 0 && ip[0]>>4 == 6 {
		t = EtherTypeIPv6
	}
	Ethernet(b[start:]).SetType(t)
	return append(b, ip...)
}
