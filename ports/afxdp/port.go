package afxdp

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/ports"
)

// ErrClosed is returned by the methods of a closed Port or Interface; it
// matches net.ErrClosed with errors.Is.
var ErrClosed = fmt.Errorf("afxdp: %w", net.ErrClosed)

// xdpPacketHeadroom is the kernel's XDP_PACKET_HEADROOM: with a UMEM
// headroom of 0 (what asavie registers) the kernel writes a received frame
// this far into its chunk, and the RX descriptor's Addr points there.
const xdpPacketHeadroom = unix.XDP_PACKET_HEADROOM

// minFrame is the shortest frame Transmit accepts (an Ethernet header).
const minFrame = 14

// maxKicks bounds the extra sendto calls Transmit makes when the kernel has
// not drained the TX ring after the first one.
const maxKicks = 4

// States of an RX frame.
const (
	rxFree uint8 = iota // on the fill ring, in the kernel, or queued for the fill ring
	rxHeld              // handed out in a batch, not yet released
)

// socketMu serialises the setting of asavie's package-level
// DefaultSocketFlags with the NewSocket call that reads it.
var socketMu sync.Mutex

// testHookComplete, when set (by tests only), is called with the TX lock
// held just before Transmit consumes n completions, done being the number
// of frames completed before them.
var testHookComplete func(p *Port, done uint64, n int)

// Port is one queue of an Interface: one AF_XDP socket with its own UMEM.
// It implements ports.Port.
//
// Frames [0, rxFrames) of the UMEM are the RX pool, owned by the fill ring,
// the kernel and the batches of the poll loop; frames [rxFrames,
// rxFrames+txFrames) are the TX pool, used as a FIFO ring. The RX side
// (Receive, Release, under rxMu) and the TX side (Transmit, under txMu)
// touch disjoint rings and disjoint parts of asavie's bookkeeping, so they
// run concurrently.
type Port struct {
	name     string
	queue    int
	iface    *Interface
	sock     *xdp.Socket
	fd       int
	zeroCopy bool
	txBudget int
	busyPoll bool // Options.BusyPoll set: Receive busy-polls before it sleeps

	umem      []byte // the whole UMEM (asavie's mapping)
	umemBase  uintptr
	frameSize uint64
	rxFrames  int
	txFrames  int
	ringSize  int

	closed    atomic.Bool
	wakeFD    int // eventfd: Close wakes a Receive blocked in poll
	closeOnce sync.Once
	closeErr  error
	statMu    sync.RWMutex // Stats against Close

	// RX side, owned by the poll loop.
	rxMu    sync.Mutex
	rxState []uint8    // per RX frame
	fillQ   []xdp.Desc // released frames waiting for room on the fill ring
	pfds    [2]unix.PollFd

	// TX side, serialised once per batch.
	txMu    sync.Mutex
	txDescs []xdp.Desc // scratch for one batch
	txSeq   uint64     // frames ever put on the TX ring
	txDone  uint64     // frames ever completed by the kernel

	rxPackets  atomic.Uint64
	rxBadDescs atomic.Uint64
	rxBadRel   atomic.Uint64
	rxHeld     atomic.Int64
	rxBusy     atomic.Uint64
	txPackets  atomic.Uint64
	txBad      atomic.Uint64
	txKicks    atomic.Uint64
	txDoneCnt  atomic.Uint64
}

var _ ports.Port = (*Port)(nil)

// Stats are a port's counters.
type Stats struct {
	RxPackets     uint64 // frames handed out by Receive
	RxBadDescs    uint64 // RX descriptors that failed the bounds checks (dropped)
	RxBadReleases uint64 // packets given to Release that were not held frames of this port
	RxHeld        int64  // frames in batches not yet released
	TxPackets     uint64 // frames put on the TX ring
	TxCompleted   uint64 // frames the kernel reported sent
	TxBadFrames   uint64 // frames Transmit refused (bad bounds, shorter than 14 or longer than a frame)
	TxKicks       uint64 // extra sendto wake-ups after the first of each batch
	RxBusyPolls   uint64 // recvfrom busy polls of an empty RX ring (Options.BusyPoll)

	// Kernel XDP_STATISTICS of the socket.
	RxDropped            uint64 // dropped for other reasons (e.g. frame too large)
	RxInvalidDescs       uint64 // invalid fill descriptors
	TxInvalidDescs       uint64 // invalid TX descriptors
	RxRingFull           uint64 // dropped because the RX ring was full
	RxFillRingEmptyDescs uint64 // frames arrived while the fill ring was empty
	TxRingEmptyDescs     uint64 // wake-ups that found the TX ring empty
}

