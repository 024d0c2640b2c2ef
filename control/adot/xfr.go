package adot

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone transfers over TLS (RFC 9103, XoT) and NOTIFY (RFC 1996): the
// server hands its zone to configured secondaries (BIND, Knot) so that the
// mapping zone can be served by ordinary authoritative servers too.
//
//   - AXFR and IXFR are answered only on the TLS connection (the server has
//     no clear-text listener at all) and only to a client whose address is
//     in ServerConfig.TransferFrom and, with TransferCAs, that presented a
//     client certificate those CAs verify; everyone else gets REFUSED.
//     RFC 9103 §7.1 also wants ALPN "dot" for XoT: a connection that did
//     not negotiate it is refused too.
//   - IXFR is answered with the whole zone, AXFR-style (RFC 1995 §4 allows
//     this when no history is kept), or with the SOA alone when the
//     secondary already has the current serial.
//   - Every zone change (SetZone) sends NOTIFY over UDP to each of
//     ServerConfig.Notify, retried until answered (NotifyAttempts, timeout
//     doubling from NotifyTimeout); RunNotify does this.

// Defaults of the NOTIFY retries.
const (
	DefaultNotifyAttempts = 5
	DefaultNotifyTimeout  = time.Second
	// xfrChunk bounds the (uncompressed) record octets per transfer
	// message, well below the 64 KiB a TCP DNS message can carry.
	xfrChunk = 16 << 10
)

// peer is what the server knows of the client of one connection.
type peer struct {
	ip    netip.Addr
	state tls.ConnectionState
}

// transferAllowed reports whether p may transfer the zone.
func (s *Server) transferAllowed(p *peer) bool {
	if p == nil || len(s.cfg.TransferFrom) == 0 || p.state.NegotiatedProtocol != "dot" {
		return false
	}
	allowed := false
	for _, pf := range s.cfg.TransferFrom {
		if pf.Contains(p.ip) {
			allowed = true
			break
		}
	}
	if !allowed {
		return false
	}
	// With TransferCAs the handshake verified any certificate given
	// (tls.VerifyClientCertIfGiven); a transfer needs one.
	return s.cfg.TransferCAs == nil || len(p.state.VerifiedChains) > 0
}

// transfer answers an AXFR or IXFR query q from p: the messages to write,
// in order.
func (s *Server) transfer(q *dns.Msg, p *peer) []*dns.Msg {
	z := s.zone.Load()
	qs := q.Question[0]
	refuse := func() []*dns.Msg {
		r := new(dns.Msg)
		r.SetRcode(q, dns.RcodeRefused)
		r.RecursionAvailable = false
		s.metrics.TransfersRefused.Add(1)
		return []*dns.Msg{r}
	}
	if qs.Qclass != dns.ClassINET || dns.CanonicalName(qs.Name) != z.Origin() || !s.transferAllowed(p) {
		return refuse()
	}
	reply := func() *dns.Msg {
		r := new(dns.Msg)
		r.SetReply(q)
		r.Authoritative = true
		r.RecursionAvailable = false
		if q.IsEdns0() != nil {
			r.SetEdns0(1232, false)
		}
		return r
	}
	if qs.Qtype == dns.TypeIXFR {
		s.metrics.Transfers[xfrIXFR].Add(1)
		// RFC 1995 §2: the client's SOA is in the authority section; a
		// client that is current gets our SOA alone.
		for _, rr := range q.Ns {
			if soa, ok := rr.(*dns.SOA); ok && !serialLess(soa.Serial, z.Serial()) {
				r := reply()
				r.Answer = []dns.RR{z.soa}
				return []*dns.Msg{r}
			}
		}
	} else {
		s.metrics.Transfers[xfrAXFR].Add(1)
	}
	// SOA, records, SOA (RFC 5936 §2.2), split into messages; the
	// question only in the first (§2.2.1 allows it to be left out of the
	// others).
	rrs := append(z.Records(), z.soa)
	var out []*dns.Msg
	r, size := reply(), 0
	for _, rr := range rrs {
		l := dns.Len(rr)
		if size > 0 && size+l > xfrChunk {
			out = append(out, r)
			r, size = reply(), 0
			r.Question = nil
		}
		r.Answer = append(r.Answer, rr)
		size += l
	}
	return append(out, r)
}

