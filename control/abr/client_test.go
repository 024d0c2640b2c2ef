package abr

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/ports"
)

const localASN = 65001

// fakeACS implements only Feed: it sends msgs at once, then heartbeats
// every beat (beats of them, then silence; -1: forever) until the stream
// ends.
type fakeACS struct {
	acspb.UnimplementedACSServer
	msgs  []*acspb.FeedMessage
	beat  time.Duration
	beats int
	// announce is the heartbeat interval the heartbeats carry (0: none).
	announce time.Duration

	mu   sync.Mutex
	reqs []*acspb.FeedRequest
}

func (f *fakeACS) Feed(req *acspb.FeedRequest, s grpc.ServerStreamingServer[acspb.FeedMessage]) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	for _, m := range f.msgs {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	if f.beat == 0 {
		<-s.Context().Done()
		return nil
	}
	tick := time.NewTicker(f.beat)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-s.Context().Done():
			return nil
		case <-tick.C:
		}
		if f.beats >= 0 && seq > uint64(f.beats) {
			continue // silent, stream still open
		}
		if err := s.Send(&acspb.FeedMessage{Body: &acspb.FeedMessage_Heartbeat{Heartbeat: &acspb.Heartbeat{Seq: seq, SendUnixNano: time.Now().UnixNano(), IntervalNanos: int64(f.announce)}}}); err != nil {
			return err
		}
	}
}

// tablesMsg is a whole snapshot as an ACS feeds it (feedMessages).
func tablesMsg(m *acspb.Tables) []*acspb.FeedMessage { return feedMessages(m, 0) }