func newPort(i *Interface, name string, queue int) (*Port, error) {
	o := i.opts
	so := &xdp.SocketOptions{
		NumFrames:              o.Frames,
		FrameSize:              o.FrameSize,
		FillRingNumDescs:       o.RingSize,
		CompletionRingNumDescs: o.RingSize,
		RxRingNumDescs:         o.RingSize,
		TxRingNumDescs:         o.RingSize,
	}
	// Bind flags: in native mode 0 lets the kernel use zero-copy where the
	// driver supports it and fall back to copy mode in the same bind
	// (xp_assign_dev); generic mode is always copy mode.
	var flags uint16
	if i.mode == "generic" {
		flags = unix.XDP_COPY
	}
	socketMu.Lock()
	saved := xdp.DefaultSocketFlags
	xdp.DefaultSocketFlags = flags
	sock, err := xdp.NewSocket(i.ifindex, queue, so)
	xdp.DefaultSocketFlags = saved
	socketMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("afxdp: %s queue %d: %w", i.name, queue, err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("afxdp: eventfd: %w", err)
	}
	total := o.Frames * o.FrameSize
	umem := sock.GetFrame(xdp.Desc{Addr: 0, Len: uint32(total)})
	p := &Port{
		name:      name,
		queue:     queue,
		iface:     i,
		sock:      sock,
		fd:        sock.FD(),
		umem:      umem[:total:total],
		umemBase:  uintptr(unsafe.Pointer(unsafe.SliceData(umem))),
		frameSize: uint64(o.FrameSize),
		rxFrames:  o.Frames / 2,
		txFrames:  o.Frames / 2,
		ringSize:  o.RingSize,
		wakeFD:    wake,
	}
	if v, err := unix.GetsockoptInt(p.fd, unix.SOL_XDP, unix.XDP_OPTIONS); err == nil {
		p.zeroCopy = v&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	p.txBudget = setTxBudget(p.fd, o.RingSize)
	if o.BusyPoll > 0 {
		if err := setBusyPoll(p.fd, o.BusyPoll, o.BusyPollBudget); err != nil {
			sock.Close()
			unix.Close(wake)
			return nil, fmt.Errorf("afxdp: %s queue %d: %w", i.name, queue, err)
		}
		p.busyPoll = true
	}

	p.rxState = make([]uint8, p.rxFrames)
	p.fillQ = make([]xdp.Desc, 0, p.rxFrames)
	for f := 0; f < p.rxFrames; f++ {
		p.fillQ = append(p.fillQ, xdp.Desc{Addr: uint64(f) * p.frameSize, Len: uint32(p.frameSize)})
	}
	p.refill()
	p.txDescs = make([]xdp.Desc, 0, p.txFrames)
	return p, nil
}

// setTxBudget raises the number of frames one sendto makes the kernel send
// in copy mode (32 by default) with XDP_MAX_TX_SKB_BUDGET (Linux 6.17+).
// The kernel accepts budgets up to a limit tied to the TX ring size, so
// ring, ring/2, ... are tried. Older kernels answer ENOPROTOOPT: then the
// default of 32 stays. It returns the budget in force (0: unknown).
func setTxBudget(fd, ring int) int {
	for b := ring; b >= 32; b /= 2 {
		err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, b)
		if err == nil {
			return b
		}
		if errors.Is(err, unix.ENOPROTOOPT) {
			return 32
		}
	}
	return 0
}