// serialLess is RFC 1982 serial-number comparison: a < b.
func serialLess(a, b uint32) bool {
	return a != b && (a < b && b-a < 1<<31 || a > b && a-b > 1<<31)
}

// Transfer kinds (Metrics.Transfers).
const (
	xfrAXFR = iota
	xfrIXFR
)

// stamp gives z the serial to serve after prev: for a made-up SOA the
// larger of the clock (Unix seconds, so that a restarted server does not
// go back below what its secondaries hold) and z's; in every case above
// prev's, so that each change reaches the secondaries.
func stamp(z, prev *Zone, now time.Time) *Zone {
	serial := z.Serial()
	if z.synthSOA {
		if t := uint32(now.Unix()); serialLess(serial, t) {
			serial = t
		}
	}
	if prev != nil && !serialLess(prev.Serial(), serial) {
		serial = prev.Serial() + 1
	}
	if serial == z.Serial() {
		return z
	}
	return z.WithSerial(serial)
}

// RunNotify sends NOTIFY (RFC 1996) for the zone to every
// ServerConfig.Notify target: once the server accepts connections (a
// secondary may hold an older zone than the one this server starts with;
// told earlier it would find nobody to transfer from and back off for its
// retry interval) and after every SetZone, until ctx ends. Without
// targets it just waits.
func (s *Server) RunNotify(ctx context.Context) error {
	if len(s.cfg.Notify) == 0 {
		<-ctx.Done()
		return nil
	}
	select {
	case <-s.serving:
	case <-ctx.Done():
		return nil
	}
	for {
		z := s.zone.Load()
		var wg sync.WaitGroup
		for _, to := range s.cfg.Notify {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.notify(ctx, z, to)
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// notify sends one NOTIFY for z to to, retrying with a doubling timeout
// until it is answered or NotifyAttempts have gone unanswered. A newer
// zone does not interrupt it: the next round announces that one.
func (s *Server) notify(ctx context.Context, z *Zone, to netip.AddrPort) {
	m := new(dns.Msg)
	m.SetNotify(z.Origin())
	m.Authoritative = true
	m.Answer = []dns.RR{z.soa} // RFC 1996 §3.7: the new SOA, a hint
	wire, err := m.Pack()
	if err != nil {
		return
	}
	var laddr *net.UDPAddr // from the listen address when it is specific: secondaries accept NOTIFY from their primary's address
	if ap, err := netip.ParseAddrPort(s.cfg.Addr); err == nil && !ap.Addr().IsUnspecified() && ap.Addr().Is4() == to.Addr().Unmap().Is4() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), 0))
	}
	timeout := s.cfg.NotifyTimeout
	for attempt := 0; attempt < s.cfg.NotifyAttempts; attempt++ {
		if ctx.Err() != nil {
			return
		}
		if attempt > 0 {
			s.metrics.NotifyRetries.Add(1)
		}
		if s.notifyOnce(ctx, laddr, to, wire, m.Id, timeout) {
			s.metrics.NotifyAcked.Add(1)
			return
		}
		timeout *= 2
	}
	s.metrics.NotifyFailed.Add(1)
}

// notifyOnce sends the NOTIFY and waits up to timeout for its answer
// (same ID, opcode NOTIFY, QR; any RCODE: a secondary that refuses has
// answered, resending will not change its mind).
func (s *Server) notifyOnce(ctx context.Context, laddr *net.UDPAddr, to netip.AddrPort, wire []byte, id uint16, timeout time.Duration) bool {
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return false
		}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	s.metrics.NotifySent.Add(1)
	if _, err := c.Write(wire); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false
			}
			if ctx.Err() != nil {
				return false
			}
			continue // e.g. ICMP port unreachable surfacing as ECONNREFUSED: wait for the deadline
		}
		r := new(dns.Msg)
		if r.Unpack(buf[:n]) == nil && r.Id == id && r.Response && r.Opcode == dns.OpcodeNotify {
			return true
		}
	}
}
