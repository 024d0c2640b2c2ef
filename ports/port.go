// Package ports defines the batch-shaped interface between the packet engine
// and the places frames come from and go to: AF_XDP sockets (ports/afxdp),
// memory (ports/mem) and capture files (ports/pcap).
//
// A Port is one (interface, queue): one AF_XDP socket, one poll loop. Frames
// stay in memory the port owns; the engine edits them in place, using the
// Headroom in front of each frame to insert headers without moving the
// payload. The contract is shaped after wireguard-go's conn.Bind: whole
// batches cross the interface, so there is one interface call and at most one
// system call per batch, never per packet.
package ports

import "time"

// Headroom is the number of writable bytes every port guarantees in front of
// a received frame (Packet.Off >= Headroom), so that the engine can grow the
// headers (a 16-octet PSAV tag, later a LISP outer header) in place by moving
// only the headers backwards.
const Headroom = 128

// MaxFrame is the largest frame (Ethernet header included, FCS excluded) a
// port must carry, plus the growth the engine may add.
const MaxFrame = 2048 - Headroom

// Packet is one frame of a batch. The frame is Buf[Off:Off+Len]; the bytes of
// Buf before Off and after Off+Len belong to the same buffer and may be used
// to grow the frame.
type Packet struct {
	Buf []byte
	Off int
	Len int
	// Out is the engine's verdict, read by the poll loop: the index of the
	// port (in the engine's port list) to transmit on, or Drop.
	Out int16
}

// Drop is the Packet.Out value of a packet that must not be forwarded.
const Drop int16 = -1

// Frame returns the frame's bytes.
func (p *Packet) Frame() []byte { return p.Buf[p.Off : p.Off+p.Len] }

// Batch is a fixed-capacity set of packets; it is allocated once per poll
// loop and reused for every receive.
type Batch struct {
	Pkts []Packet
}

// NewBatch returns a batch that holds up to size packets.
func NewBatch(size int) *Batch {
	return &Batch{Pkts: make([]Packet, 0, size)}
}

// Port is one queue of one interface.
//
// Receive and Release are called by the single poll loop that owns the port.
// Transmit may be called by other poll loops (those whose traffic leaves by
// this port); implementations serialise Transmit internally, once per batch.
type Port interface {
	// Name is the port's configured name.
	Name() string
	// Receive fills b.Pkts (from length 0 up to its capacity) with received
	// frames. When none is ready it waits at most timeout; it returns the
	// number of frames, possibly 0.
	Receive(b *Batch, timeout time.Duration) (int, error)
	// Release gives the frames of b back to the port once the poll loop is
	// done with them (transmitted elsewhere, or dropped), and empties b.
	Release(b *Batch)
	// Transmit sends the frames (copied into the port's own buffers where the
	// memory is not shared) and returns how many were accepted; frames not
	// accepted are counted by the caller as tx-full drops.
	Transmit(pkts []Packet) (int, error)
	// Close releases the port's resources.
	Close() error
}
