// Package barefwd is the reference point of the forwarding benchmark, case
// (a): a bare AF_XDP forwarder built from the same ports package as psavd
// (ports/afxdp) and shaped like psavd's poll loops — one loop per receiving
// port, pinned to a CPU, batches of 64: receive, transmit the whole batch on
// the peer port, release — but with no packet processing at all. psavd's
// rate divided by this one is the cost of PSAV itself.
package barefwd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/afxdp"
)

// DUT is the bare forwarder as a bench.DUT. The zero value uses psavd's
// defaults (cross-connect ports, batch 64, 100 ms idle wait).
type DUT struct {
	// Options for both interfaces; CrossConnect is always set.
	Options afxdp.Options
	// Batch is the number of frames per receive (default 64).
	Batch int
	// Idle is how long Receive may wait when nothing arrives (default
	// 100 ms, as psavd).
	Idle time.Duration
	// Queues is the number of queues served on each interface, 0 … Queues−1
	// (default 1). Queue q of In is forwarded to queue q of Out and back,
	// one loop each, pinned to env.CPUs in turn, as psavd does with every
	// RX queue of a multi-queue interface.
	Queues int

	ifaces []*afxdp.Interface
	ports  []*afxdp.Port
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   []error
	mu     sync.Mutex

	// Stats of the last run, per port (in, out), read at Stop.
	Stats []afxdp.Stats
}

var _ bench.DUT = (*DUT)(nil)

func (d *DUT) Name() string { return "afxdp-bare" }

// Start opens env.In and env.Out (queues 0 … Queues−1 each) inside env.NS
// and starts the loops, in → out and out → in for every queue, pinned to
// env.CPUs in turn.
func (d *DUT) Start(ctx context.Context, env bench.Env) error {
	if d.Batch <= 0 {
		d.Batch = 64
	}
	if d.Queues <= 0 {
		d.Queues = 1
	}
	if d.Idle <= 0 {
		d.Idle = 100 * time.Millisecond
	}
	opts := d.Options
	opts.CrossConnect = true
	err := netlab.Do(env.NS, func() error {
		for _, name := range []string{env.In, env.Out} {
			ifc, err := afxdp.OpenInterface(name, opts)
			if err != nil {
				return err
			}
			d.ifaces = append(d.ifaces, ifc)
			for q := range d.Queues {
				p, err := ifc.OpenQueue(name, q)
				if err != nil {
					return err
				}
				d.ports = append(d.ports, p)
			}
		}
		return nil
	})
	if err != nil {
		return errors.Join(err, d.close())
	}
	lctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	// d.ports is In's queues, then Out's: loop i receives on port i and
	// transmits on the same queue of the other interface.
	n := len(d.ports)
	started := make(chan struct{}, n)
	for i := range n {
		cpu := -1
		if len(env.CPUs) > 0 {
			cpu = env.CPUs[i%len(env.CPUs)]
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.loop(lctx, d.ports[i], d.ports[(i+d.Queues)%n], cpu, started); err != nil {
				d.mu.Lock()
				d.errs = append(d.errs, err)
				d.mu.Unlock()
			}
		}()
	}
	for range n {
		select {
		case <-started:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *DUT) loop(ctx context.Context, in, out ports.Port, cpu int, started chan<- struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			started <- struct{}{}
			return fmt.Errorf("barefwd: pin to CPU %d: %w", cpu, err)
		}
	}
	started <- struct{}{}
	b := ports.NewBatch(d.Batch)
	for ctx.Err() == nil {
		n, err := in.Receive(b, d.Idle)
		if err != nil {
			if errors.Is(err, afxdp.ErrClosed) {
				return nil
			}
			continue
		}
		if n == 0 {
			continue
		}
		out.Transmit(b.Pkts) // what finds no room is dropped, as psavd's tx-full
		in.Release(b)
	}
	return nil
}

// Stop ends the loops, keeps the ports' statistics in Stats and closes
// everything.
func (d *DUT) Stop() error {
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
		d.cancel = nil
	}
	d.Stats = d.Stats[:0]
	for _, p := range d.ports {
		if s, err := p.Stats(); err == nil {
			d.Stats = append(d.Stats, s)
		}
	}
	d.mu.Lock()
	errs := append(d.errs, d.close())
	d.errs = nil
	d.mu.Unlock()
	return errors.Join(errs...)
}

func (d *DUT) close() error {
	var errs []error
	for _, p := range d.ports {
		errs = append(errs, p.Close())
	}
	for _, i := range d.ifaces {
		errs = append(errs, i.Close())
	}
	d.ports, d.ifaces = nil, nil
	return errors.Join(errs...)
}
