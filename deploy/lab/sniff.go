package lab

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
)

// Captured is one frame seen by a Sniffer.
type Captured struct {
	Frame    []byte
	Outgoing bool // sent by this namespace (PACKET_OUTGOING), not received
	At       time.Time
}

// Sniffer captures every frame on one interface of one namespace with an
// AF_PACKET socket. It is how the lab tells "delivered" from "dropped": a
// frame that reaches the destination's interface was delivered, whatever the
// application did with it.
type Sniffer struct {
	fd      int
	ifindex int
	closed  atomic.Bool
	done    chan struct{}

	mu     sync.Mutex
	frames []Captured
	notify chan struct{} // closed and replaced on every new frame
}

// maxCaptured bounds a sniffer's memory; the lab's runs stay far below it.
const maxCaptured = 200000

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Sniff starts capturing on interface iface of namespace ns.
func Sniff(ns, iface string) (*Sniffer, error) {
	s := &Sniffer{fd: -1, done: make(chan struct{}), notify: make(chan struct{})}
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		s.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind AF_PACKET to %s: %w", iface, err)
		}
		// A burst must not overflow the socket while the reader is busy.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		// The timeout lets the reader notice Close without another thread
		// closing the descriptor under a blocked recvfrom.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, fmt.Errorf("sniffer on %s/%s: %w", ns, iface, err)
	}
	go s.loop()
	return s, nil
}

func (s *Sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 1<<16)
	for !s.closed.Load() {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // timeout (EAGAIN) or EINTR: look at closed again
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		// Frames of other interfaces may arrive between socket() and bind().
		if !ok || ll.Ifindex != s.ifindex {
			continue
		}
		c := Captured{Frame: append([]byte(nil), buf[:n]...), Outgoing: ll.Pkttype == unix.PACKET_OUTGOING, At: time.Now()}
		s.mu.Lock()
		if len(s.frames) < maxCaptured {
			s.frames = append(s.frames, c)
		}
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
	}
}

// Frames returns the frames captured so far (shared, do not modify).
func (s *Sniffer) Frames() []Captured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames[:len(s.frames):len(s.frames)]
}

// Wait calls cond with the captured frames whenever a new one arrives, until
// cond returns true (Wait returns true) or timeout or ctx ends (false).
func (s *Sniffer) Wait(ctx context.Context, timeout time.Duration, cond func([]Captured) bool) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		frames, notify := s.frames[:len(s.frames):len(s.frames)], s.notify
		s.mu.Unlock()
		if cond(frames) {
			return true
		}
		select {
		case <-notify:
		case <-t.C:
			return cond(s.Frames())
		case <-ctx.Done():
			return false
		}
	}
}

// Close stops the capture.
func (s *Sniffer) Close() {
	if s.closed.Swap(true) {
		return
	}
	<-s.done
	unix.Close(s.fd)
}

// RawSocket sends whole Ethernet frames out of one interface of one
// namespace (AF_PACKET): the way to put forged packets on a wire, bypassing
// the kernel's routing, source checks and checksum offload.
type RawSocket struct {
	fd      int
	ifindex int
	MAC     net.HardwareAddr // the interface's own address
}

// OpenRaw opens a raw sending socket on interface iface of namespace ns.
func OpenRaw(ns, iface string) (*RawSocket, error) {
	r := &RawSocket{fd: -1}
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		r.ifindex, r.MAC = ifi.Index, ifi.HardwareAddr
		// Protocol 0: this socket only sends, it receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		r.fd = fd
		return nil
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		return nil, fmt.Errorf("raw socket on %s/%s: %w", ns, iface, err)
	}
	return r, nil
}

// Send transmits one frame as it is.
//
// A veth refuses a frame (ENOBUFS) when the receiving CPU's backlog is full,
// which heavy traffic anywhere on the machine (other namespaces included)
// can cause. The frame then never left the sender, so it is offered again
// rather than counted as lost by the network under test.
func (r *RawSocket) Send(frame []byte) error {
	sa := &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], frame[:6])
	var err error
	for try := 0; try < 100; try++ {
		err = unix.Sendto(r.fd, frame, 0, sa)
		if err != unix.ENOBUFS && err != unix.EAGAIN {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return err
}

// Close closes the socket.
func (r *RawSocket) Close() error { return unix.Close(r.fd) }