// setBusyPoll gives the socket the options of Options.BusyPoll.
func setBusyPoll(fd int, d time.Duration, budget int) error {
	us := int((d + time.Microsecond - 1) / time.Microsecond)
	for _, o := range []struct {
		name string
		opt  int
		v    int
	}{
		{"SO_PREFER_BUSY_POLL", unix.SO_PREFER_BUSY_POLL, 1},
		{"SO_BUSY_POLL", unix.SO_BUSY_POLL, us},
		{"SO_BUSY_POLL_BUDGET", unix.SO_BUSY_POLL_BUDGET, budget},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
			return fmt.Errorf("busy poll: setsockopt %s %d: %w", o.name, o.v, err)
		}
	}
	return nil
}

// Name returns the port's configured name.
func (p *Port) Name() string { return p.name }

// Queue returns the queue index the socket is bound to.
func (p *Port) Queue() int { return p.queue }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (p *Port) ZeroCopy() bool { return p.zeroCopy }

// TxBudget returns the per-sendto TX budget set with XDP_MAX_TX_SKB_BUDGET
// (32 when the kernel does not have the option, 0 when it refused all).
func (p *Port) TxBudget() int { return p.txBudget }

// FD returns the AF_XDP socket's file descriptor.
func (p *Port) FD() int { return p.fd }

// Receive fills b.Pkts with received frames: first whatever is on the RX
// ring; if there is nothing, it refills the fill ring and polls the socket
// for at most timeout (0: do not wait; negative: wait until a frame arrives
// or the port closes). Each packet's Buf is its whole UMEM frame, Off the
// offset of the data in it (>= ports.Headroom) and Len its length. The
// frames belong to the caller until Release.
func (p *Port) Receive(b *ports.Batch, timeout time.Duration) (int, error) {
	b.Pkts = b.Pkts[:0]
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	n := p.sock.NumReceived()
	if n == 0 {
		p.refill()
		if p.busyPoll {
			// Drive the device's receive from here: recvfrom on the
			// socket busy-polls its NAPI context for up to SO_BUSY_POLL
			// (its result carries nothing; frames arrive on the RX ring).
			_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
			p.rxBusy.Add(1)
			n = p.sock.NumReceived()
		}
	}
	if n == 0 {
		if timeout == 0 {
			return 0, nil
		}
		if err := p.wait(timeout); err != nil {
			return 0, err
		}
		if p.closed.Load() {
			return 0, ErrClosed
		}
		if n = p.sock.NumReceived(); n == 0 {
			return 0, nil
		}
	}
	if c := cap(b.Pkts); n > c {
		n = c
	}
	if n == 0 {
		return 0, nil
	}
	fs := p.frameSize
	recycled := false
	for _, d := range p.sock.Receive(n) {
		idx := d.Addr / fs
		off := d.Addr % fs
		if idx >= uint64(p.rxFrames) || p.rxState[idx] != rxFree {
			// Not a frame we gave the kernel: drop the descriptor.
			p.rxBadDescs.Add(1)
			continue
		}
		if off < ports.Headroom || d.Len < minFrame || off+uint64(d.Len) > fs {
			// Our frame, but the data is not where the contract needs it:
			// drop the packet and give the frame back.
			p.rxBadDescs.Add(1)
			p.fillQ = append(p.fillQ, xdp.Desc{Addr: idx * fs, Len: uint32(fs)})
			recycled = true
			continue
		}
		p.rxState[idx] = rxHeld
		base := idx * fs
		b.Pkts = append(b.Pkts, ports.Packet{
			Buf: p.umem[base : base+fs : base+fs],
			Off: int(off),
			Len: int(d.Len),
			Out: ports.Drop,
		})
	}
	if recycled {
		p.refill()
	}
	got := len(b.Pkts)
	p.rxPackets.Add(uint64(got))
	p.rxHeld.Add(int64(got))
	return got, nil
}

// wait polls the socket for POLLIN (and the wake-up eventfd) for at most
// timeout. An interrupted poll counts as a timeout.
func (p *Port) wait(timeout time.Duration) error {
	ms := -1
	if timeout > 0 {
		d := (timeout + time.Millisecond - 1) / time.Millisecond
		if d > math.MaxInt32 {
			d = math.MaxInt32
		}
		ms = int(d)
	}
	p.pfds[0] = unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN}
	p.pfds[1] = unix.PollFd{Fd: int32(p.wakeFD), Events: unix.POLLIN}
	if _, err := unix.Poll(p.pfds[:], ms); err != nil && err != unix.EINTR {
		return fmt.Errorf("afxdp: %s: poll: %w", p.name, err)
	}
	return nil
}

