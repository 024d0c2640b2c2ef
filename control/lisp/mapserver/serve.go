package mapserver

import (
	"context"
	"errors"
	"net"
	"time"
)

// Serve reads datagrams from conn, passes them to Handle and sends the
// replies, and runs Tick every Config.TickInterval, until ctx is done (it
// then returns nil) or reading fails. conn is not closed.
func (s *Server) Serve(ctx context.Context, conn *net.UDPConn) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.cfg.TickInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = conn.SetReadDeadline(time.Now()) // unblock the reader
				return
			case <-done:
				return
			case <-t.C:
				for _, o := range s.Tick(s.cfg.Now()) {
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
		for _, o := range s.Handle(buf[:n], from, s.cfg.Now()) {
			_, _ = conn.WriteToUDPAddrPort(o.Data, o.To)
		}
	}
}
