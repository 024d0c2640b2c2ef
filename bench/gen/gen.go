// Package gen is the traffic source and sink of psavd's forwarding benchmark.
//
// The Generator injects Ethernet frames into a veth with BPF_PROG_TEST_RUN in
// live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+): the kernel runs
// a tiny XDP program over a template frame Repeat times in one system call,
// and every XDP_TX verdict really transmits the frame on the interface named
// as ingress in the run's xdp_md — here one end of a veth, so the frame
// arrives at its peer. No copy crosses the user/kernel boundary per frame and
// no socket ring is involved, so one core emits several million frames per
// second, well above what an AF_XDP forwarder on veths can carry.
//
// The Sink is an XDP program on the receiving interface that counts frames in
// per-CPU counters and drops them.
//
// A veth accepts XDP-transmitted frames only if its peer runs NAPI, i.e. has
// an XDP program attached (or GRO on): the sink does; a device under test
// that uses AF_XDP does too. Everything attaches through bpf_links, which
// detach when closed or when the process dies.
package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
)

// Config says where and what a Generator sends.
type Config struct {
	// NS is the namespace holding Iface ("" = the caller's namespace).
	NS string
	// Iface is the interface the frames leave by: they arrive at its peer.
	Iface string
	// Frames are the templates (at least one, at most 256, 14 to 3000
	// octets each). Consecutive frames of one CPU take them in turn.
	Frames [][]byte
	// Chunk is the number of frames per system call in Flood; 0 means as
	// many as one call takes (2³²−1): Flood then stops its threads with a
	// signal, and the fixed cost of a call (about 25 ms here: the page
	// pool's teardown waits for an RCU grace period) is paid once.
	Chunk uint32
	// BatchSize is the kernel's live-frame batch (frames per page-pool
	// refill and redirect flush); 0 lets the kernel choose (64).
	BatchSize uint32
}

// Generator sends frames with BPF_PROG_TEST_RUN live frames. Send and Flood
// must not run concurrently on one Generator (they count through one map).
type Generator struct {
	cfg       Config
	prog      *ebpf.Program
	counter   *ebpf.Map
	templates *ebpf.Map // nil with one template
	ifindex   int
	data      []byte // the run's frame, heap-allocated (its address goes to the kernel)
	md        []byte // the run's struct xdp_md
}

// New loads the generator's program and resolves the interface.
func New(cfg Config) (*Generator, error) {
	if len(cfg.Frames) == 0 || len(cfg.Frames) > 256 {
		return nil, fmt.Errorf("gen: %d templates, want 1 to 256", len(cfg.Frames))
	}
	maxLen := 0
	for _, f := range cfg.Frames {
		if len(f) < 14 || len(f) > 3000 {
			return nil, fmt.Errorf("gen: frame of %d octets, want 14 to 3000", len(f))
		}
		maxLen = max(maxLen, len(f))
	}
	ifindex, err := Ifindex(cfg.NS, cfg.Iface)
	if err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, ifindex: ifindex, data: make([]byte, maxLen)}
	copy(g.data, cfg.Frames[0])
	// struct xdp_md { data, data_end, data_meta, ingress_ifindex,
	// rx_queue_index, egress_ifindex } — all __u32. For a test run data_meta
	// must be 0 and data_end the frame's length.
	g.md = make([]byte, 24)
	binary.NativeEndian.PutUint32(g.md[4:], uint32(maxLen))
	binary.NativeEndian.PutUint32(g.md[12:], uint32(ifindex))

	if g.counter, err = newCounterMap("psav_gen_cnt", 1); err != nil {
		return nil, err
	}
	if len(cfg.Frames) > 1 {
		if g.templates, err = newTemplateMap(cfg.Frames, maxLen); err != nil {
			g.Close()
			return nil, err
		}
	}
	if g.prog, err = newGenProgram(g.counter, g.templates, len(cfg.Frames), maxLen); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close frees the program and the maps.
func (g *Generator) Close() error {
	var errs []error
	if g.prog != nil {
		errs = append(errs, g.prog.Close())
	}
	if g.templates != nil {
		errs = append(errs, g.templates.Close())
	}
	if g.counter != nil {
		errs = append(errs, g.counter.Close())
	}
	return errors.Join(errs...)
}

