package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/adot"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/control/decent/push"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/xtr"
)

// decentNode is the LISP-Decent side of a node ([lisp.decent]): in push
// mode a registration-group member (its own Map-Server and Map-Resolver),
// in pull mode the hash-to-DNS look-up of map-servers over ADoT. Its
// directory tells the xTR where to register and where to ask.
type decentNode struct {
	log     *zap.Logger
	pullDir *pullDirectory
	push    *push.Node
	group   netip.Addr
	pull    *pull.Node
	client  *adot.Client
	guard   *pull.Guard // pull: the ownership check on [lisp.map_server], when lisp.decent.owned
	dir     xtr.Directory
}

// newDecent builds [lisp.decent] (nil when there is none): the push node,
// or the ADoT client and the pull directory's resolver. Its sockets are
// opened by its role.
func newDecent(c *config.Config, log *zap.Logger) (*decentNode, error) {
	if c.LISP == nil || c.LISP.Decent == nil {
		return nil, nil
	}
	l := c.LISP
	var auth lisp.AuthConfig // without lisp.decent.site there is no database to sign
	if a := l.Decent.Auth; a != nil {
		auth = *a
	}
	if l.Decent.Push != nil {
		pc := *l.Decent.Push
		pc.OnMismatch = func(m push.Mismatch) {
			log.Warn("LISP-Decent configuration mismatch", zap.String("what", m.String()))
		}
		node, err := push.New(pc)
		if err != nil {
			return nil, fmt.Errorf("%s: [lisp.decent]: %w", c.File, err)
		}
		pc = node.Config()
		return &decentNode{log: log, push: node, group: pc.Group, dir: &pushDirectory{node: node, group: pc.Group, port: pc.ControlPort,
			self: netip.AddrPortFrom(pc.RLOC, pc.ControlPort), auth: auth}}, nil
	}
	client, err := adot.NewClient(*c.ADoT.Client)
	if err != nil {
		return nil, fmt.Errorf("%s: [adot]: %w", c.File, err)
	}
	pc := *l.Decent.Pull
	pc.Resolver = client
	p, err := pull.New(pc)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: [lisp.decent]: %w", c.File, err)
	}
	d := newPullDirectory(p, l.InstanceID, auth, log)
	return &decentNode{log: log, pull: p, client: client, pullDir: d, dir: d}, nil
}

// roles: the push node on its sockets (restarted with back-off if they
// fail; the node keeps its registrations), or the pull directory's
// background resolution.
func (n *decentNode) roles() []Role {
	if n.push != nil {
		return []Role{{Name: "decent-push", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			pc := n.push.Config()
			socks, err := push.Listen(pc)
			if err != nil {
				return fmt.Errorf("[lisp.decent]: %w", err)
			}
			defer socks.Close()
			n.log.Info("LISP-Decent push", zap.Stringer("group", pc.Group), zap.Stringer("rloc", pc.RLOC), zap.Stringer("transport", pc.Transport),
				zap.Uint16("control_port", pc.ControlPort))
			ready()
			return n.push.Run(ctx, socks)
		}}}
	}
	return []Role{{Name: "decent-pull", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		pc := n.pull.Config()
		n.log.Info("LISP-Decent pull", zap.String("suffix", pc.Suffix), zap.Uint64("modulus", pc.Modulus), zap.Stringer("hash_mode", pc.Mode),
			zap.Int("hash_mask", pc.Mask))
		ready()
		n.pullDir.run(ctx)
		return nil
	}}}
}

func (n *decentNode) close() {
	if n.client != nil {
		n.client.Close()
	}
}

// pushDirectory: every member of the group is a Map-Server holding every
// registration, so the ETR registers with each member of the group's RLE
// (as this node's Map-Server holds it, ourselves included) and the ITR asks
// its own node.
type pushDirectory struct {
	node  *push.Node
	group netip.Addr
	port  uint16
	self  netip.AddrPort
	auth  lisp.AuthConfig
}

