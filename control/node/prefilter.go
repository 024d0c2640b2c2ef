package node

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports/afxdp"
)

// prefilterPort is an interface whose XDP pre-filter is on.
type prefilterPort struct {
	port string // engine port name (the metrics' port label)
	pf   *afxdp.Prefilter
}

// prefilterSyncEvery bounds how long the pre-filter judges by a snapshot the
// engine has replaced, and how late after an epoch boundary its epoch octet
// moves. Both are safe (ports/afxdp prefilter.go: every drop is the engine's
// under the generation's own snapshot, and the epoch window is one wider on
// each side than the engine's); it only bounds staleness.
const prefilterSyncEvery = 20 * time.Millisecond

// setupPrefilters turns the XDP pre-filter on for every interface all of
// whose ports are egress ports with xdp_prefilter, in cross-connect mode,
// without LISP decapsulation (the engine judges LISP data by its inner
// packet); validate (no-tag, stale-epoch) where every such port's peer is
// an ingress port. With a drop capture, sampled drops go to the engine.
func (d *dataPlane) setupPrefilters(c *config.Config) error {
	if d.spec.Forwarding != engine.CrossConnect {
		return nil
	}
	for ifname, ifc := range d.ifaces {
		opts := afxdp.PrefilterOptions{Enabled: true, Validate: true, Sample: c.Capture != nil}
		name := ""
		for pi, p := range c.Ports {
			if p.Interface != ifname {
				continue
			}
			sp := d.spec.Ports[pi]
			if p.Role != engine.RoleEgress || !p.XDPPrefilter || len(sp.RLOCs) > 0 {
				opts.Enabled = false
			}
			if p.Peer < 0 || c.Ports[p.Peer].Role != engine.RoleIngress {
				opts.Validate = false
			}
			name = p.Name
		}
		if !opts.Enabled {
			continue
		}
		if err := ifc.Prefilter().Configure(opts); err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		d.prefilters = append(d.prefilters, prefilterPort{port: name, pf: ifc.Prefilter()})
		d.col.AddXDP(name, ifc.Prefilter().Drops)
		d.log.Info("XDP pre-filter", zap.String("interface", ifname), zap.Bool("validate", opts.Validate), zap.Bool("sample", opts.Sample))
	}
	return nil
}

// prefilterRole keeps every pre-filter on the engine's current snapshot and
// epoch (the same clock as the poll loops: time.Now).
func (d *dataPlane) prefilterRole() []Role {
	if d == nil || len(d.prefilters) == 0 {
		return nil
	}
	return []Role{{Name: "xdp-prefilter", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		sync := func() error {
			t, now := d.eng.PSAVTables(), time.Now().Unix() // the PSAV part: route and map-cache publishes do not touch it
			for _, p := range d.prefilters {
				if err := p.pf.Sync(t, now); err != nil {
					return fmt.Errorf("port %s: %w", p.port, err)
				}
			}
			return nil
		}
		if err := sync(); err != nil {
			return err
		}
		ready()
		tk := time.NewTicker(prefilterSyncEvery)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tk.C:
				if err := sync(); err != nil {
					return err
				}
			}
		}
	}}}
}
