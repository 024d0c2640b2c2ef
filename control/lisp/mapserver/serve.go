package mapserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

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
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
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
		for _, o := range handle(buf[:n], from, now()) {
			_, _ = conn.WriteToUDPAddrPort(o.Data, o.To)
		}
	}
}
