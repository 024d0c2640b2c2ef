package node

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/rpki"
)

// firstDataWait bounds how long, under fail_closed, the first record judged
// after start waits for the first RTR download: the ACS publishes its own
// record as it starts, and refusing it only because the cache has not
// answered yet would stop the node.
const firstDataWait = 10 * time.Second

// rpkiGate is the ACS's RPKI cross-check (docs/wire.md §3.2): an RTR client
// of [rpki] server, the check of every record that arrives, and the
// re-validation of every held record whenever the VRPs change or expire.
// Under fail_closed a held record the VRPs no longer cover is held aside
// (out of the tables the ABRs get) until they cover it again; under
// fail_open it stays in force and psavd_rpki_uncovered_records counts it.
type rpkiGate struct {
	log    *zap.Logger
	client *rpki.Client
	set    *membership.Set
	policy config.RPKIPolicy

	updated   chan struct{} // a new snapshot (End of Data); capacity 1
	firstData chan struct{} // closed at the first snapshot
	firstOnce sync.Once
	waited    atomic.Bool // the start-up wait for data is spent

	mu        sync.Mutex
	uncovered map[uint32]bool // in force but not covered (fail_open), for the log
	aside     int
	setAside  uint64 // records taken out of force, ever
	readmit   uint64 // records put back in force, ever
	passes    uint64
}

// newRPKI builds the gate of c's [rpki] around set and judges the held
// records once before the ACS serves them (under fail_closed they are out
// of force until the first download).
func newRPKI(c *config.Config, set *membership.Set, log *zap.Logger) (*rpkiGate, error) {
	g := &rpkiGate{log: log, set: set, policy: c.RPKI.Policy,
		updated: make(chan struct{}, 1), firstData: make(chan struct{}), uncovered: map[uint32]bool{}}
	rc, err := rpki.NewClient(rpki.Config{Addr: c.RPKI.Server, TLS: c.RPKI.TLS, SSH: c.RPKI.SSH, Logger: log,
		OnUpdate: func(*rpki.Validator) {
			g.firstOnce.Do(func() { close(g.firstData) })
			select {
			case g.updated <- struct{}{}:
			default: // a pass is already due
			}
		}})
	if err != nil {
		return nil, fileErr(c, "rpki.server", err)
	}
	g.client = rc
	set.SetPrefixCheck(g.admit)
	// A more-specific of another member's prefix is let in by a ROA for
	// the new AS, and only by one: missing data covers nothing, whatever
	// the policy (else fail_open would hand out anyone's space).
	set.SetCoverCheck(func(asn uint32, p netip.Prefix) bool {
		v := g.client.Validator()
		if v == nil {
			return false
		}
		ok, _ := v.Covered(asn, []netip.Prefix{p})
		return ok
	})
	g.revalidate()
	return g, nil
}

// admit is the check of every join and update that arrives: refused when
// the VRPs do not cover it, and under fail_closed also when there is no
// usable data.
func (g *rpkiGate) admit(asn uint32, prefixes []netip.Prefix) error {
	v := g.client.Validator()
	if v == nil && g.policy == config.RPKIFailClosed && !g.waited.Load() {
		select {
		case <-g.firstData:
		case <-time.After(firstDataWait):
		}
		g.waited.Store(true)
		v = g.client.Validator()
	}
	return judge(v, g.policy, asn, prefixes)
}

// judge is the verdict on one record's prefixes with snapshot v (nil: no
// usable data).
func judge(v *rpki.Validator, policy config.RPKIPolicy, asn uint32, prefixes []netip.Prefix) error {
	if v == nil {
		if policy == config.RPKIFailOpen {
			return nil
		}
		return fmt.Errorf("no usable RPKI data (never downloaded, or expired) and [rpki] policy is fail_closed")
	}
	if ok, unc := v.Covered(asn, prefixes); !ok {
		return fmt.Errorf("not covered by a validated ROA for AS%d: %v", asn, unc)
	}
	return nil
}

