package rpki

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Defaults (RFC 8210 §6 recommended values), used until the cache sends a
// version 1 End of Data, and always with version 0 (which carries none).
const (
	DefaultRefresh         = 3600 * time.Second
	DefaultRetry           = 600 * time.Second
	DefaultExpire          = 7200 * time.Second
	DefaultDialTimeout     = 10 * time.Second
	DefaultResponseTimeout = 60 * time.Second
	writeTimeout           = 10 * time.Second
)

// Config configures a Client. Only Addr is required.
type Config struct {
	// Addr is the cache's host:port.
	Addr string
	// TLS, if set, runs the session over TLS (RFC 8210 §9.3): the cache's
	// certificate is verified against TLS.RootCAs (or the system roots) for
	// TLS.ServerName (default: Addr's host); TLS.Certificates is the client
	// certificate, if the cache asks for one. Nil: plain TCP (§9.1), which
	// only a cache on the same host or a trusted link should use.
	TLS *tls.Config
	// SSH, if set (and TLS is not), runs the session over SSH (RFC 8210
	// §9.2): the subsystem rpki-rtr, the cache's host key checked by
	// SSH.HostKeyCallback, SSH.User and SSH.Auth the client's credentials.
	SSH *ssh.ClientConfig
	// ForceVersion0 makes the client speak RFC 6810 (version 0) from the
	// start. Without it the client offers version 1 and falls back to 0 when
	// the cache answers "Unsupported Protocol Version" in version 0.
	ForceVersion0 bool
	// DialTimeout bounds connection setup (default 10 s).
	DialTimeout time.Duration
	// ResponseTimeout bounds the time from a query to its End of Data
	// (default 60 s); past it the session is dropped and retried.
	ResponseTimeout time.Duration
	// Refresh, Retry, Expire are the intervals used until the cache sends
	// its own (version 1 End of Data), and with version 0. Defaults 3600 s,
	// 600 s, 7200 s.
	Refresh, Retry, Expire time.Duration
	// Dial replaces net.Dialer.DialContext (tests, another transport); with
	// TLS set, the handshake runs over the connection it returns.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger gets session events; nil logs nothing.
	Logger *zap.Logger
	// OnUpdate, if set, is called from the client's goroutine after every
	// new snapshot is published (also when a poll brought no change). It
	// must not block for long.
	OnUpdate func(*Validator)
}

// Status is a point-in-time view of the client, for logs and metrics.
type Status struct {
	Transport      string // "tcp", "tls" or "ssh"
	Connected      bool
	Version        uint8 // protocol version of the current/last session
	SessionID      uint16
	Serial         uint32
	VRPs           int
	LastUpdate     time.Time // last End of Data
	LastError      string    // last session error, "" if none yet
	Updates        uint64    // End of Data PDUs processed
	Resets         uint64    // Reset Queries sent
	SerialQueries  uint64
	Notifies       uint64 // Serial Notify PDUs received
	ErrorsSent     uint64 // Error Reports sent
	ErrorsReceived uint64 // Error Reports received
}

// Client keeps a local copy of a cache's VRPs over RTR. Start it with Run;
// read the current data with Validator. Safe for concurrent use.
type Client struct {
	cfg  Config
	log  *zap.Logger
	snap atomic.Pointer[Validator]

	running atomic.Bool

	mu     sync.Mutex
	status Status

	// Owned by the Run goroutine.
	version                uint8 // protocol version to offer
	refresh, retry, expire time.Duration
}

// NewClient checks cfg and returns a client; nothing happens until Run.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("rpki: Config.Addr is empty")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("rpki: Config.Addr: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, DefaultDialTimeout)
	def(&cfg.ResponseTimeout, DefaultResponseTimeout)
	def(&cfg.Refresh, DefaultRefresh)
	def(&cfg.Retry, DefaultRetry)
	def(&cfg.Expire, DefaultExpire)
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	transport := "tcp"
	if cfg.SSH != nil && cfg.TLS == nil {
		transport = "ssh"
	}
	if cfg.TLS != nil {
		transport = "tls"
		cfg.TLS = cfg.TLS.Clone()
		if cfg.TLS.ServerName == "" {
			host, _, _ := net.SplitHostPort(cfg.Addr)
			cfg.TLS.ServerName = host
		}
		if cfg.TLS.MinVersion < tls.VersionTLS12 {
			cfg.TLS.MinVersion = tls.VersionTLS12
		}
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &Client{cfg: cfg, log: log.With(zap.String("rtr", cfg.Addr), zap.String("transport", transport)),
		refresh: cfg.Refresh, retry: cfg.Retry, expire: cfg.Expire}
	c.status.Transport = transport
	return c, nil
}

