package adot

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ServerConfig configures a DoT authoritative Server. Zero values take the
// documented defaults.
type ServerConfig struct {
	// Addr is the TLS listen address, "127.0.0.1:853". There is no
	// clear-text listener.
	Addr string
	// Certificates for the TLS server (required).
	Certificates []tls.Certificate
	// Zone served; replace at run time with SetZone. Required.
	Zone *Zone
	// AllowTLS12 lowers the minimum version to TLS 1.2 (default 1.3 only).
	AllowTLS12 bool

	MaxConns      int // total open connections; default 1024
	MaxConnsPerIP int // per client: IPv4 address or IPv6 /64; default 32
	// MaxHandshakesPerSecond bounds the rate of new connections (each one
	// a TLS handshake to pay for), with a burst of as many; the excess is
	// reset at accept. Default DefaultMaxHandshakes.
	MaxQueriesPerConn      int // then the server closes; default 10000
	MaxHandshakesPerSecond int
	IdleTimeout            time.Duration // between queries; default DefaultServerIdle (40 s); advertised by edns-tcp-keepalive
	HandshakeTimeout       time.Duration // default 5 s
	WriteTimeout           time.Duration // default 5 s
	// TicketRotation is the period after which a new session ticket key is
	// installed; the two previous keys keep decrypting. Default 1 h.
	TicketRotation time.Duration
	// Metrics receives counters; default a fresh Metrics.
	Metrics *Metrics

	// TransferFrom lists the secondaries allowed to transfer the zone
	// (AXFR, IXFR) over TLS, by source address (RFC 9103 XoT, xfr.go);
	// empty: transfers are refused.
	TransferFrom []netip.Prefix
	// TransferCAs, if set, also requires a transfer client to present a
	// certificate these CAs verify (mutual TLS). Other clients are asked
	// for one too but may send none.
	TransferCAs *x509.CertPool
	// Notify are the secondaries sent NOTIFY (RFC 1996, UDP) when the zone
	// changes; RunNotify sends them.
	Notify []netip.AddrPort
	// NotifyAttempts per change and target (default DefaultNotifyAttempts);
	// NotifyTimeout is the first attempt's wait for the answer, doubled at
	// each retry (default DefaultNotifyTimeout).
	NotifyAttempts int
	NotifyTimeout  time.Duration
}

// DefaultMaxHandshakes is the default of ServerConfig.MaxHandshakesPerSecond.
const DefaultMaxHandshakes = 200

