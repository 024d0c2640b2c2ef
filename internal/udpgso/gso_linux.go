package udpgso

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Available: Linux has UDP_SEGMENT.
const Available = true

// Space is the room one UDP_SEGMENT control message takes.
var Space = unix.CmsgSpace(2)

var zero [64]byte

// Append appends a UDP_SEGMENT control message (segments of size octets;
// the last may be shorter) to b.
func Append(b []byte, size int) []byte {
	n := len(b)
	b = append(b, zero[:Space]...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[n]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[n+unix.CmsgLen(0):], uint16(size))
	return b
}
