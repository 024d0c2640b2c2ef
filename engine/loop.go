package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/psavd/psavd/ports"
	"golang.org/x/sys/unix"
)

// Loop is one poll loop: it receives on one (port, queue) and transmits on
// the queues it was given for each engine port.
type Loop struct {
	In   int          // engine port index of arrival
	Port ports.Port   // the (port, queue) it receives on
	Out  []ports.Port // by engine port index: the queue this loop transmits on (nil: none)
	CPU  int          // CPU to pin to, -1 for none
}

// RunOptions tune the poll loops.
type RunOptions struct {
	Batch   int              // packets per batch (default 64)
	Idle    time.Duration    // how long Receive may wait when idle (default 100 ms)
	Clock   func() int64     // unix seconds, once per batch (default time.Now)
	OnError func(err error)  // receive/transmit errors (default: ignored)
	Started func(l *Loop)    // called once the loop is pinned and about to poll
	Stats   func(*Processor) // receives each loop's processor once, for exporters
}

// Run starts every poll loop — the one place goroutines of the data path are
// started — and blocks until ctx is done and all loops have returned.
func (e *Engine) Run(ctx context.Context, loops []Loop, o RunOptions) error {
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.Idle <= 0 {
		o.Idle = 100 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = func() int64 { return time.Now().Unix() }
	}
	var wg sync.WaitGroup
	errs := make([]error, len(loops))
	for i := range loops {
		l := &loops[i]
		if l.In < 0 || l.In >= len(e.spec.Ports) || len(l.Out) != len(e.spec.Ports) {
			return fmt.Errorf("engine: loop %d is not wired to the engine's %d ports", i, len(e.spec.Ports))
		}
		pr := e.NewProcessor(l.In)
		if o.Stats != nil {
			o.Stats(pr)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.poll(ctx, l, pr, &o)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Engine) poll(ctx context.Context, l *Loop, pr *Processor, o *RunOptions) error {
	// The loop owns its OS thread for life, pinned to its CPU, so the
	// scheduler never moves it away from its queue's cache.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if l.CPU >= 0 {
		var set unix.CPUSet
		set.Set(l.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin loop of %s to CPU %d: %w", l.Port.Name(), l.CPU, err)
		}
	}
	if o.Started != nil {
		o.Started(l)
	}
	b := ports.NewBatch(o.Batch)
	// Frames grouped by the port they leave by; preallocated, reused.
	fwd := make([][]ports.Packet, len(l.Out))
	for i := range fwd {
		fwd[i] = make([]ports.Packet, 0, o.Batch)
	}
	for ctx.Err() == nil {
		n, err := l.Port.Receive(b, o.Idle)
		if err != nil && o.OnError != nil {
			o.OnError(fmt.Errorf("receive on %s: %w", l.Port.Name(), err))
		}
		if n == 0 {
			continue
		}
		now := o.Clock()
		pr.Process(b, e.tables.Load(), now)
		pr.forward(b, l, fwd, o)
		l.Port.Release(b)
	}
	return nil
}

// forward hands each port its share of the batch: one Transmit per port.
func (pr *Processor) forward(b *ports.Batch, l *Loop, fwd [][]ports.Packet, o *RunOptions) {
	for i := range b.Pkts {
		if out := b.Pkts[i].Out; out >= 0 {
			fwd[out] = append(fwd[out], b.Pkts[i])
		}
	}
	for out, pkts := range fwd {
		if len(pkts) == 0 {
			continue
		}
		sent := 0
		if l.Out[out] != nil {
			var err error
			sent, err = l.Out[out].Transmit(pkts)
			if err != nil && o.OnError != nil {
				o.OnError(fmt.Errorf("transmit on %s: %w", l.Out[out].Name(), err))
			}
		}
		pr.Counters.TxPackets[out].Add(uint64(sent))
		if lost := len(pkts) - sent; lost > 0 {
			pr.Counters.Drops[DropTxFull].Add(uint64(lost))
		}
		fwd[out] = pkts[:0]
	}
}

// Drain runs loop l synchronously on the calling goroutine until its port
// reports io.EOF (a capture file's end); replays and tests use it to put
// frames through exactly the path the poll loops use.
func (e *Engine) Drain(l *Loop, pr *Processor, batch int, clock func() int64) error {
	o := RunOptions{Batch: batch, Clock: clock}
	b := ports.NewBatch(batch)
	fwd := make([][]ports.Packet, len(l.Out))
	for i := range fwd {
		fwd[i] = make([]ports.Packet, 0, batch)
	}
	for {
		n, err := l.Port.Receive(b, 0)
		if n > 0 {
			now := o.Clock() // first: a replay's clock may publish the tables for now
			pr.Process(b, e.tables.Load(), now)
			pr.forward(b, l, fwd, &o)
			l.Port.Release(b)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