// Server answers DNS queries over TLS for one zone.
type Server struct {
	cfg     ServerConfig
	metrics *Metrics
	tls     *tls.Config
	zone    atomic.Pointer[Zone]
	zoneMu  sync.Mutex    // serialises SetZone (serial stamping)
	changed chan struct{} // a new zone to NOTIFY about (RunNotify)
	serving chan struct{} // closed when Serve first accepts: NOTIFY waits for it
	once    sync.Once

	mu     sync.Mutex
	ln     net.Listener
	total  int
	perIP  map[netip.Addr]int
	conns  map[net.Conn]struct{}
	keys   [][32]byte
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// NewServer validates cfg. Call Start (or Serve) to accept connections.
func NewServer(cfg ServerConfig) (*Server, error) {
	if len(cfg.Certificates) == 0 {
		return nil, errors.New("adot: server needs a certificate")
	}
	if cfg.Zone == nil {
		return nil, errors.New("adot: server needs a zone")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 32
	}
	if cfg.MaxHandshakesPerSecond <= 0 {
		cfg.MaxHandshakesPerSecond = DefaultMaxHandshakes
	}
	if cfg.MaxQueriesPerConn <= 0 {
		cfg.MaxQueriesPerConn = 10000
	}
	for _, d := range []*time.Duration{&cfg.IdleTimeout, &cfg.HandshakeTimeout, &cfg.WriteTimeout} {
		if *d <= 0 {
			*d = DefaultServerIdle
			if d != &cfg.IdleTimeout {
				*d = 5 * time.Second
			}
		}
	}
	if cfg.TicketRotation <= 0 {
		cfg.TicketRotation = time.Hour
	}
	if cfg.Metrics == nil {
		cfg.Metrics = new(Metrics)
	}
	if cfg.NotifyAttempts <= 0 {
		cfg.NotifyAttempts = DefaultNotifyAttempts
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = DefaultNotifyTimeout
	}
	minV := uint16(tls.VersionTLS13)
	if cfg.AllowTLS12 {
		minV = tls.VersionTLS12
	}
	s := &Server{
		cfg:     cfg,
		metrics: cfg.Metrics,
		tls: &tls.Config{
			Certificates: cfg.Certificates,
			MinVersion:   minV,
			MaxVersion:   tls.VersionTLS13,
			NextProtos:   []string{"dot"},
		},
		perIP:   map[netip.Addr]int{},
		conns:   map[net.Conn]struct{}{},
		done:    make(chan struct{}),
		changed: make(chan struct{}, 1),
		serving: make(chan struct{}),
	}
	if cfg.TransferCAs != nil {
		s.tls.ClientCAs = cfg.TransferCAs
		s.tls.ClientAuth = tls.VerifyClientCertIfGiven
	}
	s.zone.Store(stamp(cfg.Zone, nil, time.Now()))
	s.metrics.Serial.Store(uint64(s.zone.Load().Serial()))
	s.RotateTicketKeys()
	return s, nil
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Zone returns the zone being served.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// SetZone atomically replaces the zone; queries in progress finish with the
// old one. It is a change: the SOA serial served is raised above the
// previous one if z's is not (a made-up SOA gets the clock's, see stamp),
// and the secondaries are sent NOTIFY (RunNotify).
func (s *Server) SetZone(z *Zone) {
	if z == nil {
		return
	}
	s.zoneMu.Lock()
	z = stamp(z, s.zone.Load(), time.Now())
	s.zone.Store(z)
	s.zoneMu.Unlock()
	s.metrics.Serial.Store(uint64(z.Serial()))
	select {
	case s.changed <- struct{}{}:
	default: // one pending round announces the newest zone
	}
}

// RotateTicketKeys installs a fresh session ticket key, keeping the two
// previous ones for decryption. It runs every TicketRotation by itself.
func (s *Server) RotateTicketKeys() {
	var k [32]byte
	_, _ = rand.Read(k[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append([][32]byte{k}, s.keys...)
	if len(s.keys) > 3 {
		s.keys = s.keys[:3]
	}
	s.tls.SetSessionTicketKeys(s.keys)
}

// Start listens on cfg.Addr and serves in the background; Addr is valid
// when it returns.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln = ln // Serve sets it again; set here so that Addr works at once
	s.mu.Unlock()
	go func() { _ = s.Serve(ln) }()
	return nil
}

// Addr returns the listening address once Start/Serve has been called.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve accepts TLS connections on ln (a TCP listener) until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.once.Do(func() { close(s.serving) })

	go func() {
		t := time.NewTicker(s.cfg.TicketRotation)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.RotateTicketKeys()
			case <-s.done:
				return
			}
		}
	}()

	backoff := 5 * time.Millisecond
	rate := float64(s.cfg.MaxHandshakesPerSecond)
	tokens, last := rate, time.Now() // token bucket of new connections
	for {
		raw, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			time.Sleep(backoff) // EMFILE and friends
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		now := time.Now()
		tokens = min(rate, tokens+now.Sub(last).Seconds()*rate)
		last = now
		limited := tokens < 1
		if !limited {
			tokens--
		}
		ip := clientKey(remoteIP(raw))
		if limited || !s.admit(raw, ip) {
			if limited {
				s.metrics.RateLimited.Add(1)
			}
			s.metrics.Rejected.Add(1)
			if tc, ok := raw.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST: no TIME_WAIT on our side under a flood
			}
			_ = raw.Close()
			continue
		}
		go s.handle(raw, ip)
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	return netip.Addr{}
}