// revalidate judges every held record against the current snapshot.
// Under fail_open without data nothing is judged uncovered by the VRPs,
// but every record is unvouched for: counted as uncovered too.
func (g *rpkiGate) revalidate() {
	v := g.client.Validator()
	check := func(asn uint32, prefixes []netip.Prefix) error {
		if v == nil {
			return judge(nil, config.RPKIFailClosed, asn, prefixes)
		}
		return judge(v, g.policy, asn, prefixes)
	}
	res := g.set.Revalidate(check, g.policy == config.RPKIFailClosed)
	why := func(asn uint32, r membership.Record) zap.Field {
		return zap.NamedError("reason", check(asn, r.Prefixes))
	}
	if len(res.SetAside) > 0 {
		aside := map[uint32]membership.Record{}
		for _, r := range g.set.Aside() {
			aside[r.ASN] = r
		}
		for _, asn := range res.SetAside {
			r := aside[asn]
			g.log.Warn("membership record taken out of force: RPKI no longer covers it (fail_closed); held aside until it does",
				zap.Uint32("asn", asn), zap.Uint64("version", r.Version), why(asn, r))
		}
	}
	for _, asn := range res.Readmitted {
		g.log.Info("membership record back in force: RPKI covers it again", zap.Uint32("asn", asn))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := map[uint32]bool{}
	for _, asn := range res.Uncovered {
		now[asn] = true
		if !g.uncovered[asn] {
			r, _ := g.set.Get(asn)
			g.log.Warn("membership record not covered by RPKI; kept in force (fail_open)", zap.Uint32("asn", asn), why(asn, r))
		}
	}
	for asn := range g.uncovered {
		if !now[asn] {
			g.log.Info("membership record covered by RPKI again", zap.Uint32("asn", asn))
		}
	}
	g.uncovered = now
	g.aside = res.Aside
	g.setAside += uint64(len(res.SetAside))
	g.readmit += uint64(len(res.Readmitted))
	g.passes++
}

// roles are the RTR session and the re-validation loop: a pass after every
// End of Data (a change of serial or of nothing: cheap either way) and when
// the snapshot expires.
func (g *rpkiGate) roles() []Role {
	return []Role{
		{Name: "rpki", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			return g.client.Run(ctx)
		}},
		{Name: "rpki-revalidate", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			for {
				var expiry <-chan time.Time
				var t *time.Timer
				if v := g.client.Validator(); v != nil && !v.Expires().IsZero() {
					t = time.NewTimer(time.Until(v.Expires()))
					expiry = t.C
				}
				select {
				case <-ctx.Done():
				case <-g.updated:
				case <-expiry:
					g.log.Warn("RPKI data expired: no End of Data from the cache within its Expire Interval", zap.Stringer("policy", g.policy))
				}
				if t != nil {
					t.Stop()
				}
				if ctx.Err() != nil {
					return nil
				}
				g.revalidate()
			}
		}},
	}
}

func (g *rpkiGate) collectors() []prometheus.Collector {
	status := g.client.Status
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 { g.mu.Lock(); defer g.mu.Unlock(); return f() }
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "psavd_rpki_session_up",
			Help:        "1 while the RTR session with the [rpki] cache is connected.",
			ConstLabels: prometheus.Labels{"transport": status().Transport}},
			func() float64 { return b(status().Connected) }),
		gauge("psavd_rpki_serial", "Serial of the VRP set in use (RFC 8210).", func() float64 { return float64(status().Serial) }),
		gauge("psavd_rpki_vrps", "Validated ROA payloads in the set in use.", func() float64 { return float64(status().VRPs) }),
		gauge("psavd_rpki_last_update_age_seconds", "Seconds since the last End of Data from the cache; -1 before the first.", func() float64 {
			if t := status().LastUpdate; !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return -1
		}),
		gauge("psavd_rpki_data_expired", "1 while there is no usable RPKI data (never downloaded, or past the cache's Expire Interval).",
			func() float64 { return b(g.client.Expired()) }),
		counter("psavd_rpki_updates_total", "End of Data PDUs processed (each starts a re-validation of the held records).",
			func() float64 { return float64(status().Updates) }),
		gauge("psavd_rpki_uncovered_records", "Membership records in force that RPKI does not cover (fail_open keeps them: an alarm).",
			locked(func() float64 { return float64(len(g.uncovered)) })),
		gauge("psavd_rpki_records_aside", "Membership records held aside, out of force, because RPKI does not cover them (fail_closed).",
			locked(func() float64 { return float64(g.aside) })),
		counter("psavd_rpki_records_set_aside_total", "Held membership records taken out of force by a re-validation (fail_closed).",
			locked(func() float64 { return float64(g.setAside) })),
		counter("psavd_rpki_records_readmitted_total", "Membership records put back in force once RPKI covered them again.",
			locked(func() float64 { return float64(g.readmit) })),
		counter("psavd_rpki_revalidations_total", "Re-validation passes over the held membership records.",
			locked(func() float64 { return float64(g.passes) })),
	}
}
