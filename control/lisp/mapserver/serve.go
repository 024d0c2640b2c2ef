package mapserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/internal/udpgso"
)

// Serve reads datagrams from conn, passes them to Handle and sends the
// replies, and runs Tick every Config.TickInterval, until ctx is done (it
// then returns nil) or reading fails. conn is not closed.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn) error {
	return ServeUDP(ctx, conn, s.Handle, s.Tick, s.cfg.TickInterval, s.cfg.Now)
}

// ServeUDP is the socket loop of a Map-Server, shared by Server.Serve and
// wrappers around Handle (such as LISP-Decent's ownership guard): datagrams
// from conn go to handle, its replies are sent, and tick runs every
// interval, until ctx is done (then it returns nil) or reading fails. conn
// is not closed.
func ServeUDP(ctx context.Context, conn *net.UDPConn, handle func(pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram,
	tick func(now time.Time) []lisp.Datagram, interval time.Duration, now func() time.Time) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = conn.SetReadDeadline(time.Now()) // unblock the reader
				return
			case <-done:
				return
			case <-t.C:
				for _, o := range tick(now()) {
					_, _ = conn.WriteToUDPAddrPort(o.Data, o.To)
				}
			}
		}
	}()
	// Batched socket I/O (recvmmsg/sendmmsg): one system call for up to
	// batchSize datagrams each way instead of one per datagram.
	// Writes are batched only on a socket bound to a specific address:
	// x/net encodes an IPv4 destination as AF_INET, which a dual-stack
	// (wildcard, AF_INET6) socket refuses; there each reply goes by
	// WriteToUDPAddrPort (v4-mapped).
	var bc batchConn = ipv4.NewPacketConn(conn)
	batchWrites := false
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP != nil && !la.IP.IsUnspecified() {
		batchWrites = true
		if la.IP.To4() == nil {
			bc = ipv6.NewPacketConn(conn)
		}
	}
	in := make([]ipv4.Message, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	w := replyWriter{bc: bc, gso: udpgso.Available}
	var out []lisp.Datagram
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		t := now()
		out = out[:0]
		for _, m := range in[:n] {
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			for _, o := range handle(m.Buffers[0][:m.N], ua.AddrPort(), t) {
				if !batchWrites {
					_, _ = conn.WriteToUDPAddrPort(o.Data, o.To)
					continue
				}
				out = append(out, o)
			}
		}
		w.send(out)
	}
}

// replyWriter sends a batch's replies with sendmmsg. A run of replies to
// one destination that are all of one size (the last may be shorter) goes
// as one message with UDP segmentation offload (UDP_SEGMENT): the kernel
// takes it through the IP stack once and cuts it into the datagrams at the
// device (a real NIC) or at the receiving socket (loopback). That is what a
// refresh burst of one ETR — hundreds of Map-Registers, each answered by a
// Map-Notify of the same shape — costs the Map-Server: on loopback, sending
// was half of its CPU per Map-Register. Where the kernel or the route
// refuses it (EIO without checksum offload, EINVAL), GSO is turned off for
// the socket and the run is sent datagram by datagram.
type replyWriter struct {
	bc   batchConn
	gso  bool
	msgs []ipv4.Message
	// first[i] is the index of message i's first datagram in the batch.
	first []int
	oob   []byte
	bufs  [][]byte // the datagrams, in order; messages are slices of it
	// The destination of the previous message, reused while it does not
	// change (net.UDPAddrFromAddrPort allocates).
	lastTo   netip.AddrPort
	lastAddr *net.UDPAddr
}

const (
	// gsoMaxSegments is the kernel's limit on segments per message in its
	// oldest versions with UDP_SEGMENT (UDP_MAX_SEGMENTS, 64).
	gsoMaxSegments = 64
	// gsoMaxSegment keeps segments under any path MTU a Map-Server sends
	// on (a larger one is refused by the kernel, which would turn GSO off).
	gsoMaxSegment = 1200
	gsoMaxBytes   = 60000
)

func (w *replyWriter) addr(to netip.AddrPort) *net.UDPAddr {
	if w.lastAddr == nil || to != w.lastTo {
		w.lastTo, w.lastAddr = to, net.UDPAddrFromAddrPort(to)
	}
	return w.lastAddr
}

// build makes the messages for ds, grouped when gso is on.
func (w *replyWriter) build(ds []lisp.Datagram) {
	w.msgs, w.first, w.oob, w.bufs = w.msgs[:0], w.first[:0], w.oob[:0], w.bufs[:0]
	for _, d := range ds {
		w.bufs = append(w.bufs, d.Data)
	}
	var oobAt []int
	for i := 0; i < len(ds); {
		j := i + 1
		size := len(ds[i].Data)
		if w.gso && size <= gsoMaxSegment {
			total := size
			for j < len(ds) && j-i < gsoMaxSegments && ds[j].To == ds[i].To && len(ds[j].Data) <= size && total+len(ds[j].Data) <= gsoMaxBytes {
				total += len(ds[j].Data)
				j++
				if len(ds[j-1].Data) < size {
					break // a shorter datagram ends the run
				}
			}
		}
		w.msgs = append(w.msgs, ipv4.Message{Buffers: w.bufs[i:j:j], Addr: w.addr(ds[i].To)})
		w.first = append(w.first, i)
		if j-i > 1 {
			oobAt = append(oobAt, len(w.msgs)-1, len(w.oob))
			w.oob = udpgso.Append(w.oob, size)
		}
		i = j
	}
	// The control messages are attached once w.oob no longer moves.
	for k := 0; k < len(oobAt); k += 2 {
		w.msgs[oobAt[k]].OOB = w.oob[oobAt[k+1] : oobAt[k+1]+udpgso.Space]
	}
}

// send sends ds; a send error drops the rest of the batch, as a lost
// datagram would (after the GSO fallback above).
func (w *replyWriter) send(ds []lisp.Datagram) {
	w.build(ds)
	for sent := 0; sent < len(w.msgs); {
		k, err := w.bc.WriteBatch(w.msgs[sent:], 0)
		if err == nil && k > 0 {
			sent += k
			continue
		}
		if !w.gso || len(w.msgs[sent].Buffers) < 2 {
			return
		}
		// The kernel refused a segmented message: send the rest one
		// datagram per message, now and from now on.
		w.gso = false
		w.build(ds[w.first[sent]:])
		sent = 0
	}
}

// batchSize is how many datagrams one ReadBatch/WriteBatch moves at most.
const batchSize = 32

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}