// clientKey is what the per-client limit counts by: an IPv4 address, or
// the /64 of an IPv6 one (a host gets a /64; counting addresses would let
// it open MaxConnsPerIP connections from each of 2^64).
func clientKey(ip netip.Addr) netip.Addr {
	if ip = ip.Unmap(); ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

func (s *Server) admit(c net.Conn, ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.total >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.total++
	s.perIP[ip]++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.OpenConns.Add(1)
	return true
}

func (s *Server) release(c net.Conn, ip netip.Addr) {
	_ = c.Close()
	s.mu.Lock()
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.OpenConns.Add(-1)
	s.wg.Done()
}

func (s *Server) handle(raw net.Conn, ip netip.Addr) {
	defer s.release(raw, ip)
	setNoDelay(raw)
	tc := tls.Server(raw, s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.metrics.HandshakeErr.Add(1)
		s.metrics.fail(CauseTLS)
		return
	}
	s.metrics.Handshakes.Add(1)
	s.metrics.handshake(raw.LocalAddr().String(), tc.ConnectionState())
	if tc.ConnectionState().DidResume {
		s.metrics.Resumptions.Add(1)
	}
	defer func() { _ = tc.Close() }() // sends close_notify
	p := &peer{ip: remoteIP(raw), state: tc.ConnectionState()}
	for n := 0; n < s.cfg.MaxQueriesPerConn; n++ {
		_ = tc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		b, err := readFramed(tc)
		if err != nil {
			return // idle timeout, EOF, reset, or a bogus length
		}
		start := time.Now()
		outs := s.respond(b, p)
		if outs == nil {
			s.metrics.fail(CauseProtocol)
			return
		}
		for _, out := range outs { // more than one: a zone transfer
			_ = tc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			if err := writeFramed(tc, out); err != nil {
				s.metrics.fail(classify(err))
				return
			}
		}
		s.metrics.Queries.Add(1)
		s.metrics.RTT.Observe(time.Since(start))
	}
}

// respond returns the wire answer to one query from p — several messages
// for a zone transfer —, or nil when the input is not even a DNS header
// (the connection is then closed). p nil is a client that may not
// transfer.
func (s *Server) respond(b []byte, p *peer) [][]byte {
	q := new(dns.Msg)
	if q.Unpack(b) == nil && !q.Response && q.Opcode == dns.OpcodeQuery && len(q.Question) == 1 &&
		(q.Question[0].Qtype == dns.TypeAXFR || q.Question[0].Qtype == dns.TypeIXFR) {
		if opt := q.IsEdns0(); opt == nil || opt.Version() == 0 {
			var outs [][]byte
			for _, r := range s.transfer(q, p) {
				out, err := r.Pack()
				if err != nil {
					return nil
				}
				s.metrics.answer(r.Rcode)
				outs = append(outs, out)
			}
			return outs
		}
	}
	out := s.respondOne(b)
	if out == nil {
		return nil
	}
	return [][]byte{out}
}

// respondOne returns the wire answer to one (non-transfer) query, or nil
// when the input is not even a DNS header.
func (s *Server) respondOne(b []byte) []byte {
	q := new(dns.Msg)
	var r *dns.Msg
	if err := q.Unpack(b); err != nil {
		if len(b) < 12 {
			return nil
		}
		r = new(dns.Msg)
		r.Id = binary.BigEndian.Uint16(b)
		r.Response = true
		r.Opcode = int(b[2]>>3) & 0xf
		r.Rcode = dns.RcodeFormatError
	} else {
		if q.Response {
			return nil
		}
		r = s.zone.Load().Answer(q)
		if r.Rcode == dns.RcodeRefused {
			s.metrics.fail(CauseRefused)
		}
		if opt := r.IsEdns0(); opt != nil {
			// RFC 7828 §3.3.2: answer a keepalive option with our idle
			// timeout, so the client can close before we do.
			if _, ok := keepalive(q); ok {
				opt.Option = append(opt.Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE,
					Timeout: keepaliveUnits(s.cfg.IdleTimeout)})
			}
			// RFC 8467 §4.1: pad (block 468) the answers to padded queries.
			if hasPadding(q) {
				out, err := packPadded(r, ResponsePadBlock)
				if err != nil {
					return nil
				}
				s.metrics.Padded.Add(1)
				s.metrics.answer(r.Rcode)
				return out
			}
		}
	}
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	s.metrics.answer(r.Rcode)
	return out
}

// Close stops accepting, closes every connection and waits for handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	ln := s.ln
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	s.wg.Wait()
	return err
}
