// Package mem is an in-memory ports.Port for unit tests and benchmarks.
//
// Frames given to Inject are received once each; frames given to Loop are
// received again and again (a traffic source that never runs dry, as a NIC
// under load is). Received frames are copied into the port's own buffers at
// ports.Headroom, as a NIC's DMA would place them, so the engine works on
// memory it may edit. Transmitted frames are copied out and kept, or only
// counted when the port discards.
package mem

import (
	"sync"
	"time"

	"github.com/psavd/psavd/ports"
)

// Port is an in-memory port.
type Port struct {
	name string

	rxMu    sync.Mutex
	queue   [][]byte      // frames waiting to be received
	loop    [][]byte      // templates received round robin when queue is empty
	next    int           // next template
	wake    chan struct{} // signalled by Inject
	bufs    [][]byte      // RX buffers, one per batch slot
	Discard bool          // count transmitted frames without keeping them

	txMu     sync.Mutex
	sent     [][]byte
	TxFrames uint64 // frames transmitted (read after the loops stopped, or under the test's own sync)
}

// New returns a port whose batches hold up to batch frames.
func New(name string, batch int) *Port {
	p := &Port{name: name, wake: make(chan struct{}, 1), bufs: make([][]byte, batch)}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, ports.Headroom+ports.MaxFrame)
	}
	return p
}

// Name implements ports.Port.
func (p *Port) Name() string { return p.name }

// Inject queues frames to be received once each.
func (p *Port) Inject(frames ...[]byte) {
	p.rxMu.Lock()
	p.queue = append(p.queue, frames...)
	p.rxMu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Loop makes the port receive these frames round robin, forever.
func (p *Port) Loop(frames ...[]byte) {
	p.rxMu.Lock()
	p.loop = frames
	p.rxMu.Unlock()
}

// Receive implements ports.Port.
func (p *Port) Receive(b *ports.Batch, timeout time.Duration) (int, error) {
	n := p.fill(b)
	if n == 0 && timeout > 0 {
		t := time.NewTimer(timeout)
		select {
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
		n = p.fill(b)
	}
	return n, nil
}

func (p *Port) fill(b *ports.Batch) int {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	b.Pkts = b.Pkts[:0]
	for len(b.Pkts) < cap(b.Pkts) && len(b.Pkts) < len(p.bufs) {
		var f []byte
		switch {
		case len(p.queue) > 0:
			f, p.queue = p.queue[0], p.queue[1:]
		case len(p.loop) > 0:
			f = p.loop[p.next]
			p.next = (p.next + 1) % len(p.loop)
		default:
			return len(b.Pkts)
		}
		buf := p.bufs[len(b.Pkts)]
		if len(f) > ports.MaxFrame {
			f = f[:ports.MaxFrame]
		}
		n := copy(buf[ports.Headroom:], f)
		b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	}
	return len(b.Pkts)
}

// Release implements ports.Port.
func (p *Port) Release(b *ports.Batch) { b.Pkts = b.Pkts[:0] }

// Transmit implements ports.Port.
func (p *Port) Transmit(pkts []ports.Packet) (int, error) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	p.TxFrames += uint64(len(pkts))
	if !p.Discard {
		for i := range pkts {
			p.sent = append(p.sent, append([]byte(nil), pkts[i].Frame()...))
		}
	}
	return len(pkts), nil
}

// Sent returns the frames transmitted since the last call.
func (p *Port) Sent() [][]byte {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	s := p.sent
	p.sent = nil
	return s
}

// Close implements ports.Port.
func (p *Port) Close() error { return nil }