// refill moves released frames onto the fill ring, as many as fit.
// Called with rxMu held.
func (p *Port) refill() {
	if len(p.fillQ) == 0 {
		return
	}
	if n := p.sock.Fill(p.fillQ); n > 0 {
		p.fillQ = p.fillQ[:copy(p.fillQ, p.fillQ[n:])]
	}
}

// frameOf returns the UMEM frame index that buf points into.
func (p *Port) frameOf(buf []byte) (uint64, bool) {
	if cap(buf) == 0 {
		return 0, false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	if a < p.umemBase || a-p.umemBase >= uintptr(len(p.umem)) {
		return 0, false
	}
	return uint64(a-p.umemBase) / p.frameSize, true
}

// Release gives the frames of b back to the fill ring and empties b.
// Packets that are not frames of this port held by the caller are ignored
// (and counted), so a frame can never be put on the fill ring twice.
func (p *Port) Release(b *ports.Batch) {
	p.rxMu.Lock()
	if !p.closed.Load() {
		released := 0
		for i := range b.Pkts {
			idx, ok := p.frameOf(b.Pkts[i].Buf)
			if !ok || idx >= uint64(p.rxFrames) || p.rxState[idx] != rxHeld {
				p.rxBadRel.Add(1)
				continue
			}
			p.rxState[idx] = rxFree
			p.fillQ = append(p.fillQ, xdp.Desc{Addr: idx * p.frameSize, Len: uint32(p.frameSize)})
			released++
		}
		p.rxHeld.Add(-int64(released))
		p.refill()
	}
	p.rxMu.Unlock()
	b.Pkts = b.Pkts[:0]
}

// Transmit copies the frames into free TX frames, puts them on the TX ring
// with one asavie Transmit call (which wakes the kernel with sendto) and, if
// the kernel has not drained the ring, wakes it again a bounded number of
// times. It returns how many packets, from the front of pkts, were taken:
// pkts[n:] found no room. A taken packet with bad bounds (Off/Len outside
// Buf, Len < 14 or Len > frame size) is dropped and counted in TxBadFrames.
//
// TX frames are a FIFO ring: the frame of the s-th transmitted packet is
// slot s mod txFrames, reusable once the completion count has passed s.
// asavie's Complete does not return addresses, so this relies on the
// kernel completing one socket's TX descriptors in TX order. That holds in
// copy (generic) mode, where the kernel reserves the completion slot of
// each descriptor in TX order as it builds the skb, and for zero-copy
// drivers, which complete a TX queue in order; a test checks it.
func (p *Port) Transmit(pkts []ports.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	p.reclaim()
	free := p.txFrames - int(p.txSeq-p.txDone)
	if slots := p.sock.NumFreeTxSlots(); slots < free {
		free = slots
	}
	fs := p.frameSize
	descs := p.txDescs[:0]
	seq := p.txSeq
	taken := 0
	for ; taken < len(pkts) && len(descs) < free; taken++ {
		pk := &pkts[taken]
		if pk.Off < 0 || pk.Len < minFrame || uint64(pk.Len) > fs || pk.Off > len(pk.Buf)-pk.Len {
			p.txBad.Add(1)
			continue
		}
		slot := seq % uint64(p.txFrames)
		addr := (uint64(p.rxFrames) + slot) * fs
		copy(p.umem[addr:addr+uint64(pk.Len)], pk.Buf[pk.Off:pk.Off+pk.Len])
		descs = append(descs, xdp.Desc{Addr: addr, Len: uint32(pk.Len)})
		seq++
	}
	if len(descs) == 0 {
		return taken, nil
	}
	n, err := p.submit(descs)
	p.txSeq += uint64(n)
	p.txPackets.Add(uint64(n))
	if err == nil {
		err = p.kick()
	}
	return taken, err
}

// submit is asavie's Transmit, which panics when sendto fails with
// anything but EINTR, EAGAIN or EBUSY (ENETDOWN, ENXIO when the device goes
// away): that panic becomes an error. asavie puts the descriptors on the
// ring before it calls sendto, so they are submitted either way (free
// slots were checked before).
func (p *Port) submit(descs []xdp.Desc) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n = len(descs)
			err = fmt.Errorf("afxdp: %s: transmit: %v", p.name, r)
		}
	}()
	return p.sock.Transmit(descs), nil
}