// Sent returns the number of frames the program has transmitted so far (XDP_TX
// verdicts, over all CPUs). A frame the receiving veth could not take (its
// ring full, or no NAPI on it) still counts here: it is lost downstream.
func (g *Generator) Sent() (uint64, error) {
	var percpu []uint64
	if err := g.counter.Lookup(uint32(0), &percpu); err != nil {
		return 0, fmt.Errorf("gen: read counter: %w", err)
	}
	var n uint64
	for _, x := range percpu {
		n += x
	}
	return n, nil
}

// progRunAttr is the BPF_PROG_TEST_RUN member of union bpf_attr.
type progRunAttr struct {
	progFd      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// run makes one live-frame run of repeat frames on the calling thread (which
// must be in the generator's namespace). It returns EINTR when a signal cut
// the run short; the frames sent until then are sent. Unlike
// ebpf.Program.Run, it does not restart an interrupted run from scratch,
// which would send more than asked.
func (g *Generator) run(repeat uint32) error {
	attr := progRunAttr{
		progFd:     uint32(g.prog.FD()),
		dataSizeIn: uint32(len(g.data)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&g.data[0]))),
		repeat:     repeat,
		ctxSizeIn:  uint32(len(g.md)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(&g.md[0]))),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  g.cfg.BatchSize,
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN,
		uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(g)
	if errno != 0 {
		return errno
	}
	return nil
}

// inNS runs fn on a locked OS thread in the generator's namespace.
func (g *Generator) inNS(fn func() error) error {
	if g.cfg.NS == "" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return fn()
	}
	return netlab.Do(g.cfg.NS, fn)
}

// Test hooks: the thread Send runs on, and each interrupted run.
var (
	testHookSendThread  func(tid int)
	testHookInterrupted func()
)

// Send transmits exactly k frames from one thread. A run interrupted by a
// signal is resumed for the frames still due, as counted by the program.
func (g *Generator) Send(k uint64) error {
	return g.inNS(func() error {
		if testHookSendThread != nil {
			testHookSendThread(unix.Gettid())
		}
		for due := k; due > 0; {
			before, err := g.Sent()
			if err != nil {
				return err
			}
			rep := uint32(min(due, math.MaxUint32))
			err = g.run(rep)
			switch {
			case err == nil:
				due -= uint64(rep)
			case errors.Is(err, unix.EINTR):
				if testHookInterrupted != nil {
					testHookInterrupted()
				}
				after, err := g.Sent()
				if err != nil {
					return err
				}
				due -= min(after-before, due)
			default:
				return fmt.Errorf("gen: BPF_PROG_TEST_RUN live frames on %s: %w", g.cfg.Iface, err)
			}
		}
		return nil
	})
}

// Flood sends as fast as it can until ctx is done, from one thread per CPU in
// cpus (each pinned there; nil or empty: one unpinned thread). When ctx is
// done the threads are stopped by a signal (SIGURG, which the Go runtime
// ignores), which ends the system call between two batches. Flood returns
// when all threads have stopped; a cancelled ctx is not an error.
func (g *Generator) Flood(ctx context.Context, cpus []int) error {
	if len(cpus) == 0 {
		cpus = []int{-1}
	}
	chunk := g.cfg.Chunk
	if chunk == 0 {
		chunk = math.MaxUint32
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		tids []int
	)
	errs := make([]error, len(cpus))
	for k, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = g.inNS(func() error {
				if cpu >= 0 {
					var old, set unix.CPUSet
					if err := unix.SchedGetaffinity(0, &old); err != nil {
						return err
					}
					set.Set(cpu)
					if err := unix.SchedSetaffinity(0, &set); err != nil {
						return fmt.Errorf("gen: pin to CPU %d: %w", cpu, err)
					}
					defer unix.SchedSetaffinity(0, &old)
				}
				mu.Lock()
				tids = append(tids, unix.Gettid())
				mu.Unlock()
				for ctx.Err() == nil {
					if err := g.run(chunk); err != nil && !errors.Is(err, unix.EINTR) {
						return fmt.Errorf("gen: BPF_PROG_TEST_RUN live frames on %s: %w", g.cfg.Iface, err)
					}
				}
				return nil
			})
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// A signal that lands between two calls is lost, so keep
		// signalling until every thread is out.
		pid := unix.Getpid()
		for tick := time.NewTicker(5 * time.Millisecond); ; {
			mu.Lock()
			for _, tid := range tids {
				_ = unix.Tgkill(pid, tid, unix.SIGURG)
			}
			mu.Unlock()
			select {
			case <-done:
				tick.Stop()
				return errors.Join(errs...)
			case <-tick.C:
			}
		}
	}
	return errors.Join(errs...)
}
