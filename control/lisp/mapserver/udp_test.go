package mapserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/internal/udpgso"
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

// burst is n datagrams of equal size to to, then a shorter one, then one
// to other: what a batch of one ETR's refreshes and a second ETR look like.
func burst(n int, to, other netip.AddrPort) []lisp.Datagram {
	var ds []lisp.Datagram
	for i := range n {
		ds = append(ds, lisp.Datagram{To: to, Data: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}})
	}
	ds = append(ds, lisp.Datagram{To: to, Data: []byte{0xee, 1}})
	return append(ds, lisp.Datagram{To: other, Data: []byte{0xdd, 1, 2, 3, 4, 5, 6, 7}})
}

func readAll(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	for range n {
		b, _ := recv(t, c)
		got = append(got, b)
	}
	return got
}

// TestReplyWriterGSO: a run of replies to one destination goes as one
// segmented message (fewer messages than datagrams) and arrives as the
// datagrams it was, in order, each intact.
func TestReplyWriterGSO(t *testing.T) {
	for _, lo := range []string{"127.0.0.1", "[::1]"} {
		t.Run(lo, func(t *testing.T) {
			srv, a, b := listen(t, lo+":0"), listen(t, lo+":0"), listen(t, lo+":0")
			var bc batchConn = ipv4.NewPacketConn(srv)
			if localAP(srv).Addr().Is6() {
				bc = ipv6.NewPacketConn(srv)
			}
			w := replyWriter{bc: bc, gso: udpgso.Available}
			ds := burst(100, localAP(a), localAP(b))
			w.send(ds)
			if udpgso.Available && w.gso && len(w.msgs) >= len(ds) {
				t.Fatalf("%d datagrams in %d messages: not grouped", len(ds), len(w.msgs))
			}
			got := readAll(t, a, 101)
			for i, g := range got {
				if !bytes.Equal(g, ds[i].Data) {
					t.Fatalf("datagram %d: %x, want %x", i, g, ds[i].Data)
				}
			}
			if g := readAll(t, b, 1); !bytes.Equal(g[0], ds[101].Data) {
				t.Fatalf("the other destination got %x", g[0])
			}
			t.Logf("gso %v: %d datagrams in %d messages", w.gso, len(ds), len(w.msgs))
		})
	}
}

// refusingConn refuses segmented messages as a kernel without UDP GSO (or
// a route without checksum offload) does, and records the rest.
type refusingConn struct{ sent [][]byte }

func (c *refusingConn) ReadBatch([]ipv4.Message, int) (int, error) { return 0, errors.New("unused") }
func (c *refusingConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	for i, m := range ms {
		if len(m.OOB) > 0 {
			if i == 0 {
				return 0, syscall.EIO
			}
			return i, nil
		}
		c.sent = append(c.sent, m.Buffers[0])
	}
	return len(ms), nil
}

// TestReplyWriterGSORefused: refused, GSO is turned off and every datagram
// still goes, once, in order.
func TestReplyWriterGSORefused(t *testing.T) {
	c := &refusingConn{}
	w := replyWriter{bc: c, gso: true}
	to, other := netip.MustParseAddrPort("192.0.2.1:4342"), netip.MustParseAddrPort("192.0.2.2:4342")
	first := []lisp.Datagram{{To: other, Data: []byte{0xaa}}}
	ds := append(first, burst(10, to, other)...)
	w.send(ds)
	if w.gso {
		t.Fatal("GSO still on after a refusal")
	}
	if len(c.sent) != len(ds) {
		t.Fatalf("%d datagrams sent, want %d", len(c.sent), len(ds))
	}
	for i := range ds {
		if !bytes.Equal(c.sent[i], ds[i].Data) {
			t.Fatalf("datagram %d: %x, want %x", i, c.sent[i], ds[i].Data)
		}
	}
}
