package acs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/psavd/psavd/control/acspb"
)

// Limits bound what clients can hold of the ACS listener, which faces the
// Internet (0.0.0.0:7443 in the contract's example): without them one
// address could hold every file descriptor with idle connections or
// stalled handshakes and starve peering and the ABR feed. Zero values take
// the defaults.
type Limits struct {
	// MaxConns bounds the open connections in total (default 1024).
	MaxConns int
	// MaxConnsPerSource bounds them per source: one IPv4 address, or one
	// IPv6 /64, since a single host usually holds a whole /64 (default 32).
	MaxConnsPerSource int
	// NewConnsPerSecond and NewConnsBurst bound how fast one source may
	// open connections, each of which costs a TLS handshake (defaults 20
	// per second, bursts of 40).
	NewConnsPerSecond float64
	NewConnsBurst     int
	// HandshakeTimeout bounds the TLS handshake of a new connection
	// (default 5 s; gRPC's own default is 120 s).
	HandshakeTimeout time.Duration
	// HelloTimeout bounds the wait for a peer's Hello after Peer is called
	// (default 5 s).
	HelloTimeout time.Duration
	// MaxStreams bounds the concurrent calls on one connection (default
	// 16: a peer needs one Peer stream, an ABR one Feed).
	MaxStreams uint32
	// MaxRecvMessage bounds one message received (default 16 MiB: a peer's
	// largest message is a membership record with all of a member's
	// prefixes, or a summary of the whole membership).
	MaxRecvMessage int
	// PeerMessagesPerSecond and PeerMessageBurst bound the messages one
	// peer session may send (defaults 2000 a second, bursts of 20000: a
	// catch-up of a whole membership fits in a burst); PeerControlPerSecond
	// and PeerControlBurst bound its summaries, wants and proposals, each of
	// which walks the membership or negotiates keys (defaults 2 a second,
	// bursts of 16). A peer over either ends its session, counted
	// message-rate.
	PeerMessagesPerSecond float64
	PeerMessageBurst      int
	PeerControlPerSecond  float64
	PeerControlBurst      int
}

// DefaultLimits are the limits of a zero Limits.
var DefaultLimits = Limits{MaxConns: 1024, MaxConnsPerSource: 32, NewConnsPerSecond: 20, NewConnsBurst: 40,
	HandshakeTimeout: 5 * time.Second, HelloTimeout: 5 * time.Second, MaxStreams: 16, MaxRecvMessage: 16 << 20,
	PeerMessagesPerSecond: 2000, PeerMessageBurst: 20000, PeerControlPerSecond: 2, PeerControlBurst: 16}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	orDefault(&d.MaxConns, l.MaxConns)
	orDefault(&d.MaxConnsPerSource, l.MaxConnsPerSource)
	orDefault(&d.NewConnsPerSecond, l.NewConnsPerSecond)
	orDefault(&d.NewConnsBurst, l.NewConnsBurst)
	orDefault(&d.HandshakeTimeout, l.HandshakeTimeout)
	orDefault(&d.HelloTimeout, l.HelloTimeout)
	orDefault(&d.MaxStreams, l.MaxStreams)
	orDefault(&d.MaxRecvMessage, l.MaxRecvMessage)
	orDefault(&d.PeerMessagesPerSecond, l.PeerMessagesPerSecond)
	orDefault(&d.PeerMessageBurst, l.PeerMessageBurst)
	orDefault(&d.PeerControlPerSecond, l.PeerControlPerSecond)
	orDefault(&d.PeerControlBurst, l.PeerControlBurst)
	return d
}

// orDefault sets *def to v when v is set (positive).
func orDefault[T int | uint32 | float64 | time.Duration](def *T, v T) {
	if v > 0 {
		*def = v
	}
}

// Listener refusal reasons (service "listener").
const (
	reasonConnLimit   = "conn-limit"   // MaxConns open
	reasonSourceLimit = "source-limit" // MaxConnsPerSource open from this source
	reasonSourceRate  = "source-rate"  // NewConnsPerSecond exceeded
	reasonHandshake   = "handshake"    // TLS handshake failed or timed out
	reasonHelloTime   = "hello-timeout"
)