func (d *pushDirectory) MapServers(xtr.Mapping) []xtr.MapServer {
	var out []xtr.MapServer
	for _, m := range d.node.Members(d.group, time.Now()) {
		out = append(out, xtr.MapServer{Addr: netip.AddrPortFrom(m, d.port), Auth: d.auth, WantNotify: true, ProxyReply: true})
	}
	return out
}

func (d *pushDirectory) MapResolver(uint32, netip.Addr) (netip.AddrPort, bool) { return d.self, true }

// pullDirectory: a mapping is registered with every address of
// <index>.<suffix> of its EID prefix; a Map-Request for an EID goes round
// robin over the addresses of its /32 or /128's name. Names are resolved
// in the background (the xTR must not wait on DNS): an index first asked
// for is resolved at once, every known one every second from the Pull's
// cache (which re-resolves when the TTL runs out, at least every 30 s).
type pullDirectory struct {
	pull *pull.Node
	iid  uint32
	auth lisp.AuthConfig
	log  *zap.Logger
	kick chan struct{}

	mu     sync.Mutex
	known  map[uint64][]netip.AddrPort
	rr     map[uint64]uint64
	pinned map[uint64]bool      // indexes of the database: always kept
	asked  map[uint64]time.Time // indexes of Map-Requests: kept while asked for
}

// askedFor is how long an index of Map-Requests is kept resolved after
// the last request.
const askedFor = 10 * time.Minute

func newPullDirectory(p *pull.Node, iid uint32, auth lisp.AuthConfig, log *zap.Logger) *pullDirectory {
	return &pullDirectory{pull: p, iid: iid, auth: auth, log: log, kick: make(chan struct{}, 1),
		known: map[uint64][]netip.AddrPort{}, rr: map[uint64]uint64{}, pinned: map[uint64]bool{}, asked: map[uint64]time.Time{}}
}

