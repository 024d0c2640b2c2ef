package header

import (
	"encoding/binary"
	"net/netip"
)

// TCP is a view of a TCP header (RFC 9293).
type TCP []byte

// TCPMinHeaderLen is the length of a TCP header without options.
const TCPMinHeaderLen = 20

// TCP flags.
const (
	TCPFlagFin = 0x01
	TCPFlagSyn = 0x02
	TCPFlagRst = 0x04
	TCPFlagPsh = 0x08
	TCPFlagAck = 0x10
	TCPFlagUrg = 0x20
)

// SourcePort is the source port.
func (t TCP) SourcePort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DestinationPort is the destination port.
func (t TCP) DestinationPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq is the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack is the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// HeaderLen is the data offset in octets.
func (t TCP) HeaderLen() int { return int(t[12]>>4) * 4 }

// Flags are the flag bits.
func (t TCP) Flags() uint8 { return t[13] }

// Window is the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// Checksum is the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// SetChecksum sets the checksum field.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:18], c) }

// TCPFields are the fields of a TCP header to build (no options).
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
}

// AppendTCP appends a TCP segment (no options) from src to dst carrying
// data, with its checksum (over the pseudo-header of src and dst) filled in.
func AppendTCP(b []byte, src, dst netip.Addr, f TCPFields, data []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, TCPMinHeaderLen)...)
	b = append(b, data...)
	t := TCP(b[start:])
	binary.BigEndian.PutUint16(t[0:2], f.SrcPort)
	binary.BigEndian.PutUint16(t[2:4], f.DstPort)
	binary.BigEndian.PutUint32(t[4:8], f.Seq)
	binary.BigEndian.PutUint32(t[8:12], f.Ack)
	t[12] = TCPMinHeaderLen / 4 << 4
	t[13] = f.Flags
	binary.BigEndian.PutUint16(t[14:16], f.Window)
	t.SetChecksum(transportChecksum(ProtoTCP, src, dst, t))
	return b
}
