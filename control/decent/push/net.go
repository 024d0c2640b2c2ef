package push

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/control/lisp"
)

// Sockets are a push node's two UDP sockets: Control on the LISP
// control port (unicast and, with multicast, the joined group G) and Data
// on the LISP data port (encapsulated Map-Registers). Open them with
// Listen; a socket opened inside a network namespace stays in it.
type Sockets struct {
	Control *net.UDPConn
	Data    *net.UDPConn
}

// Close closes both sockets.
func (s *Sockets) Close() error {
	return errors.Join(s.Control.Close(), s.Data.Close())
}

// Listen opens the sockets for cfg (validated first): both bound to
// the wildcard address of G's family (a multicast datagram to G is only
// delivered to a socket bound to the wildcard or to G); with multicast, G
// is joined on cfg.Interface, which is also where multicast is sent, with
// hop limit MulticastTTL, loopback off (a node hands its own Map-Registers
// to its Map-Server directly) and, for IPv4, the RLOC as source address
// (IPv6 takes the kernel's source selection: the RLOC should be the
// interface's global address).
func Listen(cfg Config) (*Sockets, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	network, wild := "udp4", netip.IPv4Unspecified()
	if cfg.Group.Is6() {
		network, wild = "udp6", netip.IPv6Unspecified()
	}
	ctl, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(wild, cfg.ControlPort)))
	if err != nil {
		return nil, fmt.Errorf("decent push: control socket: %w", err)
	}
	data, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(wild, cfg.DataPort)))
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("decent push: data socket: %w", err)
	}
	s := &Sockets{Control: ctl, Data: data}
	if cfg.Transport == TransportMulticast {
		if err := joinGroup(ctl, cfg); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// joinGroup joins G on cfg.Interface and sets the multicast send options.
func joinGroup(c *net.UDPConn, cfg Config) error {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("decent push: interface: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if cfg.Group.Is4() {
			m := &unix.IPMreqn{Multiaddr: cfg.Group.As4(), Ifindex: int32(ifi.Index)}
			serr = errors.Join(
				unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, m),
				// The RLOC as source address: every member then records
				// the same ETR address as the sender records for itself.
				unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_MULTICAST_IF,
					&unix.IPMreqn{Address: cfg.RLOC.As4(), Ifindex: int32(ifi.Index)}),
				unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, cfg.MulticastTTL),
				unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0))
			return
		}
		m := &unix.IPv6Mreq{Multiaddr: cfg.Group.As16(), Interface: uint32(ifi.Index)}
		serr = errors.Join(
			unix.SetsockoptIPv6Mreq(s, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, m),
			unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index),
			unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, cfg.MulticastTTL),
			unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0))
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("decent push: join %v on %s: %w", cfg.Group, cfg.Interface, err)
	}
	return nil
}

// Run drives the node from its sockets until ctx is done (then it returns
// nil) or a socket fails. The sockets are not closed.
func (n *Node) Run(ctx context.Context, s *Sockets) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	send := func(out []lisp.Datagram) {
		for _, o := range out {
			c := s.Control
			if o.Encapsulated {
				c = s.Data
			}
			_, _ = c.WriteToUDPAddrPort(o.Data, o.To)
		}
	}
	errc := make(chan error, 2)
	read := func(c *net.UDPConn, handle func([]byte, netip.AddrPort, time.Time) []lisp.Datagram) {
		buf := make([]byte, 65536)
		for {
			k, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					errc <- nil
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				errc <- err
				return
			}
			send(handle(buf[:k], from, n.cfg.Now()))
		}
	}
	go read(s.Control, n.HandleControl)
	go read(s.Data, n.HandleData)
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	send(n.Tick(n.cfg.Now()))
	for {
		select {
		case <-ctx.Done():
			_ = s.Control.SetReadDeadline(time.Now())
			_ = s.Data.SetReadDeadline(time.Now())
			<-errc
			<-errc
			return nil
		case err := <-errc:
			cancel()
			_ = s.Control.SetReadDeadline(time.Now())
			_ = s.Data.SetReadDeadline(time.Now())
			<-errc
			return err
		case <-t.C:
			send(n.Tick(n.cfg.Now()))
		}
	}
}

// LookupGroup asks the Map-Resolver at server for group G, as an external
// xTR would: an ECM Map-Request for (0/0, G) with itr as ITR-RLOC (the
// Map-Reply comes to itr's address at conn's port), resent every 500 ms
// until the answer arrives or ctx ends. It returns G's RLE (nil for a
// negative answer).
func LookupGroup(ctx context.Context, conn *net.UDPConn, server netip.AddrPort, itr netip.Addr, g netip.Addr) ([]netip.Addr, error) {
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := binary.BigEndian.Uint64(nb[:])
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	req, err := groupMapRequest(nonce, g, netip.AddrPortFrom(itr, local.Port()))
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	for {
		if _, err := conn.WriteToUDPAddrPort(req, server); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		for {
			k, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, err
			}
			rep, err := lisp.ParseMapReply(buf[:k])
			if err != nil || rep.Nonce != nonce || len(rep.Records) != 1 {
				continue
			}
			if got, ok := groupOfEID(rep.Records[0].EID); !ok || got != g {
				continue
			}
			rle, ok := rleOf(&rep.Records[0])
			if !ok && len(rep.Records[0].Locators) > 0 {
				return nil, fmt.Errorf("decent: Map-Reply for %v has a locator that is not an RLE", g)
			}
			_ = conn.SetReadDeadline(time.Time{})
			return rle, nil
		}
		if ctx.Err() != nil {
			_ = conn.SetReadDeadline(time.Time{})
			return nil, ctx.Err()
		}
	}
}
