package node

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/control/static"
	"github.com/psavd/psavd/engine"
)

// psavRoles is where a node's PSAV keys come from: its own ACS ([acs]),
// the ACS of its AS over the feed ([abr]), or the static schedule of
// [[psav.static_peer]] (neither).
type psavRoles struct {
	log  *zap.Logger
	acs  *acs.Node
	rpki *rpkiGate // [rpki], rpki.go
	feed *abr.Client
	pub  *static.Publisher // static keys, on a node with ports and no ACS/ABR

	// The certificates and trust anchors of [acs] and [abr], renewed by a
	// reload (every handshake takes the ones in force).
	acsCreds, abrCreds *pair.Credentials
	set                *membership.Set // the ACS's membership
}

func newPSAVRoles(c *config.Config, log *zap.Logger) (*psavRoles, error) {
	p := &psavRoles{log: log}
	if c.ACS != nil {
		if err := p.newACS(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// newACS builds the AS Control Server of [acs]: it peers with the other ACS
// over mutual TLS 1.3, negotiates a state machine with each, keeps the
// membership and serves Feed to this AS's ABRs and Status to psavctl.
func (p *psavRoles) newACS(c *config.Config) error {
	a := c.ACS
	id, err := pair.LoadIdentity(c.PSAV.ASN, pki.RoleACS, a.Cert, a.Key, a.CA)
	if err != nil {
		return fmt.Errorf("%s: [acs]: %w", c.File, err)
	}
	p.acsCreds = pair.NewCredentials(id.Cert, id.CA)
	revs, err := pair.LoadRevocations(a.CRL, a.CA)
	if err != nil {
		return fmt.Errorf("%s: acs.crl: %w", c.File, err)
	}
	p.acsCreds.SetRevocations(revs)
	id.Live = p.acsCreds
	tree, err := membership.NewTree(a.Communities)
	if err != nil {
		return fileErr(c, "acs.community", err)
	}
	policy, err := membership.NewPolicy(a.Anchors)
	if err != nil {
		return fileErr(c, "acs.community", err)
	}
	if err := policy.SetQuotas(a.Quotas); err != nil {
		return fileErr(c, "acs.community", err)
	}
	if err := policy.SetMembers(a.Members); err != nil {
		return fileErr(c, "acs.community", err)
	}
	set, err := membership.OpenSet(a.MembershipDir, policy)
	if err != nil {
		return fileErr(c, "acs.membership_dir", err)
	}
	// A stored record that no longer passes (a retired community key, a
	// corrupted file) is moved aside, not a reason to stay down.
	for _, q := range set.Quarantined() {
		p.log.Warn("membership record quarantined", zap.String("file", q.File), zap.String("moved_to", q.MovedTo), zap.String("reason", q.Reason))
	}
	p.set = set
	if c.RPKI != nil {
		if p.rpki, err = newRPKI(c, set, p.log.Named("rpki")); err != nil { // rpki.go
			return err
		}
	}
	peers := make([]acs.PeerConfig, len(a.Peers))
	for i, pc := range a.Peers {
		peers[i] = acs.PeerConfig{ASN: pc.ASN, Address: pc.Address}
	}
	p.acs, err = acs.New(acs.Config{
		ASN: c.PSAV.ASN, Identity: id, Listen: a.Listen, Peers: peers,
		Heartbeat: a.Heartbeat, DeadAfter: a.DeadAfter, KeyLead: a.KeyLead, Limits: a.Limits,
		T0: c.PSAV.T0, Period: uint32(c.PSAV.EpochSeconds),
		Membership: set, MembershipPolicy: policy, Tree: tree,
		Logger: p.log.Named("acs"),
	})
	if err != nil {
		return fmt.Errorf("%s: [acs]: %w", c.File, err)
	}
	return nil
}

// roles are the PSAV roles of c; eng is the node's engine (nil: no ports).
func (p *psavRoles) roles(c *config.Config, eng *engine.Engine) ([]Role, error) {
	var roles []Role
	if p.rpki != nil {
		roles = append(roles, p.rpki.roles()...) // rpki.go
	}
	if p.acs != nil {
		roles = append(roles, p.acsRole(c))
		if eng != nil {
			roles = append(roles, Role{Name: "acs-local-feed", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
				ready()
				feedLocal(ctx, p.acs, eng, p.log)
				return nil
			}})
		}
	}
	if eng == nil {
		return roles, nil
	}
	// The static tables (this AS's prefixes; keys only of static peers)
	// are in force from the start; an ACS (local or over the feed) then
	// owns the PSAV part, and a feed keeps the last one if its ACS goes
	// away (fail-static). Routes are the node's own (PublishRoutes).
	sched, err := static.New(c.PSAV)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	eng.Publish(sched.At(time.Now().Unix()))
	if c.ABR != nil || p.acs != nil {
		roles = append(roles, horizonRole(eng, p.log))
	}
	switch {
	case c.ABR != nil:
		id, err := pair.LoadIdentity(c.PSAV.ASN, pki.RoleABR, c.ABR.Cert, c.ABR.Key, c.ABR.CA)
		if err != nil {
			return nil, fmt.Errorf("%s: [abr]: %w", c.File, err)
		}
		p.abrCreds = pair.NewCredentials(id.Cert, id.CA)
		revs, err := pair.LoadRevocations(c.ABR.CRL, c.ABR.CA)
		if err != nil {
			return nil, fmt.Errorf("%s: abr.crl: %w", c.File, err)
		}
		p.abrCreds.SetRevocations(revs)
		id.Live = p.abrCreds
		// The ABR is the one its certificate names (psav:as<N>:abr:<name>).
		self, err := pair.CertIdentity(id.Cert.Leaf)
		if err != nil {
			return nil, fmt.Errorf("%s: [abr]: %w", c.File, err)
		}
		name := self.Name
		p.feed, err = abr.New(abr.Config{Addr: c.ABR.ACS, Identity: id, Name: name, Engine: eng, Log: p.log})
		if err != nil {
			return nil, fmt.Errorf("%s: [abr]: %w", c.File, err)
		}
		roles = append(roles, Role{Name: "abr-feed", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			// Ready once the tables of this AS's ACS are in force (its
			// first snapshot); from then on fail-static is a state the feed
			// serves in, not a failure.
			ctx, cancel := context.WithCancel(ctx)
			defer cancel() // a failed run stops waiting: it is not ready
			go func() {
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for p.feed.Version() == 0 {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
				ready()
			}()
			return p.feed.Run(ctx)
		}})
	case p.acs == nil:
		p.pub = static.NewPublisher(eng, sched)
		roles = append(roles, Role{Name: "static-keys", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			p.pub.Run(ctx, time.Now)
			return nil
		}})
	}
	return roles, nil
}

// acsRole runs the ACS. Fatal: its state machines live in the process, and
// a silent restart would look like a new peer to every other ACS; the
// service manager restarts psavd from the same files instead.
func (p *psavRoles) acsRole(c *config.Config) Role {
	return Role{Name: "acs", Policy: Fatal, Run: func(ctx context.Context, ready func()) error {
		if err := p.acs.Start(ctx); err != nil {
			return fileErr(c, "acs.listen", err)
		}
		if err := p.publishOwnRecord(c); err != nil {
			return err
		}
		p.log.Info("ACS listening", zap.String("listen", p.acs.Addr().String()), zap.Int("peers", len(c.ACS.Peers)))
		ready()
		select {
		case <-ctx.Done():
			return nil
		case err := <-p.acs.Failed():
			return fileErr(c, "acs.listen", err)
		}
	}}
}

// publishOwnRecord publishes [acs] record, this AS's signed and endorsed
// membership record; after a restart it is already held.
func (p *psavRoles) publishOwnRecord(c *config.Config) error {
	if c.ACS.Record == "" {
		return nil
	}
	rec, err := os.ReadFile(c.ACS.Record)
	if err == nil {
		_, err = p.acs.Publish(rec)
	}
	switch membership.ReasonOf(err) {
	case membership.ReasonReplay:
		p.log.Info("own membership record already held", zap.String("record", c.ACS.Record))
	case membership.ReasonStaleVersion:
		p.log.Warn("acs.record is older than the record held for this AS; the newer one stays", zap.String("record", c.ACS.Record))
	default:
		if err != nil {
			return fileErr(c, "acs.record", err)
		}
	}
	return nil
}

func (p *psavRoles) collectors() []prometheus.Collector {
	var cols []prometheus.Collector
	if p.acs != nil {
		cols = append(cols, acs.NewCollector(p.acs))
		set := p.set
		cols = append(cols, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "psavd_membership_quarantined_files",
			Help: "Stored membership record files moved to the quarantine directory at start (refused or corrupted)."},
			func() float64 { return float64(len(set.Quarantined())) }))
	}
	if p.rpki != nil {
		cols = append(cols, p.rpki.collectors()...) // rpki.go
	}
	if p.feed != nil {
		cols = append(cols, abr.NewCollector(p.feed))
	}
	return cols
}

