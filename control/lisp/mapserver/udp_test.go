package mapserver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

func listen(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("loopback %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localAP(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startServer runs Serve on a loopback socket and returns its address.
// Forwarded ECMs go to controlPort.
func startServer(t testing.TB, lo string, controlPort uint16, mod func(*Config)) (*Server, netip.AddrPort) {
	t.Helper()
	s := newServer(t, func(c *Config) {
		c.ControlPort = controlPort
		c.TickInterval = 10 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	})
	conn := listen(t, lo+":0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, localAP(conn)
}

func recv(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

func TestServeLoopback(t *testing.T) {
	for _, lo := range []string{"127.0.0.1", "[::1]"} {
		t.Run(lo, func(t *testing.T) {
			etr := listen(t, lo+":0")
			itrc := listen(t, lo+":0")
			sites := testSites()
			sites[0].NotifyAck = true
			s, ms := startServer(t, lo, localAP(etr).Port(), func(c *Config) {
				c.Sites = sites
				c.NotifyRetryInterval = 50 * time.Millisecond
			})
			rloc := localAP(etr).Addr().String()

			// Register 10.1.1.0/24 with P and M, and 10.1.2.0/24 without P.
			reg := regA(t, 1, regOpt{proxy: true, notify: true}, rec(pfx("10.1.1.0/24"), nil, rloc))
			etr.WriteToUDPAddrPort(reg, ms)
			b, from := recv(t, etr)
			if from != ms {
				t.Fatalf("Map-Notify from %v", from)
			}
			n, err := lisp.ParseMapNotify(b)
			if err != nil || n.Nonce != 1 {
				t.Fatalf("Map-Notify: %v %+v", err, n)
			}
			// Not acknowledged yet: it comes again; then ack it.
			if b2, _ := recv(t, etr); string(b2) != string(b) {
				t.Fatal("retransmission differs")
			}
			ack, _ := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: keyA}.Marshal(&lisp.MapNotifyAck{Nonce: 1, Records: n.Records})
			etr.WriteToUDPAddrPort(ack, ms)
			deadline := time.Now().Add(5 * time.Second)
			for s.Stats().NotifyAcks != 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if s.Stats().NotifyAcks != 1 {
				t.Fatal("ack not counted")
			}
			etr.WriteToUDPAddrPort(regA(t, 2, regOpt{}, rec(pfx("10.1.2.0/24"), nil, rloc)), ms)

			ask := func(ip string, nonce uint64) {
				a := netip.MustParseAddr(ip)
				itrc.WriteToUDPAddrPort(ecmRequest(t, localAP(itrc), lisp.IPAddr(a), a, 32, nonce), ms)
			}
			ask("10.1.1.1", 11) // proxy
			b, _ = recv(t, itrc)
			r, err := lisp.ParseMapReply(b)
			if err != nil || r.Nonce != 11 || len(r.Records[0].Locators) != 1 {
				t.Fatalf("proxy reply: %v %+v", err, r)
			}
			// The registration without P may race the request: retry.
			for i := 0; ; i++ {
				ask("10.1.2.1", 12) // forwarded to the ETR
				etr.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				buf := make([]byte, 2048)
				k, _, err := etr.ReadFromUDPAddrPort(buf)
				if err == nil {
					e, err := lisp.ParseECM(buf[:k])
					if err != nil || e.Message.(*lisp.MapRequest).Nonce != 12 {
						t.Fatalf("forwarded: %v", err)
					}
					break
				}
				if i == 10 {
					t.Fatal("nothing forwarded")
				}
				itrc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				itrc.ReadFromUDPAddrPort(buf) // drain a negative reply
			}
			ask("10.9.9.9", 13) // negative
			b, _ = recv(t, itrc)
			if r, err = lisp.ParseMapReply(b); err != nil || r.Nonce != 13 || len(r.Records[0].Locators) != 0 || r.Records[0].Action != lisp.ActionNativelyForward {
				t.Fatalf("negative reply: %v %+v", err, r)
			}
		})
	}
}
