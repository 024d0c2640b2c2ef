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
	var out []ipv4.Message
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
				out = append(out, ipv4.Message{Buffers: [][]byte{o.Data}, Addr: net.UDPAddrFromAddrPort(o.To)})
			}
		}
		for sent := 0; sent < len(out); {
			k, err := bc.WriteBatch(out[sent:], 0)
			if err != nil || k == 0 {
				break // a send error drops the rest of this batch, as a lost datagram would
			}
			sent += k
		}
	}
}

// batchSize is how many datagrams one ReadBatch/WriteBatch moves at most.
const batchSize = 32

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}