// reclaim consumes the completion ring. Called with txMu held.
func (p *Port) reclaim() {
	c := p.sock.NumCompleted()
	if c == 0 {
		return
	}
	if testHookComplete != nil {
		testHookComplete(p, p.txDone, c)
	}
	p.sock.Complete(c)
	p.txDone += uint64(c)
	if p.txDone > p.txSeq { // cannot happen: never trust more than we sent
		p.txDone = p.txSeq
	}
	p.txDoneCnt.Add(uint64(c))
}

// kick wakes the kernel again while the TX ring still holds descriptors
// and the previous wake-up made progress. Copy mode sends at most the
// per-sendto budget (XDP_MAX_TX_SKB_BUDGET, 32 by default) per call.
func (p *Port) kick() error {
	pending := p.ringSize - p.sock.NumFreeTxSlots()
	for k := 0; k < maxKicks && pending > 0; k++ {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		p.txKicks.Add(1)
		switch errno {
		case 0, unix.EINTR:
		case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
			return nil
		default:
			return fmt.Errorf("afxdp: %s: sendto: %w", p.name, errno)
		}
		now := p.ringSize - p.sock.NumFreeTxSlots()
		if now >= pending {
			return nil
		}
		pending = now
	}
	return nil
}

// Stats returns the port's counters and the kernel's XDP_STATISTICS.
func (p *Port) Stats() (Stats, error) {
	p.statMu.RLock()
	defer p.statMu.RUnlock()
	if p.closed.Load() {
		return Stats{}, ErrClosed
	}
	s := Stats{
		RxPackets:     p.rxPackets.Load(),
		RxBadDescs:    p.rxBadDescs.Load(),
		RxBadReleases: p.rxBadRel.Load(),
		RxHeld:        p.rxHeld.Load(),
		TxPackets:     p.txPackets.Load(),
		TxCompleted:   p.txDoneCnt.Load(),
		TxBadFrames:   p.txBad.Load(),
		TxKicks:       p.txKicks.Load(),
		RxBusyPolls:   p.rxBusy.Load(),
	}
	ks, err := p.sock.Stats()
	if err != nil {
		return s, fmt.Errorf("afxdp: %s: %w", p.name, err)
	}
	k := ks.KernelStats
	s.RxDropped = k.Rx_dropped
	s.RxInvalidDescs = k.Rx_invalid_descs
	s.TxInvalidDescs = k.Tx_invalid_descs
	s.RxRingFull = k.Rx_ring_full
	s.RxFillRingEmptyDescs = k.Rx_fill_ring_empty_descs
	s.TxRingEmptyDescs = k.Tx_ring_empty_descs
	return s, nil
}

// Close unregisters the socket from the program and closes it. Stop the
// poll loops that use the port first: once Close returns, the UMEM is
// unmapped and the Bufs of unreleased packets must not be touched. A
// Receive blocked in poll is woken. Safe to call twice.
//
// asavie's Socket.Close does not unmap the rings, so the kernel socket
// (and its pinned UMEM pages) live on until the process exits, and the same
// (interface, queue) cannot be bound again by this process (EBUSY).
func (p *Port) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Port) close() error {
	p.closed.Store(true)
	var one [8]byte
	*(*uint64)(unsafe.Pointer(&one[0])) = 1
	_, _ = unix.Write(p.wakeFD, one[:])
	p.rxMu.Lock()
	p.txMu.Lock()
	p.statMu.Lock()
	defer func() {
		p.statMu.Unlock()
		p.txMu.Unlock()
		p.rxMu.Unlock()
	}()
	err := p.iface.forget(p)
	return errors.Join(err, p.closeSocket())
}

// closeSocket closes the socket and the wake-up eventfd.
func (p *Port) closeSocket() error {
	err := p.sock.Close()
	unix.Close(p.wakeFD)
	if err != nil {
		return fmt.Errorf("afxdp: %s: close socket: %w", p.name, err)
	}
	return nil
}