func (d *pullDirectory) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *pullDirectory) MapServers(m xtr.Mapping) []xtr.MapServer {
	i := d.pull.IndexOf(d.iid, m.EID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.pinned[i] {
		d.pinned[i] = true
		d.wake()
	}
	var out []xtr.MapServer
	for _, a := range d.known[i] {
		out = append(out, xtr.MapServer{Addr: a, Auth: d.auth, WantNotify: true, ProxyReply: true})
	}
	return out
}

func (d *pullDirectory) MapResolver(iid uint32, eid netip.Addr) (netip.AddrPort, bool) {
	i := d.pull.IndexOf(iid, netip.PrefixFrom(eid, eid.BitLen()))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked[i] = time.Now()
	s := d.known[i]
	if len(s) == 0 {
		d.wake()
		return netip.AddrPort{}, false
	}
	n := d.rr[i]
	d.rr[i] = n + 1
	return s[n%uint64(len(s))], true
}

// run resolves the wanted indexes until ctx is done.
func (d *pullDirectory) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		d.resolve(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

func (d *pullDirectory) resolve(ctx context.Context) {
	now := time.Now()
	d.mu.Lock()
	var want []uint64
	for i := range d.pinned {
		want = append(want, i)
	}
	for i, at := range d.asked {
		if now.Sub(at) > askedFor {
			delete(d.asked, i)
			if !d.pinned[i] {
				delete(d.known, i)
			}
			continue
		}
		if !d.pinned[i] {
			want = append(want, i)
		}
	}
	d.mu.Unlock()
	// In parallel (bounded): a dead DoT server costs one timeout per pass.
	for _, r := range d.pull.ResolveIndexes(ctx, want, 5*time.Second) {
		i, s, err := r.Index, r.Servers, r.Err
		d.mu.Lock()
		switch {
		case err == nil:
			d.known[i] = s
		case errors.Is(err, pull.ErrNoMapServers):
			delete(d.known, i) // the name is gone: nowhere to register or ask
		default:
			if ctx.Err() == nil {
				d.log.Debug("LISP-Decent name not resolved", zap.String("name", pull.Name(i, d.pull.Config().Suffix)), zap.Error(err))
			}
		}
		d.mu.Unlock()
	}
}

// collectors are the node's metrics: the push node's registrations,
// membership, digest and mismatches, or the pull side's resolutions, the
// ownership check and the ADoT client's metrics.
func (n *decentNode) collectors() []prometheus.Collector {
	if n == nil {
		return nil
	}
	cols := []prometheus.Collector{&decentCollector{n: n}}
	if n.client != nil {
		cols = append(cols, adot.NewCollector(n.client.Metrics(), adot.RoleClient))
	}
	return cols
}

type decentCollector struct{ n *decentNode }

var (
	decentPushRegistrations = prometheus.NewDesc("psavd_decent_push_registrations", "EID registrations this push node's Map-Server holds (every member should hold the same).", nil, nil)
	decentPushMembers       = prometheus.NewDesc("psavd_decent_push_members", "Members of the registration group (its RLE as this node holds it).", nil, nil)
	decentPushDigest        = prometheus.NewDesc("psavd_decent_push_digest_info", "Digest of the registration set (members that agree have the same).", []string{"digest"}, nil)
	decentPushMismatches    = prometheus.NewDesc("psavd_decent_push_mismatches_total", "Registrations from members refused for a configuration reason.", nil, nil)
	decentPushRegisters     = prometheus.NewDesc("psavd_decent_push_registers_total", "Map-Registers by direction (sent: datagrams, received: from the network).", []string{"direction"}, nil)
	decentPullResolutions   = prometheus.NewDesc("psavd_decent_pull_resolutions_total", "Map-server names resolved, by result.", []string{"result"}, nil)
	decentPullMismatches    = prometheus.NewDesc("psavd_decent_pull_mismatches_total", "Map-Registers for indexes this Map-Server does not own (modulus, hash mode or zone differ).", nil, nil)
)

func (c *decentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{decentPushRegistrations, decentPushMembers, decentPushDigest, decentPushMismatches,
		decentPushRegisters, decentPullResolutions, decentPullMismatches} {
		ch <- d
	}
}

func (c *decentCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	if p := c.n.push; p != nil {
		st := p.Stats()
		ch <- prometheus.MustNewConstMetric(decentPushRegistrations, prometheus.GaugeValue, float64(p.MapServer().Len(now)))
		ch <- prometheus.MustNewConstMetric(decentPushMembers, prometheus.GaugeValue, float64(len(p.Members(c.n.group, now))))
		ch <- prometheus.MustNewConstMetric(decentPushDigest, prometheus.GaugeValue, 1, p.Digest(now))
		ch <- prometheus.MustNewConstMetric(decentPushMismatches, prometheus.CounterValue, float64(st.Mismatches))
		ch <- prometheus.MustNewConstMetric(decentPushRegisters, prometheus.CounterValue, float64(st.RegistersSent), "sent")
		ch <- prometheus.MustNewConstMetric(decentPushRegisters, prometheus.CounterValue, float64(st.RegistersReceived), "received")
	}
	if p := c.n.pull; p != nil {
		st := p.Stats()
		ch <- prometheus.MustNewConstMetric(decentPullResolutions, prometheus.CounterValue, float64(st.Resolutions-st.ResolveErrors), "ok")
		ch <- prometheus.MustNewConstMetric(decentPullResolutions, prometheus.CounterValue, float64(st.ResolveErrors), "error")
		ch <- prometheus.MustNewConstMetric(decentPullResolutions, prometheus.CounterValue, float64(st.StaleAnswers), "stale")
		if g := c.n.guard; g != nil {
			m, _ := g.Mismatches()
			ch <- prometheus.MustNewConstMetric(decentPullMismatches, prometheus.CounterValue, float64(m))
		}
	}
}
