package abr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/engine"
)

// Publisher is where the client puts the tables it accepts
// (*engine.Engine in production).
type Publisher interface {
	Publish(*engine.Tables)
}

// State is the client's view of its ACS.
type State int32

// States.
const (
	// NeverConnected: no snapshot has been received since start; the engine
	// holds whatever it held before (empty tables, or a static schedule).
	NeverConnected State = iota
	// Connected: a Feed stream is up and the ACS is heard.
	Connected
	// FailStatic: the stream broke, the ACS is unreachable or silent; the
	// engine keeps the last good tables (docs/wire.md §3.1) while the client
	// reconnects.
	FailStatic
)

var stateNames = [...]string{"never-connected", "connected", "fail-static"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int32(s))
	}
	return stateNames[s]
}

// Defaults for Config's zero values.
const (
	DefaultMinBackoff        = 500 * time.Millisecond
	DefaultMaxBackoff        = 30 * time.Second
	DefaultHeartbeatInterval = time.Second // docs/wire.md §3.1
	DefaultMissedHeartbeats  = 3           // docs/wire.md §3.1
)

// Config configures a Client.
type Config struct {
	// Addr is the ACS's gRPC address (host:port).
	Addr string
	// Identity is the ABR's: its certificate (psav:as<ASN>:abr:<name>,
	// the same AS as its ACS; Role pki.RoleABR) and the alliance CA pool.
	Identity pair.Identity
	// ACSASN is the AS the ACS's certificate must name; 0 means
	// Identity.ASN. An ABR is fed only by the ACS of its own AS.
	ACSASN uint32
	// Name is the ABR's name, sent in the FeedRequest for logs and psavctl.
	Name string
	// Engine receives every accepted snapshot.
	Engine Publisher
	// Log; nil means no logging.
	Log *zap.Logger
	// Back-off between attempts: starts at MinBackoff, doubles up to
	// MaxBackoff, each wait jittered to [d/2, d]; reset after a stream that
	// delivered a message.
	MinBackoff, MaxBackoff time.Duration
	// The ACS is silent after MissedHeartbeats × HeartbeatInterval without
	// a heartbeat (armed by the first heartbeat of a stream): the stream is
	// dropped, the client goes fail-static and reconnects. An ACS that
	// announces a longer interval in its heartbeats gets that one instead
	// (its [acs] heartbeat is not the ABR's to know).
	HeartbeatInterval time.Duration
	MissedHeartbeats  int
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Dial, if set, opens the TCP connection to Addr (tests count the
	// feed's bytes on the wire with it); nil: gRPC's own dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Counters are the client's event counts, readable at any time (metrics).
type Counters struct {
	Received      atomic.Uint64 // updates received: whole membership versions and FeedKeys
	Refused       atomic.Uint64 // updates refused (a membership version or a FeedKeys breaking a rule)
	Published     atomic.Uint64 // snapshots published into the engine
	Heartbeats    atomic.Uint64 // heartbeats received
	Attempts      atomic.Uint64 // Feed attempts (dial + call)
	Failures      atomic.Uint64 // attempts that failed or streams that broke
	Reconnects    atomic.Uint64 // streams established after the first one
	Silences      atomic.Uint64 // streams dropped for missed heartbeats
	connectedOnce atomic.Bool

	// What the feed carried, by part: messages and their encoded size
	// (docs/scale.md measures the feed with them).
	MembershipChunks, MembershipBytes atomic.Uint64
	KeysMessages, KeysBytes           atomic.Uint64
}

// Client keeps an ABR's engine fed from its ACS (docs/wire.md §3.1): it
// receives the membership in chunks and the keys in FeedKeys over mutually
// authenticated TLS 1.3, publishes a snapshot built from the latest whole
// membership and every key held (make before break), and on any failure
// keeps the last good tables (fail-static) while it reconnects with
// jittered exponential back-off.
type Client struct {
	cfg     Config
	acsASN  uint32
	tlsConf *tls.Config
	log     *zap.Logger
	now     func() time.Time
	feed    *feedState // the stream goroutine's only

	state         atomic.Int32
	version       atomic.Uint64
	memVersion    atomic.Uint64
	lastUpdate    atomic.Int64 // unix nanoseconds, 0: never
	lastHeartbeat atomic.Int64 // unix nanoseconds, 0: never
	Counters      Counters

	mu sync.Mutex // serialises state changes and their log lines
}

// New checks cfg and returns a client; Run starts it.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("abr: no ACS address")
	}
	if cfg.Engine == nil {
		return nil, errors.New("abr: no engine to publish into")
	}
	if cfg.ACSASN == 0 {
		cfg.ACSASN = cfg.Identity.ASN
	}
	if cfg.ACSASN != cfg.Identity.ASN {
		return nil, fmt.Errorf("abr: ACS AS%d is not the ABR's AS%d", cfg.ACSASN, cfg.Identity.ASN)
	}
	if cfg.Identity.Role != pki.RoleABR {
		return nil, fmt.Errorf("abr: the feed client needs an abr identity, not %q", cfg.Identity.Role)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = DefaultMissedHeartbeats
	}
	tc, err := TLSConfig(cfg.Identity, cfg.ACSASN)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, acsASN: cfg.ACSASN, tlsConf: tc, log: cfg.Log, now: cfg.Now, feed: newFeedState(cfg.Identity.ASN)}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.log = c.log.With(zap.String("acs", cfg.Addr), zap.Uint32("acs_asn", cfg.ACSASN))
	return c, nil
}

