package engine

import (
	"sync/atomic"
	"time"
)

// Drop capture (docs/wire.md §2.2): a sampled copy of dropped frames, for
// forensics. The packet path only copies a sampled, rate-limited frame into
// a preallocated slot of its loop's own ring — no allocation, no lock, no
// system call; a writer elsewhere (control/capture) drains the rings into
// pcap files.

// CaptureConfig says which drops to copy.
type CaptureConfig struct {
	Every     uint32           // copy 1 in Every drops of each reason (0: capture off)
	PerSecond uint32           // at most this many copies per second per loop (0: no limit)
	Snap      int              // octets kept per frame (default 256)
	Slots     int              // ring size per loop, a power of two (default 256)
	Reasons   [numReasons]bool // reasons to capture; all false means all
}

// Captured is one copied drop.
type Captured struct {
	UnixNano int64
	Port     int    // engine port of arrival
	Reason   Reason //
	Length   int    // the frame's length on the wire
	Data     []byte // its first Snap octets (valid until the slot is released)
}

// captureRing is a single-producer (the poll loop), single-consumer (the
// writer) ring of fixed slots.
type captureRing struct {
	cfg      CaptureConfig
	slots    []captureSlot
	mask     uint64
	head     atomic.Uint64 // next slot the loop writes; published after the copy
	tail     atomic.Uint64 // next slot the writer reads
	overflow atomic.Uint64 // sampled drops lost because the ring was full

	// loop-owned sampling state
	seen    [numReasons]uint32
	second  int64
	credits uint32
}

type captureSlot struct {
	unixNano int64
	port     int
	reason   Reason
	length   int
	n        int
	data     []byte
}

func newCaptureRing(cfg CaptureConfig) *captureRing {
	if cfg.Snap <= 0 {
		cfg.Snap = 256
	}
	if cfg.Slots <= 0 || cfg.Slots&(cfg.Slots-1) != 0 {
		cfg.Slots = 256
	}
	all := true
	for _, r := range cfg.Reasons {
		all = all && !r
	}
	if all {
		for i := range cfg.Reasons {
			cfg.Reasons[i] = true
		}
	}
	r := &captureRing{cfg: cfg, slots: make([]captureSlot, cfg.Slots), mask: uint64(cfg.Slots - 1)}
	for i := range r.slots {
		r.slots[i].data = make([]byte, cfg.Snap)
	}
	return r
}

// offer is called by the poll loop for a dropped frame.
func (r *captureRing) offer(frame []byte, port int, reason Reason, unixNow int64) {
	if !r.cfg.Reasons[reason] {
		return
	}
	r.seen[reason]++
	if r.seen[reason]%r.cfg.Every != 0 {
		return
	}
	if r.cfg.PerSecond > 0 {
		if unixNow != r.second {
			r.second, r.credits = unixNow, r.cfg.PerSecond
		}
		if r.credits == 0 {
			return
		}
		r.credits--
	}
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		r.overflow.Add(1)
		return
	}
	s := &r.slots[h&r.mask]
	s.unixNano = time.Now().UnixNano()
	s.port, s.reason, s.length = port, reason, len(frame)
	s.n = copy(s.data, frame)
	r.head.Store(h + 1) // publishes the slot to the writer
}

// EnableCapture turns drop capture on for this processor (before its loop
// starts). The ring is read with DrainCapture.
func (pr *Processor) EnableCapture(cfg CaptureConfig) {
	if cfg.Every == 0 {
		pr.capture = nil
		return
	}
	pr.capture = newCaptureRing(cfg)
}

// DrainCapture hands every captured frame waiting in the processor's ring to
// fn, in order, and releases the slots. Only one goroutine may drain a
// processor. It returns the number of sampled drops lost to a full ring so
// far.
func (pr *Processor) DrainCapture(fn func(*Captured)) (overflow uint64) {
	r := pr.capture
	if r == nil {
		return 0
	}
	var c Captured
	for t, h := r.tail.Load(), r.head.Load(); t < h; t++ {
		s := &r.slots[t&r.mask]
		c = Captured{UnixNano: s.unixNano, Port: s.port, Reason: s.reason, Length: s.length, Data: s.data[:s.n]}
		fn(&c)
		r.tail.Store(t + 1)
	}
	return r.overflow.Load()
}
