package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/rpki"
	"github.com/psavd/psavd/engine"
	"go.uber.org/zap"
)

// startACS runs the AS Control Server that [acs] describes: it peers with
// the other ACS over mutual TLS 1.3, negotiates a state machine with each,
// keeps the membership (publishing this AS's own record if [acs] record
// names one) and serves Feed to the ABRs of this AS and Status to psavctl.
func startACS(ctx context.Context, c *config.Config, log *zap.Logger) (*acs.Node, error) {
	a := c.ACS
	id, err := pair.LoadIdentity(c.PSAV.ASN, a.Cert, a.Key, a.CA)
	if err != nil {
		return nil, fmt.Errorf("%s: [acs]: %w", c.File, err)
	}
	tree, err := membership.NewTree(a.Communities)
	if err != nil {
		return nil, fmt.Errorf("%s: acs.community: %w", c.File, err)
	}
	policy, err := membership.NewPolicy(a.Anchors)
	if err != nil {
		return nil, fmt.Errorf("%s: acs.community: %w", c.File, err)
	}
	set, err := membership.OpenSet(a.MembershipDir, policy)
	if err != nil {
		return nil, fmt.Errorf("%s: acs.membership_dir: %w", c.File, err)
	}
	if c.RPKI != nil {
		// Where RPKI data is available, a record whose prefixes are not
		// covered by ROAs for its ASN is refused (docs/wire.md §3.2). Until the
		// first complete download there is no data, and nothing is refused.
		rc, err := rpki.NewClient(rpki.Config{Addr: c.RPKI.Server, Logger: log.Named("rpki")})
		if err != nil {
			return nil, fmt.Errorf("%s: rpki.server: %w", c.File, err)
		}
		go func() { _ = rc.Run(ctx) }()
		set.SetPrefixCheck(func(asn uint32, prefixes []netip.Prefix) error {
			v := rc.Validator()
			if v == nil {
				return nil
			}
			if ok, unc := v.Covered(asn, prefixes); !ok {
				return fmt.Errorf("not covered by a validated ROA for AS%d: %v", asn, unc)
			}
			return nil
		})
		log.Info("RPKI", zap.String("rtr", c.RPKI.Server))
	}
	peers := make([]acs.PeerConfig, len(a.Peers))
	for i, p := range a.Peers {
		peers[i] = acs.PeerConfig{ASN: p.ASN, Address: p.Address}
	}
	node, err := acs.New(acs.Config{
		ASN: c.PSAV.ASN, Identity: id, Listen: a.Listen, Peers: peers,
		Heartbeat: a.Heartbeat, DeadAfter: a.DeadAfter,
		T0: c.PSAV.T0, Period: uint32(c.PSAV.EpochSeconds),
		Membership: set, MembershipPolicy: policy, Tree: tree,
		Logger: log.Named("acs"),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: [acs]: %w", c.File, err)
	}
	if err := node.Start(ctx); err != nil {
		return nil, fmt.Errorf("%s: acs.listen: %w", c.File, err)
	}
	if a.Record != "" {
		rec, err := os.ReadFile(a.Record)
		if err == nil {
			_, err = node.Publish(rec)
		}
		switch membership.ReasonOf(err) {
		case membership.ReasonReplay:
			// After a restart the record is back from membership_dir.
			log.Info("own membership record already held", zap.String("record", a.Record))
		case membership.ReasonStaleVersion:
			log.Warn("acs.record is older than the record held for this AS; the newer one stays", zap.String("record", a.Record))
		default:
			if err != nil {
				node.Close()
				return nil, fmt.Errorf("%s: acs.record: %w", c.File, err)
			}
		}
	}
	log.Info("ACS listening", zap.String("listen", node.Addr().String()), zap.Int("peers", len(peers)))
	return node, nil
}

// feedLocal publishes the local ACS's tables into this node's own engine (an
// ACS and an ABR in one process): whenever their version or the epoch
// changes, through the same strict conversion a remote ABR applies.
func feedLocal(ctx context.Context, node *acs.Node, eng *engine.Engine, routes *engine.Tables, log *zap.Logger) {
	var version uint64
	epoch := int64(-1)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		tb := node.Tables(now)
		e := engine.Epoch(now.Unix(), tb.GetT0(), tb.GetPeriodSeconds())
		if tb.GetVersion() != version || e != epoch {
			conv, err := abr.Convert(tb)
			if err != nil {
				log.Error("local ACS tables refused", zap.Error(err))
			} else {
				if routes != nil {
					conv.Routes, conv.Hops = routes.Routes, routes.Hops
				}
				eng.Publish(conv)
				version, epoch = tb.GetVersion(), e
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