// MaxFeedMessage is the ABR's receive limit on the feed and the ACS's send
// limit, set on purpose (4 × gRPC's default): a membership chunk is cut at
// acspb.FeedChunkBytes (1 MiB) whatever the size of the AS-Prefix table;
// the largest FeedKeys, the first of a stream, holds every live pair's keys
// for e−1 … e+key_lead (some 26 octets per key: about 20,000 peers at the
// largest key lead). It also bounds what an ACS can make an ABR allocate at
// once.
const MaxFeedMessage = 16 << 20

// maxFeedRequest is the ABR's send limit: it sends only a FeedRequest.
const maxFeedRequest = 64 << 10

// TLSConfig is the ABR's tls.Config for dialling the ACS of its own AS:
// pair.ClientConfig (TLS 1.3 only, Go's default key exchange with
// X25519MLKEM768), whose own certificate must be an abr one of id.ASN and
// whose server must present psav:as<acsASN>:acs (docs/wire.md §3.1) — an
// ABR certificate of the same AS posing as its ACS is refused in the
// handshake.
func TLSConfig(id pair.Identity, acsASN uint32) (*tls.Config, error) {
	return pair.ClientConfig(id, acsASN)
}

// State returns the client's current state.
func (c *Client) State() State { return State(c.state.Load()) }

// Version is the version of the last snapshot published (0: none).
func (c *Client) Version() uint64 { return c.version.Load() }

// MembershipVersion is the membership version of the last snapshot
// published (0: none).
func (c *Client) MembershipVersion() uint64 { return c.memVersion.Load() }

// LastUpdate is when the last snapshot was published (zero: never).
func (c *Client) LastUpdate() time.Time { return unixNano(c.lastUpdate.Load()) }

// LastHeartbeat is when the last heartbeat was received (zero: never).
func (c *Client) LastHeartbeat() time.Time { return unixNano(c.lastHeartbeat.Load()) }

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// setState changes state and logs once per change.
func (c *Client) setState(s State, why string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := State(c.state.Load())
	if old == s {
		return
	}
	c.state.Store(int32(s))
	fields := []zap.Field{zap.Stringer("from", old), zap.Stringer("to", s), zap.String("why", why), zap.Uint64("version", c.Version())}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if s == FailStatic {
		c.log.Warn("ACS feed lost: keeping the last tables (fail-static)", fields...)
	} else {
		c.log.Info("ACS feed state", fields...)
	}
}