// msgs concatenates the messages of several snapshots.
func msgs(parts ...[]*acspb.FeedMessage) []*acspb.FeedMessage {
	var out []*acspb.FeedMessage
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// alliance is an alliance CA with the certificates of AS 65001's ACS and ABR.
type alliance struct {
	ca       *testpki.CA
	acs, abr pair.Identity
}

func newPKI(t *testing.T) *alliance {
	t.Helper()
	ca, err := testpki.NewCA("alliance")
	if err != nil {
		t.Fatal(err)
	}
	return &alliance{ca: ca, acs: identity(t, ca, localASN, pki.RoleACS), abr: identity(t, ca, localASN, pki.RoleABR)}
}

// identity issues a certificate of asn in role (an ABR is "edge-1").
func identity(t *testing.T, ca *testpki.CA, asn uint32, role pki.Role) pair.Identity {
	t.Helper()
	c, err := ca.IssueACS(asn, time.Time{}, time.Time{})
	if role == pki.RoleABR {
		c, err = ca.IssueABR(asn, "edge-1", time.Time{}, time.Time{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return pair.Identity{ASN: asn, Role: role, Cert: c, CA: ca.Pool()}
}

// serve starts the fake ACS on addr ("127.0.0.1:0" for a new port) with
// pair.ServerConfig and, as the real ACS's Feed does, accepts only an abr
// certificate of the ACS's own AS.
func serve(t *testing.T, addr string, id pair.Identity, f *fakeACS) (*grpc.Server, string) {
	t.Helper()
	tc, err := pair.ServerConfig(id)
	if err != nil {
		t.Fatal(err)
	}
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := pair.RequirePeer(cs, pki.RoleABR, id.ASN, "the fake ACS's feed")
		return err
	}
	return serveTLS(t, addr, tc, f)
}

// serveAs starts a fake ACS that presents id's certificate whatever it
// names (pair.ServerConfig would refuse one that is not an ACS's).
func serveAs(t *testing.T, id pair.Identity, f *fakeACS) (*grpc.Server, string) {
	return serveTLS(t, "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{id.Cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: id.CA}, f)
}

func serveTLS(t *testing.T, addr string, tc *tls.Config, f *fakeACS) (*grpc.Server, string) {
	t.Helper()
	var (
		lis net.Listener
		err error
	)
	for i := 0; ; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the old listener's port is being released
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	acspb.RegisterACSServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return s, lis.Addr().String()
}

// newEngine is a two-port cross-connected ABR: port 0 "inside" (ingress),
// port 1 "outside" (egress).
func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Spec{Ports: []engine.PortSpec{{Name: "inside", Role: engine.RoleIngress, Peer: 1}, {Name: "outside", Role: engine.RoleEgress, Peer: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs a client until the test ends.
func start(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	}
	cfg.Log = zaptest.NewLogger(t)
	cfg.Name = "abr1"
	if cfg.Now == nil {
		// The vectors' clock: keys of epochs past at the client's clock
		// are dropped.
		cfg.Now = func() time.Time { return time.Unix(vecNow, 0) }
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != context.Canceled {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// process puts one frame through e arriving on port in at time now, and
// returns the frame that leaves (nil if dropped) and the counters.
func process(t *testing.T, e *engine.Engine, in int, frame []byte, now int64) ([]byte, *engine.Counters) {
	t.Helper()
	pr := e.NewProcessor(in)
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	pr.Process(b, e.Tables(), now)
	p := b.Pkts[0]
	if p.Out == ports.Drop {
		return nil, pr.Counters
	}
	if int(p.Out) != e.Spec().Ports[in].Peer {
		t.Fatalf("out port %d", p.Out)
	}
	return append([]byte(nil), p.Frame()...), pr.Counters
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFeedTagsEndToEnd: a snapshot pushed over the feed tags a packet from
// AS 65001 to AS 65002 exactly as the engine's vector says; a bad snapshot
// after it is refused and the good one stays.
func TestFeedTagsEndToEnd(t *testing.T) {
	p := newPKI(t)
	bad := snapshot(t, 2, localASN, vecNow)
	bad.Peers[0].Keys[0].Key = bad.Peers[0].Keys[0].Key[:8]
	other := snapshot(t, 3, 65002, vecNow) // valid, but for another AS's ABR
	f := &fakeACS{msgs: msgs(tablesMsg(snapshot(t, 1, localASN, vecNow)), tablesMsg(bad), tablesMsg(other)), beat: 20 * time.Millisecond, beats: -1}
	_, addr := serve(t, "127.0.0.1:0", p.acs, f)
	eng := newEngine(t)
	c := start(t, Config{Addr: addr, Identity: p.abr, Engine: eng})

	// Refused: bad's keys, other's membership (another AS) and other's keys
	// (which name this AS as a peer).
	waitFor(t, "three updates refused", func() bool { return c.Counters.Refused.Load() == 3 })
	waitFor(t, "heartbeats", func() bool { return c.Counters.Heartbeats.Load() > 0 })
	if got := eng.Tables().Version; got != 1 || c.Version() != 1 {
		t.Fatalf("engine version %d, client %d; want 1", got, c.Version())
	}
	if c.State() != Connected || c.LastUpdate().IsZero() || c.LastHeartbeat().IsZero() {
		t.Fatalf("state %s, last update %v, last heartbeat %v", c.State(), c.LastUpdate(), c.LastHeartbeat())
	}
	if n := c.Counters.Received.Load(); n != 5 { // two whole memberships, three FeedKeys
		t.Fatalf("received %d", n)
	}
	f.mu.Lock()
	req := f.reqs[0]
	f.mu.Unlock()
	if req.GetAsn() != localASN || req.GetAbr() != "abr1" || req.GetFeedVersion() != acspb.FeedVersion {
		t.Fatalf("request %v", req)
	}

	out, cnt := process(t, eng, 0, mustHex(t, v4In), vecNow)
	if !bytes.Equal(out, mustHex(t, v4Out)) {
		t.Fatalf("tagged frame\n got %x\nwant %s", out, v4Out)
	}
	if cnt.Actions[engine.ActTagged].Load() != 1 {
		t.Fatal("not counted as tagged")
	}
}

// TestFailStatic: with the ACS gone the engine keeps the last tables, whose
// keys reach as far as the ACS pushed them; when it comes back the client
// reconnects and publishes.
func TestFailStatic(t *testing.T) {
	p := newPKI(t)
	srv, addr := serve(t, "127.0.0.1:0", p.acs, &fakeACS{msgs: tablesMsg(snapshot(t, 1, localASN, vecNow))})
	eng := newEngine(t)
	c := start(t, Config{Addr: addr, Identity: p.abr, Engine: eng})
	waitFor(t, "first snapshot", func() bool { return eng.Tables().Version == 1 && c.State() == Connected })
	published := eng.Tables()

	srv.Stop()
	waitFor(t, "fail-static", func() bool { return c.State() == FailStatic })
	attempts := c.Counters.Attempts.Load()
	waitFor(t, "retries", func() bool { return c.Counters.Attempts.Load() >= attempts+3 })
	if eng.Tables() != published || c.Version() != 1 || c.State() != FailStatic {
		t.Fatalf("tables changed while the ACS is down: version %d, state %s", eng.Tables().Version, c.State())
	}

	// The far side: AS 65002's ABR with its view of the same keys (port 0
	// "outside", egress; port 1 "inside", ingress).
	far, err := engine.New(engine.Spec{Ports: []engine.PortSpec{{Name: "outside", Role: engine.RoleEgress, Peer: 1}, {Name: "inside", Role: engine.RoleIngress, Peer: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	ft, err := Convert(snapshot(t, 1, 65002, vecNow))
	if err != nil {
		t.Fatal(err)
	}
	far.Publish(ft)

	in := mustHex(t, v4In)
	for _, later := range []int64{0, 1, 2} {
		now := vecNow + later*vecPeriod
		tagged, cnt := process(t, eng, 0, in, now)
		if cnt.Actions[engine.ActTagged].Load() != 1 || len(tagged) != len(in)+16 {
			t.Fatalf("e+%d: not tagged (%x)", later, tagged)
		}
		if later == 0 && !bytes.Equal(tagged, mustHex(t, v4Out)) {
			t.Fatalf("e: got %x, want %s", tagged, v4Out)
		}
		plain, fcnt := process(t, far, 0, tagged, now)
		if fcnt.Actions[engine.ActValidated].Load() != 1 || !bytes.Equal(plain, in) {
			t.Fatalf("e+%d: far side did not validate: %x", later, plain)
		}
	}
	// Past the pushed window (e−1 … e+KeyWindow−2) the packet leaves
	// untagged: what fail-static cannot cover.
	past := int64(engine.KeyWindow - 1)
	out, cnt := process(t, eng, 0, in, vecNow+past*vecPeriod)
	if cnt.Actions[engine.ActUntagged].Load() != 1 || !bytes.Equal(out, in) {
		t.Fatalf("e+%d: %x", past, out)
	}

	// The ACS comes back with a new snapshot.
	serve(t, addr, p.acs, &fakeACS{msgs: tablesMsg(snapshot(t, 2, localASN, vecNow+vecPeriod))})
	waitFor(t, "reconnection", func() bool { return eng.Tables().Version == 2 && c.State() == Connected })
	if c.Version() != 2 || c.Counters.Reconnects.Load() == 0 || c.Counters.Published.Load() != 2 {
		t.Fatalf("version %d, reconnects %d, published %d", c.Version(), c.Counters.Reconnects.Load(), c.Counters.Published.Load())
	}
}

// TestSilentACS: an ACS that stops sending heartbeats with the stream still
// open is declared silent; the tables stay.
func TestSilentACS(t *testing.T) {
	p := newPKI(t)
	f := &fakeACS{msgs: tablesMsg(snapshot(t, 1, localASN, vecNow)), beat: 10 * time.Millisecond, beats: 3}
	_, addr := serve(t, "127.0.0.1:0", p.acs, f)
	eng := newEngine(t)
	c := start(t, Config{Addr: addr, Identity: p.abr, Engine: eng, HeartbeatInterval: 20 * time.Millisecond, MissedHeartbeats: 3})
	waitFor(t, "silence", func() bool { return c.Counters.Silences.Load() > 0 })
	if eng.Tables().Version != 1 || c.Version() != 1 || c.State() == NeverConnected {
		t.Fatalf("version %d, state %s", eng.Tables().Version, c.State())
	}
}

// TestACSAnnouncesInterval: an ACS whose heartbeats come every 100 ms is
// silent to an ABR configured for 20 ms × 3 — unless its heartbeats
// announce a longer interval (here 1 s, so the ABR waits 3 s), which the
// ABR then honours.
func TestACSAnnouncesInterval(t *testing.T) {
	p := newPKI(t)
	for _, announce := range []time.Duration{time.Second, 0} {
		f := &fakeACS{msgs: tablesMsg(snapshot(t, 1, localASN, vecNow)), beat: 100 * time.Millisecond, beats: -1, announce: announce}
		_, addr := serve(t, "127.0.0.1:0", p.acs, f)
		c := start(t, Config{Addr: addr, Identity: p.abr, Engine: newEngine(t), HeartbeatInterval: 20 * time.Millisecond, MissedHeartbeats: 3})
		if announce == 0 {
			waitFor(t, "silence without an announced interval", func() bool { return c.Counters.Silences.Load() > 0 })
			continue
		}
		waitFor(t, "six heartbeats", func() bool { return c.Counters.Heartbeats.Load() >= 6 })
		if n := c.Counters.Silences.Load(); n != 0 || c.State() != Connected {
			t.Fatalf("announced 1 s: %d silences, state %s", n, c.State())
		}
	}
}

// TestWrongServerCertificate: an ACS whose certificate is from another CA,
// or names another AS, gets no say: nothing is published, the client keeps
// retrying.
func TestWrongServerCertificate(t *testing.T) {
	p := newPKI(t)
	rogueCA, err := testpki.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	// An ABR certificate of our own AS posing as the ACS (docs/wire.md
	// §3.1: an ABR accepts only its own AS's acs certificate).
	posing := identity(t, p.ca, localASN, pki.RoleACS)
	posing.Cert = identity(t, p.ca, localASN, pki.RoleABR).Cert
	for name, id := range map[string]pair.Identity{
		"other CA":          identity(t, rogueCA, localASN, pki.RoleACS),
		"other AS":          identity(t, p.ca, 65002, pki.RoleACS),
		"ABR posing as ACS": posing,
	} {
		t.Run(name, func(t *testing.T) {
			id.CA = p.ca.Pool() // the server itself accepts the ABR
			_, addr := serveAs(t, id, &fakeACS{msgs: tablesMsg(snapshot(t, 1, localASN, vecNow))})
			eng := newEngine(t)
			initial := eng.Tables()
			c := start(t, Config{Addr: addr, Identity: p.abr, Engine: eng})
			waitFor(t, "retries", func() bool { return c.Counters.Attempts.Load() >= 4 })
			if eng.Tables() != initial || c.Version() != 0 || c.State() != NeverConnected ||
				c.Counters.Received.Load() != 0 || c.Counters.Published.Load() != 0 {
				t.Fatalf("published from a wrong ACS: version %d, state %s", eng.Tables().Version, c.State())
			}
		})
	}
}

func TestNewChecks(t *testing.T) {
	p := newPKI(t)
	eng := newEngine(t)
	for name, cfg := range map[string]Config{
		"no address":      {Identity: p.abr, Engine: eng},
		"no engine":       {Addr: "127.0.0.1:1", Identity: p.abr},
		"other AS":        {Addr: "127.0.0.1:1", Identity: p.abr, Engine: eng, ACSASN: 65002},
		"bad identity":    {Addr: "127.0.0.1:1", Identity: pair.Identity{ASN: localASN}, Engine: eng},
		"ACS certificate": {Addr: "127.0.0.1:1", Identity: p.acs, Engine: eng},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCollector(t *testing.T) {
	p := newPKI(t)
	_, addr := serve(t, "127.0.0.1:0", p.acs, &fakeACS{msgs: tablesMsg(snapshot(t, 5, localASN, vecNow))})
	eng := newEngine(t)
	c := start(t, Config{Addr: addr, Identity: p.abr, Engine: eng})
	waitFor(t, "snapshot", func() bool { return c.Version() == 5 })
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(c)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for name, v := range map[string]float64{
		"psavd_abr_tables_version": 5, "psavd_abr_feed_state{connected}": 1, "psavd_abr_feed_state{fail-static}": 0,
		"psavd_abr_snapshots_published_total": 1, "psavd_abr_snapshots_received_total": 2, "psavd_abr_feed_attempts_total": 1,
		"psavd_abr_membership_version": 5, "psavd_abr_feed_messages_total{membership}": 1, "psavd_abr_feed_messages_total{keys}": 1,
	} {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (%v), want %v", name, g, ok, v)
		}
	}
	if got["psavd_abr_feed_bytes_total{membership}"] == 0 || got["psavd_abr_feed_bytes_total{keys}"] == 0 {
		t.Errorf("feed bytes not counted: %v", got)
	}
	if len(got) != 19 {
		t.Errorf("%d metrics: %v", len(got), got)
	}
}