func (p *psavRoles) close() {
	if p.acs != nil {
		_ = p.acs.Close()
	}
}

// feedLocal publishes the local ACS's tables into this node's own engine (an
// ACS and an ABR in one process): the same feed a remote ABR reads
// (acs.FeedCursor), through the same assembly, checks and make before
// break (abr.Assembler), so that a large membership is built once per
// change, not at every epoch.
func feedLocal(ctx context.Context, node *acs.Node, eng *engine.Engine, log *zap.Logger) {
	cur, asm := node.NewFeedCursor(), abr.NewAssembler(node.ASN())
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		for _, m := range cur.Next(now) {
			if tb, err := asm.Apply(m, now); err != nil {
				log.Error("local ACS tables refused", zap.Error(err))
			} else if tb != nil {
				eng.Publish(tb)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// renewCredentials reads the certificate, key and CA files of next's [acs]
// and [abr] again — a renewal usually rewrites the same files — and returns
// a function that puts them in force, and the sections whose credentials
// changed. A file that no longer loads refuses the reload.
func (p *psavRoles) renewCredentials(next *config.Config) (apply func(), changed []string, err error) {
	var sets []func()
	renew := func(section string, role pki.Role, creds *pair.Credentials, cert, key, ca string, crls []string) error {
		if creds == nil {
			return nil
		}
		id, err := pair.LoadIdentity(next.PSAV.ASN, role, cert, key, ca)
		if err != nil {
			return fmt.Errorf("%s: [%s]: %w", next.File, section, err)
		}
		revs, err := pair.LoadRevocations(crls, ca)
		if err != nil {
			return fmt.Errorf("%s: [%s] crl: %w", next.File, section, err)
		}
		if creds.Differs(id.Cert, id.CA) {
			changed = append(changed, section)
		}
		sets = append(sets, func() { creds.Set(id.Cert, id.CA); creds.SetRevocations(revs) })
		return nil
	}
	if a := next.ACS; a != nil {
		if err := renew("acs", pki.RoleACS, p.acsCreds, a.Cert, a.Key, a.CA, a.CRL); err != nil {
			return nil, nil, err
		}
	}
	if b := next.ABR; b != nil {
		if err := renew("abr", pki.RoleABR, p.abrCreds, b.Cert, b.Key, b.CA, b.CRL); err != nil {
			return nil, nil, err
		}
	}
	return func() {
		for _, set := range sets {
			set()
		}
		// Sessions of certificates revoked since are closed now, not at
		// their next handshake, which may be days away.
		if p.acs != nil {
			if n := p.acs.CloseRevoked(); n > 0 {
				p.log.Warn("sessions of revoked certificates closed", zap.Int("sessions", n))
			}
		}
	}, changed, nil
}

// horizonRole is the fail-static alarm: it warns, every quarter epoch,
// while the keys the data plane holds run out within HorizonAlarm epochs
// (psavd_abr_key_horizon_seconds is the gauge), and says when they are
// gone.
func horizonRole(eng *engine.Engine, log *zap.Logger) Role {
	return Role{Name: "key-horizon", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		ready()
		for {
			t := eng.PSAVTables()
			period := max(t.Period, 1)
			if h := t.KeyHorizon(time.Now().Unix()); h >= 0 && h < HorizonAlarm*period {
				log.Warn("keys run out soon: tagging and validation with a peer stop then (is the ACS reachable?)",
					zap.Int64("horizon_seconds", h), zap.Int64("epoch_seconds", period))
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Duration(period) * time.Second / 4):
			}
		}
	}}
}

// HorizonAlarm is how many epochs before the keys run out the alarm starts.
const HorizonAlarm = 3