// Run feeds the engine until ctx is done, reconnecting forever. It returns
// ctx's error. The engine's tables are never cleared: on any failure the
// last good snapshot stays in force.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.cfg.MinBackoff
	warned := false
	for {
		heard, err := c.attempt(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.Counters.Failures.Add(1)
		if c.State() != NeverConnected {
			c.setState(FailStatic, "feed down", err)
		} else if !warned {
			warned = true // once: the state has not changed, and will not until it answers
			c.log.Warn("ACS not reachable yet: no tables from it so far, retrying", zap.Error(err))
		}
		if heard {
			backoff = c.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Debug("reconnecting", zap.Duration("in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if backoff > c.cfg.MaxBackoff/2 {
			backoff = c.cfg.MaxBackoff
		} else {
			backoff *= 2
		}
	}
}

// maxAnnouncedInterval bounds the heartbeat interval an ACS may announce:
// beyond it the silence watchdog would keep a dead ACS's tables for long.
const maxAnnouncedInterval = time.Minute

// errSilent ends a stream whose ACS missed too many heartbeats.
var errSilent = errors.New("abr: ACS silent (heartbeats missed)")

// attempt dials, calls Feed and handles messages until the stream ends.
// heard says whether the ACS said anything on this stream.
func (c *Client) attempt(parent context.Context) (heard bool, err error) {
	c.Counters.Attempts.Add(1)
	// The limits are set on purpose (MaxFeedMessage); the ACS sends up to
	// the same.
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConf)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxFeedMessage), grpc.MaxCallSendMsgSize(maxFeedRequest))}
	if c.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(c.cfg.Dial))
	}
	conn, err := grpc.NewClient(c.cfg.Addr, opts...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	stream, err := acspb.NewACSClient(conn).Feed(ctx, &acspb.FeedRequest{Asn: c.cfg.Identity.ASN, Abr: c.cfg.Name, HaveVersion: c.Version(), FeedVersion: acspb.FeedVersion})
	if err != nil {
		return false, err
	}
	c.feed.newStream()
	silence := time.Duration(c.cfg.MissedHeartbeats) * c.cfg.HeartbeatInterval
	var watchdog *time.Timer
	defer func() {
		if watchdog != nil {
			watchdog.Stop()
		}
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errSilent) {
				c.Counters.Silences.Add(1)
				c.setState(FailStatic, "ACS silent", fmt.Errorf("no heartbeat for %s (%d intervals)", silence, c.cfg.MissedHeartbeats))
				return heard, errSilent
			}
			return heard, err
		}
		if !heard {
			heard = true
			if c.Counters.connectedOnce.Swap(true) {
				c.Counters.Reconnects.Add(1)
			}
		}
		switch b := msg.GetBody().(type) {
		case *acspb.FeedMessage_Heartbeat:
			c.Counters.Heartbeats.Add(1)
			c.lastHeartbeat.Store(c.now().UnixNano())
			if iv := time.Duration(b.Heartbeat.GetIntervalNanos()); iv > c.cfg.HeartbeatInterval && iv <= maxAnnouncedInterval {
				silence = time.Duration(c.cfg.MissedHeartbeats) * iv
			}
			if watchdog == nil {
				watchdog = time.AfterFunc(silence, func() { cancel(errSilent) })
			} else {
				watchdog.Reset(silence)
			}
			if c.Version() != 0 {
				c.setState(Connected, "heartbeat", nil)
			}
		case *acspb.FeedMessage_Membership:
			c.Counters.MembershipChunks.Add(1)
			c.Counters.MembershipBytes.Add(uint64(proto.Size(msg)))
			whole, err := c.feed.chunk(b.Membership)
			if err != nil {
				c.Counters.Refused.Add(1)
				c.log.Warn("membership refused: keeping the one in force", zap.Uint64("membership_version", b.Membership.GetVersion()),
					zap.Uint64("in_force", c.MembershipVersion()), zap.Error(err))
				continue
			}
			if whole {
				c.Counters.Received.Add(1)
			}
		case *acspb.FeedMessage_Keys:
			c.Counters.KeysMessages.Add(1)
			c.Counters.KeysBytes.Add(uint64(proto.Size(msg)))
			c.Counters.Received.Add(1)
			if err := c.accept(b.Keys); err != nil {
				c.Counters.Refused.Add(1)
				c.log.Warn("keys refused: keeping the last tables", zap.Uint64("version", b.Keys.GetVersion()), zap.Uint64("in_force", c.Version()), zap.Error(err))
				continue
			}
			if c.Version() != 0 {
				c.setState(Connected, "snapshot", nil)
			}
		default:
			// A message of a newer (or older) feed than this ABR's.
			c.log.Warn("unknown feed message ignored (the ACS speaks another feed version?)")
		}
	}
}

// accept builds the snapshot of one FeedKeys (with the membership it puts
// in force, if any) and publishes it: a new immutable engine.Tables, one
// atomic swap, so that no packet ever sees half of it.
func (c *Client) accept(k *acspb.FeedKeys) error {
	now := c.now()
	t, err := c.feed.feedKeys(k, now.Unix())
	if err != nil || t == nil {
		return err // nil, nil: no whole membership yet, keys held
	}
	c.cfg.Engine.Publish(t) // the PSAV part: the node publishes its routes on their own
	c.version.Store(t.Version)
	c.memVersion.Store(c.feed.inForce.version)
	c.lastUpdate.Store(now.UnixNano())
	c.Counters.Published.Add(1)
	return nil
}