// sourceKey is what one source is: an IPv4 address, or an IPv6 /64.
func sourceKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// source is the state of one source: its open connections and its token
// bucket of new connections.
type source struct {
	open int
	rate tokenBucket
}

// limitListener applies Limits.MaxConns, MaxConnsPerSource and the
// per-source rate at accept: a refused connection is closed at once and
// counted, and Accept goes on to the next one (an error would stop the
// gRPC server).
type limitListener struct {
	net.Listener
	lim    Limits
	now    func() time.Time
	refuse func(reason string, err error)

	mu      sync.Mutex
	open    int
	sources map[netip.Prefix]*source
}

func newLimitListener(l net.Listener, lim Limits, now func() time.Time, refuse func(string, error)) *limitListener {
	return &limitListener{Listener: l, lim: lim, now: now, refuse: refuse, sources: map[netip.Prefix]*source{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := sourceKey(c.RemoteAddr())
		if reason := l.admit(key); reason != "" {
			c.Close()
			l.refuse(reason, fmt.Errorf("connection from %s (source %s)", c.RemoteAddr(), key))
			continue
		}
		return &limitedConn{Conn: c, l: l, key: key}, nil
	}
}

// admit counts a new connection from key in, or says why not.
func (l *limitListener) admit(key netip.Prefix) string {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[key]
	if s == nil {
		if len(l.sources) > 4*l.lim.MaxConns {
			l.prune(now)
		}
		s = &source{rate: newTokenBucket(l.lim.NewConnsPerSecond, l.lim.NewConnsBurst, now)}
		l.sources[key] = s
	}
	s.rate.refill(now)
	switch {
	case l.open >= l.lim.MaxConns:
		return reasonConnLimit
	case s.open >= l.lim.MaxConnsPerSource:
		return reasonSourceLimit
	case !s.rate.take(now):
		return reasonSourceRate
	}
	s.open++
	l.open++
	return ""
}

// prune forgets the sources with no open connection and a full bucket:
// they are what a new source would start as.
func (l *limitListener) prune(now time.Time) {
	for k, s := range l.sources {
		if s.open == 0 && s.rate.full(now) {
			delete(l.sources, k)
		}
	}
}

func (l *limitListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if s := l.sources[key]; s != nil {
		s.open--
	}
}

// limitedConn gives its place back when closed (once).
type limitedConn struct {
	net.Conn
	l    *limitListener
	key  netip.Prefix
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// handshakeLimited bounds and counts the server side of the TLS handshake.
type handshakeLimited struct {
	credentials.TransportCredentials
	timeout time.Duration
	refuse  func(reason string, err error)
}

func (h handshakeLimited) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c.SetDeadline(time.Now().Add(h.timeout))
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		h.refuse(reasonHandshake, fmt.Errorf("TLS handshake from %s: %w", c.RemoteAddr(), err))
		return nil, nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, info, nil
}

func (h handshakeLimited) Clone() credentials.TransportCredentials {
	return handshakeLimited{TransportCredentials: h.TransportCredentials.Clone(), timeout: h.timeout, refuse: h.refuse}
}

// errHelloTimeout: no Hello within Limits.HelloTimeout.
var errHelloTimeout = errors.New("no Hello in time")

// recvHello waits for the first message of a Peer stream, at most timeout.
// On a timeout the caller returns, which ends the stream and with it the
// receive left waiting here.
func recvHello(st stream, timeout time.Duration) (*acspb.PeerMessage, error) {
	type first struct {
		m   *acspb.PeerMessage
		err error
	}
	ch := make(chan first, 1)
	go func() {
		m, err := st.Recv()
		ch <- first{m, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f := <-ch:
		return f.m, f.err
	case <-t.C:
		return nil, errHelloTimeout
	}
}