// dial opens the transport: TCP, then the TLS or SSH handshake if
// configured, all within DialTimeout.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	conn, err := c.cfg.Dial(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if c.cfg.TLS == nil && c.cfg.SSH != nil {
		return dialSSH(ctx, conn, c.cfg.Addr, c.cfg.SSH)
	}
	if c.cfg.TLS == nil {
		return conn, nil
	}
	tc := tls.Client(conn, c.cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tc, nil
}

// Expired reports whether the client has no usable data: nothing received
// yet, or the last snapshot is past the cache's Expire Interval.
func (c *Client) Expired() bool { return c.Validator() == nil }

// Validator returns the current snapshot, or nil when there is no usable
// RPKI data: nothing received yet, or the last data is older than the
// cache's Expire Interval (RFC 8210 §6). docs/wire.md §3.2 applies the ROA check
// only "where RPKI data is available", i.e. when this is non-nil.
func (c *Client) Validator() *Validator {
	v := c.snap.Load()
	if v == nil || v.expired(time.Now()) {
		return nil
	}
	return v
}

// Status returns a copy of the client's status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Client) update(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// Run connects to the cache and keeps the snapshot current until ctx is
// done; it then returns ctx.Err(). Failed sessions are retried after the
// Retry Interval; the last snapshot stays in use until it expires. Run may
// be called once at a time.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("rpki: Run is already running")
	}
	defer c.running.Store(false)
	c.version = MaxVersion
	if c.cfg.ForceVersion0 {
		c.version = Version0
	}
	for {
		version := c.version
		err := c.session(ctx, version)
		c.update(func(s *Status) { s.Connected = false })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var dg *downgradeError
		if errors.As(err, &dg) {
			c.log.Info("cache does not speak our version; falling back", zap.Uint8("from", version), zap.Uint8("to", dg.to))
			c.version = dg.to
			continue
		}
		c.log.Warn("RTR session ended; will retry", zap.Error(err), zap.Duration("retry", c.retry))
		c.update(func(s *Status) { s.LastError = err.Error() })
		t := time.NewTimer(c.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

type downgradeError struct{ to uint8 }

func (e *downgradeError) Error() string {
	return fmt.Sprintf("rtr: cache wants protocol version %d", e.to)
}

// ReportedError is an Error Report received from the cache.
type ReportedError struct {
	Code ErrorCode
	Text string
}

func (e *ReportedError) Error() string {
	return fmt.Sprintf("rtr: cache reported %s: %q", e.Code, e.Text)
}

type event struct {
	p   PDU
	raw []byte
	err error
}

// session is one connection's state machine.
type session struct {
	c       *Client
	conn    net.Conn
	version uint8
	log     *zap.Logger

	negotiated  bool // a PDU in our version has been seen
	haveSession bool
	sessionID   uint16
	serial      uint32

	pending    bool // a query is outstanding
	isReset    bool // ...and it is a Reset Query
	inResponse bool // Cache Response seen, End of Data not yet

	working map[VRP]struct{} // the cache's set as of this session
	changed bool             // working differs from the published snapshot
}

func (c *Client) session(ctx context.Context, version uint8) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("rtr: dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stop()
		conn.Close()
	}()
	c.update(func(st *Status) { st.Connected = true; st.Version = version })
	s := &session{c: c, conn: conn, version: version, log: c.log.With(zap.Uint8("version", version))}
	s.log.Info("connected")

	events := make(chan event)
	done := make(chan struct{})
	defer close(done)
	go func() {
		br := bufio.NewReader(conn)
		for {
			p, raw, err := ReadPDU(br)
			select {
			case events <- event{p, raw, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	refresh := time.NewTimer(time.Hour)
	refresh.Stop()
	defer refresh.Stop()
	respTimeout := time.NewTimer(time.Hour)
	respTimeout.Stop()
	defer respTimeout.Stop()

	query := func(reset bool) error {
		s.pending, s.isReset, s.inResponse = true, reset, false
		respTimeout.Reset(c.cfg.ResponseTimeout)
		refresh.Stop()
		if reset {
			c.update(func(st *Status) { st.Resets++ })
			return s.send(&PDU{Version: s.version, Type: TypeResetQuery})
		}
		c.update(func(st *Status) { st.SerialQueries++ })
		return s.send(&PDU{Version: s.version, Type: TypeSerialQuery, SessionID: s.sessionID, Serial: s.serial})
	}

	// Every new connection starts from a Reset Query: simpler than resuming
	// with a Serial Query, and a session's data is fully re-validated.
	if err := query(true); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-respTimeout.C:
			return errors.New("rtr: no End of Data within the response timeout")
		case <-refresh.C:
			if !s.pending {
				if err := query(false); err != nil {
					return err
				}
			}
		case ev := <-events:
			if ev.err != nil {
				var pe *ProtocolError
				if errors.As(ev.err, &pe) {
					return s.fail(pe, ev.raw)
				}
				return fmt.Errorf("rtr: read: %w", ev.err)
			}
			reset, err := s.handle(ev.p, ev.raw, respTimeout, refresh)
			if err != nil {
				return err
			}
			if reset != nil {
				if err := query(*reset); err != nil {
					return err
				}
			}
		}
	}
}

// send writes one PDU with a write deadline.
func (s *session) send(p *PDU) error {
	s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(p.Encode()); err != nil {
		return fmt.Errorf("rtr: write %s: %w", typeName(p.Type), err)
	}
	return nil
}

// fail reports pe to the cache (RFC 8210 §5.11: never in answer to an
// Error Report) and returns it as the session's error.
func (s *session) fail(pe *ProtocolError, raw []byte) error {
	if len(raw) >= 2 && raw[1] == TypeErrorReport {
		return pe
	}
	enc := raw
	if len(enc) < headerLen || len(enc) > 1024 {
		enc = nil // not a whole PDU, or too big to echo back
	}
	text := pe.Msg
	if len(text) > errorTextMax {
		text = text[:errorTextMax]
	}
	// Msg is built from our own format strings and decoded numbers, but make
	// sure a cut did not split a rune: the peer decodes the text as UTF-8.
	text = string([]rune(text))
	if err := s.send(&PDU{Version: s.version, Type: TypeErrorReport, Code: pe.Code, Encapsulated: enc, Text: text}); err == nil {
		s.c.update(func(st *Status) { st.ErrorsSent++ })
	}
	s.log.Warn("protocol error; closing", zap.Stringer("code", pe.Code), zap.String("msg", pe.Msg))
	return pe
}

// handle processes one PDU from the cache. It returns a non-nil query kind
// when a query must be sent (true: Reset Query, false: Serial Query).
func (s *session) handle(p PDU, raw []byte, respTimeout, refresh *time.Timer) (query *bool, err error) {
	c := s.c
	if p.Version != s.version {
		switch {
		case s.negotiated || p.Version > s.version:
		case p.Type == TypeErrorReport && p.Code == ErrUnsupportedVersion:
			// RFC 8210 §7: an older cache refuses our version.
			return nil, &downgradeError{to: p.Version}
		case p.Type == TypeCacheResponse:
			// Some caches (StayRTR among them) answer a newer query in
			// their own, older version instead: accept it for this session
			// and offer it from now on.
			s.log.Info("cache answered in an older protocol version; downgrading", zap.Uint8("to", p.Version))
			s.version = p.Version
			c.version = p.Version
			c.update(func(st *Status) { st.Version = p.Version })
			return s.handle(p, raw, respTimeout, refresh)
		}
		return nil, s.fail(perr(ErrUnexpectedVersion, "%s PDU in version %d, session is version %d", typeName(p.Type), p.Version, s.version), raw)
	}
	s.negotiated = true
	corrupt := func(format string, args ...any) error {
		return s.fail(perr(ErrCorruptData, format, args...), raw)
	}
	switch p.Type {
	case TypeSerialNotify:
		c.update(func(st *Status) { st.Notifies++ })
		// Ignored while a query is outstanding or before the first End of
		// Data; the answer in progress (or the next poll) covers it.
		if s.pending || !s.haveSession || (p.SessionID == s.sessionID && p.Serial == s.serial) {
			return nil, nil
		}
		s.log.Debug("serial notify", zap.Uint32("serial", p.Serial))
		f := false
		return &f, nil

	case TypeCacheResponse:
		if !s.pending || s.inResponse {
			return nil, corrupt("unexpected Cache Response")
		}
		s.inResponse = true
		if s.isReset {
			s.sessionID, s.haveSession = p.SessionID, true
			s.working = make(map[VRP]struct{})
			s.changed = true
		} else if p.SessionID != s.sessionID {
			// The cache restarted under a new session: our serial means
			// nothing to it. Drop the connection; the next one resets.
			return nil, fmt.Errorf("rtr: session ID changed from %d to %d", s.sessionID, p.SessionID)
		}
		return nil, nil

	case TypeIPv4Prefix, TypeIPv6Prefix:
		if !s.inResponse {
			return nil, corrupt("%s PDU outside a Cache Response", typeName(p.Type))
		}
		v := VRP{Prefix: p.Prefix, MaxLen: p.MaxLen, ASN: p.ASN}
		_, held := s.working[v]
		switch {
		case p.Announce && held:
			return nil, s.fail(perr(ErrDuplicateAnnouncement, "%s-%d AS%d announced twice", v.Prefix, v.MaxLen, v.ASN), raw)
		case !p.Announce && !held:
			return nil, s.fail(perr(ErrWithdrawalUnknownRecord, "%s-%d AS%d withdrawn but not held", v.Prefix, v.MaxLen, v.ASN), raw)
		case p.Announce:
			s.working[v] = struct{}{}
		default:
			delete(s.working, v)
		}
		s.changed = true
		return nil, nil

	case TypeRouterKey:
		// BGPsec router keys are not used by psavd; accepted and dropped.
		if !s.inResponse {
			return nil, corrupt("Router Key PDU outside a Cache Response")
		}
		return nil, nil

	case TypeEndOfData:
		if !s.inResponse {
			return nil, corrupt("unexpected End of Data")
		}
		if p.SessionID != s.sessionID {
			return nil, corrupt("End of Data session %d, Cache Response said %d", p.SessionID, s.sessionID)
		}
		if p.Version >= Version1 {
			c.refresh = time.Duration(p.Refresh) * time.Second
			c.retry = time.Duration(p.Retry) * time.Second
			c.expire = time.Duration(p.Expire) * time.Second
		}
		s.serial = p.Serial
		s.pending, s.inResponse = false, false
		respTimeout.Stop()
		v := s.publish()
		refresh.Reset(c.refresh)
		s.log.Debug("end of data", zap.Uint32("serial", p.Serial), zap.Int("vrps", v.Len()))
		if c.cfg.OnUpdate != nil {
			c.cfg.OnUpdate(v)
		}
		return nil, nil

	case TypeCacheReset:
		if !s.pending || s.isReset || s.inResponse {
			return nil, corrupt("unexpected Cache Reset")
		}
		s.log.Info("cache reset; sending Reset Query")
		t := true
		return &t, nil

	case TypeErrorReport:
		c.update(func(st *Status) { st.ErrorsReceived++ })
		return nil, &ReportedError{Code: p.Code, Text: p.Text}

	default: // Serial Query, Reset Query: router-to-cache only
		return nil, s.fail(perr(ErrUnsupportedPDUType, "%s PDU sent to a router", typeName(p.Type)), raw)
	}
}

// publish swaps in a snapshot for the working set as of End of Data.
func (s *session) publish() *Validator {
	c := s.c
	now := time.Now()
	var v *Validator
	if prev := c.snap.Load(); !s.changed && prev != nil {
		cp := *prev // same data: share the (immutable) index
		v = &cp
	} else {
		vrps := make([]VRP, 0, len(s.working))
		for r := range s.working {
			vrps = append(vrps, r)
		}
		v = NewValidator(vrps)
	}
	s.changed = false
	v.version, v.sessionID, v.serial = s.version, s.sessionID, s.serial
	v.updated, v.expires = now, now.Add(c.expire)
	c.snap.Store(v)
	c.update(func(st *Status) {
		st.Version, st.SessionID, st.Serial, st.VRPs = s.version, s.sessionID, s.serial, v.Len()
		st.LastUpdate = now
		st.Updates++
	})
	return v
}
